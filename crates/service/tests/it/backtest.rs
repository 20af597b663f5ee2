//! `status-check templates backtest` (SPEC §14) against a database the real service filled:
//! checks created over HTTP through the dev stack (the Micro-Managers and Megazord
//! simulators, an in-memory status queue, the consumer and the scheduler driven with
//! `tick_once` on a manual clock), plus two checks the Node service wrote — one without event
//! times, one bound to an EJS (legacy) template version. Then the real binary, read-only:
//! the same template changes nothing; a stricter one flips exactly the checks it must; a new
//! dependency is not comparable until `--megazord` reads it from the simulator; a stricter
//! past rule leaves a check decided in the past undecided. SQLite's file is unchanged
//! afterwards; on MariaDB a user with only SELECT suffices.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _};
use status_check::app::Workers;
use status_check::clock::ManualClock;
use status_check::dev::{DEV_ROBOT_QUEUE_PREFIX, DEV_STATUS_QUEUE, Stack, StackOptions};
use status_check::queue::MemoryQueue;
use status_check::workers::consumer::Outcome;
use status_check_sim::DemoStep;
use status_check_sim::megazord::{MegazordSim, NewIncoming};
use tokio_util::sync::CancellationToken;

use crate::harness::Backend;
use crate::support::{Raw, TestDb};

const CHARGING: &str = "robot-is-charging";
const TOILET: &str = "toilet-activity";
/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn anchor() -> DateTime<Utc> {
    at("2026-11-20T08:00:00Z")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The robots of the known histories: one check each.
mod robot {
    /// Charging started 30 minutes before: PASS in the past phase.
    pub const PAST_PASS: i64 = 1;
    /// Charging stopped at 07:30, starts at 08:05: PASS in the future phase.
    pub const FUTURE_PASS: i64 = 2;
    /// Charging stopped at 07:40, nothing after: FAIL at the deadline.
    pub const DEADLINE_FAIL: i64 = 3;
    /// The Node service's check (no event times): charging stopped at 07:20, FAIL at the
    /// deadline.
    pub const NODE: i64 = 4;
    /// The Node service's check on its EJS version: charging started at 07:40, PASS.
    pub const LEGACY: i64 = 5;
    /// toilet-activity (pollUntilEnd): one visit before, three during: FAIL at the deadline.
    pub const POLL_UNTIL_END: i64 = 6;
}

/// A database with the known histories; the service that wrote them has stopped.
pub struct History {
    pub db: TestDb,
    /// Check id per robot.
    pub checks: BTreeMap<i64, i64>,
    /// The Megazord simulator, still serving (for `--megazord`).
    pub megazord_url: String,
    sims: CancellationToken,
}

impl Drop for History {
    fn drop(&mut self) {
        self.sims.cancel();
    }
}

impl History {
    /// The database URL the backtest is given.
    pub fn database(&self) -> String {
        match &self.db.url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}", self.db.sqlite_path().unwrap().display()),
        }
    }
}

