//! Taking over from the Node service on the same database (SPEC §6.1), on SQLite and on a
//! MariaDB created from the live definition: the checks it left behind are read, adopted
//! (next steps from Micro-Managers, once) and finalised at their poller's `until`; deliveries
//! for their subscriptions are applied; its EJS template versions never run; and every row
//! this service writes into the production tables is one the Node service could carry on with.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::workers::consumer::Outcome;

use crate::harness::on_both_backends;
use crate::harness::{
    Backend, Queues, TestApp, create_body, incoming, spawn_stack, sqs_queues, step_json,
};
use crate::lifecycle::{NEXT, at, check, consume, consume_applied, delivery, put, robot_messages};
use crate::support::{Raw, TestDb};

const ROBOT: i64 = 42;

/// The rule text the Node service stored: EJS around JavaScript.
const EJS: &str = "<%= events.some(e => e.eventName === 'CHARGING_STARTED') %>";

/// The Node service's version `version` of `name`, in EJS: description (when new), template
/// row and one PASS rule per phase it has. Returns its id.
pub(crate) async fn node_template(
    raw: &Raw,
    name: &str,
    version: i64,
    future_dependency: &str,
    poll_until_end: bool,
) -> i64 {
    let created = raw.time_text(at("2025-06-01T00:00:00Z"));
    raw.execute_text(
        "INSERT INTO status_check_description (name, description, created_at) \
         SELECT ?, 'Written by the Node service', ? \
         WHERE NOT EXISTS (SELECT 1 FROM status_check_description WHERE name = ?)",
        &[name, &created, name],
    )
    .await;
    let dependencies = format!("[{{\"eventName\":\"{future_dependency}\"}}]");
    let (version, poll) = (version.to_string(), i64::from(poll_until_end).to_string());
    raw.execute_text(
        "INSERT INTO status_check_template (template_description_id, past_event_dependencies, \
         future_event_dependencies, version, is_active, poll_until_end, created_at) \
         SELECT id, '[{\"eventName\":\"CHARGING_STOPPED\"}]', ?, ?, 1, ?, ? \
         FROM status_check_description WHERE name = ?",
        &[&dependencies, &version, &poll, &created, name],
    )
    .await;
    let id = one(
        raw,
        "SELECT CAST(t.id AS CHAR) FROM status_check_template t \
         JOIN status_check_description d ON d.id = t.template_description_id \
         WHERE d.name = ? AND t.version = ?",
        &[name, &version],
    )
    .await;
    for phase in ["PAST", "FUTURE"] {
        raw.execute_text(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) VALUES (?, ?, ?, 'PASS')",
            &[&id, phase, EJS],
        )
        .await;
    }
    id.parse().unwrap()
}

/// What the Node service wrote for one check.
pub(crate) struct NodeCheck {
    pub(crate) template_id: i64,
    pub(crate) step_id: i64,
    pub(crate) phase: &'static str,
    pub(crate) result: &'static str,
    pub(crate) next_step_id: Option<i64>,
    pub(crate) subscription_id: i64,
    /// `(incoming event id, name, created_at)` of its PAST records.
    pub(crate) records: Vec<(i64, &'static str, &'static str)>,
}

