//! Megazord's deliveries: one SQS send per outgoing event, never retried — a failed or dropped
//! send loses the delivery for good while the event stays readable (SPEC §5.2) — and the robot
//! mailbox route.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::MegazordSim;

use crate::support::{
    CannedMailbox, FailingSink, ManualClock, Megazord, RecordingSink, SINK_FAILURE, megazord,
    robot, seeded, serve, t0,
};

#[tokio::test]
async fn a_failed_send_is_not_retried_and_the_event_is_stored_and_listed() {
    let sink = Arc::new(FailingSink::default());
    let clock = ManualClock::at(t0());
    let sim = seeded(MegazordSim::new(sink.clone(), clock.now_fn()));
    let server = serve(sim.router()).await;
    server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["CHARGING_STARTED"]}),
        )
        .await
        .expect(StatusCode::CREATED);

    // Nothing to fan out: the queue is not asked.
    server
        .post(
            &robot(42, "incomings"),
            &json!({"eventName": "DOCKED", "providerName": "robot"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(*sink.attempts.lock().unwrap(), 0);

    // The send fails: the event is stored and answered 201 (the outgoing event too), the
    // envelope is tried once and then lost.
    let posted = server
        .post(
            &robot(42, "incomings"),
            &json!({"eventName": "CHARGING_STARTED", "referenceId": 7, "providerName": "robot"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(Megazord::outgoing_ids(&posted).len(), 1);
    assert_eq!(*sink.attempts.lock().unwrap(), 1);
    let stored = server
        .get(&robot(42, "incomings?event_name=CHARGING_STARTED"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(stored.as_array().unwrap().len(), 1);
    assert_eq!(stored[0]["referenceId"], json!(7));
    assert_eq!(sim.incomings(42, None, None).len(), 2);

    // The Rust API says which deliveries were lost; later posts try only their own.
    let again = sim
        .post_incoming(42, status_check_sim::NewIncoming::named("CHARGING_STARTED"))
        .await
        .unwrap();
    assert_eq!(again.lost, again.outgoing_ids);
    assert_eq!(
        *sink.attempts.lock().unwrap(),
        2,
        "{SINK_FAILURE} is not retried"
    );
}

#[tokio::test]
async fn dropped_deliveries_are_lost_for_good_but_the_events_stay_readable() {
    let mz = megazord().await;
    let first = mz.subscribe(42, &["TOILET_ACTIVITY"]).await;
    let second = mz.subscribe(42, &["TOILET_ACTIVITY"]).await;

    // The next one send fails: of the two outgoing events, the first is lost.
    mz.sim.drop_next_deliveries(1);
    let posted = mz
        .sim
        .post_incoming(42, status_check_sim::NewIncoming::named("TOILET_ACTIVITY"))
        .await
        .unwrap();
    assert_eq!(posted.outgoing_ids.len(), 2);
    assert_eq!(posted.lost, posted.outgoing_ids[..1]);
    let envelopes = mz.sink.take();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0]["payload"]["subscriptionId"], json!(second));
    assert_eq!(envelopes[0]["payload"]["id"], json!(posted.outgoing_ids[1]));
    // The lost one's outgoing event exists all the same (the link answers).
    mz.server
        .get(&robot(
            42,
            &format!("subscriptions/{first}/outgoings/{}", posted.outgoing_ids[0]),
        ))
        .await
        .expect(StatusCode::OK);

    // The next event is delivered to both, and nothing is re-sent.
    let next = mz
        .post_event(42, json!({"eventName": "TOILET_ACTIVITY"}))
        .await;
    let envelopes = mz.sink.take();
    assert_eq!(envelopes.len(), 2);
    assert!(
        envelopes
            .iter()
            .all(|e| e["payload"]["sourceEventId"] == next["id"])
    );

    // Until a time: every send before it fails, on the contract route too (still 201).
    mz.sim.drop_deliveries_until(t0() + Duration::minutes(5));
    mz.clock
        .set(t0() + Duration::minutes(5) - Duration::seconds(1));
    let lost = mz
        .post_event(42, json!({"eventName": "TOILET_ACTIVITY"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&lost).len(), 2);
    assert_eq!(mz.sink.take(), Vec::<Value>::new());
    mz.clock.set(t0() + Duration::minutes(5));
    mz.post_event(42, json!({"eventName": "TOILET_ACTIVITY"}))
        .await;
    assert_eq!(mz.sink.take().len(), 2);

    // Every event is still listed: only a read of the incomings finds the lost ones.
    let listed = mz
        .server
        .get(&robot(42, "incomings?event_name=TOILET_ACTIVITY"))
        .await
        .expect(StatusCode::OK);
    let ids: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["id"])
        .collect();
    assert_eq!(ids.len(), 4);
    assert!(ids.contains(&&json!(posted.incoming["id"])));
    assert!(ids.contains(&&lost["id"]));
}

#[tokio::test]
async fn robot_messages_need_a_mailbox_and_list_what_it_holds() {
    // Without a mailbox.
    let mz = megazord().await;
    mz.server
        .get("/sim/robots/42/messages")
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);

    // With one.
    let messages = vec![
        json!({"type": "statusCheckResult", "stepId": 101, "command": "pass"}),
        json!({"type": "statusCheckResult", "stepId": 102, "command": "fail"}),
    ];
    let mailbox = Arc::new(CannedMailbox {
        by_robot: BTreeMap::from([(42, messages.clone())]),
    });
    let sim = MegazordSim::new(
        Arc::new(RecordingSink::default()),
        ManualClock::at(t0()).now_fn(),
    )
    .with_mailbox(mailbox);
    let server = serve(sim.router()).await;

    assert_eq!(
        server
            .get("/sim/robots/42/messages")
            .await
            .expect(StatusCode::OK),
        Value::Array(messages)
    );
    assert_eq!(
        server
            .get("/sim/robots/7/messages")
            .await
            .expect(StatusCode::OK),
        json!([])
    );
    let detail = server
        .get("/sim/robots/666/messages")
        .await
        .expect_problem(StatusCode::BAD_GATEWAY, None);
    assert!(detail.contains("mailbox unreachable"), "{detail}");
    server
        .get("/sim/robots/abc/messages")
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("robotId"));
}
