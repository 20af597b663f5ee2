//! SQLite driver benchmark (docs/storage.md, "SQLite driver"): the write unit of a delivery —
//! what `update_check` runs for a decision that appends a record and notifies the robot: three
//! reads, two updates, a record with its event row, a 1.1 kB outbox row — one, 10 and 50 units
//! per `BEGIN IMMEDIATE` transaction, on one writer, WAL, `synchronous = NORMAL`:
//!
//! - `rusqlite backend` — the store's SQLite backend, through its `Db` seam;
//! - `sqlx, plain` — the same statements on one sqlx connection (its statement cache), no seam:
//!   the most an sqlx backend could reach (the earlier backend on sqlx's SQLite driver measured
//!   at or a little above it; it was removed, docs/storage.md);
//! - `rusqlite, plain` — the same statements on one rusqlite connection, prepared once, on the
//!   calling task: the C library's limit;
//! - `rusqlite, block_in_place` / `thread hop` — the same, each statement inside
//!   `tokio::task::block_in_place`, or sent to a thread that owns the connection and awaited:
//!   what running statements off the runtime's threads would cost.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p status-check --bench sqlite_driver
//! ```
//! `SQLITE_DRIVER_UNITS` sets the units per measurement (10,000), `SQLITE_DRIVER_ROUNDS` how
//! many times each is measured, the best kept (3). Without `--bench` among the arguments
//! (under `cargo test`) it runs 200 units once, checking the rows only. Each measurement
//! starts on a fresh file with one open check per unit, and checks afterwards that every unit
//! left its record and outbox row.

#[path = "shared/driver_unit.rs"]
mod driver_unit;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use driver_unit::{SELECT_CHECK, SELECT_LAST_ORDER, SELECT_POLLER, WriteUnits};
use sqlx::Connection as _;
use status_check::store::Store as _;
use status_check::store::sql::{
    INSERT_OUTBOX, INSERT_RECORD, INSERT_RECORD_EVENT, UPDATE_CHECK_STATE, UPDATE_EXT_STATE,
};
use status_check::store::sqlite::SqliteStore;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    RusqliteBackend,
    SqlxPlain,
    Rusqlite(Reach),
}

const DRIVERS: [Driver; 5] = [
    Driver::RusqliteBackend,
    Driver::SqlxPlain,
    Driver::Rusqlite(Reach::Inline),
    Driver::Rusqlite(Reach::BlockInPlace),
    Driver::Rusqlite(Reach::ThreadHop),
];

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::RusqliteBackend => "rusqlite backend (Db)",
            Driver::SqlxPlain => "sqlx, plain",
            Driver::Rusqlite(Reach::Inline) => "rusqlite, plain (limit)",
            Driver::Rusqlite(Reach::BlockInPlace) => "rusqlite, block_in_place",
            Driver::Rusqlite(Reach::ThreadHop) => "rusqlite, thread hop",
        }
    }
}

fn main() -> anyhow::Result<()> {
    let full = std::env::args().any(|a| a == "--bench");
    let units: usize = match std::env::var("SQLITE_DRIVER_UNITS") {
        Ok(n) => n.parse()?,
        Err(_) if full => 10_000,
        Err(_) => 200,
    };
    let rounds: usize = match std::env::var("SQLITE_DRIVER_ROUNDS") {
        Ok(n) => n.parse()?,
        Err(_) if full => 3,
        Err(_) => 1,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(units, rounds, full))
}

const PER_TX: [usize; 3] = [1, 10, 50];

async fn run(units: usize, rounds: usize, full: bool) -> anyhow::Result<()> {
    let payload = "x".repeat(1100);
    println!(
        "SQLite driver: {units} delivery write units per measurement, best of {rounds} \
         interleaved rounds (units/s)"
    );
    // best[driver][per_tx]: the machine is shared, so the fastest round is the one least
    // disturbed; the rounds interleave the drivers so each sees the same disturbances.
    let mut best = [[0f64; PER_TX.len()]; DRIVERS.len()];
    for _ in 0..rounds {
        for (t, per_tx) in PER_TX.into_iter().enumerate() {
            for (d, driver) in DRIVERS.into_iter().enumerate() {
                let elapsed = measure(driver, units, per_tx, &payload).await?;
                best[d][t] = best[d][t].max(units as f64 / elapsed.as_secs_f64());
            }
        }
    }
    println!("{:<26} {:>10} {:>10} {:>10}", "", "1/tx", "10/tx", "50/tx");
    for (d, driver) in DRIVERS.into_iter().enumerate() {
        let cells: String = best[d].iter().map(|b| format!(" {b:>10.0}")).collect();
        println!("{:<26}{cells}", driver.name());
    }
    if !full {
        println!("(smoke size: the rows were checked, the figures mean nothing)");
    }
    Ok(())
}