/// Inserts a check as the Node service writes it — `status_check`, its poller (window
/// 07:00–08:10, created 08:00) and its records — and nothing of this service's own tables.
pub(crate) async fn node_check(db: &TestDb, check: NodeCheck) -> i64 {
    let raw = &db.raw;
    db.neighbours.robot(ROBOT).await;
    let mut steps = vec![check.step_id, check.step_id + 1, check.step_id + 2];
    steps.extend(check.next_step_id);
    db.neighbours.script_steps(789, &steps).await;
    db.neighbours
        .subscription(check.subscription_id, ROBOT)
        .await;
    let created = raw.time_text(at("2026-11-20T08:00:00Z"));
    let (template, step, subscription) = (
        check.template_id.to_string(),
        check.step_id.to_string(),
        check.subscription_id.to_string(),
    );
    let next = check.next_step_id.map(|n| n.to_string());
    raw.execute_text(
        "INSERT INTO status_check (robot_id, status_check_template_id, phase, subscription_id, \
         result, step_id, next_step_id, script_version_id, scheduled_id, planned_at, created_at, \
         updated_at) VALUES (42, ?, ?, ?, ?, ?, CAST(NULLIF(?, '') AS SIGNED), 789, 456, ?, ?, ?)",
        &[
            &template,
            check.phase,
            &subscription,
            check.result,
            &step,
            next.as_deref().unwrap_or(""),
            &created,
            &created,
            &created,
        ],
    )
    .await;
    let id = one(
        raw,
        "SELECT CAST(MAX(id) AS CHAR) FROM status_check WHERE subscription_id = ?",
        &[&subscription],
    )
    .await;
    raw.execute_text(
        "INSERT INTO status_check_poller (status_check_id, since, `until`, lock_id, created_at, \
         updated_at) VALUES (?, ?, ?, NULL, ?, ?)",
        &[
            &id,
            &raw.time_text(at("2026-11-20T07:00:00Z")),
            &raw.time_text(at("2026-11-20T08:10:00Z")),
            &created,
            &created,
        ],
    )
    .await;
    for (order, (event, name, at_text)) in check.records.iter().enumerate() {
        db.neighbours.incoming_event(*event, ROBOT).await;
        raw.execute_text(
            "INSERT INTO status_check_record (status_check_id, incoming_event_id, \
             outgoing_event_id, event_name, `order`, phase, result, created_at) \
             VALUES (?, ?, NULL, ?, ?, 'PAST', 'PENDING', ?)",
            &[
                &id,
                &event.to_string(),
                name,
                &(order + 1).to_string(),
                &raw.time_text(at(at_text)),
            ],
        )
        .await;
    }
    id.parse().unwrap()
}

/// An open robot-is-charging check of the Node service at step 123: charging stopped at its
/// creation, nothing since.
pub(crate) async fn open_charging_check(
    db: &TestDb,
    template_id: i64,
    subscription_id: i64,
) -> i64 {
    node_check(
        db,
        NodeCheck {
            template_id,
            step_id: 123,
            phase: "FUTURE",
            result: "PENDING",
            next_step_id: None,
            subscription_id,
            records: vec![(5001, "CHARGING_STOPPED", "2026-11-20T08:00:00Z")],
        },
    )
    .await
}

/// The single text value a query returns.
async fn one(raw: &Raw, sql: &'static str, values: &[&str]) -> String {
    let rows = raw.texts(sql, values).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().expect("a value")
}

/// A full replica on `db` (every role), its workers to drive.
async fn replica(backend: Backend, db: &TestDb, queues: &Queues) -> (TestApp, Workers) {
    spawn_stack(
        backend,
        Some((db.store.clone(), db.neighbours.clone())),
        queues,
    )
    .await
}

/// Micro-Managers answers 503 for the step.
async fn micro_managers_down(app: &TestApp, step_id: i64) {
    app.given_status(
        "GET",
        &format!("/internal/v5/scripts/robots/{ROBOT}/scripts/steps/{step_id}"),
        503,
    )
    .await;
}

async fn stubs_for_unsubscribe(app: &TestApp, subscription_id: i64) {
    app.given_status(
        "DELETE",
        &format!("/internal/v1/events/robots/{ROBOT}/subscriptions/{subscription_id}"),
        204,
    )
    .await;
}

