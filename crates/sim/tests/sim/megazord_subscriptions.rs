//! Megazord's subscriptions (SPEC §5.2): known and unique event names, `subscriptionType` a
//! number, `until` forgotten, soft deletes, and the `queue` suffix.

use std::collections::BTreeSet;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Megazord, megazord, parse_time, rfc3339, robot, t0};

#[tokio::test]
async fn subscription_is_created_with_the_contract_shape() {
    let mz = megazord().await;
    let until = t0() + Duration::hours(1);

    let created = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["CHARGING_STARTED", "CHARGING_STOPPED"],
                    "until": rfc3339(until)}),
        )
        .await
        .expect(StatusCode::CREATED);
    let id = created["id"].as_i64().expect("id is a number");
    assert_eq!(created["robotId"], json!(42));
    assert_eq!(created["isActive"], json!(true));
    // Megazord's wire value, as a number.
    assert_eq!(created["subscriptionType"], json!(1));
    assert_eq!(parse_time(&created["createdAt"]), t0());
    assert_eq!(parse_time(&created["updatedAt"]), t0());
    // Exactly the documented fields: neither `until` nor `queue` is echoed.
    let keys: BTreeSet<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "createdAt",
            "id",
            "isActive",
            "robotId",
            "subscriptionDetails",
            "subscriptionType",
            "updatedAt"
        ])
    );
    let details = created["subscriptionDetails"].as_array().expect("details");
    assert_eq!(details.len(), 2);
    assert_eq!(details[0]["eventName"], "CHARGING_STARTED");
    assert_eq!(details[1]["eventName"], "CHARGING_STOPPED");
    let started_type = details[0]["eventTypeId"].as_i64().expect("eventTypeId");
    let stopped_type = details[1]["eventTypeId"].as_i64().expect("eventTypeId");
    assert_ne!(started_type, stopped_type);

    // Another subscription (another robot, later) gets a new id; an event keeps its type id.
    mz.clock.set(t0() + Duration::minutes(5));
    let second = mz
        .server
        .post(
            &robot(43, "subscriptions"),
            &json!({"eventNames": ["DOCKED", "CHARGING_STARTED"], "until": rfc3339(until)}),
        )
        .await
        .expect(StatusCode::CREATED);
    let second_id = second["id"].as_i64().unwrap();
    assert_ne!(second_id, id);
    assert_eq!(second["robotId"], json!(43));
    assert_eq!(
        parse_time(&second["createdAt"]),
        t0() + Duration::minutes(5)
    );
    let docked_type = second["subscriptionDetails"][0]["eventTypeId"]
        .as_i64()
        .unwrap();
    assert!(![started_type, stopped_type].contains(&docked_type));
    assert_eq!(
        second["subscriptionDetails"][1],
        json!({"eventTypeId": started_type, "eventName": "CHARGING_STARTED"})
    );

    // Listing is per robot and shows the same documents.
    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([created]));
    let listed = mz
        .server
        .get(&robot(43, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed, json!([second]));
    assert_eq!(mz.sim.active_subscription_count(), 2);
}