/// One measurement on a fresh file: the time `units` units took, `per_tx` per transaction.
async fn measure(
    driver: Driver,
    units: usize,
    per_tx: usize,
    payload: &str,
) -> anyhow::Result<Duration> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bench.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await?;
    store.migrate().await?;
    let checks = store.seed_checks(units).await?;
    drop(store);
    let elapsed = match driver {
        Driver::RusqliteBackend => {
            let store = SqliteStore::connect(&url).await?;
            let started = Instant::now();
            store.write_units(&checks, per_tx, 1, payload).await?;
            started.elapsed()
        }
        Driver::SqlxPlain => {
            let mut connection = sqlx_connection(&path).await?;
            let started = Instant::now();
            for group in checks.chunks(per_tx) {
                sqlx_units(&mut connection, group, payload).await?;
            }
            started.elapsed()
        }
        Driver::Rusqlite(reach) => rusqlite_units(&path, &checks, per_tx, payload, reach).await?,
    };
    verify(&path, units)?;
    Ok(elapsed)
}

/// Every unit left its record, event row and outbox row.
fn verify(path: &Path, units: usize) -> anyhow::Result<()> {
    let connection = rusqlite::Connection::open(path)?;
    for table in [
        "status_check_record",
        "status_check_record_event",
        "status_check_outbox",
    ] {
        let count: i64 =
            connection.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
        anyhow::ensure!(
            count as usize == units,
            "{table}: {count} rows, not {units}"
        );
    }
    Ok(())
}

async fn sqlx_connection(path: &Path) -> anyhow::Result<sqlx::SqliteConnection> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    Ok(sqlx::SqliteConnection::connect_with(&options).await?)
}

fn rusqlite_connection(path: &Path) -> anyhow::Result<rusqlite::Connection> {
    let connection = rusqlite::Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    connection.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL",
    )?;
    Ok(connection)
}