/// An open check the Node service left is readable at once, waits (not failed) while
/// Micro-Managers is down, and is finalised at its poller's `until` with the script's fail
/// step once its next steps are known — read from Micro-Managers once. A completed one reads
/// as the Node service wrote it.
pub async fn a_node_check_is_read_adopted_and_finalised(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let open = open_charging_check(&db, legacy, 3001).await;
    let done = node_check(
        &db,
        NodeCheck {
            template_id: legacy,
            step_id: 133,
            phase: "COMPLETED",
            result: "PASS",
            next_step_id: Some(134),
            subscription_id: 3009,
            records: vec![(5009, "CHARGING_STARTED", "2026-11-20T07:59:00Z")],
        },
    )
    .await;
    // A record the Node service wrote without an incoming event id.
    db.raw
        .execute_text(
            "INSERT INTO status_check_record (status_check_id, incoming_event_id, \
             outgoing_event_id, event_name, `order`, phase, result, created_at) \
             VALUES (?, NULL, NULL, 'CHARGING_STARTED', 2, 'FUTURE', 'PASS', ?)",
            &[
                &done.to_string(),
                &db.raw.time_text(at("2026-11-20T08:01:00Z")),
            ],
        )
        .await;
    let (app, workers) = replica(backend, &db, &queues).await;

    let body = check(&app, done).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("PASS"), &json!(134))
    );
    assert_eq!(
        (&body["statusCheck"], &body["templateVersion"]),
        (&json!("robot-is-charging"), &json!(1))
    );
    assert_eq!(body["history"][0]["incomingEventId"], 5009);
    // The production record has no event time: it is the record's created_at.
    assert_eq!(
        body["history"][0]["eventCreatedAt"],
        "2026-11-20T07:59:00.000Z"
    );
    assert_eq!(body["history"][1]["incomingEventId"], Value::Null);
    assert_eq!(
        body["history"][1]["eventCreatedAt"],
        "2026-11-20T08:01:00.000Z"
    );
    let body = check(&app, open).await;
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("FUTURE"), &json!("PENDING"))
    );
    assert_eq!(body["pollingSince"], "2026-11-20T07:00:00.000Z");
    assert_eq!(body["pollingUntil"], "2026-11-20T08:10:00.000Z");
    assert_eq!(body["subscriptionId"], 3001);

    // Past its deadline, Micro-Managers down: adoption waits; nothing is decided.
    micro_managers_down(&app, 123).await;
    stubs_for_unsubscribe(&app, 3001).await;
    let scheduler = workers.scheduler.as_ref().unwrap();
    app.clock.set(at("2026-11-20T08:10:01Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!((tick.adopted, tick.claimed), (0, 0));
    assert_eq!(
        check(&app, open).await["phase"],
        "FUTURE",
        "not failed early"
    );
    assert!(app.upstream_calls("GET", "/scripts/steps/123").await >= 1);

    // Micro-Managers back: adopted on the next try, and finalised in the same tick.
    app.upstream.reset().await;
    stubs_for_unsubscribe(&app, 3001).await;
    app.given_step(ROBOT, 123, step_json(123, "robot-is-charging", 0, 0, NEXT))
        .await;
    app.clock.set(at("2026-11-20T08:10:20Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!((tick.adopted, tick.claimed, tick.finalised), (1, 1, 1));
    let body = check(&app, open).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("FAILED"), &json!("FAIL"), &json!(125))
    );
    assert_eq!(body["history"].as_array().unwrap().len(), 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/3001").await, 0);
    workers.relay.as_ref().unwrap().tick_once().await;
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/3001").await, 1);
    let messages = robot_messages(&queues, ROBOT).await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["payload"]["id"], open);
    assert_eq!(messages[0].0["payload"]["phase"], "FAILED");

    // The next steps were read once and kept: later ticks do not ask again.
    app.clock.set(at("2026-11-20T08:30:00Z"));
    scheduler.tick_once().await;
    assert_eq!(app.upstream_calls("GET", "/scripts/steps/123").await, 1);
    // The production rows say what happened, for the Node service too.
    assert_eq!(
        db.raw
            .texts(
                "SELECT phase, result, CAST(next_step_id AS CHAR) FROM status_check WHERE id = ?",
                &[&open.to_string()],
            )
            .await,
        [[
            Some("FAILED".into()),
            Some("FAIL".into()),
            Some("125".into())
        ]]
    );
}

/// A Node check whose step Micro-Managers no longer has cannot be decided here: it is reported
/// once and left open, and later passes do not ask for it again (they only look at newer rows).
pub async fn a_node_check_whose_step_is_gone_is_left_open(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let id = open_charging_check(&db, legacy, 3004).await;
    let (app, workers) = replica(backend, &db, &queues).await;
    // No step stub: Micro-Managers answers 404.
    let scheduler = workers.scheduler.as_ref().unwrap();
    for at_text in [
        "2026-11-20T08:10:01Z",
        "2026-11-20T08:12:00Z",
        "2026-11-20T08:14:00Z",
    ] {
        app.clock.set(at(at_text));
        let tick = scheduler.tick_once().await;
        assert_eq!((tick.adopted, tick.claimed), (0, 0), "{at_text}");
    }
    assert_eq!(app.upstream_calls("GET", "/scripts/steps/123").await, 1);
    assert_eq!(check(&app, id).await["phase"], "FUTURE");
}

/// A delivery for a Node check's subscription adopts it and is applied — evaluated with the
/// newest version of its template this service can run, since its own is EJS.
pub async fn a_delivery_for_a_node_check_is_applied(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let id = open_charging_check(&db, legacy, 3002).await;
    let (app, workers) = replica(backend, &db, &queues).await;
    app.given_step(ROBOT, 123, step_json(123, "robot-is-charging", 0, 0, NEXT))
        .await;
    stubs_for_unsubscribe(&app, 3002).await;
    put(
        &app,
        &queues,
        &delivery(
            3002,
            80001,
            5102,
            "CHARGING_STARTED",
            "2026-11-20T08:05:00Z",
        ),
    )
    .await;
    app.clock.set(at("2026-11-20T08:05:01Z"));
    assert_eq!(consume_applied(&workers, 1).await, [Outcome::Applied]);
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("PASS"), &json!(124))
    );
    let history = body["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (
            &history[1]["order"],
            &history[1]["phase"],
            &history[1]["result"]
        ),
        (&json!(2), &json!("FUTURE"), &json!("PASS"))
    );
    assert_eq!(
        (
            &history[1]["incomingEventId"],
            &history[1]["outgoingEventId"]
        ),
        (&json!(5102), &json!(80001))
    );
    assert_eq!(app.upstream_calls("GET", "/scripts/steps/123").await, 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/3002").await, 0);
    workers.relay.as_ref().unwrap().tick_once().await;
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/3002").await, 1);

    // The robot repeating its request across the cut-over gets the Node service's check,
    // also when MySQL stored its plannedAt rounded to the second (07:59:59.600 → 08:00:00).
    for planned_at in ["2026-11-20T08:00:00Z", "2026-11-20T07:59:59.600Z"] {
        let mut request = create_body(123);
        request["plannedAt"] = json!(planned_at);
        let (status, body) = app.post_check(ROBOT, &request).await;
        assert_eq!(
            (status, &body["id"]),
            (StatusCode::OK, &json!(id)),
            "{planned_at}: {body}"
        );
    }

    // New checks never use the EJS version: the shipped YAML took the next number, 2.
    app.given_incomings(
        ROBOT,
        "CHARGING_STARTED",
        json!([incoming(5201, "CHARGING_STARTED", "2026-11-20T08:04:00Z")]),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    let mut request = create_body(123);
    request["scheduledId"] = json!(457);
    let (status, body) = app.post_check(ROBOT, &request).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["templateVersion"], 2);
    assert_eq!(body["result"], "PASS");
    // The renumbering is counted. The recorder is the process's, shared by every test: this
    // says the series is exported; that this sync renumbered is the version 2 above, and that
    // a legacy version is counted once is `templates::tests::a_legacy_version_is_counted_once`.
    let metrics = reqwest::get(format!("{}/metrics", app.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("templates_renumbered_total"), "{metrics}");
}

/// A delivery for a check that ended is deleted; one that still comes past the grace period
/// means the check's subscription was never removed (here a Node check's): it is queued for
/// removal and removed, once (SPEC §13).
pub async fn an_ended_checks_subscription_that_keeps_delivering_is_removed(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    node_check(
        &db,
        NodeCheck {
            template_id: legacy,
            step_id: 123,
            phase: "COMPLETED",
            result: "PASS",
            next_step_id: Some(124),
            subscription_id: 3003,
            records: vec![(5001, "CHARGING_STARTED", "2026-11-20T08:00:00Z")],
        },
    )
    .await;
    let (app, workers) = replica(backend, &db, &queues).await;
    stubs_for_unsubscribe(&app, 3003).await;
    let relay = workers.relay.as_ref().unwrap();
    let event = |outgoing: i64, incoming: i64| {
        delivery(
            3003,
            outgoing,
            incoming,
            "CHARGING_STARTED",
            "2026-11-20T08:05:00Z",
        )
    };

    // Within the grace period: deleted, nothing else.
    put(&app, &queues, &event(80101, 5301)).await;
    app.clock.set(at("2026-11-20T08:05:01Z"));
    assert_eq!(consume(&workers).await, [Outcome::Ended]);
    assert_eq!(relay.tick_once().await.removals.claimed, 0);

    // Past it: the subscription is removed.
    put(&app, &queues, &event(80102, 5302)).await;
    app.clock.set(at("2026-11-20T08:07:00Z"));
    assert_eq!(consume(&workers).await, [Outcome::Ended]);
    assert_eq!(relay.tick_once().await.removals.done, 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/3003").await, 1);
    put(&app, &queues, &event(80103, 5303)).await;
    assert_eq!(consume(&workers).await, [Outcome::Ended]);
    app.clock.set(at("2026-11-20T08:10:00Z"));
    assert_eq!(relay.tick_once().await.removals.claimed, 0, "removed once");
}

/// A Node check whose template has no version this service can run: its deliveries are
/// recorded without evaluation, and the deadline decides from the result it has.
pub async fn a_node_check_without_a_runnable_template_is_decided_from_its_result(backend: Backend) {
    decided_from_its_result(backend, "node-door-check", None).await;
}

/// The same when the Node service's version is unreadable beyond its rules: a name this
/// service would not give a template, and a rule row of an output it does not know.
pub async fn a_node_check_whose_version_is_unreadable_is_decided_from_its_result(backend: Backend) {
    decided_from_its_result(backend, "nodeDoorCheck", Some(("FUTURE", "MAYBE"))).await;
}

async fn decided_from_its_result(backend: Backend, name: &str, odd_rule: Option<(&str, &str)>) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let legacy = node_template(&db.raw, name, 1, "DOOR_OPENED", true).await;
    if let Some((phase, output)) = odd_rule {
        db.raw
            .execute_text(
                "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
                 output) VALUES (?, ?, ?, ?)",
                &[&legacy.to_string(), phase, EJS, output],
            )
            .await;
    }
    let id = node_check(
        &db,
        NodeCheck {
            template_id: legacy,
            step_id: 223,
            phase: "FUTURE",
            result: "PASS",
            next_step_id: None,
            subscription_id: 3003,
            records: vec![],
        },
    )
    .await;
    let (app, workers) = replica(backend, &db, &queues).await;
    app.given_step(
        ROBOT,
        223,
        step_json(223, name, 0, 0, &[("pass", 224), ("fail", 225)]),
    )
    .await;
    stubs_for_unsubscribe(&app, 3003).await;
    put(
        &app,
        &queues,
        &delivery(3003, 80002, 5301, "DOOR_OPENED", "2026-11-20T08:06:00Z"),
    )
    .await;
    app.clock.set(at("2026-11-20T08:06:01Z"));
    assert_eq!(consume_applied(&workers, 1).await, [Outcome::Applied]);
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("FUTURE"), &json!("PASS"))
    );
    assert_eq!(
        body["history"][0]["result"], "PASS",
        "recorded, not evaluated"
    );
    app.clock.set(at("2026-11-20T08:10:00.500Z"));
    let tick = workers.scheduler.as_ref().unwrap().tick_once().await;
    assert_eq!(tick.finalised, 1);
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("PASS"), &json!(224))
    );
    assert!(consume(&workers).await.is_empty());
}

