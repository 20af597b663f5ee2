//! Load benchmark (SPEC §10): the service on SQLite, driven over real local HTTP, against the
//! in-process Micro-Managers and Megazord simulators and in-memory queues, on the system clock.
//! Every scenario prints its figures, the physical limit of the same writes measured in the
//! same run, the ratio to it, the SPEC §10 target and whether it is met; a summary table
//! closes the run, and `LOAD_SUMMARY_JSON=FILE` writes the figures as JSON too.
//!
//! ```sh
//! # full run (release; about 10 minutes here, most of it (c) at 100,000 checks)
//! CARGO_TARGET_DIR=/work/target-load cargo bench -p status-check --bench load
//! # with the machine-readable summary
//! LOAD_SUMMARY_JSON=/tmp/load.json cargo bench -p status-check --bench load
//! # one or more scenarios: any argument that is part of a scenario name selects it
//! CARGO_TARGET_DIR=/work/target-load cargo bench -p status-check --bench load -- create startup
//! # smoke (debug; what `cargo test --all-targets` runs): tiny sizes, asserts correctness only
//! CARGO_TARGET_DIR=/work/target-load cargo test -p status-check --bench load
//! ```
//!
//! Scenarios: `create` (a), `deliveries` (b), `deliveries-deciding` (b′: deliveries that end
//! their checks, with the confirming read of Megazord and without), `deadlines` (c),
//! `deadlines-peak` (c′),
//! `startup` (d), and
//! `mariadb-deliveries` (e) — (b) on MariaDB with two replicas, when `TEST_MYSQL_URL` names a
//! server (skipped with a note otherwise). Without `--bench` among the arguments (so under
//! `cargo test`) each runs at smoke size, and the JSON summary is written to a temporary file
//! and read back; any correctness failure (a check missing, a delivery not processed, a
//! deadline not finalised, a summary that does not parse, …) exits non-zero. Missing a SPEC
//! target is reported, not a failure.
//!
//! Sizes (environment; full default / smoke default):
//! - `LOAD_CREATE_SECS` — seconds per measurement of (a), each of create, the two raw limits
//!   and bare axum at each concurrency (5 / 0.3);
//! - `LOAD_CREATE_CLIENTS` — concurrent robots of (a), comma-separated (`1,16,64`);
//! - `LOAD_DELIVERY_CHECKS` — open checks of (b) (2000 / 20);
//! - `LOAD_DELIVERY_EVENTS` — events per check of (b) and (e), each one delivery (5 / 5);
//! - `LOAD_MARIADB_CHECKS` — open checks of (e) (2000 / 20);
//! - `LOAD_MARIADB_WRITERS` — connections of (e)'s raw limit, around which it tries a quarter,
//!   a half, once and twice as many and keeps the best (twice `DB_POOL_SIZE`'s default: the two
//!   replicas' pools);
//! - `LOAD_GROUP_SIZE` — deliveries per transaction of the grouped delivery limits: by default
//!   the consumer's batch setting's default (given to the service too when set), or 50 while
//!   the service has no such setting;
//! - `LOAD_DEADLINE_CHECKS` — open checks of (c) (100000 / 200);
//! - `LOAD_DEADLINE_LEAD_SECS`, `LOAD_DEADLINE_SPREAD_SECS` — (c)'s deadlines fall in
//!   `[lead, lead + spread)` seconds after set-up (10, 10 / 2, 2); (c) runs twice, with the
//!   read at the deadline (`DEADLINE_RECONCILE`, SPEC §3.5) and without;
//! - `LOAD_PEAK_RATE`, `LOAD_PEAK_SECS` — (c′): deadlines a second and for how long
//!   (1000, 10 / 100, 2), after the same lead, with the read and without;
//! - `LOAD_STARTUP_RUNS` — start-ups timed in (d) (7 / 1).
//!
//! Limits (same run, same machine) are physical: the rows the service writes per unit, with
//! its own statements (`store::sql`), written directly through the SQLite C library
//! (`rusqlite`: one connection, WAL, synchronous NORMAL, prepared statements) on a file the
//! service's migrations made — one unit per `BEGIN IMMEDIATE` transaction and grouped, several
//! per transaction. (a) a create's 3 rows through one writer thread fed by the robots, one
//! create per transaction and every create waiting (up to 64) per transaction, plus a bare axum handler
//! over the same HTTP client; (b) a delivery's writes, one per transaction and the consumer's
//! batch per transaction; (c) the scheduler's claims of its batch, then one finalisation per
//! transaction and the claimed batch per transaction; (d) the same binary's `--version`;
//! (e) (b)'s writes grouped the same way through the blocking `mysql` crate, on as many
//! connections at once as the two replicas' pools (each check's deliveries on one). A figure stands beside the grouped limit where the service groups those writes
//! (a consumer batch setting; [`FINALISATIONS_GROUPED`], [`CREATES_GROUPED`]), else beside one
//! unit per transaction; both are printed.
//!
//! (c) runs in a child process (this binary, re-executed) so its peak resident memory is its
//! own and not the other scenarios'. Its checks are set up through `Store::create_check` with
//! deadlines a day out, then one UPDATE moves every deadline the same whole number of seconds
//! so they fall in the window (the API would add 5 simulator round trips per check and take
//! minutes; the rows are the service's own either way).
//!
//! Layout (`crates/service/benches/load/`, the `[[bench]]` `load` of `crates/service/Cargo.toml`):
//! - `main.rs` — this header, sizes, group sizes, arguments, small helpers, the load driver
//!   ([`drive`]) and `main`;
//! - `summary.rs` — the summary table and the JSON summary (written, read back, checked);
//! - `stack.rs` — the service and simulators on a fresh database, and the create client;
//! - `writes.rs` — the writes of one create, delivery and finalisation, for both raw clients;
//! - `raw.rs` — the SQLite limits' database, grouped loop and create writer (rusqlite);
//! - `raw_mysql.rs` — MariaDB databases made like the tests', their neighbour rows, the loop;
//! - `create.rs` (a), `deliveries.rs` (b), `startup.rs` (d), `mariadb.rs` (e) — one scenario
//!   each, with its limit;
//! - `deadlines.rs` (c) — the parent side and the raw finalisation limit; `deadlines/child.rs`
//!   the child process; `deadlines/recording.rs` what it measures with: triggers on its database
//!   and the robots' queues.

