//! The read at the deadline (SPEC §3.5): Megazord does not retry an SQS send that failed, so a
//! delivery can be lost for good; a check still open at its deadline reads its future
//! dependencies' incomings first. On SQLite and MariaDB (production schema), through the SQS
//! emulator, with the simulators over real HTTP; the workers driven with `tick_once` and a
//! manual clock.

use std::collections::BTreeMap;
use std::net::TcpListener as StdTcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::clock::{Clock, ManualClock};
use status_check::dev::QueueSink;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::micro_managers::HttpMicroManagers;
use status_check::workers::consumer::Outcome;
use status_check::{App, Config, Deps};
use status_check_sim::megazord::NewIncoming;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim, StatusSink};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::harness::on_both_backends;
use crate::harness::{Backend, Queues, anchor, robot_headers, spawn_stack_with, sqs_queues};
use crate::lifecycle::{at, check, consume, open_charging_check};
use crate::support::{Neighbours, TestDb};

const ROBOT: i64 = 42;

/// The status queue as Megazord sends to it, except that while `dropping` every send fails —
/// as a failed SQS send does, which Megazord logs and never retries (SPEC §5.2). What was
/// dropped is kept, so a test can let it arrive late after all (a redrive, a replay).
struct DroppingSink {
    inner: QueueSink,
    dropping: Mutex<bool>,
    dropped: Mutex<Vec<(Option<String>, String)>>,
}

impl DroppingSink {
    fn drop_sends(&self, dropping: bool) {
        *self.dropping.lock().unwrap() = dropping;
    }

    /// Sends what was dropped, late.
    async fn deliver_dropped(&self) -> usize {
        let dropped = std::mem::take(&mut *self.dropped.lock().unwrap());
        for (queue, body) in &dropped {
            self.inner
                .send(queue.as_deref(), body.clone())
                .await
                .unwrap();
        }
        dropped.len()
    }
}

#[async_trait]
impl StatusSink for DroppingSink {
    async fn send(&self, queue: Option<&str>, body: String) -> Result<(), String> {
        if *self.dropping.lock().unwrap() {
            self.dropped
                .lock()
                .unwrap()
                .push((queue.map(str::to_owned), body));
            return Err("the SQS send failed (dropped by the test)".to_owned());
        }
        self.inner.send(queue, body).await
    }
}

/// A replica running every role on the simulators, its workers driven by the test.
struct SimStack {
    base: String,
    clock: Arc<ManualClock>,
    megazord: MegazordSim,
    micro_managers: MicroManagersSim,
    neighbours: Neighbours,
    sink: Arc<DroppingSink>,
    workers: Workers,
    _stop: DropGuard,
    _sims: DropGuard,
    _db: TestDb,
}

async fn sim_stack(backend: Backend, extra: &[(&str, &str)]) -> Option<(SimStack, Queues)> {
    let queues = sqs_queues().await?;
    queues.robot_queue(ROBOT).await;
    let db = backend
        .database()
        .await
        .expect("a test database (MySQL tests check `mysql_skipped` first)");
    let (store, neighbours) = (db.store.clone(), db.neighbours.clone());
    let clock = Arc::new(ManualClock::new(anchor()));
    let sink = Arc::new(DroppingSink {
        inner: QueueSink {
            queue: queues.queue.clone(),
            url: queues.status_url.clone(),
        },
        dropping: Mutex::new(false),
        dropped: Mutex::new(Vec::new()),
    });
    let sim_clock = clock.clone();
    let templates_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let megazord = status_check::dev::seed_megazord(
        MegazordSim::new(sink.clone(), Arc::new(move || sim_clock.now()))
            .with_rows(Arc::new(neighbours.clone())),
        &status_check::template_files::TemplateSource::Dir(templates_dir),
    )
    .expect("the shipped templates load");
    let micro_managers = MicroManagersSim::new();
    let sims = CancellationToken::new();
    let listener = || {
        let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(l).unwrap()
    };
    let mm = status_check_sim::spawn(listener(), micro_managers.router(), sims.clone()).unwrap();
    let mz = status_check_sim::spawn(listener(), megazord.router(), sims.clone()).unwrap();

    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut values: BTreeMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("TEMPLATES_DIR", templates.display().to_string()),
        ("MICRO_MANAGERS_ADDRESS", format!("http://{mm}")),
        ("MEGAZORD_EVENTS_ADDRESS", format!("http://{mz}")),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.clone()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.clone()),
        ("CONSUMER_WAIT_SECS", "1".to_owned()),
        ("CONSUMER_VISIBILITY_SECS", "10".to_owned()),
        ("UPSTREAM_TIMEOUT_MS", "2000".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        values.insert((*key).to_owned(), (*value).to_owned());
    }
    let config = Config::from_sources(values).expect("test config");
    let upstream = |address: &Option<String>| config.upstream(address.clone().unwrap());
    let deps = Deps {
        store,
        micro_managers: Arc::new(
            HttpMicroManagers::new(&upstream(&config.micro_managers_address)).unwrap(),
        ),
        megazord: Arc::new(HttpMegazord::new(&upstream(&config.megazord_events_address)).unwrap()),
        clock: clock.clone(),
        queue: Some(queues.queue.clone()),
    };
    let mut app = App::build_with(&config, deps).await.expect("app builds");
    let workers = app.take_workers();
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    tokio::spawn(app.run(stop.clone()));
    let stack = SimStack {
        base,
        clock,
        megazord,
        micro_managers,
        neighbours,
        sink,
        workers,
        _stop: stop.drop_guard(),
        _sims: sims.drop_guard(),
        _db: db,
    };
    Some((stack, queues))
}