/// A step naming a template whose only active version is the Node service's: the 422 says the
/// version exists but cannot run here, not that there is none.
pub async fn a_create_on_a_node_only_template_says_its_version_cannot_run(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    node_template(&db.raw, "node-door-check", 3, "DOOR_OPENED", false).await;
    let (app, _workers) = replica(backend, &db, &queues).await;
    app.given_step(ROBOT, 240, step_json(240, "node-door-check", 0, 0, NEXT))
        .await;
    let (status, body) = app.post_check(ROBOT, &create_body(240)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("version 3") && detail.contains("cannot run"),
        "{detail}"
    );
    assert_eq!(app.check_count().await, 0);
}

/// Rollback stays possible: every production row this service writes over a check's life —
/// created with a past record, two deliveries, then the deadline (pollUntilEnd) — is complete
/// as the Node service writes it.
pub async fn production_rows_are_complete_for_the_node_service(backend: Backend) {
    let (Some(queues), Some(db)) = (sqs_queues().await, backend.database().await) else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    let (app, workers) = replica(backend, &db, &queues).await;
    app.given_step(ROBOT, 200, step_json(200, "toilet-activity", 0, 0, NEXT))
        .await;
    app.given_incomings(
        ROBOT,
        "TOILET_VISIT",
        json!([incoming(6001, "TOILET_VISIT", "2026-11-20T05:00:00Z")]),
    )
    .await;
    app.given_next_subscription(ROBOT, 994).await;
    let (status, body) = app.post_check(ROBOT, &create_body(200)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    let key = id.to_string();

    let check_row = |phase: &str, result: &str, next: Option<&str>| {
        vec![vec![
            Some("42".to_owned()),
            Some(phase.to_owned()),
            Some(result.to_owned()),
            Some("994".to_owned()),
            Some("200".to_owned()),
            next.map(str::to_owned),
            Some("789".to_owned()),
            Some("456".to_owned()),
        ]]
    };
    const CHECK: &str = "SELECT CAST(robot_id AS CHAR), phase, result, \
        CAST(subscription_id AS CHAR), CAST(step_id AS CHAR), CAST(next_step_id AS CHAR), \
        CAST(script_version_id AS CHAR), CAST(scheduled_id AS CHAR) \
        FROM status_check WHERE id = ?";
    const RECORDS: &str = "SELECT CAST(`order` AS CHAR), phase, event_name, \
        CAST(incoming_event_id AS CHAR), CAST(outgoing_event_id AS CHAR), result \
        FROM status_check_record WHERE status_check_id = ? ORDER BY `order`";
    let record = |order: u32, phase: &str, event: i64, outgoing: Option<i64>, result: &str| {
        vec![
            Some(order.to_string()),
            Some(phase.to_owned()),
            Some("TOILET_VISIT".to_owned()),
            Some(event.to_string()),
            outgoing.map(|o| o.to_string()),
            Some(result.to_owned()),
        ]
    };
    assert_eq!(
        db.raw.texts(CHECK, &[&key]).await,
        check_row("FUTURE", "PASS", None)
    );
    assert_eq!(
        db.raw.texts(RECORDS, &[&key]).await,
        [record(1, "PAST", 6001, None, "PASS")]
    );
    // The poller holds the window (whole seconds) and no lock.
    let poller = db
        .raw
        .texts(
            "SELECT CAST(since AS CHAR), CAST(`until` AS CHAR), lock_id \
             FROM status_check_poller WHERE status_check_id = ?",
            &[&key],
        )
        .await;
    let time = |text: &Option<String>| parse_time(text.as_deref().unwrap());
    assert_eq!(time(&poller[0][0]), at("2026-11-20T02:00:00Z"));
    assert_eq!(time(&poller[0][1]), at("2026-11-20T09:00:00Z"));
    assert_eq!(poller[0][2], None);
    let planned = one(
        &db.raw,
        "SELECT CAST(planned_at AS CHAR) FROM status_check WHERE id = ?",
        &[&key],
    )
    .await;
    assert_eq!(parse_time(&planned), at("2026-11-20T08:00:00Z"));

    for (n, time) in [(1, "2026-11-20T08:10:00Z"), (2, "2026-11-20T08:20:00Z")] {
        put(
            &app,
            &queues,
            &delivery(994, 81000 + n, 6100 + n, "TOILET_VISIT", time),
        )
        .await;
    }
    app.clock.set(at("2026-11-20T08:30:00Z"));
    consume_applied(&workers, 2).await;
    assert_eq!(
        db.raw.texts(CHECK, &[&key]).await,
        check_row("FUTURE", "PASS", None)
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
    assert_eq!(
        db.raw.texts(CHECK, &[&key]).await,
        check_row("COMPLETED", "PASS", Some("124"))
    );
    // One record per event, `order` in the order they arrived (the queue may swap them).
    let mut records = db.raw.texts(RECORDS, &[&key]).await;
    assert_eq!(records.len(), 3, "{records:?}");
    assert_eq!(records[0], record(1, "PAST", 6001, None, "PASS"));
    let orders: Vec<_> = records.iter().map(|r| r[0].clone()).collect();
    assert_eq!(
        orders,
        [Some("1".into()), Some("2".into()), Some("3".into())]
    );
    records.sort_by_key(|r| r[3].clone());
    for row in &mut records {
        row[0] = None;
    }
    let unordered = |phase, event, outgoing| {
        let mut row = record(0, phase, event, outgoing, "PASS");
        row[0] = None;
        row
    };
    assert_eq!(
        records,
        [
            unordered("PAST", 6001, None),
            unordered("FUTURE", 6101, Some(81001)),
            unordered("FUTURE", 6102, Some(81002)),
        ]
    );
    // Released: no lock left for the Node service to trip over.
    assert_eq!(
        db.raw
            .texts(
                "SELECT lock_id FROM status_check_poller WHERE status_check_id = ?",
                &[&key],
            )
            .await,
        [[None]]
    );
    let response: Value = check(&app, id).await;
    assert_eq!(response["phase"], "COMPLETED");
}

/// A record of the Node service without its `created_at` (the production column is nullable)
/// is read with its check's creation as its time: the check stays readable — alone, and in a
/// delivery batch's read — instead of the whole check being unreadable.
pub async fn a_node_record_without_its_time_is_read_at_its_checks(backend: Backend) {
    let Some(db) = backend.database().await else {
        return;
    };
    let legacy = node_template(&db.raw, "robot-is-charging", 1, "CHARGING_STARTED", false).await;
    let id = open_charging_check(&db, legacy, 3041).await;
    db.raw
        .execute_text(
            "UPDATE status_check_record SET created_at = NULL WHERE status_check_id = ?",
            &[&id.to_string()],
        )
        .await;
    let alone = db.store.get_check(id).await.unwrap().expect("readable");
    let times: Vec<_> = alone.records.iter().map(|r| r.event.created_at).collect();
    assert_eq!(times, [at("2026-11-20T08:00:00Z")]);
    assert_eq!(alone.records[0].created_at, at("2026-11-20T08:00:00Z"));
    let batch = db
        .store
        .find_by_subscriptions(&[(ROBOT, 3041)])
        .await
        .unwrap();
    assert_eq!(batch, [Some(alone)]);
}

/// A time as either backend returns it in text.
fn parse_time(text: &str) -> DateTime<Utc> {
    text.parse().unwrap_or_else(|_| {
        chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .and_utc()
    })
}

on_both_backends!(
    a_node_check_is_read_adopted_and_finalised,
    a_node_check_whose_step_is_gone_is_left_open,
    a_delivery_for_a_node_check_is_applied,
    an_ended_checks_subscription_that_keeps_delivering_is_removed,
    a_node_check_without_a_runnable_template_is_decided_from_its_result,
    a_node_check_whose_version_is_unreadable_is_decided_from_its_result,
    a_create_on_a_node_only_template_says_its_version_cannot_run,
    production_rows_are_complete_for_the_node_service,
    a_node_record_without_its_time_is_read_at_its_checks,
);
