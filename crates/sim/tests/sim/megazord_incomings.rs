//! Megazord's incoming events (SPEC §5.2, §5.3): only known events from known providers, the
//! insert time and the schema's level, the fan-out, and listing.

use std::collections::BTreeSet;

use chrono::Duration;
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::megazord::{JOBS_PROVIDER, ROBOT_PROVIDER};

use crate::support::{CHARGER, Megazord, megazord, parse_time, rfc3339, robot, t0};

#[tokio::test]
async fn incoming_event_fans_out_one_envelope_per_matching_subscription() {
    let mz = megazord().await;
    let only_started = mz.subscribe(42, &["CHARGING_STARTED"]).await;
    let started_and_more = mz.subscribe(42, &["DOCKED", "CHARGING_STARTED"]).await;
    let other_name = mz.subscribe(42, &["DOCKED"]).await;
    let other_robot = mz.subscribe(43, &["CHARGING_STARTED"]).await;
    assert_eq!(
        BTreeSet::from([only_started, started_and_more, other_name, other_robot]).len(),
        4
    );

    mz.clock.set(t0() + Duration::seconds(30));
    let happened = t0() + Duration::seconds(10);
    let posted = mz
        .post_backdated(
            42,
            json!({"eventName": "CHARGING_STARTED", "level": 2, "referenceId": "ref-1",
                   "providerName": CHARGER, "createdAt": rfc3339(happened)}),
        )
        .await;
    let event_id = posted["id"].as_i64().expect("event id");
    assert_eq!(posted["robotId"], json!(42));
    assert_eq!(posted["eventName"], "CHARGING_STARTED");
    let outgoing_ids = Megazord::outgoing_ids(&posted);
    assert_eq!(outgoing_ids.len(), 2, "{posted}");

    let envelopes = mz.sink.take();
    assert_eq!(envelopes.len(), 2, "{envelopes:?}");
    let mut subscriptions = BTreeSet::new();
    for envelope in &envelopes {
        assert_eq!(envelope["from"], "megazord-events");
        assert_eq!(envelope["to"], json!({"robotId": "42"}));
        let payload = &envelope["payload"];
        let outgoing_id = payload["id"].as_i64().expect("payload.id");
        assert!(outgoing_ids.contains(&outgoing_id), "{envelope}");
        let subscription_id = payload["subscriptionId"].as_i64().expect("subscriptionId");
        assert!(
            subscriptions.insert(subscription_id),
            "two envelopes for one subscription"
        );
        assert_eq!(payload["sourceEventId"], json!(event_id));
        assert_eq!(payload["status"], "CREATED");
        assert_eq!(
            parse_time(&payload["createdAt"]),
            t0() + Duration::seconds(30)
        );
        assert_eq!(
            parse_time(&payload["updatedAt"]),
            t0() + Duration::seconds(30)
        );
        let source = &payload["sourceEvent"];
        assert_eq!(source["id"], json!(event_id));
        assert_eq!(source["robotId"], json!(42));
        assert_eq!(source["eventName"], "CHARGING_STARTED");
        assert_eq!(source["level"], json!(2));
        assert_eq!(source["referenceId"], "ref-1");
        assert_eq!(parse_time(&source["createdAt"]), happened);

        let link = &envelope["link"];
        assert_eq!(link["rel"], "");
        let path = link["link"].as_str().expect("link.link");
        assert_eq!(
            path,
            format!(
                "/internal/v1/events/robots/42/subscriptions/{subscription_id}/outgoings/{outgoing_id}"
            )
        );
        // The link answers with the outgoing event the envelope carries.
        assert_eq!(&mz.server.get(path).await.expect(StatusCode::OK), payload);
    }
    assert_eq!(
        subscriptions,
        BTreeSet::from([only_started, started_and_more])
    );

    // The link is tied to its robot and subscription.
    let outgoing = outgoing_ids[0];
    mz.server
        .get(&robot(
            42,
            &format!("subscriptions/{other_name}/outgoings/{outgoing}"),
        ))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
    let owner = envelopes
        .iter()
        .find(|e| e["payload"]["id"] == json!(outgoing))
        .unwrap()["payload"]["subscriptionId"]
        .as_i64()
        .unwrap();
    mz.server
        .get(&robot(
            43,
            &format!("subscriptions/{owner}/outgoings/{outgoing}"),
        ))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
    mz.server
        .get(&robot(42, &format!("subscriptions/{owner}/outgoings/1")))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);

    // Events of other names, or of robots without a matching subscription, go nowhere.
    let unrelated = mz.post_event(42, json!({"eventName": "BUMPER_HIT"})).await;
    assert_eq!(Megazord::outgoing_ids(&unrelated), Vec::<i64>::new());
    let lonely = mz
        .post_event(44, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&lonely), Vec::<i64>::new());
    assert_eq!(mz.sink.take(), Vec::<Value>::new());

    // Robot 43's own subscription gets robot 43's event, and only that one.
    let posted = mz
        .post_event(43, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    let envelopes = mz.sink.take();
    assert_eq!(envelopes.len(), 1);
    assert_eq!(envelopes[0]["to"], json!({"robotId": "43"}));
    assert_eq!(
        envelopes[0]["payload"]["subscriptionId"],
        json!(other_robot)
    );
    assert_eq!(
        envelopes[0]["payload"]["id"],
        json!(Megazord::outgoing_ids(&posted)[0])
    );
    // Defaults of an event posted with only its name and provider: the schema's level, no
    // reference, stamped when stored.
    let source = &envelopes[0]["payload"]["sourceEvent"];
    assert_eq!(source["level"], json!(10));
    assert_eq!(source["providerName"], ROBOT_PROVIDER);
    assert_eq!(source["referenceId"], Value::Null);
    assert_eq!(
        parse_time(&source["createdAt"]),
        t0() + Duration::seconds(30)
    );
}