/// The binary's allocator (`src/main.rs`): the service runs in this process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod create;
mod create_floor;
mod deadlines;
mod deliveries;
mod mariadb;
mod raw;
mod raw_mysql;
mod stack;
mod startup;
mod summary;
mod writes;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure};
use chrono::{DateTime, Utc};

use crate::create::scenario_create;
use crate::deadlines::{deadlines_child, scenario_deadline_peak, scenario_deadlines};
use crate::deliveries::{scenario_deciding_deliveries, scenario_deliveries};
use crate::mariadb::scenario_mariadb_deliveries;
use crate::startup::scenario_startup;
use crate::summary::{Summary, print_summary, verify_written};

// ---- Sizes, arguments, results ----

const SCENARIOS: [&str; 7] = [
    "create",
    "deliveries",
    "deliveries-deciding",
    "deadlines",
    "deadlines-peak",
    "startup",
    "mariadb-deliveries",
];
/// The argument that makes this binary the child process of scenario (c).
const CHILD_ARG: &str = "__load_deadlines_child";
/// The line prefix the child reports its figures with.
const CHILD_RESULT: &str = "@@LOAD_RESULT ";

/// SPEC §10 targets.
/// Create: at least this share of the floor's throughput, a p99 within this multiple of the
/// floor's (the floor: the same upstream calls and grouped writes with no service between).
const TARGET_CREATE_OF_FLOOR: f64 = 0.9;
const TARGET_CREATE_P99_OF_FLOOR: f64 = 1.1;
const TARGET_DELIVERIES_PER_SEC: f64 = 10_000.0;
/// Deliveries and finalisations: at least this share of the same writes' grouped limit.
const TARGET_SHARE_OF_LIMIT: f64 = 0.5;
const TARGET_LATENESS_MS: f64 = 1_000.0;
const TARGET_NOTIFY_LATENESS_MS: f64 = 2_000.0;
const TARGET_FINALISATIONS_PER_SEC: f64 = 10_000.0;
const TARGET_RSS_MB: f64 = 200.0;
const TARGET_STARTUP_MS: f64 = 300.0;

