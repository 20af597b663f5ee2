//! A replica whose clock is wrong (SPEC §3.6, issue #22): the real binary as child processes
//! on one MariaDB, one of them under Debian's libfaketime (`LD_PRELOAD`, its offset read from
//! a file on every call so the test can set the clock right mid-run; the monotonic clock left
//! alone), the other with the host's clock — which is the database's, both on this machine.
//!
//! - 30 s ahead, both replicas running every role: no check and no monitor window ends early
//!   (within 1 s) whichever replica claims it; the shifted replica is not ready, naming its
//!   clock, and its `clock_skew_seconds` shows ≈ 30 s; once its clock is right it is ready again
//!   by itself.
//! - 30 s behind, as the only scheduler and as an API replica: deadlines are met within SPEC
//!   §3.5's bound, and the checks it creates have the right deadlines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::MySqlPool;
use status_check::dev::QueueSink;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim};

use crate::fault_stack::{Upstreams, await_readiness, create, replica_env};
use crate::faults::{Replica, free_port, get_check, start};
use crate::harness::{Queues, sqs_queues};
use crate::support::{self, TestDb};

/// The future window of the checks: short, so the test is.
const WINDOW: Duration = Duration::from_secs(4);
/// How late a check may end here. SPEC §3.5's 1 s is the scheduler's (tested with the manual
/// clock, and measured by the deadlines benchmark); these replicas run in real time on a
/// machine running MariaDB, the queue emulator and other tests besides, so a second of theirs
/// is allowed on top. What this test is about is the other bound: never early.
const LATE_BOUND: Duration = Duration::from_secs(2);
/// How early a check or a window may end at most (the "within 1 s").
const EARLY_BOUND: Duration = Duration::from_secs(1);
const FAIL_STEP: i64 = 9002;

/// Debian's libfaketime (package `libfaketime`, which `scripts/test` installs).
fn libfaketime() -> PathBuf {
    let lib = std::env::var("TEST_LIBFAKETIME")
        .unwrap_or_else(|_| "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1".to_owned());
    assert!(
        Path::new(&lib).exists(),
        "{lib} is missing: install Debian's libfaketime (scripts/test does), or set TEST_LIBFAKETIME"
    );
    PathBuf::from(lib)
}

/// A replica's clock offset, in a file libfaketime reads on every call.
struct Shift {
    file: tempfile::NamedTempFile,
}

impl Shift {
    /// `offset` as libfaketime writes it: `+30s`, `-30s`, `+0`.
    fn new(offset: &str) -> Shift {
        let shift = Shift {
            file: tempfile::NamedTempFile::new().unwrap(),
        };
        shift.set(offset);
        shift
    }

    fn set(&self, offset: &str) {
        std::fs::write(self.file.path(), format!("{offset}\n")).unwrap();
    }

    /// `env` with the clock shifted: only the wall clock (the monotonic one is the host's).
    fn apply(&self, env: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = env.clone();
        for (key, value) in [
            ("LD_PRELOAD", libfaketime().display().to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
            (
                "FAKETIME_TIMESTAMP_FILE",
                self.file.path().display().to_string(),
            ),
            ("FAKETIME_NO_CACHE", "1".to_owned()),
        ] {
            env.insert(key.to_owned(), value);
        }
        env
    }
}

/// The simulators, a database and queues for two replicas; `None` when MySQL or SQS tests
/// are switched off.
struct Stack {
    db: TestDb,
    queues: Queues,
    upstreams: Upstreams,
    step: i64,
    logs: tempfile::TempDir,
}

impl Stack {
    async fn start() -> Option<Stack> {
        if support::mysql_skipped() {
            return None;
        }
        let queues = sqs_queues().await?;
        let db = support::mysql_db().await.unwrap();
        let micro_managers = MicroManagersSim::new();
        let step = micro_managers.add_step(DemoStep {
            step_id: None,
            status_check_name: "robot-is-charging".into(),
            past_interval: 0,
            future_interval: WINDOW.as_secs() as i64,
            next: [("pass".to_owned(), 9001), ("fail".to_owned(), FAIL_STEP)].into(),
        });
        db.neighbours
            .script_steps(SCRIPT_VERSION_ID, &[step, 9001, FAIL_STEP])
            .await;
        let sink = QueueSink {
            queue: queues.queue.clone(),
            url: queues.status_url.clone(),
        };
        let megazord = crate::fault_stack::seeded(
            MegazordSim::new(Arc::new(sink), status_check_sim::system_now())
                .with_rows(Arc::new(db.neighbours.clone())),
        );
        // The monitor's alarm is an event Megazord must know too.
        megazord.add_event_schemas([(ALARM, 10)]);
        let upstreams = Upstreams::serve(micro_managers, megazord);
        Some(Stack {
            db,
            queues,
            upstreams,
            step,
            logs: tempfile::tempdir().unwrap(),
        })
    }

