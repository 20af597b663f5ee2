//! Test doubles and helpers shared by the simulator tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::megazord::{JOBS_PROVIDER, REAL_EVENT_SCHEMAS, ROBOT_PROVIDER};
use status_check_sim::{MegazordSim, Now, RobotMailbox, StatusSink};
use tokio::net::TcpListener;
use tokio_util::sync::{CancellationToken, DropGuard};

/// Status queues that keep every body they are given, with the queue suffix it was sent to.
#[derive(Default)]
pub struct RecordingSink {
    sent: Mutex<Vec<(Option<String>, String)>>,
}

impl RecordingSink {
    /// Removes and returns every envelope sent so far, parsed, with its queue suffix.
    pub fn take_routed(&self) -> Vec<(Option<String>, Value)> {
        std::mem::take(&mut *self.sent.lock().unwrap())
            .into_iter()
            .map(|(queue, body)| {
                (
                    queue,
                    serde_json::from_str(&body).expect("envelope is JSON"),
                )
            })
            .collect()
    }

    /// Removes and returns every envelope sent so far to the plain status queue; fails if one
    /// went to a suffixed queue.
    #[track_caller]
    pub fn take(&self) -> Vec<Value> {
        self.take_routed()
            .into_iter()
            .map(|(queue, envelope)| {
                assert_eq!(queue, None, "sent to a suffixed queue: {envelope}");
                envelope
            })
            .collect()
    }
}

#[async_trait]
impl StatusSink for RecordingSink {
    async fn send(&self, queue: Option<&str>, body: String) -> Result<(), String> {
        self.sent
            .lock()
            .unwrap()
            .push((queue.map(str::to_string), body));
        Ok(())
    }
}

/// A status queue that refuses everything, counting the attempts.
#[derive(Default)]
pub struct FailingSink {
    pub attempts: Mutex<usize>,
}

pub const SINK_FAILURE: &str = "queue is on fire";

#[async_trait]
impl StatusSink for FailingSink {
    async fn send(&self, _queue: Option<&str>, _body: String) -> Result<(), String> {
        *self.attempts.lock().unwrap() += 1;
        Err(SINK_FAILURE.to_string())
    }
}

/// Robots' queues with canned contents; robot 666's queue cannot be read.
pub struct CannedMailbox {
    pub by_robot: BTreeMap<i64, Vec<Value>>,
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
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub fn at(t: DateTime<Utc>) -> Self {
        ManualClock(Arc::new(Mutex::new(t)))
    }

    pub fn now_fn(&self) -> Now {
        let t = Arc::clone(&self.0);
        Arc::new(move || *t.lock().unwrap())
    }

    pub fn set(&self, t: DateTime<Utc>) {
        *self.0.lock().unwrap() = t;
    }
}

/// 2030-03-17T17:46:40Z, on a whole second.
pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_900_000_000, 0).unwrap()
}

pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn parse_time(v: &Value) -> DateTime<Utc> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp string: {v}"));
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

/// A simulator served over HTTP; stops serving when dropped.
pub struct Server {
    base: String,
    pub client: reqwest::Client,
    _shutdown: DropGuard,
}

pub async fn serve(router: axum::Router) -> Server {
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
pub struct Answer {
    pub status: StatusCode,
    content_type: String,
    pub body: Value,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn answer(request: reqwest::RequestBuilder) -> Answer {
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

    pub async fn get(&self, path: &str) -> Answer {
        Self::answer(self.client.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        Self::answer(self.client.post(self.url(path)).json(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        Self::answer(self.client.delete(self.url(path))).await
    }
}

impl Answer {
    /// Asserts the answer is `status` with a JSON body, and returns the body.
    #[track_caller]
    pub fn expect(self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "unexpected answer: {:?}", self.body);
        self.body
    }

    /// Asserts the answer is an `application/problem+json` of `status` naming `field`, and
    /// returns its detail.
    #[track_caller]
    pub fn expect_problem(self, status: StatusCode, field: Option<&str>) -> String {
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

/// The event names the Megazord tests use besides the real ones, at level 10, and their
/// provider of charging events.
pub const TEST_EVENTS: &[&str] = &[
    "BUMPER_HIT",
    "CHARGING_STARTED",
    "CHARGING_STOPPED",
    "DOCKED",
];
pub const CHARGER: &str = "charger";

/// A Megazord simulator served over HTTP, seeded with the real schemas, [`TEST_EVENTS`] and
/// the providers robot, charger and the job service.
pub struct Megazord {
    pub server: Server,
    pub sim: MegazordSim,
    pub sink: Arc<RecordingSink>,
    pub clock: ManualClock,
}

/// `sim` seeded as [`megazord`] seeds it.
pub fn seeded(sim: MegazordSim) -> MegazordSim {
    sim.with_event_schemas(REAL_EVENT_SCHEMAS.iter().copied())
        .with_event_schemas(TEST_EVENTS.iter().map(|name| (*name, 10)))
        .with_providers([ROBOT_PROVIDER, CHARGER, JOBS_PROVIDER])
}

pub async fn megazord() -> Megazord {
    let sink = Arc::new(RecordingSink::default());
    let clock = ManualClock::at(t0());
    let sim = seeded(MegazordSim::new(sink.clone(), clock.now_fn()));
    let server = serve(sim.router()).await;
    Megazord {
        server,
        sim,
        sink,
        clock,
    }
}

pub fn robot(robot_id: i64, rest: &str) -> String {
    format!("/internal/v1/events/robots/{robot_id}/{rest}")
}

impl Megazord {
    /// Subscribes the robot; returns the subscription's id after checking the 201.
    pub async fn subscribe(&self, robot_id: i64, names: &[&str]) -> i64 {
        let created = self
            .server
            .post(
                &robot(robot_id, "subscriptions"),
                &json!({"eventNames": names, "until": rfc3339(t0() + chrono::Duration::hours(1))}),
            )
            .await
            .expect(StatusCode::CREATED);
        created["id"].as_i64().expect("subscription id is a number")
    }

    /// Posts an incoming event through the contract's route as the robot's own provider
    /// (unless the body names one); returns the 201 body.
    pub async fn post_event(&self, robot_id: i64, mut body: Value) -> Value {
        if body.get("providerName").is_none() {
            body["providerName"] = json!(ROBOT_PROVIDER);
        }
        self.server
            .post(&robot(robot_id, "incomings"), &body)
            .await
            .expect(StatusCode::CREATED)
    }

    /// Posts an event with a `createdAt` of the test's choosing (the simulator's own route).
    pub async fn post_backdated(&self, robot_id: i64, body: Value) -> Value {
        self.server
            .post(&format!("/sim/robots/{robot_id}/incomings"), &body)
            .await
            .expect(StatusCode::CREATED)
    }

    pub fn outgoing_ids(posted: &Value) -> Vec<i64> {
        posted["outgoingIds"]
            .as_array()
            .expect("outgoingIds is an array")
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }
}