/// The service's SQLite read pool (`store/sqlite/`): the set-up of (c) creates this many
/// checks at once.
const SERVICE_POOL: u32 = 8;

/// The service's MySQL pool (`DB_POOL_SIZE`'s default): the raw MariaDB limit writes on as
/// many connections at once as (e)'s two replicas hold.
fn mysql_pool() -> usize {
    config_default("DB_POOL_SIZE")
        .and_then(|size| size.parse().ok())
        .unwrap_or(10)
}

/// Whether the scheduler finalises a claimed batch in one transaction (it does:
/// `Checks::finalise_batch`): the deadlines figure stands beside the grouped finalisation
/// limit, else beside one finalisation per transaction. Both limits are measured either way.
const FINALISATIONS_GROUPED: bool = true;
/// Whether the store commits creates that arrive together in one transaction (it does:
/// `checks/create_writes.rs`, up to [`CREATE_GROUP_MAX`]): the create figure stands beside
/// the grouped create limit.
const CREATES_GROUPED: bool = true;
/// The most creates the service writes in one transaction (`create_writes.rs` `MAX_BATCH`).
const CREATE_GROUP_MAX: usize = 64;
/// The group size of the raw delivery limit when the service has no consumer batch setting.
const DEFAULT_GROUP_SIZE: usize = 50;
/// Every check's `plannedAt`.
const PLANNED_AT: &str = "2026-11-20T08:00:00Z";
const SCRIPT_VERSION_ID: i64 = 789;

#[derive(Debug, Clone)]
struct Sizes {
    create_secs: f64,
    create_clients: Vec<usize>,
    delivery_checks: usize,
    delivery_events: usize,
    mariadb_checks: usize,
    mariadb_writers: usize,
    deadline_checks: usize,
    deadline_lead: u64,
    deadline_spread: u64,
    /// (c′): deadlines a second, for how many seconds.
    peak_rate: usize,
    peak_secs: u64,
    startup_runs: usize,
}

fn env_or<T: FromStr>(key: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(key) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|_| anyhow!("{key}={value:?} is not a valid value")),
        _ => Ok(default),
    }
}

impl Sizes {
    fn from_env(full: bool) -> anyhow::Result<Sizes> {
        fn pick<T>(full: bool, full_value: T, smoke_value: T) -> T {
            if full { full_value } else { smoke_value }
        }
        let clients: String = env_or("LOAD_CREATE_CLIENTS", "1,16,64".to_owned())?;
        let create_clients = clients
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|c| !c.is_empty() && c.iter().all(|&n| n > 0))
            .ok_or_else(|| anyhow!("LOAD_CREATE_CLIENTS={clients:?} is not a list of counts"))?;
        Ok(Sizes {
            create_secs: env_or("LOAD_CREATE_SECS", pick(full, 5.0, 0.3))?,
            create_clients,
            delivery_checks: env_or("LOAD_DELIVERY_CHECKS", pick(full, 2_000, 20))?,
            delivery_events: env_or("LOAD_DELIVERY_EVENTS", 5)?,
            mariadb_checks: env_or("LOAD_MARIADB_CHECKS", pick(full, 2_000, 20))?,
            mariadb_writers: env_or("LOAD_MARIADB_WRITERS", 2 * mysql_pool())?.max(1),
            deadline_checks: env_or("LOAD_DEADLINE_CHECKS", pick(full, 100_000, 200))?,
            deadline_lead: env_or("LOAD_DEADLINE_LEAD_SECS", pick(full, 10, 2))?,
            deadline_spread: env_or("LOAD_DEADLINE_SPREAD_SECS", pick(full, 10, 2))?,
            peak_rate: env_or("LOAD_PEAK_RATE", pick(full, 1_000, 100))?.max(1),
            peak_secs: env_or("LOAD_PEAK_SECS", pick(full, 10, 2))?.max(1),
            startup_runs: env_or("LOAD_STARTUP_RUNS", pick(full, 7, 1))?,
        })
    }
}