    fn env(&self, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let endpoint = std::env::var("TEST_SQS_ENDPOINT").unwrap();
        let mut settings = vec![
            ("CLOCK_SKEW_INTERVAL_MS", "300"),
            ("MONITOR_SCAN_INTERVAL_MS", "100"),
            ("RELAY_POLL_INTERVAL_MS", "100"),
        ];
        settings.extend_from_slice(extra);
        replica_env(
            self.db.url.as_deref().unwrap(),
            &self.queues,
            &endpoint,
            &self.upstreams,
            &settings,
        )
    }

    async fn replica(&self, env: &BTreeMap<String, String>, name: &str) -> Replica {
        start(
            env,
            free_port(),
            &self.logs.path().join(format!("{name}.log")),
        )
        .await
    }

    async fn robot(&self, robot: i64) {
        self.db.neighbours.robot(robot).await;
        self.queues.robot_queue(robot).await;
    }
}

/// A check created through a replica, and when.
struct Created {
    robot: i64,
    id: i64,
    requested_utc: DateTime<Utc>,
    answered_utc: DateTime<Utc>,
    polling_until: DateTime<Utc>,
}

async fn create_on(port: u16, robot: i64, step: i64) -> Created {
    let requested_utc = Utc::now();
    let created = create(port, robot, step).await;
    let answered_utc = Utc::now();
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    assert_eq!(created.body["phase"], "FUTURE", "{created:?}");
    Created {
        robot,
        id: created.body["id"].as_i64().unwrap(),
        requested_utc,
        answered_utc,
        polling_until: created.body["pollingUntil"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
    }
}

/// Records, on the database's clock (the real one: the database runs on this host), when each
/// check ends: a trigger on `status_check`, so the time does not come from any replica.
async fn record_ends(db: &TestDb) -> MySqlPool {
    let pool = MySqlPool::connect(db.url.as_deref().unwrap())
        .await
        .unwrap();
    for statement in [
        "CREATE TABLE test_check_ended (id BIGINT PRIMARY KEY, at DATETIME(6) NOT NULL)",
        "CREATE TRIGGER test_check_ended AFTER UPDATE ON status_check FOR EACH ROW \
         INSERT IGNORE INTO test_check_ended (id, at) SELECT NEW.id, UTC_TIMESTAMP(6) \
         WHERE NEW.phase IN ('COMPLETED', 'FAILED') AND NOT OLD.phase <=> NEW.phase",
    ] {
        sqlx::raw_sql(statement).execute(&pool).await.unwrap();
    }
    pool
}

/// Waits until every check has ended; asserts each failed at its deadline (no event came) —
/// not more than [`EARLY_BOUND`] before it, not more than [`LATE_BOUND`] after it, on the
/// database's clock — and that its deadline is the window after its creation on the real clock.
async fn assert_end_at_their_deadlines(
    port: u16,
    ends: &MySqlPool,
    checks: &[Created],
    logs: &Path,
) {
    let give_up = Instant::now() + WINDOW + Duration::from_secs(30);
    let ended: BTreeMap<i64, DateTime<Utc>> = loop {
        let rows: Vec<(i64, NaiveDateTime)> = sqlx::query_as("SELECT id, at FROM test_check_ended")
            .fetch_all(ends)
            .await
            .unwrap();
        let ended: BTreeMap<i64, DateTime<Utc>> = rows
            .into_iter()
            .map(|(id, at)| (id, at.and_utc()))
            .collect();
        if checks.iter().all(|c| ended.contains_key(&c.id)) {
            break ended;
        }
        assert!(
            Instant::now() < give_up,
            "ended only {ended:?}; logs in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let window = TimeDelta::from_std(WINDOW).unwrap();
    let early = TimeDelta::from_std(EARLY_BOUND).unwrap();
    let late = TimeDelta::from_std(LATE_BOUND).unwrap();
    for check in checks {
        let read = get_check(port, check.robot, check.id).await;
        assert_eq!(
            (read["phase"].as_str(), read["result"].as_str()),
            (Some("FAILED"), Some("FAIL")),
            "{read}"
        );
        assert_eq!(read["nextStepId"], FAIL_STEP, "{read}");
        // The deadline on the real clock lies between request + window and answer + window.
        assert!(
            check.polling_until >= check.requested_utc + window - early
                && check.polling_until <= check.answered_utc + window + early,
            "check {}: deadline {} for a window of {WINDOW:?} created between {} and {}",
            check.id,
            check.polling_until,
            check.requested_utc,
            check.answered_utc
        );
        let ended_at = ended[&check.id];
        assert!(
            ended_at >= check.polling_until - early,
            "check {} ended early: at {ended_at}, its deadline {}",
            check.id,
            check.polling_until
        );
        assert!(
            ended_at <= check.polling_until + late,
            "check {} ended late: at {ended_at}, its deadline {}; logs in {}",
            check.id,
            check.polling_until,
            logs.display()
        );
    }
}

/// `clock_skew_seconds` of the replica at `port`.
async fn skew_gauge(port: u16) -> f64 {
    let text = crate::fault_stack::metrics_of(port).await;
    crate::fault_stack::metric_value(&text, "clock_skew_seconds")
        .unwrap_or_else(|| panic!("no clock_skew_seconds in:\n{text}"))
}

/// The number of seconds a readiness reason names (`clock: 30.0 s ahead …`).
fn seconds_in(reason: &str) -> f64 {
    reason
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no seconds in {reason:?}"))
}

/// What `/health/ready` of `port` says is failing, once it says something about the clock.
async fn clock_reason(port: u16) -> String {
    let answer = await_readiness(
        port,
        StatusCode::SERVICE_UNAVAILABLE,
        Duration::from_secs(10),
    )
    .await;
    let failing = answer.body["failing"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    failing
        .iter()
        .filter_map(Value::as_str)
        .find(|reason| reason.starts_with("clock"))
        .unwrap_or_else(|| panic!("nothing about the clock: {}", answer.body))
        .to_owned()
}

const MONITORED: i64 = 2207;
const ALARM: &str = "NO_ACTIVITY_ALARM";
/// The monitor's window length.
const MONITOR_WINDOW: Duration = Duration::from_secs(3);

/// A monitors file watching [`MONITORED`] for ACTIVITY in [`MONITOR_WINDOW`]s, all day.
fn monitors_file(dir: &Path) -> PathBuf {
    let file = dir.join("monitors.yaml");
    std::fs::write(
        &file,
        format!(
            "- robotId: {MONITORED}\n  ruleId: quiet\n  eventType: ACTIVITY\n  window: {}s\n  \
             daily: {{start: \"00:00\", end: \"24:00\"}}\n  \
             actions: [{{type: alarm, eventName: {ALARM}}}]\n",
            MONITOR_WINDOW.as_secs()
        ),
    )
    .unwrap();
    file
}

/// When Megazord received each of the monitor's alarms (its own, real, clock), by window
/// number; waits until `count` have come.
async fn alarms(megazord: &MegazordSim, count: usize, logs: &Path) -> BTreeMap<u32, DateTime<Utc>> {
    let give_up = Instant::now() + MONITOR_WINDOW * (count as u32 + 5);
    loop {
        let mut by_window = BTreeMap::new();
        for event in megazord.incomings(MONITORED, Some(ALARM), None) {
            let reference = event["referenceId"].as_str().unwrap();
            let window: u32 = reference.rsplit(':').next().unwrap().parse().unwrap();
            let at: DateTime<Utc> = event["createdAt"].as_str().unwrap().parse().unwrap();
            by_window.entry(window).or_insert(at);
        }
        if by_window.len() >= count {
            return by_window;
        }
        assert!(
            Instant::now() < give_up,
            "only {by_window:?} alarms; logs in {}",
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_30_s_ahead_ends_nothing_early_and_is_ready_again_once_its_clock_is_right() {
    let Some(stack) = Stack::start().await else {
        return;
    };
    stack.robot(MONITORED).await;
    let monitors = monitors_file(stack.logs.path());
    let env = stack.env(&[("MONITORS_FILE", monitors.to_str().unwrap())]);
    let shift = Shift::new("+30s");
    let monitors_from = Utc::now();
    let normal = stack.replica(&env, "normal").await;
    let ahead = stack.replica(&shift.apply(&env), "ahead").await;

    // The shifted replica says why it is not ready, and how far off it is.
    let reason = clock_reason(ahead.port).await;
    assert!(
        reason.contains(" s ahead of the database") && reason.contains("CLOCK_SKEW_MAX 5 s"),
        "{reason}"
    );
    assert!((seconds_in(&reason) - 30.0).abs() < 0.5, "{reason}");
    let skew = skew_gauge(ahead.port).await;
    assert!((skew - 30.0).abs() < 0.5, "clock_skew_seconds {skew}");
    let log = std::fs::read_to_string(stack.logs.path().join("ahead.log")).unwrap();
    assert!(
        log.lines()
            .any(|line| line.contains("WARN") && line.contains("s ahead of the database's")),
        "no warning about the clock in:\n{log}"
    );
    await_readiness(normal.port, StatusCode::OK, Duration::from_secs(10)).await;
    assert!(skew_gauge(normal.port).await.abs() < 0.5);

    // Checks created through either replica, claimed by whichever scheduler comes first: the
    // shifted one, were it on its own clock, would see each deadline 30 s early.
    let ends = record_ends(&stack.db).await;
    let mut checks = Vec::new();
    for (n, robot) in (2200..2206).enumerate() {
        stack.robot(robot).await;
        let port = if n % 2 == 0 { ahead.port } else { normal.port };
        checks.push(create_on(port, robot, stack.step).await);
    }
    assert_end_at_their_deadlines(normal.port, &ends, &checks, stack.logs.path()).await;

    // The monitor's windows (both replicas run the monitor worker, and decide its window
    // ends) end one window after another from the session's opening, which came after the
    // replicas started; no alarm comes before its window's end.
    let alarmed = alarms(&stack.upstreams.megazord, 3, stack.logs.path()).await;
    let stored = stack
        .db
        .store
        .get_monitor(MONITORED, "quiet")
        .await
        .unwrap()
        .unwrap();
    let current = stored.state.window.expect("the session is open");
    let window = TimeDelta::from_std(MONITOR_WINDOW).unwrap();
    let early = TimeDelta::from_std(EARLY_BOUND).unwrap();
    let opened = current.window_start - window * (current.window_number as i32 - 1);
    assert!(
        opened >= monitors_from - early,
        "the session opened at {opened}, before the replicas started at {monitors_from}"
    );
    for (&number, &at) in &alarmed {
        let end = opened + window * number as i32;
        assert!(
            at >= end - early,
            "window {number} ends at {end} but alarmed at {at}: {alarmed:?}"
        );
    }

    // Its clock set right, it is ready again by itself.
    shift.set("+0");
    await_readiness(ahead.port, StatusCode::OK, Duration::from_secs(10)).await;
    assert!(skew_gauge(ahead.port).await.abs() < 0.5);
    drop((normal, ahead));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_30_s_behind_meets_deadlines_as_the_only_scheduler_and_creates_right_ones() {
    let Some(stack) = Stack::start().await else {
        return;
    };
    let shift = Shift::new("-30s");
    // The normal replica has no scheduler; the shifted one is the only one, and an API.
    let normal = stack
        .replica(&stack.env(&[("ROLES", "api,consumer,relay")]), "normal")
        .await;
    let behind_env = shift.apply(&stack.env(&[("ROLES", "api,scheduler")]));
    let behind = stack.replica(&behind_env, "behind").await;
    let reason = clock_reason(behind.port).await;
    assert!(reason.contains(" s behind the database"), "{reason}");
    assert!((seconds_in(&reason) - 30.0).abs() < 0.5, "{reason}");
    let skew = skew_gauge(behind.port).await;
    assert!((skew + 30.0).abs() < 0.5, "clock_skew_seconds {skew}");

    // Checks created through the shifted API replica and the normal one: every deadline is the
    // window after creation on the database's clock, and the shifted scheduler meets it.
    let ends = record_ends(&stack.db).await;
    let mut checks = Vec::new();
    for (n, robot) in (2210..2216).enumerate() {
        stack.robot(robot).await;
        let port = if n % 2 == 0 { behind.port } else { normal.port };
        checks.push(create_on(port, robot, stack.step).await);
    }
    assert_end_at_their_deadlines(normal.port, &ends, &checks, stack.logs.path()).await;
    drop((normal, behind));
}
