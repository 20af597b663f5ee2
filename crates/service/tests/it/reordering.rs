//! Deliveries Megazord reorders across batches (SPEC §3.4: reordering never changes the
//! outcome), on SQLite and MariaDB through the SQS emulator. A check ends at its first
//! decisive event, so an earlier event delivered after a later one would come too late:
//! before deliveries that end a check are written, its future events are read from Megazord
//! and decided again with them, in time order.

use serde_json::json;
use status_check::workers::consumer::Outcome;

use crate::harness::on_both_backends;
use crate::harness::{
    Backend, TestApp, create_body, incoming, spawn_stack_with, sqs_queues, step_json,
};
use crate::lifecycle::{NEXT, at, check, consume, delivery, open_charging_check, put};

const ROBOT: i64 = 42;
const OPENED: &str = "MEDICATION_BOX_OPENED";
const OFFLINE: &str = "MEDICATION_BOX_OFFLINE";

/// A medication-box-opened check at `step_id` waiting for events (none in the past hour),
/// subscribed as `subscription`. Its future rules make order matter: the box going offline
/// as the last event is UNKNOWN, an opening is PASS — whichever comes first decides.
async fn open_medication_check(app: &TestApp, step_id: i64, subscription: i64) -> i64 {
    let step = step_json(step_id, "medication-box-opened", 0, 0, NEXT);
    app.given_step(ROBOT, step_id, step).await;
    app.given_incomings(ROBOT, OPENED, json!([])).await;
    app.given_incomings(ROBOT, OFFLINE, json!([])).await;
    app.given_next_subscription(ROBOT, subscription).await;
    let (status, body) = app.post_check(ROBOT, &create_body(step_id)).await;
    assert_eq!((status.as_u16(), &body["phase"]), (201, &json!("FUTURE")));
    body["id"].as_i64().unwrap()
}

/// The box went offline at 08:05:01 and was opened at 08:05:03: in order, the check ends
/// UNKNOWN at the first. Delivered the other way round, in two batches, it ends the same —
/// the opening's delivery reads the earlier event from Megazord before it decides.
pub async fn an_earlier_event_delivered_later_decides_as_in_order(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    // Reads that always come back in time, on a loaded machine too.
    let budget = [("DEADLINE_RECONCILE_BUDGET_MS", "10000")];
    let (app, workers) = spawn_stack_with(backend, None, &queues, &budget).await;
    let id = open_medication_check(&app, 301, 997).await;
    // What Megazord holds now (its answers at the create were empty).
    app.upstream.reset().await;
    let offline = incoming(7301, OFFLINE, "2026-11-20T08:05:01Z");
    let opened = incoming(7302, OPENED, "2026-11-20T08:05:03Z");
    app.given_incomings(ROBOT, OFFLINE, json!([offline])).await;
    app.given_incomings(ROBOT, OPENED, json!([opened])).await;

    app.clock.set(at("2026-11-20T08:05:10Z"));
    let later = delivery(997, 84002, 7302, OPENED, "2026-11-20T08:05:03Z");
    put(&app, &queues, &later).await;
    assert_eq!(
        consume(&workers).await,
        [Outcome::NoChange],
        "decided before it"
    );
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("UNKNOWN"), &json!(126)),
        "{body}"
    );
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 1, "{body}");
    assert_eq!(history[0]["incomingEventId"], 7301);

    let earlier = delivery(997, 84001, 7301, OFFLINE, "2026-11-20T08:05:01Z");
    put(&app, &queues, &earlier).await;
    assert_eq!(consume(&workers).await, [Outcome::Ended]);
    assert_eq!(check(&app, id).await["result"], "UNKNOWN");
}

/// robot-is-charging ends PASS at any charging start, whichever comes first: its deciding
/// delivery is written without a read of Megazord (an earlier start Megazord holds would end
/// it the same).
pub async fn a_decision_no_order_can_change_is_not_read_again(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let (app, workers) = spawn_stack_with(backend, None, &queues, &[]).await;
    let id = open_charging_check(&app, 302, 996).await;
    app.upstream.reset().await;
    let earlier = incoming(7401, "CHARGING_STARTED", "2026-11-20T08:05:01Z");
    let later = incoming(7402, "CHARGING_STARTED", "2026-11-20T08:05:03Z");
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([earlier, later]))
        .await;

    app.clock.set(at("2026-11-20T08:05:10Z"));
    let delivered = delivery(996, 84003, 7402, "CHARGING_STARTED", "2026-11-20T08:05:03Z");
    put(&app, &queues, &delivered).await;
    assert_eq!(consume(&workers).await, [Outcome::Applied]);
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("PASS"), &json!(124)),
        "{body}"
    );
    assert_eq!(body["history"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(app.upstream_calls("GET", "/incomings").await, 0);
}

on_both_backends!(
    an_earlier_event_delivered_later_decides_as_in_order,
    a_decision_no_order_can_change_is_not_read_again,
);
