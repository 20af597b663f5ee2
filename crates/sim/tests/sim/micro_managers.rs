//! Micro-Managers (SPEC §5.1), and serving a simulator until its token is cancelled.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::MicroManagersSim;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::support::{Server, serve};

fn step_path(robot_id: &str, step_id: &str) -> String {
    format!("/internal/v5/scripts/robots/{robot_id}/scripts/steps/{step_id}")
}

/// `(primaryCommand, nextStepId)` of every choice, after checking each choice's shape.
#[track_caller]
fn choices(document: &Value) -> BTreeMap<String, i64> {
    assert_eq!(document["next"]["type"], "multipleChoice", "{document}");
    let choices = document["next"]["multipleChoice"]
        .as_array()
        .expect("next.multipleChoice is an array");
    let mut by_command = BTreeMap::new();
    for choice in choices {
        assert_eq!(choice["intentionType"], "command", "{choice}");
        let command = choice["primaryCommand"].as_str().expect("primaryCommand");
        assert_eq!(choice["commands"], json!([command]), "{choice}");
        let next = choice["nextStepId"]
            .as_i64()
            .expect("nextStepId is a number");
        assert!(by_command.insert(command.to_string(), next).is_none());
    }
    by_command
}

fn commands(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(c, n)| (c.to_string(), *n)).collect()
}

