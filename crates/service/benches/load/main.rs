//! Load benchmark (SPEC §10): the service on SQLite, driven over real local HTTP, against the
//! in-process Micro-Managers and Megazord simulators and in-memory queues, on the system clock.
//! Every scenario prints its figures, a limit measured in the same run, the ratio to it, the
//! SPEC §10 target and whether it is met; a summary table closes the run.
//!
//! ```sh
//! # full run (release; about 10 minutes here, most of it (c) at 100,000 checks)
//! CARGO_TARGET_DIR=/work/target-load cargo bench -p status-check --bench load
//! # one or more scenarios: any argument that is part of a scenario name selects it
//! CARGO_TARGET_DIR=/work/target-load cargo bench -p status-check --bench load -- create startup
//! # smoke (debug; what `cargo test --all-targets` runs): tiny sizes, asserts correctness only
//! CARGO_TARGET_DIR=/work/target-load cargo test -p status-check --bench load
//! ```
//!
//! Scenarios: `create` (a), `deliveries` (b), `deadlines` (c), `startup` (d). Without `--bench`
//! among the arguments (so under `cargo test`) each runs at smoke size; any correctness failure
//! (a check missing, a delivery not processed, a deadline not finalised, …) exits non-zero.
//! Missing a SPEC target is reported, not a failure.
//!
//! Sizes (environment; full default / smoke default):
//! - `LOAD_CREATE_SECS` — seconds per measurement of (a), each of create, raw SQLite and bare
//!   axum at each concurrency (5 / 0.3);
//! - `LOAD_CREATE_CLIENTS` — concurrent robots of (a), comma-separated (`1,16,64`);
//! - `LOAD_DELIVERY_CHECKS` — open checks of (b) (2000 / 20);
//! - `LOAD_DELIVERY_EVENTS` — events per check of (b), each one delivery (5 / 5);
//! - `LOAD_DEADLINE_CHECKS` — open checks of (c) (100000 / 200);
//! - `LOAD_DEADLINE_LEAD_SECS`, `LOAD_DEADLINE_SPREAD_SECS` — (c)'s deadlines fall in
//!   `[lead, lead + spread)` seconds after set-up (10, 10 / 2, 2);
//! - `LOAD_STARTUP_RUNS` — start-ups timed in (d) (7 / 1).
//!
//! Limits (same run, same machine): (a) raw SQLite — the rows one create writes, one
//! `BEGIN IMMEDIATE` transaction each via plain sqlx on a pool with the service's settings (WAL,
//! synchronous NORMAL, 5 s busy timeout; 8 connections, like its readers) — and a bare axum handler, both at
//! the same concurrency with the same HTTP client; (b) raw SQLite — one delivery's writes
//! (check + ext update, record + event row, outbox row where the service wrote one) per
//! transaction, at the consumer's concurrency (32); (c) raw SQLite — the scheduler's claim and
//! finalisation writes at its batch and concurrency; (d) the same binary's `--version`. The
//! raw SQLite writes run two ways — through the pool, writers meeting in SQLite's busy handler,
//! and one writer at a time (an async mutex), which is how the service's store writes — and the
//! faster of the two is the limit; the other is printed beside it ("raw other").
//!
//! (c) runs in a child process (this binary, re-executed) so its peak resident memory is its
//! own and not the other scenarios'. Its checks are set up through `Store::create_check` with
//! deadlines a day out, then one UPDATE moves every deadline the same whole number of seconds
//! so they fall in the window (the API would add 5 simulator round trips per check and take
//! minutes; the rows are the service's own either way).
//!
//! Layout (`crates/service/benches/load/`, the `[[bench]]` `load` of `crates/service/Cargo.toml`):
//! - `main.rs` — this header, sizes, arguments and results, small helpers, the load driver
//!   ([`drive`]) and `main`;
//! - `stack.rs` — the service and simulators on a fresh SQLite file, and the create client;
//! - `raw.rs` — raw SQLite: the pool, the seeded rows and the create writes of the limits;
//! - `create.rs` (a), `deliveries.rs` (b), `startup.rs` (d) — one scenario each, with its limit;
//! - `deadlines.rs` (c) — the parent side and the raw finalisation limit; `deadlines/child.rs`
//!   the child process; `deadlines/recording.rs` the store and robot queues it measures with.

