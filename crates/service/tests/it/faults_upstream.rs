//! Megazord timing out (SPEC §13): for a while it carries out subscribes and unsubscribes but
//! answers only after the service's upstream timeout. A create then fails with 502 although
//! Megazord made its subscription — one the service never learns the id of; an unsubscribe at a
//! deadline fails although it was done. Afterwards the robots' retried creates succeed, the
//! deliveries of the orphaned subscriptions get them removed once the grace period is over,
//! every check ends as its events say, every robot is told, and no subscription is left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use status_check::dev::QueueSink;
use status_check_sim::megazord::NewIncoming;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim};

use crate::fault_stack::{
    Upstreams, assert_all_end, assert_all_told, assert_no_subscription_left, await_readiness,
    create, replica_env,
};
use crate::faults::{free_port, start};
use crate::harness::sqs_queues;
use crate::support;

fn step(micro_managers: &MicroManagersSim, future_interval: i64) -> i64 {
    micro_managers.add_step(DemoStep {
        step_id: None,
        status_check_name: "robot-is-charging".into(),
        past_interval: 0,
        future_interval,
        next: [("pass".to_owned(), 9001), ("fail".to_owned(), 9002)].into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn megazord_answering_too_late_leaves_no_subscription_behind() {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let Some(db) = support::mysql_db().await else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let micro_managers = MicroManagersSim::new();
    let short = step(&micro_managers, 3);
    let long = step(&micro_managers, 60);
    db.neighbours
        .script_steps(SCRIPT_VERSION_ID, &[short, long, 9001, 9002])
        .await;
    let sink = QueueSink {
        queue: queues.queue.clone(),
        url: queues.status_url.clone(),
    };
    let megazord = crate::fault_stack::seeded(
        MegazordSim::new(Arc::new(sink), status_check_sim::system_now())
            .with_rows(Arc::new(db.neighbours.clone())),
    );
    let upstreams = Upstreams::serve(micro_managers, megazord);
    let endpoint = std::env::var("TEST_SQS_ENDPOINT").unwrap();
    let env = replica_env(
        db.url.as_deref().unwrap(),
        &queues,
        &endpoint,
        &upstreams,
        &[
            ("UPSTREAM_TIMEOUT_MS", "500"),
            // A subscription whose subscribe answer was lost is recognised by an event that
            // comes within the grace period after the subscribe (SPEC §13): long enough for
            // the robots' events below, which follow their retries by a few seconds.
            ("UNKNOWN_SUBSCRIPTION_GRACE_SECS", "20"),
        ],
    );
    let replica = start(&env, free_port(), &logs.path().join("replica.log")).await;
    let port = replica.port;
    await_readiness(port, StatusCode::OK, Duration::from_secs(10)).await;
    for robot in 600..603 {
        db.neighbours.robot(robot).await;
        queues.robot_queue(robot).await;
    }

    // Robot 602's deadline comes while Megazord is slow: its unsubscribe times out.
    let mut ids = BTreeMap::new();
    let created = create(port, 602, short).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    ids.insert(602, created.body["id"].as_i64().unwrap());
    let slow_for = chrono::TimeDelta::seconds(6);
    upstreams
        .megazord
        .answer_slowly_until(chrono::Utc::now() + slow_for, Duration::from_secs(2));

    // Robots 600 and 601 are refused while Megazord is slow, and retry until they get in.
    for robot in [600, 601] {
        let refused = create(port, robot, long).await;
        assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{refused:?}");
        assert_eq!(refused.content_type, "application/problem+json");
        assert!(refused.took < Duration::from_secs(2), "{refused:?}");
    }
    let orphans = upstreams.megazord.undeleted_subscriptions().len();
    assert!(orphans >= 3, "two orphans and 602's: {orphans}");
    let deadline = Instant::now() + Duration::from_secs(20);
    for robot in [600, 601] {
        loop {
            let created = create(port, robot, long).await;
            if created.status == StatusCode::CREATED {
                ids.insert(robot, created.body["id"].as_i64().unwrap());
                break;
            }
            assert_eq!(created.status, StatusCode::BAD_GATEWAY, "{created:?}");
            assert!(Instant::now() < deadline, "robot {robot} never got in");
            // A robot's pace of retrying.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    // Their events reach the check and every orphan too; the orphans' deliveries, for
    // subscriptions nothing stores but whose subscribes were recorded, get them removed after
    // the grace period.
    for robot in [600, 601] {
        upstreams
            .megazord
            .post_incoming(robot, NewIncoming::named("CHARGING_STARTED"))
            .await
            .expect("a known event");
    }
    let expected = |robot: i64| {
        if robot == 602 {
            ("FAILED", "FAIL", 9002)
        } else {
            ("COMPLETED", "PASS", 9001)
        }
    };
    let ended = assert_all_end(port, &ids, expected, Duration::from_secs(30)).await;
    assert_all_told(&queues, &ended, Duration::from_secs(30)).await;
    assert_no_subscription_left(&upstreams.megazord, Duration::from_secs(60)).await;
    // The second fault happened: 602's unsubscribe at its deadline went unanswered (the
    // replica is a process of its own: its metrics are its own).
    let metrics = crate::fault_stack::metrics_of(port).await;
    let unanswered =
        crate::fault_stack::metric_value(&metrics, "unsubscribe_failures_total").unwrap_or(0.0);
    assert!(unanswered >= 1.0, "no unsubscribe failed:\n{metrics}");
    drop(replica);
}
