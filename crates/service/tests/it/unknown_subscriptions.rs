//! Deliveries for subscriptions no check or monitor session has (SPEC §13): one nothing
//! here knows is never removed — it may be another service's, on a queue shared by mistake.
//! (The lost answer's subscription, which is removed, is `faults_upstream`'s; an ended check's
//! subscription that keeps delivering, `takeover`'s.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use status_check::queue::{
    OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange,
};
use status_check::workers::consumer::Outcome;

use crate::harness::{Backend, Queues, on_both_backends, spawn_stack, sqs_queues};
use crate::lifecycle::{at, consume, delivery, put, stack};

const ROBOT: i64 = 42;

/// A delivery that keeps coming for a subscription nothing here knows is, after the grace
/// period, deleted — and the subscription left alone: it may be another service's, on a queue
/// shared by mistake (SPEC §13). No DELETE reaches Megazord, now or later.
pub async fn an_unknown_subscription_is_never_removed(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    app.given_subscriptions(ROBOT, 4242).await;
    put(
        &app,
        &queues,
        &delivery(
            4242,
            88000,
            7700,
            "CHARGING_STARTED",
            "2026-11-20T08:00:00Z",
        ),
    )
    .await;
    app.clock.set(at("2026-11-20T08:05:00Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownDropped]);
    let relay = workers.relay.as_ref().unwrap();
    assert_eq!(relay.tick_once().await.removals.claimed, 0);
    app.clock.set(at("2026-11-20T09:00:00Z"));
    assert_eq!(relay.tick_once().await.removals.claimed, 0);
    assert_eq!(app.store.removal_jobs().backlog().await.unwrap(), 0);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/4242").await, 0);
}

/// The queue, and each visibility change the consumer asks for, with its message's receipt.
struct Watched {
    queue: Arc<dyn Queue>,
    hidden: Mutex<Vec<(String, Duration)>>,
}

impl Watched {
    /// Makes the message the consumer hid last visible again at once (as if its time passed);
    /// how long the consumer had hidden it.
    async fn show_last(&self, queue_url: &str) -> Duration {
        let (receipt, hidden) = self.hidden.lock().unwrap().last().cloned().expect("hidden");
        let now = self
            .queue
            .extend_visibility(queue_url, &receipt, Duration::ZERO);
        now.await.unwrap();
        hidden
    }
}

#[async_trait]
impl Queue for Watched {
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        self.queue.receive_checked(queue_url, request).await
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        self.queue.delete(queue_url, receipt).await
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        let seen = (change.receipt().to_owned(), change.visibility());
        self.hidden.lock().unwrap().push(seen);
        self.queue
            .extend_visibility_checked(queue_url, change)
            .await
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        self.queue.send_checked(queue_url, message).await
    }
}

/// A delivery for a subscription not known yet comes back soon once (its check may still be
/// being created), then only after the grace period: each receive counts towards the queue's
/// `maxReceiveCount`, and one moved to the dead-letter queue before its verdict would never be
/// logged, counted or have its subscription recognised (SPEC §3.4, §13).
pub async fn an_unknown_subscriptions_delivery_is_received_three_times_at_most(backend: Backend) {
    let Some(sqs) = sqs_queues().await else {
        return;
    };
    let watched = Arc::new(Watched {
        queue: sqs.queue.clone(),
        hidden: Mutex::new(Vec::new()),
    });
    let queues = Queues {
        queue: watched.clone(),
        ..sqs
    };
    let (app, workers) = spawn_stack(backend, None, &queues).await;
    let body = delivery(
        4343,
        88100,
        7710,
        "CHARGING_STARTED",
        "2026-11-20T08:00:00Z",
    );
    put(&app, &queues, &body).await;
    app.clock.set(at("2026-11-20T08:00:01Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownKept]);
    let first = watched.show_last(&queues.status_url).await;
    assert_eq!(first, Duration::from_secs(5), "back soon the first time");
    // Back now (as if those seconds passed): received a second time, and kept for the grace.
    app.clock.set(at("2026-11-20T08:00:06Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownKept]);
    let second = watched.show_last(&queues.status_url).await;
    assert_eq!(
        second,
        Duration::from_secs(60),
        "hidden for the grace period"
    );
    // The third receive is past the grace: the verdict.
    app.clock.set(at("2026-11-20T08:01:06Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownDropped]);
}

on_both_backends!(
    an_unknown_subscription_is_never_removed,
    an_unknown_subscriptions_delivery_is_received_three_times_at_most
);