mod create;
mod deadlines;
mod deliveries;
mod raw;
mod stack;
mod startup;

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
use crate::deadlines::{deadlines_child, scenario_deadlines};
use crate::deliveries::scenario_deliveries;
use crate::startup::scenario_startup;

// ---- Sizes, arguments, results ----

const SCENARIOS: [&str; 4] = ["create", "deliveries", "deadlines", "startup"];
/// The argument that makes this binary the child process of scenario (c).
const CHILD_ARG: &str = "__load_deadlines_child";
/// The line prefix the child reports its figures with.
const CHILD_RESULT: &str = "@@LOAD_RESULT ";

/// SPEC §10 targets.
const TARGET_CREATE_PER_SEC: f64 = 2_000.0;
const TARGET_CREATE_P99_MS: f64 = 20.0;
const TARGET_DELIVERIES_PER_SEC: f64 = 5_000.0;
const TARGET_LATENESS_MS: f64 = 1_000.0;
const TARGET_RSS_MB: f64 = 200.0;
const TARGET_STARTUP_MS: f64 = 300.0;

/// The service's SQLite pool size (`store/sqlite.rs`), for the raw-SQLite limits.
const SERVICE_POOL: u32 = 8;
/// The service's default consumer concurrency (`CONSUMER_CONCURRENCY`).
const CONSUMER_CONCURRENCY: usize = 32;
/// Every check's `plannedAt`.
const PLANNED_AT: &str = "2026-11-20T08:00:00Z";
const SCRIPT_VERSION_ID: i64 = 789;

#[derive(Debug, Clone)]
struct Sizes {
    create_secs: f64,
    create_clients: Vec<usize>,
    delivery_checks: usize,
    delivery_events: usize,
    deadline_checks: usize,
    deadline_lead: u64,
    deadline_spread: u64,
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
            deadline_checks: env_or("LOAD_DEADLINE_CHECKS", pick(full, 100_000, 200))?,
            deadline_lead: env_or("LOAD_DEADLINE_LEAD_SECS", pick(full, 10, 2))?,
            deadline_spread: env_or("LOAD_DEADLINE_SPREAD_SECS", pick(full, 10, 2))?,
            startup_runs: env_or("LOAD_STARTUP_RUNS", pick(full, 7, 1))?,
        })
    }
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
    let mut failures = Vec::new();
    for name in selected {
        let started = Instant::now();
        let result = match name {
            "create" => runtime.block_on(scenario_create(&sizes, &mut rows)),
            "deliveries" => runtime.block_on(scenario_deliveries(&sizes, &mut rows)),
            "deadlines" => scenario_deadlines(&sizes, &runtime, &mut rows),
            "startup" => runtime.block_on(scenario_startup(&sizes, &mut rows)),
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
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        println!("\nFAILED scenarios: {}", failures.join(", "));
        ExitCode::FAILURE
    }
}

fn print_summary(rows: &[Row], full: bool) {
    println!("\nSummary (SPEC §10; limits and ratios measured in this run):");
    let header = ["scenario", "figure", "target", "limit", "ratio", "met?"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            [
                row.scenario.to_owned(),
                row.figure.clone(),
                row.target.clone(),
                row.limit.clone(),
                row.ratio.clone(),
                met.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |line: &[String]| {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let pad = width.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    print(&header.map(str::to_owned));
    for line in &cells {
        print(line);
    }
    if !full {
        println!(
            "(smoke run: tiny sizes, and a debug build under `cargo test`: the figures are not results)"
        );
    }
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
