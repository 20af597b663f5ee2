//! Backtest benchmark (SPEC §10, §14): `templates backtest` over a SQLite file of ended
//! checks — every one read page by page and replayed through the candidate — beside the time
//! merely to read the same rows (the limit): the backtest's own statements run directly
//! through the SQLite C library (`rusqlite`, one read-only connection, prepared statements),
//! every value of every row touched, nothing mapped or replayed.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p status-check --bench backtest
//! ```
//! `BACKTEST_CHECKS` sets how many ended checks the file holds (100,000), `BACKTEST_ROUNDS`
//! how many times each is measured, the best kept (3). Without `--bench` among the arguments
//! (under `cargo test`) it runs 300 checks once and checks the report only. The checks are
//! robot-is-charging v1's, a third each passed in the past phase (two past records), passed
//! in the future (a past and a future record) and failed at the deadline (one past record);
//! the candidate is the same template, so every check is replayed to its end and unchanged.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use rusqlite::{Connection, OpenFlags};
use status_check::backtest::{self, Options, Quiet};
use status_check::store::sqlite::SqliteStore;
use status_check::store::{
    CheckKey, CheckWrites as _, NewCheck, Store as _, Synced, TemplateStore as _, sql,
};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::{CheckPhase, CheckResult, Event, Limits, Record, RecordPhase};

/// The backtest's target (SPEC §10).
const TARGET_PER_SEC: f64 = 20_000.0;
/// Checks per write transaction while filling the file.
const FILL_BATCH: usize = 500;

fn anchor() -> DateTime<Utc> {
    "2026-11-20T08:00:00Z".parse().unwrap()
}

fn template_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates/robot-is-charging.v1.yaml")
}

