//! The reads of Megazord on create: the past fetch reads every dependency (SPEC §3.2), and the
//! backfill after subscribing (SPEC §3.3) takes in once, as future events, what Megazord stored
//! between the past fetch and the subscription; a backfill that fails leaves no subscription
//! behind.

use reqwest::StatusCode;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::api::create_fails_upstream;
use crate::harness::on_both_backends;
use crate::harness::{Backend, TestApp, create_body, incoming, spawn, spawn_with, step_json};

const ROBOT: i64 = 42;
const CHARGING: &[(&str, i64)] = &[("pass", 124), ("fail", 125)];

/// Step 123 of robot 42 checks resident-activity, with the template's windows.
async fn resident_activity_step(app: &TestApp) {
    let step = step_json(123, "resident-activity", 0, 0, CHARGING);
    app.given_step(ROBOT, 123, step).await;
}

pub async fn backfill_is_merged_without_recording_an_event_twice(backend: Backend) {
    let app = spawn(backend).await;
    // Megazord returns the same event twice (e.g. from overlapping pages).
    resident_activity_step(&app).await;
    app.given_incomings(
        ROBOT,
        "MOTION_DETECTED",
        json!([
            incoming(7001, "MOTION_DETECTED", "2026-11-20T08:00:00.500Z"),
            incoming(7001, "MOTION_DETECTED", "2026-11-20T08:00:00.500Z"),
        ]),
    )
    .await;
    app.given_subscriptions(ROBOT, 992).await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The past fetch (window 2 h) and the backfill both return event 7001 (at 08:00:00.5,
    // after the anchor): it is recorded once, as a future event, and decides the check.
    let history = body["history"].as_array().unwrap();
    let ids: Vec<i64> = history
        .iter()
        .map(|r| r["incomingEventId"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [7001], "{body}");
    assert_eq!(history[0]["phase"], "FUTURE");
    assert_eq!(body["phase"], "COMPLETED");
    assert_eq!(body["result"], "PASS");
    // Decided during create: the subscription's removal is queued with the check, for the
    // relay (this replica runs the API only): no inline call on create's path.
    assert_eq!(app.store.removal_jobs().backlog().await.unwrap(), 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/992").await, 0);
}

/// Megazord stamps events in whole seconds: an event that came just after an anchor inside a
/// second (08:00:00.500) is stamped with that second (08:00:00), before the anchor. The
/// backfill after subscribing still takes it in, as a future event.
pub async fn an_event_stamped_with_the_anchors_second_is_taken_in(backend: Backend) {
    let app = spawn(backend).await;
    app.clock
        .set(crate::harness::anchor() + chrono::TimeDelta::milliseconds(500));
    resident_activity_step(&app).await;
    // The past fetch (made just after the anchor) finds nothing; the backfill since the
    // anchor's second finds the event that came meanwhile.
    app.given_incomings(ROBOT, "MOTION_DETECTED", json!([]))
        .await;
    app.neighbours.incoming_event(7002, ROBOT).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/internal/v1/events/robots/{ROBOT}/incomings"
        )))
        .and(wiremock::matchers::query_param(
            "created_since",
            crate::harness::anchor().timestamp().to_string(),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([incoming(
            7002,
            "MOTION_DETECTED",
            "2026-11-20T08:00:00Z"
        )])))
        .with_priority(1)
        .mount(&app.upstream)
        .await;
    app.given_subscriptions(ROBOT, 993).await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["history"][0]["incomingEventId"], 7002, "{body}");
    assert_eq!(body["history"][0]["phase"], "FUTURE", "{body}");
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("COMPLETED"), &json!("PASS"))
    );
}

/// Megazord answers more than the window holds (its `created_since` is whole seconds, and it has
/// no upper bound): one dependency's answer over the history cap, of which the window admits
/// no more than the cap, must not stop the other dependencies from being read — the robot
/// stopped charging after its last start, so the past phase is not PASS.
pub async fn every_past_dependency_is_read_when_one_answers_more_than_the_cap(backend: Backend) {
    let app = spawn_with(backend, &[("HISTORY_CAP", "4")]).await;
    let step = step_json(123, "robot-is-charging", 3600, 600, CHARGING);
    app.given_step(ROBOT, 123, step).await;
    // Five starts, two before the past hour (07:00): with the stop, four in the window — the
    // cap, which the check may hold.
    let starts = ["06:30:00", "06:45:00", "07:10:00", "07:20:00", "07:30:00"];
    let starts: Vec<_> = (0..)
        .zip(starts)
        .map(|(i, at)| incoming(7100 + i, "CHARGING_STARTED", &format!("2026-11-20T{at}Z")))
        .collect();
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!(starts))
        .await;
    let stopped = incoming(7200, "CHARGING_STOPPED", "2026-11-20T07:50:00Z");
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([stopped]))
        .await;
    app.given_subscriptions(ROBOT, 994).await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let past: Vec<i64> = body["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["incomingEventId"].as_i64().unwrap())
        .collect();
    assert_eq!(past, [7102, 7103, 7104, 7200], "{body}");
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("FUTURE"), &json!("PENDING")),
        "{body}"
    );
}

pub async fn failed_backfill_removes_the_subscription(backend: Backend) {
    let app = spawn(backend).await;
    // The past fetch succeeds; the backfill after subscribing (same endpoint, second call)
    // fails: the subscription must not be left behind.
    resident_activity_step(&app).await;
    app.given_subscriptions(ROBOT, 995).await;
    Mock::given(method("GET"))
        .and(path("/internal/v1/events/robots/42/incomings"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .up_to_n_times(1)
        .mount(&app.upstream)
        .await;
    app.given_status("GET", "/internal/v1/events/robots/42/incomings", 500)
        .await;
    create_fails_upstream(&app).await;
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/995").await, 1);
}

on_both_backends!(
    backfill_is_merged_without_recording_an_event_twice,
    an_event_stamped_with_the_anchors_second_is_taken_in,
    every_past_dependency_is_read_when_one_answers_more_than_the_cap,
    failed_backfill_removes_the_subscription,
);