fn text_ms(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn text_s(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S.000Z").to_string()
}

/// The unit of `driver_unit` (benches/shared), statement for statement, on sqlx.
async fn sqlx_units(
    connection: &mut sqlx::SqliteConnection,
    group: &[i64],
    payload: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = connection.begin_with("BEGIN IMMEDIATE").await?;
    for &id in group {
        let now = Utc::now();
        let (now_ms, now_s) = (text_ms(now), text_s(now));
        sqlx::query(SELECT_CHECK)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        sqlx::query(SELECT_POLLER)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let last: Option<i64> = sqlx::query_scalar(SELECT_LAST_ORDER)
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(UPDATE_CHECK_STATE)
            .bind("FUTURE")
            .bind("PENDING")
            .bind(None::<i64>)
            .bind(&now_s)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(UPDATE_EXT_STATE)
            .bind(1_i64)
            .bind(text_ms(now + TimeDelta::hours(1)))
            .bind(false)
            .bind(&now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let event = 10_000_000 + id;
        let record = sqlx::query(INSERT_RECORD)
            .bind(id)
            .bind(event)
            .bind(None::<i64>)
            .bind("CHARGING_STARTED")
            .bind(last.unwrap_or(0) + 1)
            .bind("FUTURE")
            .bind("PENDING")
            .bind(&now_s)
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
        sqlx::query(INSERT_RECORD_EVENT)
            .bind(record)
            .bind("FUTURE")
            .bind(id)
            .bind(event)
            .bind(&now_ms)
            .bind(1_i64)
            .bind(None::<String>)
            .execute(&mut *tx)
            .await?;
        sqlx::query(INSERT_OUTBOX)
            .bind(id)
            .bind(1 + id % 64)
            .bind(1_i64)
            .bind(payload)
            .bind("bench")
            .bind(&now_ms)
            .bind(&now_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// How the plain rusqlite runs reach the connection.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reach {
    /// On the calling task (what the backend does).
    Inline,
    /// Each statement inside `tokio::task::block_in_place`.
    BlockInPlace,
    /// Each statement sent to a thread that owns the connection, the answer awaited.
    ThreadHop,
}

/// What the writer thread runs.
type Job = Box<dyn FnOnce(&rusqlite::Connection) + Send>;

/// A connection owned by a thread of its own, fed closures.
struct WriterThread {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl WriterThread {
    fn start(connection: rusqlite::Connection) -> WriterThread {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || {
            for job in queue {
                job(&connection);
            }
        });
        WriterThread { jobs }
    }

    async fn call<R: Send + 'static>(
        &self,
        job: impl FnOnce(&rusqlite::Connection) -> R + Send + 'static,
    ) -> R {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |connection| {
                answer.send(job(connection)).ok();
            }))
            .expect("the writer thread runs");
        answered.await.expect("the writer thread answers")
    }
}

/// The unit on plain rusqlite, `reach` saying how each statement gets to the connection.
async fn rusqlite_units(
    path: &Path,
    checks: &[i64],
    per_tx: usize,
    payload: &str,
    reach: Reach,
) -> anyhow::Result<Duration> {
    let payload: std::sync::Arc<str> = payload.into();
    let connection = rusqlite_connection(path)?;
    let (mut inline, mut thread) = (None, None);
    match reach {
        Reach::ThreadHop => thread = Some(WriterThread::start(connection)),
        _ => inline = Some(connection),
    }
    let started = Instant::now();
    for group in checks.chunks(per_tx) {
        let steps = std::iter::once((BEGIN_STEP, 0))
            .chain(
                group
                    .iter()
                    .flat_map(|&id| (0..STEPS).map(move |s| (s, id))),
            )
            .chain(std::iter::once((COMMIT_STEP, 0)));
        let mut last_order = 0;
        for step in steps {
            let payload = payload.clone();
            let run = move |c: &rusqlite::Connection| rusqlite_step(c, step, last_order, &payload);
            let value = match (reach, &inline, &thread) {
                (Reach::Inline, Some(c), _) => run(c)?,
                (Reach::BlockInPlace, Some(c), _) => tokio::task::block_in_place(|| run(c))?,
                (Reach::ThreadHop, _, Some(t)) => t.call(run).await?,
                _ => unreachable!("the connection is where `reach` says"),
            };
            if step.0 == 2 {
                last_order = value;
            }
        }
    }
    Ok(started.elapsed())
}

/// Statements of one unit.
const STEPS: usize = 8;
const BEGIN_STEP: usize = usize::MAX;
const COMMIT_STEP: usize = usize::MAX - 1;

/// One statement of the unit (`step` of [`STEPS`] for check `id`, or the transaction's begin
/// or commit), prepared once per connection. Step 2 answers the last record's `order`, which
/// step 5's record follows.
fn rusqlite_step(
    connection: &rusqlite::Connection,
    (step, id): (usize, i64),
    last_order: i64,
    payload: &str,
) -> rusqlite::Result<i64> {
    let now = Utc::now();
    let (now_ms, now_s) = (text_ms(now), text_s(now));
    let event = 10_000_000 + id;
    let value = match step {
        BEGIN_STEP => connection.prepare_cached("BEGIN IMMEDIATE")?.execute([])?,
        COMMIT_STEP => connection.prepare_cached("COMMIT")?.execute([])?,
        0 => connection
            .prepare_cached(SELECT_CHECK)?
            .query_row([id], |_| Ok(0))?,
        1 => connection
            .prepare_cached(SELECT_POLLER)?
            .query_row([id], |_| Ok(0))?,
        2 => connection
            .prepare_cached(SELECT_LAST_ORDER)?
            .query_row([id], |r| r.get::<_, Option<i64>>(0))?
            .map_or(0, |order| order as usize),
        3 => connection.prepare_cached(UPDATE_CHECK_STATE)?.execute((
            "FUTURE",
            "PENDING",
            None::<i64>,
            &now_s,
            id,
        ))?,
        4 => connection.prepare_cached(UPDATE_EXT_STATE)?.execute((
            1_i64,
            text_ms(now + TimeDelta::hours(1)),
            false,
            &now_ms,
            id,
        ))?,
        5 => connection.prepare_cached(INSERT_RECORD)?.execute((
            id,
            event,
            None::<i64>,
            "CHARGING_STARTED",
            last_order + 1,
            "FUTURE",
            "PENDING",
            &now_s,
        ))?,
        6 => connection.prepare_cached(INSERT_RECORD_EVENT)?.execute((
            connection.last_insert_rowid(),
            "FUTURE",
            id,
            event,
            &now_ms,
            1_i64,
            None::<String>,
        ))?,
        _ => connection.prepare_cached(INSERT_OUTBOX)?.execute((
            id,
            1 + id % 64,
            1_i64,
            payload,
            "bench",
            &now_ms,
            &now_ms,
        ))?,
    };
    Ok(value as i64)
}
