//! Group commit (SPEC §10): the consumer applies the deliveries of one receive in one
//! transaction and the scheduler finalises a claimed batch in one — each item still
//! idempotent, and an item its database write refuses (a "poison" one, made here by a trigger
//! that fails its statement) retried alone, so its batch-mates are applied. Real SQS (the
//! emulator), SQLite and MariaDB.

use serde_json::{Value, json};
use status_check::workers::consumer::Outcome;

use crate::harness::create_body;
use crate::harness::on_both_backends;
use crate::harness::{Backend, Queues, TestApp, spawn_stack_with, sqs_queues, step_json};
use crate::lifecycle::{NEXT, at, check, delivery, open_charging_check, open_toilet_check, put};
use crate::support::{Raw, TestDb};

const ROBOT: i64 = 42;

/// A replica with every role on `db`, and the SQS queues it uses.
async fn replica(
    backend: Backend,
) -> Option<(TestDb, TestApp, status_check::app::Workers, Queues)> {
    replica_with(backend, &[]).await
}

async fn replica_with(
    backend: Backend,
    extra: &[(&str, &str)],
) -> Option<(TestDb, TestApp, status_check::app::Workers, Queues)> {
    let queues = sqs_queues().await?;
    queues.robot_queue(ROBOT).await;
    let db = backend.database().await?;
    let (app, workers) = spawn_stack_with(
        backend,
        Some((db.store.clone(), db.neighbours.clone())),
        &queues,
        extra,
    )
    .await;
    Some((db, app, workers, queues))
}

/// Makes the database refuse any statement that records incoming event `event_id`.
async fn poison_event(raw: &Raw, event_id: i64) {
    assert_eq!(event_id, 6666, "the trigger's text names the event");
    match raw {
        Raw::Sqlite(_) => {
            raw.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON status_check_record \
                 WHEN NEW.incoming_event_id = 6666 \
                 BEGIN SELECT RAISE(ABORT, 'poison event'); END",
            )
            .await
        }
        Raw::Mysql(_) => {
            raw.execute(
                "CREATE TRIGGER poison BEFORE INSERT ON status_check_record FOR EACH ROW \
                 BEGIN IF NEW.incoming_event_id = 6666 THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison event'; END IF; END",
            )
            .await
        }
    }
}

/// Makes the database refuse to change the check at step 222 (its `status_check` row).
async fn poison_step_222(raw: &Raw) {
    match raw {
        Raw::Sqlite(_) => {
            raw.execute(
                "CREATE TRIGGER poison BEFORE UPDATE ON status_check WHEN NEW.step_id = 222 \
                 BEGIN SELECT RAISE(ABORT, 'poison check'); END",
            )
            .await
        }
        Raw::Mysql(_) => {
            raw.execute(
                "CREATE TRIGGER poison BEFORE UPDATE ON status_check FOR EACH ROW \
                 BEGIN IF NEW.step_id = 222 THEN \
                 SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poison check'; END IF; END",
            )
            .await
        }
    }
}