impl SimStack {
    /// Creates a check at a step running `template` with its default windows; its body.
    async fn create(&self, template: &str, step_id: i64) -> Value {
        let step = DemoStep::for_template(step_id, template);
        let mut steps = vec![step_id];
        steps.extend(step.next.values().copied());
        self.micro_managers.add_step(step);
        self.neighbours.robot(ROBOT).await;
        self.neighbours
            .script_steps(SCRIPT_VERSION_ID, &steps)
            .await;
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/status-check/check", self.base))
            .json(&json!({"stepId": step_id, "scheduledId": 1,
                "scriptVersionId": SCRIPT_VERSION_ID, "plannedAt": "2026-11-20T08:00:00Z"}));
        for (name, value) in robot_headers(ROBOT) {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["phase"], "FUTURE", "{body}");
        body
    }

    async fn get(&self, id: i64) -> Value {
        let mut request =
            reqwest::Client::new().get(format!("{}/v1/status-check/check/{id}", self.base));
        for (name, value) in robot_headers(ROBOT) {
            request = request.header(name, value);
        }
        request.send().await.unwrap().json().await.unwrap()
    }

    /// The robot reports `name` at `time`: Megazord stores it and fans it out (or, while the
    /// sink drops, fails to).
    async fn robot_reports(&self, name: &str, time: &str) -> i64 {
        self.clock.set(at(time));
        let posted = self
            .megazord
            .post_incoming(ROBOT, NewIncoming::named(name).at(at(time)))
            .await
            .expect("a known event");
        posted.incoming["id"].as_i64().unwrap()
    }

    /// Consumes until the status queue is empty; every outcome.
    async fn consume_all(&self) -> Vec<Outcome> {
        let mut outcomes = Vec::new();
        loop {
            let batch = self.workers.consumer.as_ref().unwrap().tick_once().await;
            if batch.is_empty() {
                return outcomes;
            }
            outcomes.extend(batch);
        }
    }

    async fn deadline_passes(&self, time: &str) -> (usize, usize) {
        self.clock.set(at(time));
        let tick = self.workers.scheduler.as_ref().unwrap().tick_once().await;
        (tick.claimed, tick.finalised)
    }
}

/// The incoming event ids of a check's history, in order.
fn recorded(check: &Value) -> Vec<i64> {
    check["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| record["incomingEventId"].as_i64().unwrap())
        .collect()
}

/// A check whose only future event reached Megazord but never the queue ends PASS at its
/// deadline; the delivery that arrives after all, later, changes nothing.
pub async fn a_delivery_megazord_never_sent_still_passes_the_check(backend: Backend) {
    let Some((stack, _queues)) = sim_stack(backend, &[]).await else {
        return;
    };
    let created = stack.create("robot-is-charging", 301).await;
    let id = created["id"].as_i64().unwrap();
    stack.sink.drop_sends(true);
    let event = stack
        .robot_reports("CHARGING_STARTED", "2026-11-20T08:05:00Z")
        .await;
    assert!(
        stack.consume_all().await.is_empty(),
        "nothing was delivered"
    );
    assert_eq!(stack.get(id).await["result"], "PENDING");

    assert_eq!(
        stack.deadline_passes("2026-11-20T08:10:00.300Z").await,
        (1, 1)
    );
    let body = stack.get(id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("PASS"), &json!(3011)),
        "{body}"
    );
    assert_eq!(recorded(&body), [event]);
    let record = &body["history"][0];
    assert_eq!(record["phase"], "FUTURE");
    assert_eq!(record["outgoingEventId"], Value::Null, "found by the read");

    // The lost send arrives after all (a redrive): the check has ended; nothing changes.
    stack.sink.drop_sends(false);
    assert_eq!(stack.sink.deliver_dropped().await, 1);
    assert_eq!(stack.consume_all().await, [Outcome::Ended]);
    assert_eq!(recorded(&stack.get(id).await), [event], "recorded once");
}

