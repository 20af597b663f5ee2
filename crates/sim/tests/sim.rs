//! The simulators as real HTTP servers: each test binds `127.0.0.1:0`, serves a simulator's
//! router with `status_check_sim::spawn` and talks to it with reqwest. Time is a manual clock,
//! the status queue a recording (or failing) sink, the robots' queues a canned mailbox.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::{MegazordSim, MicroManagersSim, Now, RobotMailbox, StatusSink};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

// ---------------------------------------------------------------------------------------------
// Test doubles and helpers
// ---------------------------------------------------------------------------------------------

/// A status queue that keeps every body it is given.
#[derive(Default)]
struct RecordingSink {
    bodies: Mutex<Vec<String>>,
}

impl RecordingSink {
    /// Every envelope published so far, parsed.
    fn envelopes(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|body| serde_json::from_str(body).expect("envelope is JSON"))
            .collect()
    }

    /// Removes and returns every envelope published so far.
    fn take(&self) -> Vec<Value> {
        let envelopes = self.envelopes();
        self.bodies.lock().unwrap().clear();
        envelopes
    }
}

#[async_trait]
impl StatusSink for RecordingSink {
    async fn publish(&self, body: String) -> Result<(), String> {
        self.bodies.lock().unwrap().push(body);
        Ok(())
    }
}

/// A status queue that refuses everything, counting the attempts.
#[derive(Default)]
struct FailingSink {
    attempts: Mutex<usize>,
}

const SINK_FAILURE: &str = "queue is on fire";

#[async_trait]
impl StatusSink for FailingSink {
    async fn publish(&self, _body: String) -> Result<(), String> {
        *self.attempts.lock().unwrap() += 1;
        Err(SINK_FAILURE.to_string())
    }
}

/// Robots' queues with canned contents; robot 666's queue cannot be read.
struct CannedMailbox {
    by_robot: BTreeMap<i64, Vec<Value>>,
}

#[async_trait]
impl RobotMailbox for CannedMailbox {
    async fn messages(&self, robot_id: i64) -> Result<Vec<Value>, String> {
        if robot_id == 666 {
            return Err("mailbox unreachable".to_string());
        }
        Ok(self.by_robot.get(&robot_id).cloned().unwrap_or_default())
    }
}

/// A clock that moves only when the test says so.
#[derive(Clone)]
struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    fn at(t: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(t)))
    }

    fn now_fn(&self) -> Now {
        let t = Arc::clone(&self.0);
        Arc::new(move || *t.lock().unwrap())
    }

    fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

/// 2030-03-17T17:46:40Z, on a whole second.
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).unwrap()
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_time(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp string: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// A simulator served over HTTP; stops serving when dropped.
struct Server {
    base: String,
    client: reqwest::Client,
    _shutdown: DropGuard,
}

async fn serve(router: axum::Router) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shutdown = CancellationToken::new();
    let addr = status_check_sim::spawn(listener, router, shutdown.clone()).unwrap();
    Server {
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _shutdown: shutdown.drop_guard(),
    }
}

/// An answer: status, content type and body (JSON, or null when empty).
#[derive(Debug)]
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn answer(request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request reaches the simulator");
        let status = response.status();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let bytes = response.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn get(&self, path: &str) -> Answer {
        Self::answer(self.client.get(self.url(path))).await
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        Self::answer(self.client.post(self.url(path)).json(body)).await
    }

    async fn delete(&self, path: &str) -> Answer {
        Self::answer(self.client.delete(self.url(path))).await
    }
}

