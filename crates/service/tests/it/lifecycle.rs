//! The whole check lifecycle through real SQS queues (the emulator), on SQLite and MariaDB:
//! deliveries, deadlines, robot notifications, crashes, restarts and several replicas. The
//! workers are driven step by step with `tick_once` and a manual clock.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::store::{BatchedUpdate, CheckUpdate, Fence, UpdateOutcome};
use status_check::workers::consumer::Outcome;

use crate::harness::on_both_backends;
use crate::harness::{
    Backend, Queues, TestApp, anchor, create_body, incoming, spawn_stack, spawn_stack_with,
    sqs_queues, step_json,
};
use crate::support::{claim_jobs, lease};

const ROBOT: i64 = 42;
pub(crate) const NEXT: &[(&str, i64)] = &[("pass", 124), ("fail", 125), ("unknown", 126)];

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// The Megazord envelope for one outgoing event (SPEC §5.3).
pub(crate) fn delivery(
    subscription: i64,
    outgoing: i64,
    event: i64,
    name: &str,
    created: &str,
) -> String {
    json!({
        "from": "megazord-events", "to": {"robotId": ROBOT.to_string()},
        "link": {"link": format!("/internal/v1/events/robots/{ROBOT}/subscriptions/{subscription}/outgoings/{outgoing}"), "rel": ""},
        "payload": {"id": outgoing, "sourceEventId": event, "subscriptionId": subscription,
            "status": "CREATED", "createdAt": created, "updatedAt": created,
            "sourceEvent": {"id": event, "robotId": ROBOT, "eventName": name, "level": 1,
                "referenceId": null, "createdAt": created}}
    })
    .to_string()
}

/// Puts a message on the status queue, as Megazord does after storing the outgoing event
/// (whose row, for an envelope, is inserted first).
pub(crate) async fn put(app: &TestApp, queues: &Queues, body: &str) {
    app.megazord_stored(body).await;
    queues
        .queue
        .send(&queues.status_url, body, &BTreeMap::new())
        .await
        .unwrap();
}

/// A robot-is-charging check that waits for events (charging stopped 20 minutes ago).
pub(crate) async fn open_charging_check(app: &TestApp, step_id: i64, subscription: i64) -> i64 {
    given_charging_stopped(app, step_id, subscription).await;
    let (status, body) = app.post_check(ROBOT, &create_body(step_id)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["phase"], "FUTURE");
    body["id"].as_i64().unwrap()
}