/// Builds the histories on `backend`; `None` when MySQL tests are switched off.
pub async fn history(backend: Backend) -> Option<History> {
    let db = backend.database().await?;
    let templates = repo().join("templates").canonicalize().unwrap();
    let env: BTreeMap<String, String> = [
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("TEMPLATES_DIR", templates.to_str().unwrap()),
        ("STATUS_QUEUE_ADDRESS", DEV_STATUS_QUEUE),
        ("ROBOT_QUEUE_ADDRESS", DEV_ROBOT_QUEUE_PREFIX),
        ("CONSUMER_WAIT_SECS", "1"),
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
        store: Some(db.store.clone()),
        queue: Arc::new(MemoryQueue::new()),
        clock: clock.clone(),
        mailbox: None,
        sim_ports: (0, 0),
        megazord_rows: Some(Arc::new(db.neighbours.clone())),
    })
    .await
    .expect("the dev stack builds");
    for step in &stack.demo_steps {
        let mut steps: Vec<i64> = step.next.values().copied().collect();
        steps.extend(step.step_id);
        db.neighbours
            .script_steps(status_check_sim::micro_managers::SCRIPT_VERSION_ID, &steps)
            .await;
    }
    for robot in 1..=6 {
        db.neighbours.robot(robot).await;
    }
    let Stack {
        mut app,
        config,
        megazord,
        megazord_addr,
        demo_steps,
        sims,
        ..
    } = stack;
    let workers = app.take_workers();
    let service = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    let step = |template: &str| -> DemoStep {
        demo_steps
            .iter()
            .find(|s| s.status_check_name == template)
            .unwrap()
            .clone()
    };
    let writer = Writer {
        service,
        username: config.robot_consumer_username.clone(),
        http: reqwest::Client::new(),
        megazord: megazord.clone(),
        clock: clock.clone(),
        workers,
    };

    // Before the checks: their past.
    writer
        .event(robot::PAST_PASS, "CHARGING_STARTED", "07:30")
        .await;
    writer
        .event(robot::FUTURE_PASS, "CHARGING_STOPPED", "07:30")
        .await;
    writer
        .event(robot::DEADLINE_FAIL, "CHARGING_STOPPED", "07:40")
        .await;
    writer
        .event(robot::POLL_UNTIL_END, "TOILET_VISIT", "05:00")
        .await;

    let charging = step(CHARGING);
    let toilet = step(TOILET);
    let mut checks = BTreeMap::new();
    for (robot, step, phase) in [
        (robot::PAST_PASS, &charging, "COMPLETED"),
        (robot::FUTURE_PASS, &charging, "FUTURE"),
        (robot::DEADLINE_FAIL, &charging, "FUTURE"),
        (robot::POLL_UNTIL_END, &toilet, "FUTURE"),
    ] {
        let check = writer.create(robot, step.step_id.unwrap()).await;
        assert_eq!(check["phase"], phase, "{check}");
        checks.insert(robot, check["id"].as_i64().unwrap());
    }

    // The future, delivered through the status queue.
    writer.at("08:05");
    writer
        .event(robot::FUTURE_PASS, "CHARGING_STARTED", "08:05")
        .await;
    writer.consume(1).await;
    for minute in ["08:20", "08:30", "08:40"] {
        writer.at(minute);
        writer
            .event(robot::POLL_UNTIL_END, "TOILET_VISIT", minute)
            .await;
        writer.consume(1).await;
    }
    // Events Megazord holds that no check recorded: charging started after robot 1's check
    // had passed; charging stopped during robot 3's window (its check listened for starts).
    writer
        .event(robot::PAST_PASS, "CHARGING_STARTED", "08:04")
        .await;
    writer
        .event(robot::DEADLINE_FAIL, "CHARGING_STOPPED", "08:03")
        .await;
    writer.at("08:10:01");
    assert_eq!(writer.deadlines().await, 1, "robot 3's check");
    writer.at("09:00:01");
    assert_eq!(writer.deadlines().await, 1, "robot 6's check");
    shutdown.cancel();

    let v1 = template_id(&db.raw, CHARGING, 1).await;
    let legacy = legacy_version(&db.raw, 5).await;
    let next = charging.next.clone();
    checks.insert(
        robot::NODE,
        node_check(
            &db,
            NodeCheck {
                robot: robot::NODE,
                template_id: v1,
                phase: "FAILED",
                result: "FAIL",
                next_step_id: Some(next["fail"]),
                subscription_id: Some(9004),
                record: (9401, "CHARGING_STOPPED", "2026-11-20T07:20:00Z", "PENDING"),
            },
        )
        .await,
    );
    checks.insert(
        robot::LEGACY,
        node_check(
            &db,
            NodeCheck {
                robot: robot::LEGACY,
                template_id: legacy,
                phase: "COMPLETED",
                result: "PASS",
                next_step_id: Some(next["pass"]),
                subscription_id: None,
                // The Node service keeps no event time: a record's is when it was written, here
                // a second after the check (after its read of Megazord). The check took it in as
                // a past record, so the replay must too.
                record: (9501, "CHARGING_STARTED", "2026-11-20T08:00:01Z", "PASS"),
            },
        )
        .await,
    );
    Some(History {
        db,
        checks,
        megazord_url: format!("http://{megazord_addr}"),
        sims,
    })
}