fn env_number(key: &str, default: usize) -> usize {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Ended check number `i`, with its records.
fn ended_check(i: i64, template_id: i64) -> NewCheck {
    let at = |minutes: i64| anchor() + TimeDelta::minutes(minutes);
    let event = |k: i64, name: &str, minutes: i64| Event {
        id: i * 10 + k,
        name: name.to_owned(),
        created_at: at(minutes),
        level: Some(1),
        reference_id: None,
    };
    let record = |order: u32, phase: RecordPhase, event: Event, result: CheckResult| Record {
        order,
        phase,
        created_at: event.created_at.max(anchor()),
        event,
        outgoing_event_id: None,
        result,
    };
    let next_steps = NextSteps {
        pass: 1001,
        fail: 1002,
        unknown: None,
    };
    let (phase, result, subscription_id, records) = match i % 3 {
        0 => (
            CheckPhase::Completed,
            CheckResult::Pass,
            None,
            vec![
                record(
                    1,
                    RecordPhase::Past,
                    event(1, "CHARGING_STOPPED", -50),
                    CheckResult::Pass,
                ),
                record(
                    2,
                    RecordPhase::Past,
                    event(2, "CHARGING_STARTED", -30),
                    CheckResult::Pass,
                ),
            ],
        ),
        1 => (
            CheckPhase::Completed,
            CheckResult::Pass,
            Some(i),
            vec![
                record(
                    1,
                    RecordPhase::Past,
                    event(1, "CHARGING_STOPPED", -30),
                    CheckResult::Pending,
                ),
                record(
                    2,
                    RecordPhase::Future,
                    event(2, "CHARGING_STARTED", 5),
                    CheckResult::Pass,
                ),
            ],
        ),
        _ => (
            CheckPhase::Failed,
            CheckResult::Fail,
            Some(i),
            vec![record(
                1,
                RecordPhase::Past,
                event(1, "CHARGING_STOPPED", -30),
                CheckResult::Pending,
            )],
        ),
    };
    NewCheck {
        key: CheckKey {
            robot_id: 1 + i % 1000,
            step_id: 101,
            scheduled_id: i + 1,
            planned_at: anchor(),
        },
        script_version_id: 789,
        template_id,
        phase,
        result,
        next_step_id: next_steps.for_result(result),
        subscription_id,
        windows: Windows::from_effective(anchor(), 3600, 600),
        deadline: None,
        next_steps,
        records,
        remove_subscription: false,
        subscribe_intent: None,
        now: anchor(),
    }
}

/// A migrated SQLite file holding `checks` ended checks; its template's id.
async fn fill(path: &Path, checks: usize) -> i64 {
    let store = SqliteStore::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let template = backtest::load_candidate(&template_file(), &Limits::default()).unwrap();
    let template_id = match store
        .sync_template(template.definition(), &|_| true, anchor())
        .await
        .unwrap()
    {
        Synced::Created(id) => id,
        other => panic!("the template was not created: {other:?}"),
    };
    let all: Vec<i64> = (0..checks as i64).collect();
    for batch in all.chunks(FILL_BATCH) {
        let new: Vec<NewCheck> = batch.iter().map(|&i| ended_check(i, template_id)).collect();
        store.create_checks(&new).await.unwrap();
    }
    template_id
}

/// The limit: the backtest's statements over the same rows through rusqlite, every value of
/// every row read; how many checks.
fn read_rows(path: &Path, template_id: i64, since: &str, until: &str) -> usize {
    let connection = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let mut page = connection
        .prepare_cached(sql::ended_checks_page(1, 0))
        .unwrap();
    let (mut after, mut checks, mut values) = (0_i64, 0, 0_usize);
    loop {
        let mut ids = Vec::with_capacity(backtest::PAGE_SIZE);
        let mut rows = page
            .query(rusqlite::params![
                template_id,
                since,
                until,
                after,
                backtest::PAGE_SIZE as i64
            ])
            .unwrap();
        while let Some(row) = rows.next().unwrap() {
            ids.push(row.get::<_, i64>(0).unwrap());
            for column in 0..row.as_ref().column_count() {
                values += usize::from(row.get_ref(column).is_ok());
            }
        }
        drop(rows);
        for chunk in ids.chunks(64) {
            let (text, bound) = sql::records_of_checks(chunk);
            let mut records = connection.prepare_cached(text).unwrap();
            let mut rows = records
                .query(rusqlite::params_from_iter(bound.iter()))
                .unwrap();
            while let Some(row) = rows.next().unwrap() {
                for column in 0..row.as_ref().column_count() {
                    values += usize::from(row.get_ref(column).is_ok());
                }
            }
        }
        checks += ids.len();
        match ids.last() {
            Some(&last) if ids.len() == backtest::PAGE_SIZE => after = last,
            _ => break,
        }
    }
    assert!(values > checks, "the rows were read");
    checks
}

fn best_of<T>(rounds: usize, mut run: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut last = None;
    for _ in 0..rounds.max(1) {
        let started = Instant::now();
        let value = run();
        best = best.min(started.elapsed().as_secs_f64());
        last = Some(value);
    }
    (best, last.unwrap())
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let checks = if measuring {
        env_number("BACKTEST_CHECKS", 100_000)
    } else {
        300
    };
    let rounds = if measuring {
        env_number("BACKTEST_ROUNDS", 3)
    } else {
        1
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backtest.db");
    let began = Instant::now();
    let template_id = runtime.block_on(fill(&path, checks));
    println!(
        "set-up: {checks} ended checks of robot-is-charging v1 in {:.1} s",
        began.elapsed().as_secs_f64()
    );
    let (since, until) = (anchor() - TimeDelta::days(1), anchor() + TimeDelta::days(1));
    let text = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let (read_secs, read) = best_of(rounds, || {
        read_rows(&path, template_id, &text(since), &text(until))
    });
    assert_eq!(read, checks, "the limit read every check");
    let options = Options {
        file: template_file(),
        database: format!("sqlite://{}", path.display()),
        since,
        until,
        robots: Vec::new(),
        limit: None,
        megazord: None,
        progress: false,
        svg_dir: None,
        limits: Limits::default(),
    };
    let (backtest_secs, report) = best_of(rounds, || {
        runtime
            .block_on(backtest::run(&options, &Quiet))
            .expect("the backtest runs")
    });
    let summary = &report.summary;
    assert_eq!(
        (summary.examined, summary.unchanged),
        (checks as u64, checks as u64),
        "every check replayed, none changed: {summary:?}"
    );
    let read_rate = checks as f64 / read_secs;
    let backtest_rate = checks as f64 / backtest_secs;
    println!(
        "limit: read the same rows (rusqlite, read-only) {read_rate:>10.0} checks/s  ({:.3} s)",
        read_secs
    );
    println!(
        "backtest: read + replay + compare          {backtest_rate:>10.0} checks/s  ({:.3} s)",
        backtest_secs
    );
    println!(
        "ratio to the limit {:.2}; target ≥ {TARGET_PER_SEC:.0} checks/s: {}",
        backtest_rate / read_rate,
        if backtest_rate >= TARGET_PER_SEC {
            "met"
        } else {
            "NOT met"
        }
    );
}