/// How a raw limit groups its units, and whether the service groups them that way.
#[derive(Debug, Clone)]
struct Group {
    size: usize,
    /// Where `size` came from, printed beside the limit.
    source: String,
    service_groups: bool,
}

/// A configuration key's default (`config::KEYS`).
fn config_default(key: &str) -> Option<&'static str> {
    status_check::config::KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|(_, value, _)| *value)
}

/// The consumer's batch setting (`CONSUMER_BATCH_SIZE`, or another key that starts with
/// `CONSUMER_BATCH`) and its default, if the service has one.
fn consumer_batch_key() -> Option<(&'static str, usize)> {
    status_check::config::KEYS
        .iter()
        .filter(|(key, _, _)| key.starts_with("CONSUMER_BATCH"))
        .find_map(|(key, value, _)| Some((*key, value.parse().ok()?)))
}

/// The group of the delivery limits: the consumer's batch — its configuration default, or
/// `LOAD_GROUP_SIZE` (which is then given to the service's consumer too); without a batch
/// setting, `LOAD_GROUP_SIZE` (default 50) and the service takes one delivery per transaction.
fn consumer_group() -> anyhow::Result<Group> {
    let explicit: Option<usize> = match env_or("LOAD_GROUP_SIZE", 0_usize)? {
        0 => None,
        n => Some(n),
    };
    Ok(match (consumer_batch_key(), explicit) {
        (Some((key, default)), None) => Group {
            size: default.max(1),
            source: format!("the consumer's batch, {key} default"),
            service_groups: default > 1,
        },
        (Some((key, _)), Some(size)) => Group {
            size,
            source: format!("LOAD_GROUP_SIZE, given to the service as {key} too"),
            service_groups: size > 1,
        },
        (None, size) => Group {
            size: size.unwrap_or(DEFAULT_GROUP_SIZE),
            source: format!(
                "LOAD_GROUP_SIZE{}; the service has no consumer batch setting \
                 (CONSUMER_BATCH_SIZE) and commits one delivery per transaction",
                if size.is_none() { " default" } else { "" }
            ),
            service_groups: false,
        },
    })
}