/// The service's side while the histories are written.
struct Writer {
    service: String,
    username: String,
    http: reqwest::Client,
    megazord: MegazordSim,
    clock: Arc<ManualClock>,
    workers: Workers,
}

impl Writer {
    /// Sets the clock to `HH:MM[:SS]` of the anchor's day.
    fn at(&self, time: &str) {
        self.clock.set(today(time));
    }

    async fn event(&self, robot: i64, name: &str, time: &str) {
        let new = NewIncoming {
            event_name: name.to_owned(),
            created_at: Some(today(time)),
            ..NewIncoming::default()
        };
        self.megazord
            .post_incoming(robot, new)
            .await
            .expect("a known event");
    }

    async fn create(&self, robot: i64, step_id: i64) -> Value {
        let body = json!({"stepId": step_id, "scheduledId": 456, "scriptVersionId": 789,
                          "plannedAt": "2026-11-20T08:00:00Z"});
        let response = self
            .http
            .post(format!("{}/v1/status-check/check", self.service))
            .header("x-consumer-id", "consumer-1")
            .header("x-consumer-username", &self.username)
            .header("x-authenticated-userid", robot.to_string())
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let check: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{check}");
        check
    }

    async fn consume(&self, count: usize) {
        let consumer = self.workers.consumer.as_ref().unwrap();
        let deadline = Instant::now() + PATIENCE;
        let mut outcomes = Vec::new();
        while outcomes.len() < count {
            assert!(Instant::now() < deadline, "only {outcomes:?}");
            outcomes.extend(consumer.tick_once().await);
        }
        assert!(
            outcomes.iter().all(|o| *o == Outcome::Applied),
            "{outcomes:?}"
        );
    }

    async fn deadlines(&self) -> usize {
        let tick = self.workers.scheduler.as_ref().unwrap().tick_once().await;
        assert_eq!((tick.failed, tick.fenced), (0, 0), "{tick:?}");
        tick.finalised
    }
}

fn today(time: &str) -> DateTime<Utc> {
    let time = if time.len() == 5 {
        format!("{time}:00")
    } else {
        time.to_owned()
    };
    at(&format!("2026-11-20T{time}Z"))
}

async fn one(raw: &Raw, sql: &'static str, values: &[&str]) -> i64 {
    let rows = raw.texts(sql, values).await;
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone().unwrap().parse().unwrap()
}

async fn template_id(raw: &Raw, name: &str, version: i64) -> i64 {
    one(
        raw,
        "SELECT CAST(t.id AS CHAR) FROM status_check_template t \
         JOIN status_check_description d ON d.id = t.template_description_id \
         WHERE d.name = ? AND t.version = ?",
        &[name, &version.to_string()],
    )
    .await
}

/// The Node service's version `version` of robot-is-charging, in EJS; its id.
pub(crate) async fn legacy_version(raw: &Raw, version: i64) -> i64 {
    let created = raw.time_text(at("2025-06-01T00:00:00Z"));
    let version_text = version.to_string();
    raw.execute_text(
        "INSERT INTO status_check_template (template_description_id, past_event_dependencies, \
         future_event_dependencies, version, is_active, poll_until_end, created_at) \
         SELECT id, '[{\"eventName\":\"CHARGING_STARTED\"},{\"eventName\":\"CHARGING_STOPPED\"}]', \
         '[{\"eventName\":\"CHARGING_STARTED\"}]', ?, 0, 0, ? \
         FROM status_check_description WHERE name = ?",
        &[&version_text, &created, CHARGING],
    )
    .await;
    let id = template_id(raw, CHARGING, version).await;
    for phase in ["PAST", "FUTURE"] {
        raw.execute_text(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) VALUES (?, ?, ?, 'PASS')",
            &[
                &id.to_string(),
                phase,
                "<%= events.some(e => e.eventName === 'CHARGING_STARTED') %>",
            ],
        )
        .await;
    }
    id
}