impl Answer {
    /// Asserts the answer is `status` with a JSON body, and returns the body.
    #[track_caller]
    fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        self.body
    }

    /// Asserts the answer is an `application/problem+json` of `status` naming `field`, and
    /// returns its detail.
    #[track_caller]
    fn expect_problem(self, status: StatusCode, field: Option<&str>) -> String {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        assert_eq!(
            self.content_type, "application/problem+json",
            "{:?}",
            self.body
        );
        assert_eq!(
            self.body["status"],
            json!(status.as_u16()),
            "{:?}",
            self.body
        );
        assert_eq!(self.body["type"], "about:blank");
        assert_eq!(
            self.body["title"],
            json!(status.canonical_reason().unwrap()),
            "{:?}",
            self.body
        );
        assert_eq!(
            self.body.get("field").and_then(Value::as_str),
            field,
            "problem names the wrong field: {:?}",
            self.body
        );
        let detail = self.body["detail"].as_str().expect("problem has a detail");
        assert!(!detail.is_empty());
        detail.to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Micro-Managers (SPEC §5.1)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Megazord Events (SPEC §5.2, §5.3)
// ---------------------------------------------------------------------------------------------

struct Megazord {
    server: Server,
    sim: MegazordSim,
    sink: Arc<RecordingSink>,
    clock: ManualClock,
}

async fn megazord() -> Megazord {
    let sink = Arc::new(RecordingSink::default());
    let clock = ManualClock::at(t0());
    let sim = MegazordSim::new(sink.clone(), clock.now_fn());
    let server = serve(sim.router()).await;
    Megazord {
        server,
        sim,
        sink,
        clock,
    }
}

fn robot(robot_id: i64, rest: &str) -> String {
    format!("/internal/v1/events/robots/{robot_id}/{rest}")
}

impl Megazord {
    /// Subscribes the robot; returns the subscription's id after checking the 201.
    async fn subscribe(&self, robot_id: i64, names: &[&str], until: DateTime<Utc>) -> i64 {
        let created = self
            .server
            .post(
                &robot(robot_id, "subscriptions"),
                &json!({"eventNames": names, "until": rfc3339(until)}),
            )
            .await
            .expect(StatusCode::CREATED);
        created["id"].as_i64().expect("subscription id is a number")
    }

    /// Posts an incoming event; returns the 201 body.
    async fn post_event(&self, robot_id: i64, body: Value) -> Value {
        self.server
            .post(&robot(robot_id, "incomings"), &body)
            .await
            .expect(StatusCode::CREATED)
    }

    fn outgoing_ids(posted: &Value) -> Vec<i64> {
        posted["outgoingIds"]
            .as_array()
            .expect("outgoingIds is an array")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }
}

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
    assert!(
        created["subscriptionType"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{created}"
    );
    assert_eq!(parse_time(&created["createdAt"]), t0());
    assert_eq!(parse_time(&created["updatedAt"]), t0());
    let details = created["subscriptionDetails"].as_array().expect("details");
    assert_eq!(details.len(), 2);
    assert_eq!(details[0]["eventName"], "CHARGING_STARTED");
    assert_eq!(details[1]["eventName"], "CHARGING_STOPPED");
    let started_type = details[0]["eventTypeId"].as_i64().expect("eventTypeId");
    let stopped_type = details[1]["eventTypeId"].as_i64().expect("eventTypeId");
    assert_ne!(started_type, stopped_type);

    // Another subscription (another robot, later) gets a new id; a known event name keeps
    // its type id.
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
async fn incoming_event_fans_out_one_envelope_per_matching_subscription() {
    let mz = megazord().await;
    let until = t0() + Duration::hours(1);
    let only_started = mz.subscribe(42, &["CHARGING_STARTED"], until).await;
    let started_and_more = mz
        .subscribe(42, &["DOCKED", "CHARGING_STARTED"], until)
        .await;
    let other_name = mz.subscribe(42, &["DOCKED"], until).await;
    let other_robot = mz.subscribe(43, &["CHARGING_STARTED"], until).await;
    assert_eq!(
        BTreeSet::from([only_started, started_and_more, other_name, other_robot]).len(),
        4
    );

    mz.clock.set(t0() + Duration::seconds(30));
    let happened = t0() + Duration::seconds(10);
    let posted = mz
        .post_event(
            42,
            json!({"eventName": "CHARGING_STARTED", "level": 2, "referenceId": "ref-1",
                   "providerName": "charger", "createdAt": rfc3339(happened)}),
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
    // Defaults of an event posted with only its name.
    let source = &envelopes[0]["payload"]["sourceEvent"];
    assert_eq!(source["level"], json!(1));
    assert_eq!(source["referenceId"], Value::Null);
    assert_eq!(
        parse_time(&source["createdAt"]),
        t0() + Duration::seconds(30)
    );
}

#[tokio::test]
async fn deleted_subscription_gets_no_fan_out_and_cannot_be_deleted_twice() {
    let mz = megazord().await;
    let id = mz
        .subscribe(42, &["CHARGING_STARTED"], t0() + Duration::hours(1))
        .await;
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

    mz.server
        .delete(&path)
        .await
        .expect_problem(StatusCode::NOT_FOUND, None);

    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed[0]["id"], json!(id));
    assert_eq!(listed[0]["isActive"], json!(false));
    assert_eq!(
        parse_time(&listed[0]["updatedAt"]),
        t0() + Duration::minutes(1)
    );
    assert_eq!(mz.sim.active_subscription_count(), 0);
}

#[tokio::test]
async fn subscription_past_its_until_is_inactive_and_gets_no_fan_out() {
    let mz = megazord().await;
    let until = t0() + Duration::minutes(10);
    let id = mz.subscribe(42, &["CHARGING_STARTED"], until).await;

    mz.clock.set(until - Duration::seconds(1));
    let posted = mz
        .post_event(42, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&posted).len(), 1);
    assert_eq!(mz.sink.take().len(), 1);
    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed[0]["isActive"], json!(true));

    mz.clock.set(until + Duration::seconds(1));
    let posted = mz
        .post_event(42, json!({"eventName": "CHARGING_STARTED"}))
        .await;
    assert_eq!(Megazord::outgoing_ids(&posted), Vec::<i64>::new());
    assert_eq!(mz.sink.take(), Vec::<Value>::new());
    let listed = mz
        .server
        .get(&robot(42, "subscriptions"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(listed[0]["id"], json!(id));
    assert_eq!(listed[0]["isActive"], json!(false));
    assert_eq!(mz.sim.active_subscription_count(), 0);

    // A subscription created already expired is inactive from the start.
    let created = mz
        .server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["DOCKED"], "until": rfc3339(t0())}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(created["isActive"], json!(false));
    mz.post_event(42, json!({"eventName": "DOCKED"})).await;
    assert_eq!(mz.sink.take(), Vec::<Value>::new());
}

#[tokio::test]
async fn incomings_filter_by_name_and_time_inclusive_oldest_first() {
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
            .post_event(42, json!({"eventName": name, "createdAt": rfc3339(when)}))
            .await;
        assert_eq!(parse_time(&posted["createdAt"]), when);
        ids.push(posted["id"].as_i64().unwrap());
    }
    // Another robot's event of the same name and time.
    mz.post_event(
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
        json!({"id": ids[1], "robotId": 42, "eventName": "CHARGING_STARTED", "level": 1,
               "referenceId": null, "providerName": "sim", "createdAt": rfc3339(at(-100))})
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
async fn failing_status_queue_is_a_502_but_the_event_is_stored() {
    let sink = Arc::new(FailingSink::default());
    let clock = ManualClock::at(t0());
    let sim = MegazordSim::new(sink.clone(), clock.now_fn());
    let server = serve(sim.router()).await;

    server
        .post(
            &robot(42, "subscriptions"),
            &json!({"eventNames": ["CHARGING_STARTED"],
                    "until": rfc3339(t0() + Duration::hours(1))}),
        )
        .await
        .expect(StatusCode::CREATED);

    // Nothing to fan out: the queue is not asked, so the post succeeds.
    server
        .post(&robot(42, "incomings"), &json!({"eventName": "DOCKED"}))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(*sink.attempts.lock().unwrap(), 0);

    let detail = server
        .post(
            &robot(42, "incomings"),
            &json!({"eventName": "CHARGING_STARTED", "referenceId": 7}),
        )
        .await
        .expect_problem(StatusCode::BAD_GATEWAY, None);
    assert!(detail.contains(SINK_FAILURE), "{detail}");
    assert_eq!(*sink.attempts.lock().unwrap(), 1);

    let stored = server
        .get(&robot(42, "incomings?event_name=CHARGING_STARTED"))
        .await
        .expect(StatusCode::OK);
    let stored = stored.as_array().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["referenceId"], json!(7));
    assert_eq!(
        sim.incomings(42, None, None).len(),
        2,
        "both events are stored"
    );
}

#[tokio::test]
async fn bad_megazord_bodies_are_400_naming_the_field() {
    let mz = megazord().await;
    let until = rfc3339(t0() + Duration::hours(1));
    let subscriptions = robot(42, "subscriptions");
    let incomings = robot(42, "incomings");

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
    let detail = mz
        .server
        .post(&subscriptions, &json!({"eventNames": ["CHARGING_STARTED"]}))
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

    // Incoming events; a subscription shows that refused events are not fanned out either.
    mz.subscribe(42, &["CHARGING_STARTED"], t0() + Duration::hours(1))
        .await;
    mz.server
        .post(&incomings, &json!({"eventName": ""}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventName"));
    mz.server
        .post(&incomings, &json!({"eventName": "  "}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("eventName"));
    mz.server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "referenceId": {"id": 1}}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("referenceId"));
    mz.server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "referenceId": [1]}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("referenceId"));
    mz.server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "referenceId": true}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("referenceId"));
    let detail = mz
        .server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "severity": 3}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    assert!(detail.contains("severity"), "{detail}");
    mz.server
        .post(
            &incomings,
            &json!({"eventName": "CHARGING_STARTED", "createdAt": "last tuesday"}),
        )
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    mz.server
        .post(&incomings, &json!({"level": 1}))
        .await
        .expect_problem(StatusCode::BAD_REQUEST, Some("body"));
    mz.server
        .post(
            "/internal/v1/events/robots/x/incomings",
            &json!({"eventName": "CHARGING_STARTED"}),
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