#[tokio::test]
async fn unknown_event_names_are_404_repeated_ones_400_and_nothing_is_created() {
    let mz = megazord().await;
    let subscriptions = robot(42, "subscriptions");
    let until = rfc3339(t0() + Duration::hours(1));

    let detail = mz
        .server
        .post(
            &subscriptions,
            &json!({"eventNames": ["CHARGING_STARTED", "TELEPORTED"], "until": until}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("eventNames"));
    assert!(detail.contains("TELEPORTED"), "{detail}");
    // Event names are case-sensitive, as schema names are.
    mz.server
        .post(&subscriptions, &json!({"eventNames": ["charging_started"]}))
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("eventNames"));

    let detail = mz
        .server
        .post(
            &subscriptions,
            &json!({"eventNames": ["DOCKED", "CHARGING_STARTED", "DOCKED"], "until": until}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventNames"));
    assert!(detail.contains("DOCKED"), "{detail}");
    // A repeated unknown name is refused for the repetition first (the body is malformed).
    mz.server
        .post(&subscriptions, &json!({"eventNames": ["NOPE", "NOPE"]}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventNames"));

    mz.server
        .post(&subscriptions, &json!({"eventNames": [], "until": until}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventNames"));
    mz.server
        .post(
            &subscriptions,
            &json!({"eventNames": ["CHARGING_STARTED", " "], "until": until}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventNames"));
    let detail = mz
        .server
        .post(
            &subscriptions,
            &json!({"eventNames": ["CHARGING_STARTED"], "until": "tomorrow-ish"}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert!(detail.contains("until"), "{detail}");
    mz.server
        .post(
            "/internal/v1/events/robots/x/subscriptions",
            &json!({"eventNames": ["CHARGING_STARTED"], "until": until}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("robotId"));
    mz.server
        .delete(&robot(42, "subscriptions/abc"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("path"));

    assert_eq!(
        mz.server.get(&subscriptions).await.expect(StatusCode::OK),
        json!([])
    );
    assert_eq!(mz.sim.active_subscription_count(), 0);
}

#[tokio::test]
async fn until_is_accepted_and_forgotten_a_subscription_fans_out_until_deleted() {
    let mz = megazord().await;
    // Already past when made, and one without any `until`: both are live.
    let past = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["CHARGING_STARTED"], "until": rfc3339(t0() - Duration::hours(1))}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(past["isActive"], json!(true));
    let past_id = past["id"].as_i64().unwrap();
    assert_eq!(
        mz.sim.subscription_until(past_id),
        Some(t0() - Duration::hours(1)),
        "what was sent can be read back, for tests of the subscriber"
    );
    let forever = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["CHARGING_STARTED"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        mz.sim.subscription_until(forever["id"].as_i64().unwrap()),
        None
    );

    // A year on, both still get every event.
    mz.clock.set(t0() + Duration::days(365));
    let posted = mz
        .post_event(42, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&posted).len(), 2);
    let subscriptions: BTreeSet<i64> = mz
        .sink
        .take()
        .iter()
        .map(|e| e["payload"]["subscriptionId"].as_i64().unwrap())
        .collect();
    assert_eq!(
        subscriptions,
        BTreeSet::from([
            past["id"].as_i64().unwrap(),
            forever["id"].as_i64().unwrap()
        ])
    );
    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["isActive"] == json!(true))
    );
    assert_eq!(mz.sim.undeleted_subscriptions().len(), 2);
}

#[tokio::test]
async fn delete_is_soft_the_subscription_stays_listed_inactive_and_gets_no_fan_out() {
    let mz = megazord().await;
    let id = mz.subscribe(42, &["CHARGING_STARTED"]).await;
    let path = robot(42, &format!("subscriptions/{id}"));

    // Another robot cannot delete it, and an unknown id is 404.
    mz.server
        .delete(&robot(43, &format!("subscriptions/{id}")))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
    mz.server
        .delete(&robot(42, "subscriptions/123456"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
    mz.post_event(42, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(
        mz.sink.take().len(),
        1,
        "still active after the refused deletes"
    );

    mz.clock.set(t0() + Duration::minutes(1));
    let deleted = mz.server.delete(&path).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(deleted.body, Value::Null);

    let posted = mz
        .post_event(42, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&posted), Vec::<i64>::new());
    assert_eq!(mz.sink.take(), Vec::<Value>::new());

    // Already gone: 404, and nothing changes.
    mz.server
        .delete(&path)
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);

    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], json!(id));
    assert_eq!(listed[0]["isActive"], json!(false));
    assert_eq!(
        listed[0]["subscriptionDetails"][0]["eventName"],
        "CHARGING_STARTED"
    );
    assert_eq!(parse_time(&listed[0]["createdAt"]), t0());
    assert_eq!(
        parse_time(&listed[0]["updatedAt"]),
        t0() + Duration::minutes(1)
    );
    assert_eq!(mz.sim.active_subscription_count(), 0);
}

#[tokio::test]
async fn a_queue_suffix_routes_that_subscriptions_deliveries_and_is_validated() {
    let mz = megazord().await;
    let plain = mz.subscribe(42, &["TOILET_ACTIVITY"]).await;
    let jobs = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["TOILET_ACTIVITY"], "queue": "azi-3-status-check-jobs"}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        jobs.get("queue"),
        None,
        "the answer does not echo the queue"
    );
    let jobs = jobs["id"].as_i64().unwrap();
    assert_eq!(
        mz.sim.subscription_queue(jobs).as_deref(),
        Some("azi-3-status-check-jobs")
    );
    assert_eq!(mz.sim.subscription_queue(plain), None);

    mz.post_event(42, json!({"eventName": "TOILET_ACTIVITY"}))
        .await;
    let mut routed: Vec<(Option<String>, i64)> = mz
        .sink
        .take_routed()
        .into_iter()
        .map(|(queue, e)| (queue, e["payload"]["subscriptionId"].as_i64().unwrap()))
        .collect();
    routed.sort();
    assert_eq!(
        routed,
        [
            (None, plain),
            (Some("azi-3-status-check-jobs".to_string()), jobs)
        ]
    );

    // `^[a-zA-Z0-9-]{1,128}$`: the longest is accepted, anything else is a 400 naming queue.
    let longest = "a".repeat(128);
    mz.server
        .post(
            &robot(43, "subscriptions"),
            &json!({"eventNames": ["TOILET_ACTIVITY"], "queue": longest}),
        )
        .await
        .expect(StatusCode::CREATED);
    for bad in [
        json!(""),
        json!("a".repeat(129)),
        json!("jobs_queue"),
        json!("jobs queue"),
        json!("jobs.fifo"),
        json!("jøbs"),
    ] {
        mz.server
            .post(
                &robot(44, "subscriptions"),
                &json!({"eventNames": ["TOILET_ACTIVITY"], "queue": bad}),
            )
            .await
            .expect_problem(StatusCode::BAD_REQUEST, Some("queue"));
    }
    mz.server
        .post(
            &robot(44, "subscriptions"),
            &json!({"eventNames": ["TOILET_ACTIVITY"], "queue": 7}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert_eq!(
        mz.server
            .get(&robot(44, "subscriptions"))
            .await
            .expect(StatusCode::OK),
        json!([])
    );
}

#[tokio::test]
async fn a_trigger_subscription_is_type_2_and_its_deliveries_never_reach_sqs() {
    let mz = megazord().await;
    let trigger = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["SHORT_INACTIVITY"], "isTriggerSubscription": true}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(trigger["subscriptionType"], json!(2));
    let explicit_service = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["SHORT_INACTIVITY"], "isTriggerSubscription": false}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(explicit_service["subscriptionType"], json!(1));

    let posted = mz
        .post_event(42, json!({"eventName": "SHORT_INACTIVITY"}))
        .await;
    // Both get an outgoing event; only the service subscription's envelope is sent.
    assert_eq!(Megazord::outgoing_ids(&posted).len(), 2);
    let envelopes = mz.sink.take();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(
        envelopes[0]["payload"]["subscriptionId"],
        explicit_service["id"]
    );
}