/// What the Node service wrote for one ended check.
pub(crate) struct NodeCheck {
    pub robot: i64,
    pub template_id: i64,
    pub phase: &'static str,
    pub result: &'static str,
    pub next_step_id: Option<i64>,
    pub subscription_id: Option<i64>,
    /// Its one PAST record: `(incoming event id, name, created_at, result)`.
    pub record: (i64, &'static str, &'static str, &'static str),
}

/// Inserts an ended check as the Node service writes it — `status_check`, its poller (window
/// 07:00–08:10, created 08:00) and its record — and nothing of this service's own tables.
pub(crate) async fn node_check(db: &TestDb, check: NodeCheck) -> i64 {
    let raw = &db.raw;
    if let Some(subscription) = check.subscription_id {
        db.neighbours.subscription(subscription, check.robot).await;
    }
    let created = raw.time_text(anchor());
    let step = 123 + check.robot;
    db.neighbours.script_steps(789, &[step]).await;
    let scheduled = (7000 + check.robot).to_string();
    let next = check.next_step_id.map(|n| n.to_string());
    let subscription = check.subscription_id.map(|s| s.to_string());
    raw.execute_text(
        "INSERT INTO status_check (robot_id, status_check_template_id, phase, subscription_id, \
         result, step_id, next_step_id, script_version_id, scheduled_id, planned_at, created_at, \
         updated_at) VALUES (?, ?, ?, CAST(NULLIF(?, '') AS SIGNED), ?, ?, \
         CAST(NULLIF(?, '') AS SIGNED), 789, ?, ?, ?, ?)",
        &[
            &check.robot.to_string(),
            &check.template_id.to_string(),
            check.phase,
            subscription.as_deref().unwrap_or(""),
            check.result,
            &step.to_string(),
            next.as_deref().unwrap_or(""),
            &scheduled,
            &created,
            &created,
            &raw.time_text(at("2026-11-20T08:10:00Z")),
        ],
    )
    .await;
    let id = one(
        raw,
        "SELECT CAST(MAX(id) AS CHAR) FROM status_check WHERE scheduled_id = ?",
        &[&scheduled],
    )
    .await;
    raw.execute_text(
        "INSERT INTO status_check_poller (status_check_id, since, `until`, lock_id, created_at, \
         updated_at) VALUES (?, ?, ?, NULL, ?, ?)",
        &[
            &id.to_string(),
            &raw.time_text(at("2026-11-20T07:00:00Z")),
            &raw.time_text(at("2026-11-20T08:10:00Z")),
            &created,
            &created,
        ],
    )
    .await;
    let (event, name, event_at, result) = check.record;
    db.neighbours.incoming_event(event, check.robot).await;
    raw.execute_text(
        "INSERT INTO status_check_record (status_check_id, incoming_event_id, \
         outgoing_event_id, event_name, `order`, phase, result, created_at) \
         VALUES (?, ?, NULL, ?, 1, 'PAST', ?, ?)",
        &[
            &id.to_string(),
            &event.to_string(),
            name,
            result,
            &raw.time_text(at(event_at)),
        ],
    )
    .await;
    id
}

/// Runs the binary (off the runtime's threads: the Megazord simulator keeps serving).
pub async fn status_check(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_status-check"))
            .args(&args)
            .current_dir(repo())
            .env_remove("DATABASE_URL")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap()
}

/// `templates backtest FILE --database … --since … --until … --json [extra…]`: the report.
async fn backtest(history: &History, file: &Path, extra: &[&str]) -> Value {
    let mut args: Vec<String> = [
        "templates",
        "backtest",
        file.to_str().unwrap(),
        "--database",
        &history.database(),
        "--since",
        "2026-11-20",
        "--until",
        "2026-11-21",
        "--json",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    let output = status_check(args).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(stderr, "", "nothing but the report off a terminal");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)))
}