/// The upstreams as a robot-is-charging check at `step_id` finds them when charging stopped
/// 20 minutes ago: it waits for events, subscribed as `subscription`.
pub(crate) async fn given_charging_stopped(app: &TestApp, step_id: i64, subscription: i64) {
    app.given_step(
        ROBOT,
        step_id,
        step_json(step_id, "robot-is-charging", 0, 0, NEXT),
    )
    .await;
    app.given_incomings(
        ROBOT,
        "CHARGING_STOPPED",
        json!([incoming(5001, "CHARGING_STOPPED", "2026-11-20T07:40:00Z")]),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_next_subscription(ROBOT, subscription).await;
}

/// A toilet-activity check (pollUntilEnd, no past visits) waiting for events.
pub(crate) async fn open_toilet_check(app: &TestApp, step_id: i64, subscription: i64) -> i64 {
    app.given_step(
        ROBOT,
        step_id,
        step_json(step_id, "toilet-activity", 0, 0, NEXT),
    )
    .await;
    app.given_incomings(ROBOT, "TOILET_VISIT", json!([])).await;
    app.given_next_subscription(ROBOT, subscription).await;
    let (status, body) = app.post_check(ROBOT, &create_body(step_id)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_i64().unwrap()
}

pub(crate) async fn check(app: &TestApp, id: i64) -> Value {
    let (status, body) = app.get_check(ROBOT, &id.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Every message on robot `robot`'s queue, deleted as read.
pub(crate) async fn robot_messages(
    queues: &Queues,
    robot: i64,
) -> Vec<(Value, BTreeMap<String, String>)> {
    let url = format!("{}{robot}", queues.robot_prefix);
    let mut out = Vec::new();
    loop {
        let batch = queues
            .queue
            .receive(&url, 10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for message in batch {
            queues.queue.delete(&url, &message.receipt).await.unwrap();
            out.push((
                serde_json::from_str(&message.body).unwrap(),
                message.attributes,
            ));
        }
    }
}

pub(crate) async fn consume(workers: &Workers) -> Vec<Outcome> {
    workers.consumer.as_ref().unwrap().tick_once().await
}

/// Consumes until `count` deliveries were applied; fails after a deadline.
pub(crate) async fn consume_applied(workers: &Workers, count: usize) -> Vec<Outcome> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut outcomes = Vec::new();
    while outcomes.iter().filter(|o| **o == Outcome::Applied).count() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {outcomes:?} before the deadline"
        );
        outcomes.extend(consume(workers).await);
    }
    outcomes
}

/// Consumes until `count` messages were handled; fails after a deadline.
async fn consume_n(workers: &Workers, count: usize) -> Vec<Outcome> {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut outcomes = Vec::new();
    while outcomes.len() < count {
        assert!(
            std::time::Instant::now() < deadline,
            "only {outcomes:?} before the deadline"
        );
        outcomes.extend(consume(workers).await);
    }
    outcomes
}

pub(crate) async fn stack(backend: Backend) -> Option<(TestApp, Workers, Queues)> {
    let queues = sqs_queues().await?;
    queues.robot_queue(ROBOT).await;
    let (app, workers) = spawn_stack(backend, None, &queues).await;
    Some((app, workers, queues))
}

pub async fn a_delivery_completes_the_check_and_notifies_the_robot(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 991).await;
    put(
        &app,
        &queues,
        &delivery(991, 70001, 5002, "CHARGING_STARTED", "2026-11-20T08:05:00Z"),
    )
    .await;
    app.clock.set(at("2026-11-20T08:05:01Z"));
    assert_eq!(consume(&workers).await, [Outcome::Applied]);

    let body = check(&app, id).await;
    assert_eq!(body["phase"], "COMPLETED");
    assert_eq!(body["result"], "PASS");
    assert_eq!(body["nextStepId"], 124);
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1]["incomingEventId"], 5002);
    assert_eq!(history[1]["outgoingEventId"], 70001);
    assert_eq!(history[1]["phase"], "FUTURE");
    // The removal was queued with the change; the relay makes the call.
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/991").await, 0);

    // The notification committed in this process reached its relay in memory: sent
    // without a claim.
    let relay = workers.relay.as_ref().unwrap().tick_once().await;
    let sent = relay.notifications;
    assert_eq!((sent.handed, sent.claimed, sent.done), (1, 0, 1));
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/991").await, 1);
    let messages = robot_messages(&queues, ROBOT).await;
    assert_eq!(messages.len(), 1);
    let (message, attributes) = &messages[0];
    assert_eq!(message["from"]["serviceName"], "azi-3-status-check");
    assert_eq!(message["to"]["robotId"], "42");
    assert_eq!(
        message["link"]["link"],
        format!("/v1/status-check/check/{id}")
    );
    assert_eq!(message["link"]["rel"], "statusCheck");
    assert_eq!(message["payload"]["phase"], "COMPLETED");
    assert_eq!(message["payload"]["nextStepId"], 124);
    assert_eq!(message["payload"]["notificationSeq"], 1);
    assert!(attributes.get("callRef").is_some_and(|c| !c.is_empty()));
    // The delivery was deleted after the commit: nothing comes back.
    assert!(consume(&workers).await.is_empty());
}

pub async fn the_deadline_fails_an_open_check_and_unsubscribes(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 992).await;
    let scheduler = workers.scheduler.as_ref().unwrap();
    app.clock.set(at("2026-11-20T08:09:59Z"));
    assert_eq!(scheduler.tick_once().await.claimed, 0, "not yet due");
    app.clock.set(at("2026-11-20T08:10:00.300Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!((tick.claimed, tick.finalised), (1, 1));
    let body = check(&app, id).await;
    assert_eq!(body["phase"], "FAILED");
    assert_eq!(body["result"], "FAIL");
    assert_eq!(body["nextStepId"], 125);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/992").await, 0);
    assert_eq!(scheduler.tick_once().await.claimed, 0, "finalised once");

    workers.relay.as_ref().unwrap().tick_once().await;
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/992").await, 1);
    let messages = robot_messages(&queues, ROBOT).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["payload"]["phase"], "FAILED");

    // A late delivery for the ended check is deleted and changes nothing.
    put(
        &app,
        &queues,
        &delivery(992, 70002, 5003, "CHARGING_STARTED", "2026-11-20T08:09:00Z"),
    )
    .await;
    assert_eq!(consume(&workers).await, [Outcome::Ended]);
    assert_eq!(
        check(&app, id).await["history"].as_array().unwrap().len(),
        1
    );
}