#[tokio::test]
async fn seeded_demo_steps_answer_the_contract_document() {
    let sim = MicroManagersSim::new();
    let seeded = sim.seed_demo(["robot-is-charging", "robot-is-docked"]);
    assert_eq!(
        seeded.iter().map(|s| s.step_id).collect::<Vec<_>>(),
        [Some(101), Some(102)]
    );
    let server = serve(sim.router()).await;

    let doc = server
        .get(&step_path("42", "101"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        doc["step"],
        json!({"id": 101, "scriptVersionId": 789, "stepType": "statusCheck"})
    );
    assert_eq!(
        doc["node"],
        json!({"type": "statusCheck", "statusCheckName": "robot-is-charging",
               "pastInterval": 0, "futureInterval": 0})
    );
    assert_eq!(
        choices(&doc),
        commands(&[("fail", 1012), ("pass", 1011), ("unknown", 1013)])
    );
    assert_eq!(
        doc.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["next", "node", "step"]
    );

    // The second template is step 102, and every robot runs the same script.
    let other = server
        .get(&step_path("7", "102"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(other["step"]["id"], 102);
    assert_eq!(other["node"]["statusCheckName"], "robot-is-docked");
    assert_eq!(
        choices(&other),
        commands(&[("fail", 1022), ("pass", 1021), ("unknown", 1023)])
    );
    assert_eq!(
        server
            .get(&step_path("7", "101"))
            .await
            .expect(StatusCode::OK),
        doc
    );

    // The library view agrees with the wire.
    assert_eq!(sim.step(101), Some(doc));
}

#[tokio::test]
async fn unknown_step_is_a_404_problem() {
    let sim = MicroManagersSim::new();
    sim.seed_demo(["robot-is-charging"]);
    let server = serve(sim.router()).await;

    let detail = server
        .get(&step_path("42", "102"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
    assert!(detail.contains("102"), "{detail}");
    // An empty simulator knows no step at all.
    let empty = serve(MicroManagersSim::new().router()).await;
    empty
        .get(&step_path("42", "101"))
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);
}

#[tokio::test]
async fn posted_step_without_id_gets_a_fresh_one_and_is_served_by_the_contract_route() {
    let sim = MicroManagersSim::new();
    sim.seed_demo(["robot-is-charging"]);
    let server = serve(sim.router()).await;

    // An explicit id in the range fresh ids come from must not be handed out again.
    let explicit = server
        .post(
            "/sim/steps",
            &json!({"stepId": 1000, "statusCheckName": "battery-ok", "next": {"pass": 1}}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(explicit["step"]["id"], 1000);

    let body = json!({
        "statusCheckName": "robot-is-charging",
        "pastInterval": 3600,
        "futureInterval": 600,
        "next": {"pass": 124, "fail": 125},
    });
    let created = server
        .post("/sim/steps", &body)
        .await
        .expect(StatusCode::CREATED);
    let id = created["step"]["id"].as_i64().expect("step.id is a number");
    assert!(![101, 1000].contains(&id), "fresh id {id} collides");
    assert_eq!(created["step"]["scriptVersionId"], 789);
    assert_eq!(created["step"]["stepType"], "statusCheck");
    assert_eq!(
        created["node"],
        json!({"type": "statusCheck", "statusCheckName": "robot-is-charging",
               "pastInterval": 3600, "futureInterval": 600})
    );
    assert_eq!(choices(&created), commands(&[("fail", 125), ("pass", 124)]));

    let served = server
        .get(&step_path("42", &id.to_string()))
        .await
        .expect(StatusCode::OK);
    assert_eq!(served, created);

    // A second one gets yet another id; the first is untouched.
    let second = server
        .post("/sim/steps", &body)
        .await
        .expect(StatusCode::CREATED);
    let second_id = second["step"]["id"].as_i64().unwrap();
    assert!(![101, 1000, id].contains(&second_id), "{second_id}");
    assert_eq!(
        server
            .get(&step_path("42", &id.to_string()))
            .await
            .expect(StatusCode::OK),
        created
    );

    // Posting an existing id replaces that step.
    let replaced = server
        .post(
            "/sim/steps",
            &json!({"stepId": 101, "statusCheckName": "robot-is-docked", "pastInterval": -1,
                    "next": {"unknown": 9}}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(replaced["node"]["pastInterval"], -1);
    let served = server
        .get(&step_path("1", "101"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(served["node"]["statusCheckName"], "robot-is-docked");
    assert_eq!(choices(&served), commands(&[("unknown", 9)]));

    // `GET /sim/steps` lists each step once, in its current version.
    let listed = server.get("/sim/steps").await.expect(StatusCode::OK);
    let listed = listed.as_array().expect("an array");
    let ids: BTreeSet<i64> = listed
        .iter()
        .map(|d| d["step"]["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([101, 1000, id, second_id]));
    assert_eq!(listed.len(), 4);
    assert!(listed.contains(&served));
}

#[tokio::test]
async fn bad_step_bodies_and_paths_are_400_naming_the_field() {
    let sim = MicroManagersSim::new();
    sim.seed_demo(["robot-is-charging"]);
    let server = serve(sim.router()).await;
    let listed_before = server.get("/sim/steps").await.expect(StatusCode::OK);

    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "", "next": {"pass": 2}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("statusCheckName"));
    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "   ", "next": {"pass": 2}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("statusCheckName"));
    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "robot-is-charging", "next": {}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("next"));
    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "robot-is-charging", "pastInterval": -2,
                    "next": {"pass": 2}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("pastInterval"));
    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "robot-is-charging", "futureInterval": -1,
                    "next": {"pass": 2}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("futureInterval"));
    for step_id in [0, -5, i64::MAX] {
        server
            .post(
                "/sim/steps",
                &json!({"stepId": step_id, "statusCheckName": "robot-is-charging",
                        "next": {"pass": 2}}),
            )
            .await
            .expect_problem(StatusCode::BAD_REQUEST, Some("stepId"));
    }

    let detail = server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "robot-is-charging", "next": {"pass": 2},
                    "colour": "red"}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert!(detail.contains("colour"), "{detail}");
    let detail = server
        .post("/sim/steps", &json!({"next": {"pass": 2}}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert!(detail.contains("statusCheckName"), "{detail}");
    server
        .post(
            "/sim/steps",
            &json!({"statusCheckName": "robot-is-charging", "next": {"pass": "two"}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    let not_json = Server::answer(
        server
            .client
            .post(server.url("/sim/steps"))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body("{not json"),
    )
    .await;
    not_json.expect_problem(StatusCode::BAD_REQUEST, Some("body"));

    server
        .get(&step_path("42", "abc"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("path"));
    server
        .get(&step_path("robot-x", "101"))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("path"));

    // None of the refused bodies was stored.
    assert_eq!(
        server.get("/sim/steps").await.expect(StatusCode::OK),
        listed_before
    );
}

#[tokio::test]
async fn server_stops_when_its_token_is_cancelled() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let sim = MicroManagersSim::new();
    sim.seed_demo(["robot-is-charging"]);
    let addr = status_check_sim::spawn(listener, sim.router(), shutdown.clone()).unwrap();
    assert_ne!(addr.port(), 0, "spawn reports the bound port");

    // A fresh client per request, so no pooled connection outlives the shutdown.
    let url = format!("http://{addr}{}", step_path("42", "101"));
    let client = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let answer = client().get(&url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    shutdown.cancel();
    // Graceful shutdown closes the listener promptly; poll (bounded) instead of sleeping.
    let mut refused = false;
    for _ in 0..200 {
        if client().get(&url).send().await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(
        refused,
        "the simulator kept serving after its token was cancelled"
    );
}