pub(crate) fn summary(report: &Value) -> (i64, i64, i64, i64) {
    let s = &report["summary"];
    let n = |key: &str| s[key].as_i64().unwrap_or_else(|| panic!("{key}: {report}"));
    (
        n("examined"),
        n("unchanged"),
        n("changed"),
        n("notComparable"),
    )
}

/// A candidate version of robot-is-charging: v1 with these resources.
fn candidate(dir: &Path, name: &str, resources: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "name: robot-is-charging\nversion: 2\ndescription: candidate\nisActive: true\n\
             pollUntilEnd: false\npoller: {{pastInterval: 3600, futureInterval: 600}}\n\
             resources:\n{resources}"
        ),
    )
    .unwrap();
    path
}

const FUTURE_V1: &str = "  futureEvents:\n    dependsOn: [CHARGING_STARTED]\n    \
     PASS: 'future.exists(e, e.name == \"CHARGING_STARTED\")'\n";
const PAST_V1: &str = "  pastEvents:\n    dependsOn: [CHARGING_STARTED, CHARGING_STOPPED]\n    \
     PASS: 'events.size() > 0 && events[events.size() - 1].name == \"CHARGING_STARTED\"'\n";

/// `(checkId, stored (phase, result, command), candidate (…), partsAt)` of each change.
fn changes(report: &Value) -> Vec<(i64, Value, Value, Value)> {
    report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let outcome = |o: &Value| json!([o["phase"], o["result"], o["nextCommand"]]);
            (
                c["checkId"].as_i64().unwrap(),
                outcome(&c["stored"]),
                outcome(&c["candidate"]),
                c["partsAt"].clone(),
            )
        })
        .collect()
}

