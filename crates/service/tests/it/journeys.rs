//! End-to-end robot journeys, one per shipped template: the service built by
//! `status_check::dev::Stack` against the Micro-Managers and Megazord simulators, talked to
//! over real HTTP, with the status queue and the robot's queue on the SQS emulator. The test
//! seeds past events at the simulated Megazord, starts a check as the robot, posts the future
//! events at Megazord (which fans them out onto the status queue), drives the consumer,
//! scheduler and relay with `tick_once` and a manual clock, and reads the robot's
//! notification off its SQS queue.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::clock::{Clock, ManualClock};
use status_check::dev::{Stack, StackOptions};
use status_check::workers::consumer::Outcome;
use status_check_sim::{DemoStep, MegazordSim};
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, Queues, sqs_queues};
use crate::support::{self, TestDb};

const ROBOT: i64 = 42;
/// How long any one wait of a journey may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// When every journey's check is created (the manual clock starts here).
fn anchor() -> DateTime<Utc> {
    "2026-11-20T08:00:00Z".parse().unwrap()
}

fn minutes(n: i64) -> TimeDelta {
    TimeDelta::minutes(n)
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is not a timestamp"))
        .parse()
        .unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// The service and the simulators, running; the workers belong to the test.
struct Journey {
    service: String,
    megazord: String,
    megazord_sim: MegazordSim,
    micro_managers: String,
    username: String,
    clock: Arc<ManualClock>,
    workers: Workers,
    queues: Queues,
    robot_queue: String,
    demo_steps: Vec<DemoStep>,
    http: reqwest::Client,
    shutdown: CancellationToken,
    sims: CancellationToken,
    _db: TestDb,
}

impl Drop for Journey {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.sims.cancel();
    }
}

/// Builds the stack on `backend`; `None` when the SQS emulator is not configured.
async fn journey(backend: Backend) -> Option<Journey> {
    let queues = sqs_queues().await?;
    let robot_queue = queues.robot_queue(ROBOT).await;
    let db = backend
        .database()
        .await
        .expect("a test database (MySQL tests check `mysql_skipped` first)");
    let (store, neighbours) = (db.store.clone(), db.neighbours.clone());
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let templates = templates
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", templates.display()));
    let env: BTreeMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("TEMPLATES_DIR", templates.to_str().unwrap()),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.as_str()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.as_str()),
        ("CONSUMER_WAIT_SECS", "1"),
        ("CONSUMER_VISIBILITY_SECS", "10"),
        ("UPSTREAM_TIMEOUT_MS", "2000"),
        ("UPSTREAM_RETRIES", "1"),
        ("SHUTDOWN_TIMEOUT_SECS", "5"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let clock = Arc::new(ManualClock::new(anchor()));
    let stack = Stack::build(StackOptions {
        env,
        store: Some(store),
        queue: queues.queue.clone(),
        clock: clock.clone(),
        mailbox: None,
        sim_ports: (0, 0),
        megazord_rows: Some(Arc::new(neighbours.clone())),
    })
    .await
    .expect("the dev stack builds");
    // Micro-Managers' demo script, as it would be in the shared schema.
    for step in &stack.demo_steps {
        let mut steps: Vec<i64> = step.next.values().copied().collect();
        steps.extend(step.step_id);
        neighbours
            .script_steps(status_check_sim::micro_managers::SCRIPT_VERSION_ID, &steps)
            .await;
    }
    neighbours.robot(ROBOT).await;
    let Stack {
        mut app,
        config,
        micro_managers_addr,
        megazord_addr,
        megazord: megazord_sim,
        demo_steps,
        sims,
        ..
    } = stack;
    let workers = app.take_workers();
    assert!(
        workers.consumer.is_some() && workers.scheduler.is_some() && workers.relay.is_some(),
        "the stack runs every role"
    );
    let service = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    Some(Journey {
        service,
        megazord: format!("http://{megazord_addr}"),
        megazord_sim,
        micro_managers: format!("http://{micro_managers_addr}"),
        username: config.robot_consumer_username.clone(),
        clock,
        workers,
        queues,
        robot_queue,
        demo_steps,
        http: reqwest::Client::new(),
        shutdown,
        sims,
        _db: db,
    })
}