#[tokio::test]
async fn backdated_incomings_filter_by_name_and_time_inclusive_oldest_first() {
    let mz = megazord().await;
    // Posted out of order; `createdAt` says when each happened.
    let at = |seconds: i64| t0() + Duration::seconds(seconds);
    let posts = [
        ("CHARGING_STARTED", at(0)),
        ("CHARGING_STARTED", at(-100)),
        ("DOCKED", at(-50)),
        ("CHARGING_STARTED", at(-30)),
        ("CHARGING_STARTED", at(-31) + Duration::milliseconds(999)),
    ];
    let mut ids = Vec::new();
    for (name, when) in posts {
        let posted = mz
            .post_backdated(42, json!({"eventName": name, "createdAt": rfc3339(when)}))
            .await;
        assert_eq!(parse_time(&posted["createdAt"]), when);
        ids.push(posted["id"].as_i64().unwrap());
    }
    // Another robot's event of the same name and time.
    mz.post_backdated(
        43,
        json!({"eventName": "CHARGING_STARTED", "createdAt": rfc3339(at(0))}),
    )
    .await;

    let listed_ids = |listed: &Value| -> Vec<i64> {
        listed
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect()
    };

    let all = mz
        .server
        .get(&robot(42, "incomings"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed_ids(&all), [ids[1], ids[2], ids[4], ids[3], ids[0]]);
    // Each entry has the SPEC §5.2 shape, with the defaults filled in.
    assert_eq!(
        all[0],
        json!({"id": ids[1], "robotId": 42, "eventName": "CHARGING_STARTED", "level": 10,
               "referenceId": null, "providerName": ROBOT_PROVIDER,
               "createdAt": rfc3339(at(-100))})
    );

    let by_name = mz
        .server
        .get(&robot(42, "incomings?event_name=CHARGING_STARTED"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed_ids(&by_name), [ids[1], ids[4], ids[3], ids[0]]);

    // `created_since` is inclusive: the event exactly at that second is in, the one 1 ms
    // before it is out.
    let since = at(-30).timestamp();
    let recent = mz
        .server
        .get(&robot(
            42,
            &format!("incomings?event_name=CHARGING_STARTED&created_since={since}"),
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed_ids(&recent), [ids[3], ids[0]]);

    let recent_any = mz
        .server
        .get(&robot(
            42,
            &format!("incomings?created_since={}", at(-50).timestamp()),
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed_ids(&recent_any), [ids[2], ids[4], ids[3], ids[0]]);

    let none = mz
        .server
        .get(&robot(
            42,
            &format!("incomings?event_name=DOCKED&created_since={since}"),
        ))
        .await
        .expect(StatusCode::OK);
    assert_eq!(none, json!([]));
    let unknown_robot = mz
        .server
        .get(&robot(99, "incomings"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(unknown_robot, json!([]));
    let other_robot = mz
        .server
        .get(&robot(43, "incomings?event_name=CHARGING_STARTED"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(other_robot.as_array().unwrap().len(), 1);
    assert_eq!(other_robot[0]["robotId"], json!(43));

    // Bad queries.
    mz.server
        .get(&robot(42, "incomings?created_since=yesterday"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("created_since"));
    mz.server
        .get(&robot(42, &format!("incomings?created_since={}", i64::MAX)))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("created_since"));
    mz.server
        .get("/internal/v1/events/robots/forty-two/incomings")
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("robotId"));
}

#[tokio::test]
async fn posted_incomings_get_the_insert_time_and_the_schema_level() {
    let mz = megazord().await;
    mz.clock.set(t0() + Duration::seconds(42));

    // Level left out: the schema's (most are 10, SHORT_INACTIVITY is 5).
    let toilet = mz
        .post_event(42, json!({"eventName": "TOILET_ACTIVITY"}))
        .await;
    assert_eq!(toilet["level"], json!(10));
    assert_eq!(
        parse_time(&toilet["createdAt"]),
        t0() + Duration::seconds(42)
    );
    let inactive = mz
        .post_event(42, json!({"eventName": "SHORT_INACTIVITY"}))
        .await;
    assert_eq!(inactive["level"], json!(5));
    // A level that is sent is kept.
    let urgent = mz
        .post_event(
            42,
            json!({"eventName": "NO_TOILET_ACTIVITY_ALARM", "level": 1,
                   "providerName": JOBS_PROVIDER, "referenceId": "r-1"}),
        )
        .await;
    assert_eq!(urgent["level"], json!(1));
    assert_eq!(urgent["providerName"], JOBS_PROVIDER);

    // The public route refuses a createdAt (the real Megazord stamps events itself); nothing
    // is stored.
    let detail = mz
        .server
        .post(
            &robot(42, "incomings"),
            &json!({"eventName": "TOILET_ACTIVITY", "providerName": ROBOT_PROVIDER,
                    "createdAt": rfc3339(t0() - Duration::hours(1))}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("createdAt"));
    assert!(detail.contains("/sim/robots/"), "{detail}");
    let listed = mz.sim.incomings(42, None, None);
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|e| parse_time(&e["createdAt"]) == t0() + Duration::seconds(42)),
        "{listed:?}"
    );

    // The Rust API and the simulator's route backdate for tests, with the same defaults.
    let backdated = mz
        .post_backdated(
            42,
            json!({"eventName": "SHORT_INACTIVITY", "createdAt": rfc3339(t0())}),
        )
        .await;
    assert_eq!(parse_time(&backdated["createdAt"]), t0());
    assert_eq!(backdated["level"], json!(5));
    assert_eq!(backdated["providerName"], ROBOT_PROVIDER);
    let posted = mz
        .sim
        .post_incoming(
            42,
            status_check_sim::NewIncoming::named("ACTIVITY").at(t0() - Duration::days(1)),
        )
        .await
        .expect("a known event");
    assert_eq!(
        parse_time(&posted.incoming["createdAt"]),
        t0() - Duration::days(1)
    );
    assert_eq!(posted.incoming["level"], json!(10));
}

#[tokio::test]
async fn unknown_events_and_providers_are_404_and_nothing_is_stored() {
    let mz = megazord().await;
    mz.subscribe(42, &["CHARGING_STARTED"]).await;
    let incomings = robot(42, "incomings");

    let detail = mz
        .server
        .post(
            &incomings,
            &json!({"eventName": "TELEPORTED", "providerName": ROBOT_PROVIDER}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("eventName"));
    assert!(detail.contains("TELEPORTED"), "{detail}");
    let detail = mz
        .server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "providerName": "status-check"}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("providerName"));
    assert!(detail.contains("status-check"), "{detail}");
    // The provider is required on the contract's route.
    mz.server
        .post(&incomings, &json!({"eventName": "CHARGING_STARTED"}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("providerName"));
    // The simulator's route and the Rust API apply the same rules.
    mz.server
        .post(
            "/sim/robots/42/incomings",
            &json!({"eventName": "TELEPORTED", "createdAt": rfc3339(t0())}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("eventName"));
    let refused = mz
        .sim
        .post_incoming(
            42,
            status_check_sim::NewIncoming::named("CHARGING_STARTED").provider("nobody"),
        )
        .await
        .expect_err("an unknown provider");
    assert!(
        matches!(
            refused,
            status_check_sim::Refusal::Unknown {
                field: "providerName",
                ..
            }
        ),
        "{refused}"
    );

    assert_eq!(
        mz.server.get(&incomings).await.expect(StatusCode::OK),
        json!([])
    );
    assert_eq!(mz.sink.take(), Vec::<Value>::new());
}

#[tokio::test]
async fn event_schemas_are_listed_and_can_be_taught_through_the_sim_route() {
    let mz = megazord().await;
    let listed = mz
        .server
        .get("/sim/event-schemas")
        .await
        .expect(StatusCode::OK);
    let listed = listed.as_array().unwrap();
    assert!(listed.contains(&json!({"eventName": "SHORT_INACTIVITY", "level": 5})));
    assert!(listed.contains(&json!({"eventName": "TOILET_ACTIVITY", "level": 10})));
    assert_eq!(listed.len(), mz.sim.known_events().len());

    mz.server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["FRIDGE_OPENED"]}),
        )
        .await
        .expect_problem(StatusCode::NOT_FOUND, Some("eventNames"));
    let taught = mz
        .server
        .post("/sim/event-schemas", &json!({"eventName": "FRIDGE_OPENED"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(taught, json!({"eventName": "FRIDGE_OPENED", "level": 10}));
    mz.server
        .post(
            "/sim/event-schemas",
            &json!({"eventName": "FRIDGE_LEFT_OPEN", "level": 3}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(
        mz.sim
            .known_events()
            .contains(&("FRIDGE_LEFT_OPEN".to_string(), 3))
    );
    mz.subscribe(42, &["FRIDGE_OPENED", "FRIDGE_LEFT_OPEN"])
        .await;
    let posted = mz
        .post_event(42, json!({"eventName": "FRIDGE_LEFT_OPEN"}))
        .await;
    assert_eq!(posted["level"], json!(3));
    assert_eq!(mz.sink.take().len(), 1);

    for bad in [json!({"eventName": ""}), json!({"eventName": "TWO WORDS"})] {
        mz.server
            .post("/sim/event-schemas", &bad)
            .await
            .expect_problem(StatusCode::BAD_REQUEST, Some("eventName"));
    }
    mz.server
        .post("/sim/event-schemas", &json!({"name": "X"}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
}

#[tokio::test]
async fn bad_incoming_bodies_are_400_naming_the_field() {
    let mz = megazord().await;
    let incomings = robot(42, "incomings");
    // A subscription shows that refused events are not fanned out either.
    mz.subscribe(42, &["CHARGING_STARTED"]).await;
    let robot_event = |extra: Value| {
        let mut body = json!({"providerName": ROBOT_PROVIDER});
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        body
    };

    for name in ["", "  "] {
        mz.server
            .post(&incomings, &robot_event(json!({"eventName": name})))
            .await
            .expect_problem(StatusCode::BAD_REQUEST, Some("eventName"));
    }
    for reference in [json!({"id": 1}), json!([1]), json!(true)] {
        mz.server
            .post(
                &incomings,
                &robot_event(json!({"eventName": "CHARGING_STARTED", "referenceId": reference})),
            )
            .await
            .expect_problem(StatusCode::BAD_REQUEST, Some("referenceId"));
    }
    let detail = mz
        .server
        .post(
            &incomings,
            &robot_event(json!({"eventName": "CHARGING_STARTED", "severity": 3})),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert!(detail.contains("severity"), "{detail}");
    mz.server
        .post(&incomings, &robot_event(json!({"level": 1})))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    mz.server
        .post(
            &incomings,
            &robot_event(json!({"eventName": "CHARGING_STARTED", "level": "high"})),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    mz.server
        .post(
            "/sim/robots/42/incomings",
            &json!({"eventName": "CHARGING_STARTED", "createdAt": "last tuesday"}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    mz.server
        .post(
            "/internal/v1/events/robots/x/incomings",
            &robot_event(json!({"eventName": "CHARGING_STARTED"})),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("robotId"));
    assert_eq!(
        mz.server.get(&incomings).await.expect(StatusCode::OK),
        json!([])
    );
    assert_eq!(mz.sink.take(), Vec::<Value>::new());

    // The allowed kinds of referenceId are accepted and kept as sent.
    for reference in [json!(12), json!("abc"), Value::Null] {
        let posted = mz
            .post_event(
                42,
                json!({"eventName": "CHARGING_STARTED", "referenceId": reference}),
            )
            .await;
        assert_eq!(posted["referenceId"], reference);
        let envelopes = mz.sink.take();
        assert_eq!(envelopes.len(), 1);
        assert_eq!(
            envelopes[0]["payload"]["sourceEvent"]["referenceId"],
            reference
        );
    }
}