/// A `pollUntilEnd` check with a decisive result reads too: a delivered visit and three
/// dropped ones; the read takes in the three (the delivered one is not recorded again) and
/// they change the outcome.
pub async fn a_poll_until_end_check_reads_and_records_each_event_once(backend: Backend) {
    let Some((stack, _queues)) = sim_stack(backend, &[]).await else {
        return;
    };
    let created = stack.create("toilet-activity", 302).await;
    let id = created["id"].as_i64().unwrap();
    let first = stack
        .robot_reports("TOILET_VISIT", "2026-11-20T08:10:00Z")
        .await;
    assert_eq!(stack.consume_all().await, [Outcome::Applied]);
    assert_eq!(stack.get(id).await["result"], "PASS", "one visit");

    stack.sink.drop_sends(true);
    let mut lost = Vec::new();
    for time in ["08:20", "08:30", "08:40"] {
        lost.push(
            stack
                .robot_reports("TOILET_VISIT", &format!("2026-11-20T{time}:00Z"))
                .await,
        );
    }
    // Created after pollingUntil: reported, and never taken in (SPEC §3.2).
    stack
        .robot_reports("TOILET_VISIT", "2026-11-20T09:00:00.200Z")
        .await;
    assert!(stack.consume_all().await.is_empty());

    assert_eq!(
        stack.deadline_passes("2026-11-20T09:00:00.400Z").await,
        (1, 1)
    );
    let body = stack.get(id).await;
    assert_eq!(
        (&body["phase"], &body["result"], &body["nextStepId"]),
        (&json!("COMPLETED"), &json!("FAIL"), &json!(3022)),
        "four visits: {body}"
    );
    let mut expected = vec![first];
    expected.extend(&lost);
    assert_eq!(recorded(&body), expected);

    stack.sink.drop_sends(false);
    // The three lost visits (and the late one, where the subscription still fans out after
    // its `until`, as the real Megazord's does).
    assert!(stack.sink.deliver_dropped().await >= 3);
    assert!(
        stack
            .consume_all()
            .await
            .iter()
            .all(|outcome| *outcome == Outcome::Ended)
    );
    assert_eq!(recorded(&stack.get(id).await), expected, "each once");
}

/// `DEADLINE_RECONCILE=false`: no read; the dropped delivery is lost and the check fails.
pub async fn with_the_read_off_a_dropped_delivery_is_lost(backend: Backend) {
    let Some((stack, _queues)) = sim_stack(backend, &[("DEADLINE_RECONCILE", "false")]).await
    else {
        return;
    };
    let id = stack.create("robot-is-charging", 303).await["id"]
        .as_i64()
        .unwrap();
    stack.sink.drop_sends(true);
    stack
        .robot_reports("CHARGING_STARTED", "2026-11-20T08:05:00Z")
        .await;
    assert_eq!(
        stack.deadline_passes("2026-11-20T08:10:00.300Z").await,
        (1, 1)
    );
    let body = stack.get(id).await;
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("FAILED"), &json!("FAIL"))
    );
    assert!(recorded(&body).is_empty());
}

/// The `deadline_reconcile_total` count of `outcome` this process exported so far.
async fn reconcile_count(base: &str, outcome: &str) -> f64 {
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let prefix = format!("deadline_reconcile_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// Megazord silent at the deadline: the check is decided within the budget from what it has,
/// and that is counted — not after the upstream's own timeouts and retries.
pub async fn a_silent_megazord_costs_a_deadline_only_the_budget(backend: Backend) {
    let Some(queues) = sqs_queues().await else {
        return;
    };
    queues.robot_queue(ROBOT).await;
    // Without the budget one read would take 2 × 20 s (timeout, one retry).
    let (app, workers) = spawn_stack_with(
        backend,
        None,
        &queues,
        &[("UPSTREAM_TIMEOUT_MS", "20000"), ("UPSTREAM_RETRIES", "1")],
    )
    .await;
    let id = open_charging_check(&app, 310, 995).await;
    app.given_slow_incomings(ROBOT, "CHARGING_STARTED", Duration::from_secs(60))
        .await;
    let timed_out = reconcile_count(&app.base, "timed_out").await;
    app.clock.set(at("2026-11-20T08:10:00.300Z"));
    let started = Instant::now();
    let tick = workers.scheduler.as_ref().unwrap().tick_once().await;
    let took = started.elapsed();
    assert_eq!((tick.claimed, tick.finalised), (1, 1));
    assert!(
        took >= Duration::from_millis(500),
        "the read had its budget: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "decided within the budget: {took:?}"
    );
    let body = check(&app, id).await;
    assert_eq!(
        (&body["phase"], &body["result"]),
        (&json!("FAILED"), &json!("FAIL"))
    );
    assert!(reconcile_count(&app.base, "timed_out").await > timed_out);
    let _ = consume(&workers).await;
}

on_both_backends!(
    a_delivery_megazord_never_sent_still_passes_the_check,
    a_poll_until_end_check_reads_and_records_each_event_once,
    with_the_read_off_a_dropped_delivery_is_lost,
    a_silent_megazord_costs_a_deadline_only_the_budget,
);