impl Journey {
    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The demo step that runs `template`.
    fn step(&self, template: &str) -> &DemoStep {
        self.demo_steps
            .iter()
            .find(|s| s.status_check_name == template)
            .unwrap_or_else(|| panic!("no demo step for {template}: {:?}", self.demo_steps))
    }

    /// The next step of `command` (`pass`, `fail`, `unknown`) of the step running `template`.
    fn next(&self, template: &str, command: &str) -> i64 {
        self.step(template).next[command]
    }

    /// The robot's Kong headers, with the consumer name the service is configured with.
    fn robot(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request
            .header("x-consumer-id", "consumer-1")
            .header("x-consumer-username", &self.username)
            .header("x-authenticated-userid", ROBOT.to_string())
            .header("x-authenticated-scope", "robot")
    }

    async fn send(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, body)
    }

    /// Posts an incoming event of the robot at the simulated Megazord (which fans it out to
    /// the matching subscriptions); returns the stored event with its `outgoingIds`. The
    /// simulator's own route, since the contract's stamps events with the time they arrive.
    async fn post_event(&self, name: &str, at: DateTime<Utc>) -> Value {
        let (status, body) = Self::send(
            self.http
                .post(format!("{}/sim/robots/{ROBOT}/incomings", self.megazord))
                .json(&json!({"eventName": name, "createdAt": rfc3339(at)})),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "posting {name}: {body}");
        body
    }

    /// Posts an event happening now (on the manual clock); asserts how many subscriptions it
    /// fanned out to.
    async fn event_now(&self, name: &str, fanned_out: usize) -> Value {
        let body = self.post_event(name, self.now()).await;
        assert_eq!(
            body["outgoingIds"].as_array().map(Vec::len),
            Some(fanned_out),
            "{name} fanned out: {body}"
        );
        body
    }

    /// Starts a check at the demo step of `template`, planned at the anchor.
    async fn create(&self, template: &str) -> (StatusCode, Value) {
        let step = self.step(template).step_id.unwrap();
        let body = json!({"stepId": step, "scheduledId": 456, "scriptVersionId": 789,
                          "plannedAt": rfc3339(anchor())});
        Self::send(
            self.robot(
                self.http
                    .post(format!("{}/v1/status-check/check", self.service)),
            )
            .json(&body),
        )
        .await
    }

    /// Starts a check that has to wait for the future: 201, phase FUTURE, a subscription
    /// that the simulated Megazord lists as active for the template's future events until
    /// `pollingUntil`.
    async fn create_waiting(
        &self,
        template: &str,
        future_events: &[&str],
        window: TimeDelta,
    ) -> Value {
        let (status, check) = self.create(template).await;
        assert_eq!(status, StatusCode::CREATED, "{check}");
        assert_eq!(check["phase"], "FUTURE", "{check}");
        assert_eq!(check["statusCheck"], template);
        assert_eq!(check["robotId"], ROBOT);
        assert_eq!(check["stepId"], self.step(template).step_id.unwrap());
        assert_eq!(check["nextStepId"], Value::Null, "{check}");
        assert_eq!(time(&check["pollingUntil"]), anchor() + window, "{check}");
        let subscription = self.subscription(&check).await;
        assert_eq!(subscription["isActive"], true, "{subscription}");
        let mut names: Vec<&str> = subscription["subscriptionDetails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["eventName"].as_str().unwrap())
            .collect();
        names.sort_unstable();
        let mut expected = future_events.to_vec();
        expected.sort_unstable();
        assert_eq!(names, expected, "subscribed events");
        // Megazord forgets `until` (the service deletes the subscription itself), but the
        // service still sends the end of the future window, as the Node service does.
        let id = subscription["id"].as_i64().unwrap();
        assert_eq!(
            self.megazord_sim.subscription_until(id),
            Some(time(&check["pollingUntil"])),
            "until sent for subscription {id}"
        );
        check
    }

    /// The robot's subscriptions at the simulated Megazord.
    async fn subscriptions(&self) -> Vec<Value> {
        let (status, body) = Self::send(self.http.get(format!(
            "{}/internal/v1/events/robots/{ROBOT}/subscriptions",
            self.megazord
        )))
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body.as_array().unwrap().clone()
    }

    /// The Megazord subscription the check names.
    async fn subscription(&self, check: &Value) -> Value {
        let id = check["subscriptionId"]
            .as_i64()
            .unwrap_or_else(|| panic!("the check has no subscription: {check}"));
        let all = self.subscriptions().await;
        all.iter()
            .find(|s| s["id"] == id)
            .unwrap_or_else(|| panic!("Megazord does not list subscription {id}: {all:?}"))
            .clone()
    }

    /// The service removed the check's subscription: Megazord lists it as inactive, and
    /// deleting it again answers 404 (it is already gone — not merely expired).
    async fn assert_unsubscribed(&self, check: &Value) {
        let subscription = self.subscription(check).await;
        assert_eq!(subscription["isActive"], false, "{subscription}");
        let (status, body) = Self::send(self.http.delete(format!(
            "{}/internal/v1/events/robots/{ROBOT}/subscriptions/{}",
            self.megazord, subscription["id"]
        )))
        .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "the service left subscription {} behind: {body}",
            subscription["id"]
        );
    }

    async fn get(&self, id: &Value) -> Value {
        let (status, body) = Self::send(
            self.robot(
                self.http
                    .get(format!("{}/v1/status-check/check/{id}", self.service)),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Runs the consumer until it applied `count` deliveries; any other outcome fails.
    async fn consume_applied(&self, count: usize) {
        let consumer = self.workers.consumer.as_ref().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut outcomes = Vec::new();
        while outcomes.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {outcomes:?} of {count} deliveries before the deadline"
            );
            outcomes.extend(consumer.tick_once().await);
        }
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Applied),
            "{outcomes:?}"
        );
    }

    /// Runs the relay until it has sent `count` notifications (and finds no more).
    async fn relay(&self, count: usize) {
        let relay = self.workers.relay.as_ref().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut sent = 0;
        loop {
            let tick = relay.tick_once().await.notifications;
            assert_eq!(tick.failed, 0, "the relay failed to send");
            sent += tick.done;
            if tick.claimed == 0 && sent >= count {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sent {sent} of {count} notifications"
            );
        }
        assert_eq!(sent, count, "notifications sent");
    }

    /// Takes `count` messages off the robot's SQS queue (waiting for them).
    async fn robot_messages(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        let mut out: Vec<Value> = Vec::new();
        while out.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} robot messages: {out:?}",
                out.len()
            );
            let batch = self
                .queues
                .queue
                .receive(
                    &self.robot_queue,
                    10,
                    Duration::from_secs(1),
                    Duration::from_secs(30),
                )
                .await
                .expect("the robot queue answers");
            for message in batch {
                self.queues
                    .queue
                    .delete(&self.robot_queue, &message.receipt)
                    .await
                    .unwrap();
                assert!(
                    message
                        .attributes
                        .get("callRef")
                        .is_some_and(|c| !c.is_empty()),
                    "a notification carries its callRef: {:?}",
                    message.attributes
                );
                out.push(serde_json::from_str(&message.body).unwrap());
            }
        }
        assert_eq!(out.len(), count, "robot messages: {out:?}");
        out.sort_by_key(|m| m["payload"]["notificationSeq"].as_i64());
        out
    }

    /// Runs the scheduler once; returns how many checks it finalised.
    async fn schedule(&self) -> usize {
        let tick = self.workers.scheduler.as_ref().unwrap().tick_once().await;
        assert_eq!((tick.failed, tick.fenced), (0, 0), "{tick:?}");
        tick.finalised
    }
}