pub async fn poll_until_end_keeps_evaluating_to_the_end(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_toilet_check(&app, 200, 993).await;
    let relay = workers.relay.as_ref().unwrap();
    for (n, time) in [(1, "2026-11-20T08:10:00Z"), (2, "2026-11-20T08:20:00Z")] {
        put(
            &app,
            &queues,
            &delivery(993, 80000 + n, 6000 + n, "TOILET_VISIT", time),
        )
        .await;
    }
    app.clock.set(at("2026-11-20T08:30:00Z"));
    consume_applied(&workers, 2).await;
    let body = check(&app, id).await;
    assert_eq!(body["phase"], "FUTURE", "pollUntilEnd keeps the check open");
    assert_eq!(body["result"], "PASS");
    assert_eq!(body["nextStepId"], Value::Null);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions").await, 0);
    for n in 3..=4 {
        put(
            &app,
            &queues,
            &delivery(
                993,
                80000 + n,
                6000 + n,
                "TOILET_VISIT",
                &format!("2026-11-20T08:3{n}:00Z"),
            ),
        )
        .await;
    }
    app.clock.set(at("2026-11-20T08:40:00Z"));
    consume_applied(&workers, 2).await;
    assert_eq!(
        check(&app, id).await["result"],
        "FAIL",
        "more than three visits"
    );
    app.clock.set(at("2026-11-20T09:00:00.500Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .finalised,
        1
    );
    let body = check(&app, id).await;
    assert_eq!(
        (body["phase"].as_str(), body["result"].as_str()),
        (Some("COMPLETED"), Some("FAIL"))
    );
    assert_eq!(body["nextStepId"], 125);
    assert_eq!(body["history"].as_array().unwrap().len(), 4);

    for _ in 0..10 {
        if relay.tick_once().await.notifications.claimed == 0 {
            break;
        }
    }
    let seqs: Vec<i64> = robot_messages(&queues, ROBOT)
        .await
        .iter()
        .map(|(m, _)| m["payload"]["notificationSeq"].as_i64().unwrap())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // PENDING→PASS, PASS→FAIL, then the end: three changes, three notifications.
    assert_eq!(seqs, [1, 2, 3]);
}

pub async fn the_same_delivery_three_times_is_one_record(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_toilet_check(&app, 201, 994).await;
    let body = delivery(994, 81000, 7000, "TOILET_VISIT", "2026-11-20T08:05:00Z");
    for _ in 0..3 {
        put(&app, &queues, &body).await;
    }
    app.clock.set(at("2026-11-20T08:06:00Z"));
    let mut outcomes = consume_n(&workers, 3).await;
    outcomes.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(
        outcomes,
        [Outcome::Applied, Outcome::NoChange, Outcome::NoChange]
    );
    let history = check(&app, id).await["history"].as_array().unwrap().clone();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0]["incomingEventId"], 7000);
}