/// Every scenario against one database.
async fn scenarios(history: &History) {
    let dir = tempfile::tempdir().unwrap();
    let checks = &history.checks;

    // (a) The same template: nothing changes, on any check — the Node service's included.
    let same = repo().join("templates/robot-is-charging.v1.yaml");
    let report = backtest(history, &same, &[]).await;
    assert_eq!(summary(&report), (5, 5, 0, 0), "{report:#}");
    assert_eq!(report["matrix"]["PASS"]["PASS"], 3, "{report:#}");
    assert_eq!(report["matrix"]["FAIL"]["FAIL"], 2, "{report:#}");
    let toilet = repo().join("templates/toilet-activity.v1.yaml");
    let report = backtest(history, &toilet, &[]).await;
    assert_eq!(summary(&report), (1, 1, 0, 0), "pollUntilEnd: {report:#}");
    assert_eq!(report["matrix"]["FAIL"]["FAIL"], 1, "{report:#}");
    // Replayed under a smaller history cap than the service ran with, the same check ends
    // FAILED at the cap: the replay takes the service's limits (HISTORY_CAP).
    let report = backtest(history, &toilet, &["--history-cap", "1"]).await;
    assert_eq!(summary(&report), (1, 0, 1, 0), "{report:#}");
    // A period without checks: the text report says so, and stderr stays empty.
    let output = status_check(
        [
            "templates",
            "backtest",
            same.to_str().unwrap(),
            "--database",
            &history.database(),
            "--since",
            "2026-10-01",
            "--until",
            "2026-10-02",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{text}"
    );
    assert!(
        text.contains("no ended check of robot-is-charging was created in the period"),
        "{text}"
    );

    // (b) Stricter: charging stopped more than 25 minutes ago fails at once. Robot 2 (stopped
    // 07:30) flips PASS → FAIL; the Node check (stopped 07:20) fails in the past now instead
    // of at the deadline; robot 3 (stopped 07:40) and the rest are unchanged.
    let stricter = candidate(
        dir.path(),
        "stricter.yaml",
        &format!(
            "{PAST_V1}    FAIL: 'past.size() > 0 && past[past.size() - 1].name == \
             \"CHARGING_STOPPED\" && past[past.size() - 1].createdAt < now - duration(\"25m\")'\n\
             {FUTURE_V1}"
        ),
    );
    let report = backtest(history, &stricter, &[]).await;
    assert_eq!(summary(&report), (5, 3, 2, 0), "{report:#}");
    let found = changes(&report);
    assert_eq!(found.len(), 2, "{report:#}");
    assert_eq!(found[0].0, checks[&robot::FUTURE_PASS]);
    assert_eq!(found[0].1, json!(["COMPLETED", "PASS", "pass"]));
    assert_eq!(found[0].2, json!(["COMPLETED", "FAIL", "fail"]));
    assert_eq!(found[0].3["record"], 1, "{report:#}");
    assert_eq!(found[0].3["step"], "PAST");
    assert_eq!(found[0].3["eventName"], "CHARGING_STOPPED");
    assert_eq!(
        (&found[0].3["stored"], &found[0].3["candidate"]),
        (&json!("PENDING"), &json!("FAIL"))
    );
    assert_eq!(found[1].0, checks[&robot::NODE]);
    assert_eq!(found[1].1, json!(["FAILED", "FAIL", "fail"]));
    assert_eq!(found[1].2, json!(["COMPLETED", "FAIL", "fail"]));
    assert_eq!(found[1].3["eventCreatedAt"], "2026-11-20T07:20:00Z");
    assert_eq!(report["matrix"]["PASS"]["FAIL"], 1, "{report:#}");
    assert_eq!(report["changes"][0]["robotId"], robot::FUTURE_PASS);
    // The same as text, for people, with each changed check's timelines.
    let svg_dir = dir.path().join("timelines");
    let output = status_check(vec![
        "templates".into(),
        "backtest".into(),
        stricter.display().to_string(),
        "--database".into(),
        history.database(),
        "--since".into(),
        "2026-11-20".into(),
        "--until".into(),
        "2026-11-21".into(),
        "--svg-dir".into(),
        svg_dir.display().to_string(),
    ])
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && output.stderr.is_empty(),
        "{text}"
    );
    for line in [
        "Backtest of robot-is-charging v2".to_owned(),
        "examined               5".to_owned(),
        "changed                2".to_owned(),
        format!(
            "check {} robot 2 (v1): COMPLETED PASS → pass  ⇒  COMPLETED FAIL → fail",
            checks[&robot::FUTURE_PASS]
        ),
        "parts at record 1 (PAST CHARGING_STOPPED".to_owned(),
    ] {
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }
    let mut drawn: Vec<String> = std::fs::read_dir(&svg_dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    drawn.sort();
    let (two, four) = (checks[&robot::FUTURE_PASS], checks[&robot::NODE]);
    let mut expected = vec![
        format!("check-{two}-candidate.svg"),
        format!("check-{two}-stored.svg"),
        format!("check-{four}-candidate.svg"),
        format!("check-{four}-stored.svg"),
    ];
    expected.sort();
    assert_eq!(drawn, expected, "one pair per changed check");
    let picture = |name: String| std::fs::read_to_string(svg_dir.join(name)).unwrap();
    let stored = picture(format!("check-{two}-stored.svg"));
    let replayed = picture(format!("check-{two}-candidate.svg"));
    assert!(stored.starts_with("<svg") && replayed.starts_with("<svg"));
    assert!(stored.contains("robot-is-charging v1") && stored.contains("COMPLETED · PASS"));
    assert!(
        replayed.contains("robot-is-charging v2")
            && replayed.contains("COMPLETED · FAIL · next step of the fail command"),
        "{replayed}"
    );
    // The stored check took in its charging start at 08:05; the candidate never got there.
    assert!(stored.contains("CHARGING_STARTED") && !replayed.contains("CHARGING_STARTED"));

    // (c) A new dependency: the future fails on a charging stop, which the checks that
    // waited never listened for — not comparable, naming it; the checks decided in the past
    // are comparable still.
    let new_dependency = candidate(
        dir.path(),
        "new-dependency.yaml",
        &format!(
            "{PAST_V1}  futureEvents:\n    dependsOn: [CHARGING_STARTED, CHARGING_STOPPED]\n    \
             PASS: 'future.exists(e, e.name == \"CHARGING_STARTED\")'\n    \
             FAIL: 'future.exists(e, e.name == \"CHARGING_STOPPED\")'\n"
        ),
    );
    let report = backtest(history, &new_dependency, &[]).await;
    assert_eq!(summary(&report), (5, 2, 0, 3), "{report:#}");
    let not_comparable: Vec<i64> = report["notComparable"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["missing"], json!(["CHARGING_STOPPED"]), "{c}");
            c["checkId"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(
        not_comparable,
        [
            checks[&robot::FUTURE_PASS],
            checks[&robot::DEADLINE_FAIL],
            checks[&robot::NODE]
        ]
    );
    // With Megazord: robot 3's charging stop at 08:03 fails it in the future phase.
    let report = backtest(
        history,
        &new_dependency,
        &["--megazord", &history.megazord_url],
    )
    .await;
    assert_eq!(summary(&report), (5, 4, 1, 0), "{report:#}");
    assert_eq!(report["megazord"]["checks"], 3, "{report:#}");
    let found = changes(&report);
    assert_eq!(found[0].0, checks[&robot::DEADLINE_FAIL]);
    assert_eq!(found[0].1, json!(["FAILED", "FAIL", "fail"]));
    assert_eq!(found[0].2, json!(["COMPLETED", "FAIL", "fail"]));
    assert_eq!(found[0].3["record"], Value::Null, "{report:#}");
    assert_eq!(found[0].3["eventName"], "CHARGING_STOPPED");
    assert_eq!(found[0].3["eventCreatedAt"], "2026-11-20T08:03:00Z");
    assert_eq!(report["changes"][0]["fromMegazord"], true);

    // (d) A stricter past rule: a start at most 20 minutes old. Robot 1 (started 07:30)
    // would have waited for the future its check never recorded: changed, undecided. The
    // legacy check (started 07:40) still passes.
    let stricter_past = candidate(
        dir.path(),
        "stricter-past.yaml",
        &format!(
            "  pastEvents:\n    dependsOn: [CHARGING_STARTED, CHARGING_STOPPED]\n    \
             PASS: 'events.size() > 0 && events[events.size() - 1].name == \"CHARGING_STARTED\" \
             && events[events.size() - 1].createdAt >= now - duration(\"20m\")'\n{FUTURE_V1}"
        ),
    );
    let report = backtest(history, &stricter_past, &[]).await;
    assert_eq!(summary(&report), (5, 4, 1, 0), "{report:#}");
    let found = changes(&report);
    assert_eq!(found[0].0, checks[&robot::PAST_PASS]);
    assert_eq!(found[0].1, json!(["COMPLETED", "PASS", "pass"]));
    assert_eq!(found[0].2, json!([null, "UNDECIDED", null]));
    assert_eq!(
        report["changes"][0]["candidate"]["note"],
        "undecided — its future was never recorded"
    );
    assert_eq!(found[0].3["step"], "PAST", "{report:#}");
    assert_eq!(
        (&found[0].3["stored"], &found[0].3["candidate"]),
        (&json!("PASS"), &json!("PENDING"))
    );
    assert_eq!(report["matrix"]["PASS"]["UNDECIDED"], 1, "{report:#}");
    // Megazord holds the start at 08:04: the candidate passes in the future, as stored.
    let report = backtest(
        history,
        &stricter_past,
        &["--megazord", &history.megazord_url],
    )
    .await;
    assert_eq!(summary(&report), (5, 5, 0, 0), "{report:#}");
    assert_eq!(report["megazord"]["checks"], 1, "{report:#}");
    // A Megazord that does not answer: judged from the records alone, as without it.
    let report = backtest(
        history,
        &stricter_past,
        &["--megazord", "http://127.0.0.1:1"],
    )
    .await;
    assert_eq!(summary(&report), (5, 4, 1, 0), "{report:#}");
    assert_eq!(changes(&report)[0].2, json!([null, "UNDECIDED", null]));
    assert_eq!(
        (&report["megazord"]["checks"], &report["megazord"]["unread"]),
        (&json!(0), &json!(1)),
        "{report:#}"
    );
    assert!(report["megazord"]["lastError"].is_string(), "{report:#}");

    // (e) --limit says it cut the period short only when a check was left; --robot filters.
    let report = backtest(history, &same, &["--limit", "5"]).await;
    assert_eq!((summary(&report).0, &report["limited"]), (5, &json!(false)));
    let report = backtest(history, &same, &["--limit", "4"]).await;
    assert_eq!((summary(&report).0, &report["limited"]), (4, &json!(true)));
    let (one, other) = (robot::PAST_PASS.to_string(), robot::NODE.to_string());
    let report = backtest(history, &same, &["--robot", &one, "--robot", &other]).await;
    assert_eq!(summary(&report), (2, 2, 0, 0), "{report:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtests_on_sqlite_leave_the_file_as_it_was() {
    let history = history(Backend::Sqlite).await.unwrap();
    let path = history.db.sqlite_path().unwrap();
    // Everything the service wrote, in the file itself.
    let wal = rusqlite::Connection::open(&path).unwrap();
    wal.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    scenarios(&history).await;
    assert!(
        std::fs::read(&path).unwrap() == before,
        "the backtest changed the database file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtests_on_mariadb_with_a_select_only_user() {
    let Some(mut history) = history(Backend::Mysql).await else {
        return;
    };
    let url = history.db.url.clone().unwrap();
    let reader = ReadOnlyUser::create(&url).await;
    history.db.url = Some(reader.url.clone());
    scenarios(&history).await;
    // The user can only read: a write through it is refused.
    let mut connection = reader
        .url
        .parse::<MySqlConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = sqlx::raw_sql("DELETE FROM status_check")
        .execute(&mut connection)
        .await;
    assert!(refused.is_err(), "a SELECT-only user deleted rows");
    connection.close().await.ok();
    history.db.url = Some(url);
    reader.drop_user().await;
}

/// A user with only `SELECT` on one test database.
struct ReadOnlyUser {
    admin: String,
    name: String,
    url: String,
}

impl ReadOnlyUser {
    async fn create(database_url: &str) -> ReadOnlyUser {
        let (server, database) = database_url.rsplit_once('/').unwrap();
        let name = format!("sc_ro_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let password = uuid::Uuid::new_v4().simple().to_string();
        let mut admin = database_url
            .parse::<MySqlConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        // Names of hex digits and a fixed prefix only; a user name cannot be bound. In a
        // GRANT, `_` is a wildcard: escaped, the grant names this one database.
        let pattern = database.replace('_', "\\_");
        for statement in [
            format!("CREATE USER '{name}'@'127.0.0.1' IDENTIFIED BY '{password}'"),
            format!("GRANT SELECT ON `{pattern}`.* TO '{name}'@'127.0.0.1'"),
        ] {
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut admin)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the test user cannot create a read-only user ({e}); scripts/mariadb \
                         grants it CREATE USER and GRANT OPTION on sc_test_* databases"
                    )
                });
        }
        admin.close().await.ok();
        let host = server.rsplit_once('@').unwrap().1;
        ReadOnlyUser {
            admin: database_url.to_owned(),
            url: format!("mysql://{name}:{password}@{host}/{database}"),
            name,
        }
    }

    async fn drop_user(self) {
        let mut admin = self
            .admin
            .parse::<MySqlConnectOptions>()
            .unwrap()
            .connect()
            .await
            .unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP USER '{}'@'127.0.0.1'",
            self.name
        )))
        .execute(&mut admin)
        .await
        .unwrap();
        admin.close().await.ok();
    }
}