/// Asserts what the robot was told: to it, about this check, in this state.
fn assert_notification(
    message: &Value,
    check_id: &Value,
    (phase, result, next): (&str, &str, Option<i64>),
    seq: i64,
) {
    assert_eq!(message["from"]["serviceName"], "azi-3-status-check");
    assert_eq!(message["to"]["robotId"], ROBOT.to_string(), "{message}");
    assert_eq!(
        message["link"]["link"],
        format!("/v1/status-check/check/{check_id}")
    );
    assert_eq!(message["link"]["rel"], "statusCheck");
    let payload = &message["payload"];
    assert_eq!(&payload["id"], check_id, "{message}");
    assert_eq!(payload["robotId"], ROBOT);
    assert_eq!(payload["phase"], phase, "{message}");
    assert_eq!(payload["result"], result, "{message}");
    assert_eq!(payload["nextStepId"], json!(next), "{message}");
    assert_eq!(payload["notificationSeq"], seq, "{message}");
}

fn assert_state(check: &Value, (phase, result, next): (&str, &str, Option<i64>)) {
    assert_eq!(check["phase"], phase, "{check}");
    assert_eq!(check["result"], result, "{check}");
    assert_eq!(check["nextStepId"], json!(next), "{check}");
}

/// The events of the check's history, in order: `(phase, eventName, incomingEventId)`.
fn history(check: &Value) -> Vec<(String, String, i64)> {
    check["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["phase"].as_str().unwrap().to_owned(),
                r["eventName"].as_str().unwrap().to_owned(),
                r["incomingEventId"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn id_of(event: &Value) -> i64 {
    event["id"].as_i64().unwrap()
}

/// robot-is-charging: the robot stopped charging 20 minutes ago (PENDING), starts charging
/// three minutes into the window → COMPLETED / PASS / the pass step.
async fn robot_is_charging(backend: Backend) {
    const TEMPLATE: &str = "robot-is-charging";
    let Some(j) = journey(backend).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    // Outside the one-hour look-back: must not count.
    j.post_event("CHARGING_STARTED", anchor() - minutes(120))
        .await;
    let started = j
        .post_event("CHARGING_STARTED", anchor() - minutes(50))
        .await;
    let stopped = j
        .post_event("CHARGING_STOPPED", anchor() - minutes(20))
        .await;

    let check = j
        .create_waiting(TEMPLATE, &["CHARGING_STARTED"], minutes(10))
        .await;
    assert_eq!(check["result"], "PENDING");
    assert_eq!(
        history(&check),
        [
            ("PAST".into(), "CHARGING_STARTED".into(), id_of(&started)),
            ("PAST".into(), "CHARGING_STOPPED".into(), id_of(&stopped)),
        ]
    );
    let id = &check["id"];

    j.clock.set(anchor() + minutes(3));
    let charging = j.event_now("CHARGING_STARTED", 1).await;
    j.consume_applied(1).await;

    let pass = j.next(TEMPLATE, "pass");
    let done = j.get(id).await;
    assert_state(&done, ("COMPLETED", "PASS", Some(pass)));
    let last = done["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["phase"], "FUTURE");
    assert_eq!(last["incomingEventId"], charging["id"]);
    assert_eq!(last["outgoingEventId"], charging["outgoingIds"][0]);
    assert_eq!(done["history"].as_array().unwrap().len(), 3);

    j.relay(1).await;
    let messages = j.robot_messages(1).await;
    assert_notification(&messages[0], id, ("COMPLETED", "PASS", Some(pass)), 1);
    j.assert_unsubscribed(&check).await;
    assert_eq!(
        j.schedule().await,
        0,
        "a completed check has no deadline left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_is_charging_starts_charging_in_the_window() {
    robot_is_charging(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn robot_is_charging_on_mariadb() {
    if support::mysql_skipped() {
        return;
    }
    robot_is_charging(Backend::Mysql).await;
}

/// resident-activity, nobody moves: the only motion is older than the two-hour look-back and
/// nothing the check listens to happens; at the deadline it FAILS and the robot gets the
/// fail step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_activity_without_motion_fails_at_the_deadline() {
    const TEMPLATE: &str = "resident-activity";
    let Some(j) = journey(Backend::Sqlite).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    j.post_event("MOTION_DETECTED", anchor() - minutes(180))
        .await;
    let check = j
        .create_waiting(TEMPLATE, &["MOTION_DETECTED"], minutes(30))
        .await;
    assert_eq!(check["result"], "PENDING");
    assert!(history(&check).is_empty(), "{check}");
    let id = &check["id"];

    // Something the check does not listen to: Megazord fans it out to nobody.
    j.clock.set(anchor() + minutes(10));
    j.event_now("CHARGING_STARTED", 0).await;

    j.clock.set(anchor() + minutes(30) - TimeDelta::seconds(1));
    assert_eq!(j.schedule().await, 0, "not due before pollingUntil");
    assert_state(&j.get(id).await, ("FUTURE", "PENDING", None));

    j.clock
        .set(anchor() + minutes(30) + TimeDelta::milliseconds(500));
    assert_eq!(j.schedule().await, 1, "finalised at the deadline");
    let fail = j.next(TEMPLATE, "fail");
    let done = j.get(id).await;
    assert_state(&done, ("FAILED", "FAIL", Some(fail)));
    assert!(history(&done).is_empty(), "{done}");
    assert_eq!(j.schedule().await, 0, "finalised once");

    j.relay(1).await;
    let messages = j.robot_messages(1).await;
    assert_notification(&messages[0], id, ("FAILED", "FAIL", Some(fail)), 1);
    j.assert_unsubscribed(&check).await;
    // Nothing reached the status queue for this check.
    assert!(
        j.workers
            .consumer
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .is_empty()
    );
}

/// resident-activity, motion an hour ago: the past decides at once — 201 COMPLETED / PASS,
/// no subscription at Megazord, and no notification (the create response told the robot).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_activity_seen_recently_passes_at_once() {
    const TEMPLATE: &str = "resident-activity";
    let Some(j) = journey(Backend::Sqlite).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    let motion = j
        .post_event("MOTION_DETECTED", anchor() - minutes(60))
        .await;
    let (status, check) = j.create(TEMPLATE).await;
    assert_eq!(status, StatusCode::CREATED, "{check}");
    assert_state(
        &check,
        ("COMPLETED", "PASS", Some(j.next(TEMPLATE, "pass"))),
    );
    assert_eq!(check["subscriptionId"], Value::Null, "{check}");
    assert_eq!(
        history(&check),
        [("PAST".into(), "MOTION_DETECTED".into(), id_of(&motion))]
    );
    assert!(
        j.subscriptions().await.is_empty(),
        "no subscription for a decided check"
    );
    // The same request again is the same check (200), not a second one.
    let (again, same) = j.create(TEMPLATE).await;
    assert_eq!(again, StatusCode::OK, "{same}");
    assert_eq!(same["id"], check["id"]);
    j.relay(0).await;
}

/// medication-box-opened: the box was opened 50 minutes before the planned time (too early
/// to count), then goes offline in the window → COMPLETED / UNKNOWN / the unknown step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn medication_box_offline_is_unknown() {
    const TEMPLATE: &str = "medication-box-opened";
    let Some(j) = journey(Backend::Sqlite).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    let opened = j
        .post_event("MEDICATION_BOX_OPENED", anchor() - minutes(50))
        .await;
    let check = j
        .create_waiting(
            TEMPLATE,
            &["MEDICATION_BOX_OPENED", "MEDICATION_BOX_OFFLINE"],
            minutes(45),
        )
        .await;
    assert_eq!(check["result"], "PENDING", "opened too early to count");
    assert_eq!(
        history(&check),
        [(
            "PAST".into(),
            "MEDICATION_BOX_OPENED".into(),
            id_of(&opened)
        )]
    );
    let id = &check["id"];

    j.clock.set(anchor() + minutes(10));
    let offline = j.event_now("MEDICATION_BOX_OFFLINE", 1).await;
    j.consume_applied(1).await;

    let unknown = j.next(TEMPLATE, "unknown");
    assert_ne!(unknown, j.next(TEMPLATE, "fail"));
    let done = j.get(id).await;
    assert_state(&done, ("COMPLETED", "UNKNOWN", Some(unknown)));
    assert_eq!(
        history(&done).last().unwrap(),
        &(
            "FUTURE".into(),
            "MEDICATION_BOX_OFFLINE".into(),
            id_of(&offline)
        )
    );

    j.relay(1).await;
    let messages = j.robot_messages(1).await;
    assert_notification(&messages[0], id, ("COMPLETED", "UNKNOWN", Some(unknown)), 1);
    j.assert_unsubscribed(&check).await;
    // Opened after all: the subscription is gone, so Megazord delivers nothing.
    j.clock.set(anchor() + minutes(12));
    j.event_now("MEDICATION_BOX_OPENED", 0).await;
}

/// toilet-activity (pollUntilEnd): one visit in the night already passes, but the check keeps
/// watching to the end of its window. A second visit changes nothing (no notification); two
/// more make four → FAIL while still FUTURE (notified); at the deadline the scheduler
/// completes it with FAIL and the fail step (notified again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toilet_activity_watches_until_the_deadline() {
    const TEMPLATE: &str = "toilet-activity";
    let Some(j) = journey(Backend::Sqlite).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    // Outside the six-hour look-back: must not count.
    j.post_event("TOILET_VISIT", anchor() - minutes(7 * 60))
        .await;
    let night = j.post_event("TOILET_VISIT", anchor() - minutes(300)).await;
    let check = j
        .create_waiting(TEMPLATE, &["TOILET_VISIT"], minutes(60))
        .await;
    assert_eq!(check["result"], "PASS", "pollUntilEnd: decided, still open");
    assert_eq!(
        history(&check),
        [("PAST".into(), "TOILET_VISIT".into(), id_of(&night))]
    );
    let id = &check["id"];

    j.clock.set(anchor() + minutes(10));
    j.event_now("TOILET_VISIT", 1).await;
    j.consume_applied(1).await;
    let open = j.get(id).await;
    assert_state(&open, ("FUTURE", "PASS", None));
    assert_eq!(history(&open).len(), 2);
    j.relay(0).await;

    for at in [20, 30] {
        j.clock.set(anchor() + minutes(at));
        j.event_now("TOILET_VISIT", 1).await;
    }
    j.consume_applied(2).await;
    let flagged = j.get(id).await;
    assert_state(&flagged, ("FUTURE", "FAIL", None));
    assert_eq!(history(&flagged).len(), 4);
    j.relay(1).await;
    let messages = j.robot_messages(1).await;
    assert_notification(&messages[0], id, ("FUTURE", "FAIL", None), 1);
    assert_eq!(
        j.subscription(&check).await["isActive"],
        true,
        "still listening until the end"
    );

    j.clock.set(anchor() + minutes(59));
    assert_eq!(j.schedule().await, 0, "not due before pollingUntil");
    j.clock
        .set(time(&check["pollingUntil"]) + TimeDelta::seconds(1));
    assert_eq!(j.schedule().await, 1);
    let fail = j.next(TEMPLATE, "fail");
    let done = j.get(id).await;
    assert_state(&done, ("COMPLETED", "FAIL", Some(fail)));
    assert_eq!(history(&done).len(), 4);

    j.relay(1).await;
    let messages = j.robot_messages(1).await;
    assert_notification(&messages[0], id, ("COMPLETED", "FAIL", Some(fail)), 2);
    j.assert_unsubscribed(&check).await;
}

/// The shipped templates are exactly those the journeys above cover (a new template fails
/// here until it has a journey), and the simulated Micro-Managers serves each one's demo step
/// over HTTP as the service reads it (SPEC §5.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_template_has_a_demo_step() {
    let Some(j) = journey(Backend::Sqlite).await else {
        eprintln!("warning: journey skipped: the SQS emulator is not configured");
        return;
    };
    let names: Vec<&str> = j
        .demo_steps
        .iter()
        .map(|s| s.status_check_name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "medication-box-opened",
            "resident-activity",
            "robot-is-charging",
            "toilet-activity"
        ]
    );
    for step in &j.demo_steps {
        let step_id = step.step_id.unwrap();
        let (status, body) = Journey::send(j.http.get(format!(
            "{}/internal/v5/scripts/robots/{ROBOT}/scripts/steps/{step_id}",
            j.micro_managers
        )))
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["node"]["statusCheckName"], step.status_check_name);
        let commands: Vec<&str> = body["next"]["multipleChoice"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["primaryCommand"].as_str().unwrap())
            .collect();
        for command in ["pass", "fail", "unknown"] {
            assert!(commands.contains(&command), "{body}");
        }
    }
}