pub async fn reordered_deliveries_end_the_same(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let in_order = open_toilet_check(&app, 202, 995).await;
    let reversed = open_toilet_check(&app, 203, 996).await;
    let times = [
        "2026-11-20T08:10:00Z",
        "2026-11-20T08:20:00Z",
        "2026-11-20T08:30:00Z",
        "2026-11-20T08:40:00Z",
    ];
    for (i, time) in times.iter().enumerate() {
        put(
            &app,
            &queues,
            &delivery(995, 82000 + i as i64, 7100 + i as i64, "TOILET_VISIT", time),
        )
        .await;
    }
    for (i, time) in times.iter().enumerate().rev() {
        put(
            &app,
            &queues,
            &delivery(996, 83000 + i as i64, 7200 + i as i64, "TOILET_VISIT", time),
        )
        .await;
    }
    app.clock.set(at("2026-11-20T08:50:00Z"));
    consume_applied(&workers, 8).await;
    app.clock.set(at("2026-11-20T09:00:01Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .finalised,
        2
    );
    let a = check(&app, in_order).await;
    let b = check(&app, reversed).await;
    for key in ["phase", "result", "nextStepId"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    assert_eq!(a["result"], "FAIL");
}

pub async fn a_delivery_before_its_subscription_is_known_waits_for_it(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    // Megazord delivers before the create request has committed the subscription id.
    put(
        &app,
        &queues,
        &delivery(
            997,
            84000,
            7300,
            "CHARGING_STARTED",
            "2026-11-20T08:00:00.800Z",
        ),
    )
    .await;
    app.clock.set(at("2026-11-20T08:00:01Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownKept]);
    app.clock.set(anchor());
    let id = open_charging_check(&app, 123, 997).await;
    app.clock.set(at("2026-11-20T08:00:05Z"));
    // The kept message comes back after its short retry delay.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut outcomes = Vec::new();
    while !outcomes.contains(&Outcome::Applied) && std::time::Instant::now() < deadline {
        outcomes.extend(consume(&workers).await);
    }
    assert!(outcomes.contains(&Outcome::Applied), "{outcomes:?}");
    assert_eq!(check(&app, id).await["result"], "PASS");

    // Past the grace period, a delivery nobody claims is dropped.
    put(
        &app,
        &queues,
        &delivery(999, 84001, 7301, "CHARGING_STARTED", "2026-11-20T07:58:00Z"),
    )
    .await;
    app.clock.set(at("2026-11-20T08:00:05Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownDropped]);
}

pub async fn malformed_messages_never_block_and_sns_wrapped_ones_work(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 998).await;
    put(&app, &queues, "this is not json").await;
    put(&app, &queues, r#"{"payload": {"id": 1}}"#).await;
    // A year beyond four digits (chrono reads up to six): no Megazord time, and one that
    // overflows the grace arithmetic of an unknown subscription.
    let far_out = delivery(
        424242,
        85001,
        7401,
        "CHARGING_STARTED",
        "+262142-12-31T23:59:59Z",
    );
    put(&app, &queues, &far_out).await;
    app.clock.set(at("2026-11-20T08:05:01Z"));
    let outcomes = consume_n(&workers, 3).await;
    assert_eq!(outcomes, [Outcome::Malformed; 3]);
    let inner = delivery(998, 85000, 7400, "CHARGING_STARTED", "2026-11-20T08:05:00Z");
    let sns = json!({"Type": "Notification", "MessageId": "sns-1", "TopicArn": "arn:aws:sns:x", "Message": inner});
    put(&app, &queues, &sns.to_string()).await;
    assert_eq!(
        consume(&workers).await,
        [Outcome::Applied],
        "the consumer is not blocked"
    );
    assert_eq!(check(&app, id).await["phase"], "COMPLETED");
}

/// A notification that can never be sent (the robot has no queue) is tried
/// `OUTBOX_MAX_ATTEMPTS` times, then dead-lettered: kept unsent, no longer tried, not counted
/// as backlog.
pub async fn a_notification_that_cannot_be_sent_is_dead_lettered(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let (app, workers) =
        spawn_stack_with(backend, None, &queues, &[("OUTBOX_MAX_ATTEMPTS", "2")]).await;
    // Robot 42's queue is never created.
    let id = open_charging_check(&app, 123, 1003).await;
    app.clock.set(at("2026-11-20T08:10:00.500Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .finalised,
        1
    );
    let relay = workers.relay.as_ref().unwrap();
    let first = relay.tick_once().await.notifications;
    assert_eq!((first.failed, first.dead_lettered), (1, 0));
    assert_eq!(app.store.notification_jobs().backlog().await.unwrap(), 1);
    app.clock.set(at("2026-11-20T08:10:02Z"));
    let last = relay.tick_once().await.notifications;
    assert_eq!(
        (last.failed, last.dead_lettered),
        (1, 1),
        "the second and last attempt"
    );
    app.clock.set(at("2026-11-27T08:00:00Z"));
    assert_eq!(
        relay.tick_once().await.notifications.claimed,
        0,
        "not tried again"
    );
    assert_eq!(app.store.notification_jobs().backlog().await.unwrap(), 0);
    assert_eq!(check(&app, id).await["phase"], "FAILED");
}

/// A replica that dies holding deadline leases delays those deadlines by at most the stale
/// window (30 s by default): then another replica takes them over and finalises them.
pub async fn a_crashed_replicas_deadlines_are_taken_over_within_30_s(backend: Backend) {
    let Some((app, workers, _queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 1004).await;
    app.clock.set(at("2026-11-20T08:10:01Z"));
    let claimed = app
        .store
        .claim_due(app.clock_now(), &lease("crashed-replica"), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let scheduler = workers.scheduler.as_ref().unwrap();
    app.clock.set(at("2026-11-20T08:10:30Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!(
        (tick.released_stale, tick.finalised),
        (0, 0),
        "the lease still holds"
    );
    app.clock.set(at("2026-11-20T08:10:31.500Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!((tick.released_stale, tick.finalised), (1, 1));
    assert_eq!(check(&app, id).await["phase"], "FAILED");
}

/// Megazord refusing the unsubscribe when a check ends does not leak the subscription: the
/// removal stays queued and the relay removes it once Megazord answers again.
pub async fn a_refused_unsubscribe_is_retried_until_megazord_takes_it(backend: Backend) {
    let Some((app, workers, _queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 1005).await;
    app.upstream.reset().await;
    app.given_status(
        "DELETE",
        &format!("/internal/v1/events/robots/{ROBOT}/subscriptions/1005"),
        503,
    )
    .await;
    app.clock.set(at("2026-11-20T08:10:00.500Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .finalised,
        1
    );
    assert_eq!(check(&app, id).await["phase"], "FAILED");
    assert_eq!(app.store.removal_jobs().backlog().await.unwrap(), 1);
    let relay = workers.relay.as_ref().unwrap();
    assert_eq!(relay.tick_once().await.removals.failed, 1, "still refused");
    // Megazord takes it again; after the backoff the relay removes it.
    app.upstream.reset().await;
    app.given_status(
        "DELETE",
        &format!("/internal/v1/events/robots/{ROBOT}/subscriptions/1005"),
        204,
    )
    .await;
    app.clock.set(at("2026-11-20T08:10:02Z"));
    assert_eq!(relay.tick_once().await.removals.done, 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/1005").await, 1);
    assert_eq!(app.store.removal_jobs().backlog().await.unwrap(), 0);
    app.clock.set(at("2026-11-20T09:00:00Z"));
    assert_eq!(relay.tick_once().await.removals.claimed, 0, "removed once");
}

/// Readiness follows the consumer's real state: while every receive from the status queue
/// fails for `CONSUMER_UNREADY_AFTER_SECS`, `/health/ready` is 503; the next receive that works
/// makes it 200 again.
pub async fn readiness_follows_failing_receives(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let gone = Queues {
        status_url: format!("{}-gone", queues.status_url),
        ..queues.clone()
    };
    let (app, workers) = spawn_stack_with(
        backend,
        None,
        &gone,
        &[("CONSUMER_UNREADY_AFTER_SECS", "1")],
    )
    .await;
    // (The test drives the consumer itself, so `queue consumer` is always among the failing;
    // what matters is whether the receives are.)
    let receives_failing = || async {
        let response = app
            .client()
            .get(format!("{}/health/ready", app.base))
            .send()
            .await
            .unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        let failing = body.to_string().contains("receives failing");
        assert!(
            !failing || status == StatusCode::SERVICE_UNAVAILABLE,
            "{body}"
        );
        failing
    };
    assert!(!receives_failing().await);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        consume(&workers).await;
        if receives_failing().await {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never unready");
    }
    // The queue comes (back): the next receive works, and that part is ready again.
    let name = gone.status_url.rsplit('/').next().unwrap().to_owned();
    queues.sqs.create_queue(&name).await.unwrap();
    consume(&workers).await;
    assert!(!receives_failing().await);
}

pub async fn a_relay_crash_between_commit_and_send_still_notifies_once(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 1001).await;
    put(
        &app,
        &queues,
        &delivery(
            1001,
            86000,
            7500,
            "CHARGING_STARTED",
            "2026-11-20T08:05:00Z",
        ),
    )
    .await;
    app.clock.set(at("2026-11-20T08:05:01Z"));
    assert_eq!(consume(&workers).await, [Outcome::Applied]);
    // The process dies with the notification handed to its relay in memory, unsent: the
    // row was committed leased to that relay.
    let relay = workers.relay.as_ref().unwrap();
    let lost = relay
        .handoff()
        .expect("a relaying replica hands over")
        .take(10);
    assert_eq!(lost.len(), 1);
    let now = app.clock_now();
    assert!(
        claim_jobs(
            app.store.notification_jobs(),
            now,
            &lease("other-relay"),
            10
        )
        .await
        .is_empty(),
        "no other relay takes a row leased to a live one"
    );
    assert_eq!(
        relay.tick_once().await.notifications.claimed,
        0,
        "still leased to the dead process's relay"
    );
    app.clock.set(at("2026-11-20T08:05:40Z"));
    let tick = relay.tick_once().await.notifications;
    assert_eq!(
        (tick.claimed, tick.done),
        (1, 1),
        "taken over after the lease ran out"
    );
    assert_eq!(
        relay.tick_once().await.notifications.claimed,
        0,
        "sent once"
    );
    let messages = robot_messages(&queues, ROBOT).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        messages[0].0["payload"]["notificationSeq"],
        lost[0].payload.seq
    );
    assert_eq!(messages[0].0["payload"]["id"], id);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&lost[0].payload.payload).unwrap(),
        messages[0].0,
        "the row holds what was handed over"
    );
}

pub async fn a_restart_mid_window_keeps_the_deadline(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    // The first replica makes the database and keeps it for the second.
    let (first, workers) = spawn_stack(backend, None, &queues).await;
    let store = (first.store.clone(), first.neighbours.clone());
    let id = open_charging_check(&first, 123, 1002).await;
    first.stop();
    drop(workers);
    // A new process on the same database, five minutes later, then past the deadline.
    let (second, workers) = spawn_stack(backend, Some(store), &queues).await;
    second.clock.set(at("2026-11-20T08:05:00Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .claimed,
        0
    );
    second.clock.set(at("2026-11-20T08:10:01Z"));
    assert_eq!(
        workers
            .scheduler
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .finalised,
        1
    );
    let body = check(&second, id).await;
    assert_eq!(body["phase"], "FAILED");
    assert_eq!(body["pollingUntil"], "2026-11-20T08:10:00.000Z");
    drop(first);
}

pub async fn a_stolen_lease_is_fenced(backend: Backend) {
    let Some((app, workers, _queues)) = stack(backend).await else {
        return;
    };
    let id = open_charging_check(&app, 123, 1003).await;
    app.clock.set(at("2026-11-20T08:10:01Z"));
    // A replica claims the check and stalls.
    let claimed = app
        .store
        .claim_due(app.clock_now(), &lease("stalled"), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Past the stale window another replica's scheduler takes it over and finalises it.
    app.clock.set(at("2026-11-20T08:16:00Z"));
    let tick = workers.scheduler.as_ref().unwrap().tick_once().await;
    assert_eq!((tick.released_stale, tick.finalised), (1, 1));
    let before = check(&app, id).await;
    // The stalled replica wakes up: its write is refused and changes nothing.
    let stalled_read = app.store.get_check(id).await.unwrap().unwrap();
    let update = CheckUpdate {
        phase: status_check_engine::CheckPhase::Completed,
        result: status_check_engine::CheckResult::Pass,
        next_step_id: Some(124),
        new_records: Vec::new(),
        deadline: None,
        release_lease: true,
        notify: true,
        remove_subscription: false,
    };
    let render = |_: &status_check::store::StoredCheck, _: i64| String::new();
    let outcome = app
        .store
        .update_check(
            BatchedUpdate {
                current: &stalled_read,
                fence: Fence::Lease(&lease("stalled")),
                update,
                call_ref: "x",
            },
            &status_check::store::Notifications::rendered_by(&render),
            app.clock_now(),
        )
        .await
        .unwrap();
    assert_eq!(outcome, UpdateOutcome::Fenced);
    assert_eq!(check(&app, id).await, before);
    assert_eq!(before["phase"], "FAILED");
}

/// Three replicas on one MariaDB and one status queue: 300 checks, half decided by a
/// delivery, half at their deadline. Every check ends exactly once, with exactly one final
/// notification, and no record is duplicated.
pub async fn three_replicas_finalise_300_checks_exactly_once() {
    if crate::support::mysql_skipped() {
        return;
    }
    let Some(queues) = sqs_queues().await else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let Some(db) = crate::support::mysql_db().await else {
        return;
    };
    let (store, neighbours) = (db.store.clone(), db.neighbours.clone());
    let mut replicas = Vec::new();
    for _ in 0..3 {
        replicas.push(
            spawn_stack(
                Backend::Mysql,
                Some((store.clone(), neighbours.clone())),
                &queues,
            )
            .await,
        );
    }
    const CHECKS: i64 = 300;
    let mut ids = Vec::new();
    for n in 0..CHECKS {
        let (app, _) = &replicas[(n % 3) as usize];
        ids.push(open_charging_check(app, 1000 + n, 5000 + n).await);
    }
    // Every other check gets its charging event, some of them twice.
    for n in (0..CHECKS).step_by(2) {
        let body = delivery(
            5000 + n,
            90000 + n,
            20000 + n,
            "CHARGING_STARTED",
            "2026-11-20T08:05:00Z",
        );
        let app = &replicas[0].0;
        put(app, &queues, &body).await;
        if n % 10 == 0 {
            put(app, &queues, &body).await;
        }
    }
    // Deliveries first (inside the window), then the deadline passes for the rest; all
    // replicas work at once until nothing is left.
    for (clock_at, phase) in [
        ("2026-11-20T08:06:00Z", Round::Deliveries),
        ("2026-11-20T08:10:01Z", Round::Everything),
    ] {
        for (app, _) in &replicas {
            app.clock.set(at(clock_at));
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        loop {
            let (a, b, c) = tokio::join!(
                round(&replicas[0].1, phase),
                round(&replicas[1].1, phase),
                round(&replicas[2].1, phase)
            );
            if a + b + c == 0 && store.notification_jobs().backlog().await.unwrap() == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the replicas did not finish in time"
            );
        }
    }
    let (app, _) = &replicas[0];
    for (n, id) in ids.iter().enumerate() {
        let body = check(app, *id).await;
        let expected = if n % 2 == 0 {
            ("COMPLETED", "PASS")
        } else {
            ("FAILED", "FAIL")
        };
        assert_eq!(
            (
                body["phase"].as_str().unwrap(),
                body["result"].as_str().unwrap()
            ),
            expected,
            "check {id}"
        );
        let events: Vec<i64> = body["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["incomingEventId"].as_i64().unwrap())
            .collect();
        let unique: BTreeSet<i64> = events.iter().copied().collect();
        assert_eq!(
            unique.len(),
            events.len(),
            "check {id} has a duplicated record"
        );
    }
    let messages = robot_messages(&queues, ROBOT).await;
    let mut finals: BTreeMap<i64, usize> = BTreeMap::new();
    for (message, _) in &messages {
        let phase = message["payload"]["phase"].as_str().unwrap();
        if phase == "COMPLETED" || phase == "FAILED" {
            *finals
                .entry(message["payload"]["id"].as_i64().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(finals.len(), CHECKS as usize, "every check notified");
    assert!(
        finals.values().all(|count| *count == 1),
        "one final notification each"
    );
    let unsubscribed: usize = {
        let mut total = 0;
        for (app, _) in &replicas {
            total += app.upstream_calls("DELETE", "/subscriptions").await;
        }
        total
    };
    assert_eq!(
        unsubscribed, CHECKS as usize,
        "each subscription removed once"
    );
}

#[derive(Clone, Copy)]
enum Round {
    Deliveries,
    Everything,
}

/// One step of the workers of a replica; how much work it found.
async fn round(workers: &Workers, round: Round) -> usize {
    let consumed = workers.consumer.as_ref().unwrap().tick_once().await.len();
    let finalised = match round {
        Round::Deliveries => 0,
        Round::Everything => {
            workers
                .scheduler
                .as_ref()
                .unwrap()
                .tick_once()
                .await
                .claimed
        }
    };
    let sent = workers
        .relay
        .as_ref()
        .unwrap()
        .tick_once()
        .await
        .notifications
        .claimed;
    consumed + finalised + sent
}

on_both_backends!(
    a_delivery_completes_the_check_and_notifies_the_robot,
    the_deadline_fails_an_open_check_and_unsubscribes,
    poll_until_end_keeps_evaluating_to_the_end,
    the_same_delivery_three_times_is_one_record,
    reordered_deliveries_end_the_same,
    a_delivery_before_its_subscription_is_known_waits_for_it,
    malformed_messages_never_block_and_sns_wrapped_ones_work,
    a_relay_crash_between_commit_and_send_still_notifies_once,
    a_notification_that_cannot_be_sent_is_dead_lettered,
    a_crashed_replicas_deadlines_are_taken_over_within_30_s,
    a_refused_unsubscribe_is_retried_until_megazord_takes_it,
    readiness_follows_failing_receives,
    a_restart_mid_window_keeps_the_deadline,
    a_stolen_lease_is_fenced,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_mariadb() {
    three_replicas_finalise_300_checks_exactly_once().await;
}