/// One line of the summary table.
struct Row {
    scenario: &'static str,
    figure: String,
    target: String,
    limit: String,
    ratio: String,
    met: Option<bool>,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_ARG) {
        return match deadlines_child() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("deadlines child failed: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // `cargo bench` passes `--bench`; `cargo test` runs bench targets without it.
    let full = args.iter().any(|a| a == "--bench");
    let filters: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let selected: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|name| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    if selected.is_empty() {
        eprintln!("no scenario matches {filters:?}; scenarios: {SCENARIOS:?}");
        return ExitCode::FAILURE;
    }
    let sizes = match Sizes::from_env(full) {
        Ok(sizes) => sizes,
        Err(e) => {
            eprintln!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "status-check load benchmark — {} run ({}), scenarios: {}",
        if full { "full" } else { "SMOKE" },
        if cfg!(debug_assertions) {
            "debug build: figures mean nothing"
        } else {
            "release build"
        },
        selected.join(", ")
    );
    println!(
        "machine: {} cores, load average {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rows = Vec::new();
    let mut summary = Summary::default();
    let mut failures = Vec::new();
    for name in selected {
        let started = Instant::now();
        let (rows, summary) = (&mut rows, &mut summary);
        let result = match name {
            "create" => runtime.block_on(scenario_create(&sizes, rows, summary)),
            "deliveries" => runtime.block_on(scenario_deliveries(&sizes, rows, summary)),
            "deliveries-deciding" => {
                runtime.block_on(scenario_deciding_deliveries(&sizes, rows, summary))
            }
            "deadlines" => scenario_deadlines(&sizes, &runtime, rows, summary),
            "deadlines-peak" => scenario_deadline_peak(&sizes, rows, summary),
            "startup" => runtime.block_on(scenario_startup(&sizes, rows, summary)),
            "mariadb-deliveries" => {
                runtime.block_on(scenario_mariadb_deliveries(&sizes, rows, summary))
            }
            _ => unreachable!(),
        };
        match result {
            Ok(()) => println!("[{name}] done in {:.1} s", started.elapsed().as_secs_f64()),
            Err(e) => {
                println!("[{name}] FAILED: {e:#}");
                failures.push(name);
            }
        }
    }
    print_summary(&rows, full);
    if let Err(e) = write_summary(&summary, full) {
        println!("\nsummary JSON FAILED: {e:#}");
        failures.push("summary JSON");
    }
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\nFAILED scenarios: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

/// `LOAD_SUMMARY_JSON=FILE` writes the summary there. A smoke run without it writes one to a
/// temporary file, so the writer is exercised: either way the file is read back and checked.
fn write_summary(summary: &Summary, full: bool) -> anyhow::Result<()> {
    let requested = std::env::var_os("LOAD_SUMMARY_JSON").filter(|p| !p.is_empty());
    let scratch;
    let path = match (&requested, full) {
        (Some(path), _) => PathBuf::from(path),
        (None, true) => return Ok(()),
        (None, false) => {
            scratch = tempfile::tempdir()?;
            scratch.path().join("load-summary.json")
        }
    };
    summary.write(&path, full)?;
    verify_written(&path, &summary.keys())?;
    if requested.is_some() {
        println!("summary JSON written to {}", path.display());
    } else {
        println!("summary JSON (smoke): written to a temporary file, read back and checked");
    }
    Ok(())
}

// ---- Small helpers ----

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

fn text_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn floor_seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

fn planned_at() -> DateTime<Utc> {
    PLANNED_AT.parse().expect("a valid constant")
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

fn sqlite_url(path: &Path) -> String {
    format!("sqlite://{}", path.display())
}

/// A field of `/proc/self/status` in kB (`VmRSS`, `VmHWM`).
fn proc_status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn yes_no(met: bool) -> &'static str {
    if met { "yes" } else { "NO" }
}

// ---- The load driver ----

type OpFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
/// One operation: `(client index, ticket)`; tickets count up from 0 across all clients.
type Op = Arc<dyn Fn(usize, u64) -> OpFuture + Send + Sync>;

#[derive(Debug, Clone, Copy)]
enum Until {
    /// Start operations for this long (those in flight at the end complete and count).
    Time(Duration),
    /// Run exactly this many operations.
    Count(u64),
}

/// What a load run measured.
struct Load {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// Latencies of the successful operations, ms, sorted.
    latencies_ms: Vec<f64>,
    elapsed: Duration,
}

impl Load {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn p(&self, p: f64) -> f64 {
        percentile(&self.latencies_ms, p)
    }

    fn ensure_clean(&self, what: &str) -> anyhow::Result<()> {
        ensure!(
            self.errors == 0,
            "{what}: {} of {} operations failed; first: {}",
            self.errors,
            self.errors + self.ok,
            self.first_error.as_deref().unwrap_or("?")
        );
        ensure!(self.ok > 0, "{what}: no operation completed");
        Ok(())
    }
}

/// Runs `op` from `clients` concurrent tasks, each one operation after the other.
async fn drive(clients: usize, until: Until, op: Op) -> Load {
    let tickets = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let op = op.clone();
            let tickets = tickets.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut first_error = None;
                loop {
                    if let Until::Time(duration) = until
                        && start.elapsed() >= duration
                    {
                        break;
                    }
                    let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                    if let Until::Count(n) = until
                        && ticket >= n
                    {
                        break;
                    }
                    let began = Instant::now();
                    match op(client, ticket).await {
                        Ok(()) => latencies.push(began.elapsed().as_secs_f64() * 1e3),
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (latencies, errors, first_error, Instant::now())
            })
        })
        .collect();
    let mut load = Load {
        ok: 0,
        errors: 0,
        first_error: None,
        latencies_ms: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for task in tasks {
        match task.await {
            Ok((latencies, errors, first_error, ended)) => {
                load.ok += latencies.len() as u64;
                load.latencies_ms.extend(latencies);
                load.errors += errors;
                if load.first_error.is_none() {
                    load.first_error = first_error;
                }
                load.elapsed = load.elapsed.max(ended - start);
            }
            Err(e) => {
                load.errors += 1;
                load.first_error
                    .get_or_insert(format!("client task panicked: {e}"));
            }
        }
    }
    load.latencies_ms.sort_by(f64::total_cmp);
    load
}