fn incoming_ids(body: &Value) -> Vec<i64> {
    body["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|record| record["phase"] == "FUTURE")
        .map(|record| record["incomingEventId"].as_i64().unwrap())
        .collect()
}

/// Five messages for three checks in one receive: two events for one check, one event
/// delivered twice for another, one for the third. Each check takes exactly its events in,
/// the duplicate changes nothing, and every message is deleted after the commit.
pub async fn a_receive_is_applied_as_one_batch(backend: Backend) {
    let Some((_db, app, workers, queues)) = replica(backend).await else {
        return;
    };
    let a = open_toilet_check(&app, 201, 901).await;
    let b = open_toilet_check(&app, 202, 902).await;
    let c = open_toilet_check(&app, 203, 903).await;
    let twice = delivery(902, 81002, 6102, "TOILET_VISIT", "2026-11-20T08:12:00Z");
    for body in [
        delivery(901, 81001, 6101, "TOILET_VISIT", "2026-11-20T08:10:00Z"),
        twice.clone(),
        delivery(901, 81003, 6103, "TOILET_VISIT", "2026-11-20T08:14:00Z"),
        delivery(903, 81004, 6104, "TOILET_VISIT", "2026-11-20T08:16:00Z"),
    ] {
        put(&app, &queues, &body).await;
    }
    queues
        .queue
        .send(&queues.status_url, &twice, &Default::default())
        .await
        .unwrap();
    app.clock.set(at("2026-11-20T08:30:00Z"));
    let mut outcomes = workers.consumer.as_ref().unwrap().tick_once().await;
    assert_eq!(outcomes.len(), 5, "one receive, one batch: {outcomes:?}");
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(
        outcomes,
        [
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::Applied,
            Outcome::NoChange
        ]
    );
    assert_eq!(incoming_ids(&check(&app, a).await), [6101, 6103]);
    assert_eq!(incoming_ids(&check(&app, b).await), [6102]);
    assert_eq!(incoming_ids(&check(&app, c).await), [6104]);
    assert!(
        workers
            .consumer
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .is_empty(),
        "every message was deleted"
    );
}

/// A delivery whose write the database refuses fails alone: the other deliveries of its
/// batch are applied, and it is left on the queue for redelivery with nothing recorded.
pub async fn a_poison_delivery_does_not_fail_its_batch_mates(backend: Backend) {
    let Some((db, app, workers, queues)) = replica(backend).await else {
        return;
    };
    let a = open_toilet_check(&app, 211, 911).await;
    let b = open_toilet_check(&app, 212, 912).await;
    let c = open_toilet_check(&app, 213, 913).await;
    poison_event(&db.raw, 6666).await;
    for body in [
        delivery(911, 82001, 6201, "TOILET_VISIT", "2026-11-20T08:10:00Z"),
        delivery(912, 82002, 6666, "TOILET_VISIT", "2026-11-20T08:11:00Z"),
        delivery(913, 82003, 6203, "TOILET_VISIT", "2026-11-20T08:12:00Z"),
    ] {
        put(&app, &queues, &body).await;
    }
    app.clock.set(at("2026-11-20T08:30:00Z"));
    let mut outcomes = workers.consumer.as_ref().unwrap().tick_once().await;
    assert_eq!(outcomes.len(), 3, "one receive, one batch: {outcomes:?}");
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(
        outcomes,
        [Outcome::Applied, Outcome::Applied, Outcome::Failed]
    );
    assert_eq!(incoming_ids(&check(&app, a).await), [6201]);
    assert_eq!(incoming_ids(&check(&app, b).await), Vec::<i64>::new());
    assert_eq!(incoming_ids(&check(&app, c).await), [6203]);
}

/// A batch whose write fails is applied one delivery at a time — each check's deliveries in
/// the order of their events, as the batch would have taken them in, not in the order they
/// came: a box opened at 08:03 and gone offline at 08:05, delivered the other way round,
/// passes as it would have in the batch (with the confirming read off, nothing else corrects
/// a decision taken on the later event alone).
pub async fn a_failed_batch_applies_each_checks_deliveries_in_event_order(backend: Backend) {
    let Some((db, app, workers, queues)) =
        replica_with(backend, &[("DEADLINE_RECONCILE", "false")]).await
    else {
        return;
    };
    app.given_step(
        ROBOT,
        221,
        step_json(221, "medication-box-opened", 0, 0, NEXT),
    )
    .await;
    for name in ["MEDICATION_BOX_OPENED", "MEDICATION_BOX_OFFLINE"] {
        app.given_incomings(ROBOT, name, json!([])).await;
    }
    app.given_next_subscription(ROBOT, 921).await;
    let (status, body) = app.post_check(ROBOT, &create_body(221)).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let id = body["id"].as_i64().unwrap();
    // The poison fails the batch's one transaction; it is another check's delivery.
    let other = open_toilet_check(&app, 222, 922).await;
    poison_event(&db.raw, 6666).await;
    for body in [
        delivery(
            921,
            83001,
            6302,
            "MEDICATION_BOX_OFFLINE",
            "2026-11-20T08:05:00Z",
        ),
        delivery(
            921,
            83002,
            6301,
            "MEDICATION_BOX_OPENED",
            "2026-11-20T08:03:00Z",
        ),
        delivery(922, 83003, 6666, "TOILET_VISIT", "2026-11-20T08:04:00Z"),
    ] {
        put(&app, &queues, &body).await;
    }
    app.clock.set(at("2026-11-20T08:10:00Z"));
    let outcomes = workers.consumer.as_ref().unwrap().tick_once().await;
    assert_eq!(outcomes.len(), 3, "one receive, one batch: {outcomes:?}");
    let decided = check(&app, id).await;
    assert_eq!(
        (
            &decided["phase"],
            &decided["result"],
            &decided["nextStepId"]
        ),
        (&json!("COMPLETED"), &json!("PASS"), &json!(124)),
        "{decided}"
    );
    assert_eq!(incoming_ids(&decided), [6301]);
    assert_eq!(incoming_ids(&check(&app, other).await), Vec::<i64>::new());
}

/// Three due checks claimed together; the database refuses to end one. The other two end
/// in the batch; the refused one stays leased, is released once its lease is stale (30 s),
/// and ends at the next claim once the database takes it — once, with one notification.
pub async fn a_poison_finalisation_does_not_fail_its_batch_mates(backend: Backend) {
    let Some((db, app, workers, queues)) = replica(backend).await else {
        return;
    };
    let ids = [
        open_charging_check(&app, 221, 921).await,
        open_charging_check(&app, 222, 922).await,
        open_charging_check(&app, 223, 923).await,
    ];
    poison_step_222(&db.raw).await;
    let scheduler = workers.scheduler.as_ref().unwrap();
    app.clock.set(at("2026-11-20T08:10:00.300Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!(
        (tick.claimed, tick.finalised, tick.failed),
        (3, 2, 1),
        "{tick:?}"
    );
    let phases = |bodies: Vec<Value>| -> Vec<String> {
        bodies
            .iter()
            .map(|body| body["phase"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut bodies = Vec::new();
    for id in ids {
        bodies.push(check(&app, id).await);
    }
    assert_eq!(phases(bodies), ["FAILED", "FUTURE", "FAILED"]);

    db.raw.execute("DROP TRIGGER poison").await;
    app.clock.set(at("2026-11-20T08:10:20Z"));
    assert_eq!(scheduler.tick_once().await.claimed, 0, "still leased");
    app.clock.set(at("2026-11-20T08:10:31Z"));
    let tick = scheduler.tick_once().await;
    assert_eq!(
        (tick.released_stale, tick.claimed, tick.finalised),
        (1, 1, 1),
        "{tick:?}"
    );
    assert_eq!(check(&app, ids[1]).await["phase"], "FAILED");
    workers.relay.as_ref().unwrap().tick_once().await;
    let messages = crate::lifecycle::robot_messages(&queues, ROBOT).await;
    let mut notified: Vec<i64> = messages
        .iter()
        .map(|(message, _)| message["payload"]["id"].as_i64().unwrap())
        .collect();
    notified.sort_unstable();
    assert_eq!(notified, ids, "each check notified once");
    assert!(
        messages
            .iter()
            .all(|(message, _)| message["payload"]["notificationSeq"] == json!(1))
    );
}

on_both_backends!(
    a_receive_is_applied_as_one_batch,
    a_poison_delivery_does_not_fail_its_batch_mates,
    a_poison_finalisation_does_not_fail_its_batch_mates,
    a_failed_batch_applies_each_checks_deliveries_in_event_order,
);
