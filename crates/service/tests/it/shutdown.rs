//! Graceful shutdown with every worker running in the replica (SPEC §8): what the drain
//! commits is still this replica's to finish. SQLite, the SQS emulator, Megazord and
//! Micro-Managers stubbed over real HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::json;
use status_check::queue::{
    OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange,
};
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, spawn_running, sqs_queues};
use crate::lifecycle::{at, open_charging_check, robot_messages};
use crate::monitors;

const ROBOT: i64 = 42;

/// A check decided while the replica drains — the shutdown came during its deadline's read —
/// is notified by this replica before it exits: its relay stops after its scheduler, so the
/// notification is not handed to a relay that had stopped already, to be sent by another
/// replica once its lease ran out (30 s later).
#[tokio::test]
async fn a_check_decided_during_the_drain_is_notified_before_the_replica_exits() {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let (app, running) = spawn_running(
        Backend::Sqlite,
        &queues,
        &[
            ("SHUTDOWN_TIMEOUT_SECS", "10"),
            ("DEADLINE_RECONCILE_BUDGET_MS", "2000"),
        ],
    )
    .await;
    let id = open_charging_check(&app, 7001, 991).await;
    // The read at the deadline answers slowly (within its budget).
    app.given_slow_incomings(ROBOT, "CHARGING_STARTED", Duration::from_millis(800))
        .await;
    let reads_before = app.upstream_calls("GET", "/incomings").await;
    app.clock.set(at("2026-11-20T08:10:01Z"));
    let patience = Instant::now() + Duration::from_secs(10);
    while app.upstream_calls("GET", "/incomings").await == reads_before {
        assert!(Instant::now() < patience, "the scheduler never read");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.stop();
    tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("stopped within the shutdown timeout")
        .unwrap()
        .unwrap();
    let messages = robot_messages(&queues, ROBOT).await;
    let phases: Vec<(i64, String)> = messages
        .iter()
        .map(|(body, _)| {
            (
                body["payload"]["id"].as_i64().unwrap(),
                body["payload"]["phase"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        [(id, "FAILED".to_owned())],
        "sent before the replica exited"
    );
}

/// A monitor worker stopped in the middle of its claimed batch acts on no more of it: the
/// monitors it did not reach are let go at once, due as they were, and another replica takes
/// them without waiting out the stale window (30 s).
#[tokio::test]
async fn a_stopping_monitor_worker_lets_go_of_the_monitors_it_did_not_reach() {
    let Some(mut stack) = monitors::stack(Backend::Sqlite, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("first", json!({})).await;
    stack.monitor("second", json!({})).await;
    // Each session's opening waits a second for Megazord's answer to its subscribe.
    stack
        .megazord
        .answer_slowly_until(at("2026-11-20T09:00:00Z"), Duration::from_secs(1));
    let worker = stack
        .first
        .workers
        .monitor
        .take()
        .expect("a monitor worker");
    let stop = CancellationToken::new();
    let running = tokio::spawn(worker.run(stop.clone()));
    let patience = Instant::now() + Duration::from_secs(10);
    while stack.megazord.subscriptions(monitors::ROBOT).is_empty() {
        assert!(Instant::now() < patience, "no session was being opened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the worker stops")
        .unwrap();
    let mut states = Vec::new();
    for rule in ["first", "second"] {
        let stored = stack
            .store()
            .get_monitor(monitors::ROBOT, rule)
            .await
            .unwrap()
            .unwrap();
        states.push((
            stored.state.window.is_some(),
            stored.state.lock_id.is_some(),
        ));
    }
    states.sort();
    assert_eq!(
        states,
        [(false, false), (true, false)],
        "(open, leased): the session being opened finished, the other is free"
    );
    assert_eq!(stack.megazord.subscriptions(monitors::ROBOT).len(), 1);

    let tick = stack.tick_another_replica().await;
    assert_eq!(
        (tick.claimed, tick.opened),
        (1, 1),
        "taken at once: {tick:?}"
    );
}

/// A queue whose receive panics: a bug in the consumer's loop, to see what a worker's panic
/// does to its replica.
struct PanickingReceive(Arc<dyn Queue>);

#[async_trait]
impl Queue for PanickingReceive {
    async fn receive_checked(
        &self,
        _: &str,
        _: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        panic!("a bug in the receive");
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        self.0.delete(queue_url, receipt).await
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        self.0.extend_visibility_checked(queue_url, change).await
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        self.0.send_checked(queue_url, message).await
    }
}

/// A worker that panics stops its replica — drained, its run ending in an error that names
/// the worker (a non-zero exit: the orchestrator restarts it) — instead of the replica running
/// on, ready, without its consumer.
#[tokio::test]
async fn a_worker_that_panics_stops_the_replica_with_an_error() {
    let Some(mut queues) = sqs_queues().await else {
        return;
    };
    queues.queue = Arc::new(PanickingReceive(queues.queue.clone()));
    let (_app, running) = spawn_running(Backend::Sqlite, &queues, &[]).await;
    let stopped = tokio::time::timeout(Duration::from_secs(15), running)
        .await
        .expect("the replica stops by itself")
        .unwrap();
    let error = stopped
        .expect_err("a panicked worker is an error")
        .to_string();
    assert!(error.contains("consumer"), "{error}");
}
