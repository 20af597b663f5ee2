//! SQLite driver benchmark (docs/storage.md, "SQLite driver"): the write unit of a delivery —
//! what `update_check` runs for a decision that appends a record and notifies the robot: three
//! reads, two updates, a record with its event row, a 1.1 kB outbox row — one, 10 and 50 units
//! per `BEGIN IMMEDIATE` transaction, on one writer, WAL, `synchronous = NORMAL`:
//!
//! - `rusqlite backend` — the store's SQLite backend, through its `Db` seam;
//! - `sqlx backend` — the earlier backend on sqlx's SQLite driver, through the same seam;
//! - `sqlx, plain` — the same statements on one sqlx connection (its statement cache), no seam:
//!   the most an sqlx backend could reach;
//! - `rusqlite, plain` — the same statements on one rusqlite connection, prepared once: the
//!   C library's limit.
//!
//! ```sh
//! CARGO_TARGET_DIR=/work/target-bench cargo bench -p status-check --bench sqlite_driver
//! ```
//! `SQLITE_DRIVER_UNITS` sets the units per measurement (10,000). Without `--bench` among the
//! arguments (under `cargo test`) it runs 200 units, checking the rows only. Each measurement
//! starts on a fresh file with one open check per unit, and checks afterwards that every unit
//! left its record and outbox row.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use sqlx::Connection as _;
use status_check::store::Store as _;
use status_check::store::driver_bench::{
    SELECT_CHECK, SELECT_LAST_ORDER, SELECT_POLLER, WriteUnits,
};
use status_check::store::sql::{
    INSERT_OUTBOX, INSERT_RECORD, INSERT_RECORD_EVENT, UPDATE_CHECK_STATE, UPDATE_EXT_STATE,
};
use status_check::store::sqlite::SqliteStore;
use status_check::store::sqlx_sqlite::SqlxSqliteStore;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Driver {
    RusqliteBackend,
    SqlxBackend,
    SqlxPlain,
    RusqlitePlain,
}

const DRIVERS: [Driver; 4] = [
    Driver::RusqliteBackend,
    Driver::SqlxBackend,
    Driver::SqlxPlain,
    Driver::RusqlitePlain,
];

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::RusqliteBackend => "rusqlite backend (Db)",
            Driver::SqlxBackend => "sqlx backend (Db)",
            Driver::SqlxPlain => "sqlx, plain",
            Driver::RusqlitePlain => "rusqlite, plain (limit)",
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
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(units, full))
}

async fn run(units: usize, full: bool) -> anyhow::Result<()> {
    let payload = "x".repeat(1100);
    println!("SQLite driver: {units} delivery write units per measurement (units/s)");
    println!("{:<26} {:>10} {:>10} {:>10}", "", "1/tx", "10/tx", "50/tx");
    for driver in DRIVERS {
        let mut line = format!("{:<26}", driver.name());
        for per_tx in [1, 10, 50] {
            let elapsed = measure(driver, units, per_tx, &payload).await?;
            line += &format!(" {:>10.0}", units as f64 / elapsed.as_secs_f64());
        }
        println!("{line}");
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
    let started;
    match driver {
        Driver::RusqliteBackend => {
            let store = SqliteStore::connect(&url).await?;
            started = Instant::now();
            store.write_units(&checks, per_tx, 1, payload).await?;
        }
        Driver::SqlxBackend => {
            let store = SqlxSqliteStore::connect(&url).await?;
            started = Instant::now();
            store.write_units(&checks, per_tx, 1, payload).await?;
        }
        Driver::SqlxPlain => {
            let mut connection = sqlx_connection(&path).await?;
            started = Instant::now();
            for group in checks.chunks(per_tx) {
                sqlx_units(&mut connection, group, payload).await?;
            }
        }
        Driver::RusqlitePlain => {
            let connection = rusqlite_connection(&path)?;
            started = Instant::now();
            for group in checks.chunks(per_tx) {
                rusqlite_units(&connection, group, payload)?;
            }
        }
    }
    let elapsed = started.elapsed();
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

/// The unit of `status_check::store::driver_bench`, statement for statement, on sqlx.
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

/// The same unit on rusqlite, each statement prepared once (the connection's cache).
fn rusqlite_units(
    connection: &rusqlite::Connection,
    group: &[i64],
    payload: &str,
) -> rusqlite::Result<()> {
    connection.execute_batch("BEGIN IMMEDIATE")?;
    for &id in group {
        let now = Utc::now();
        let (now_ms, now_s) = (text_ms(now), text_s(now));
        connection
            .prepare_cached(SELECT_CHECK)?
            .query_row([id], |_| Ok(()))?;
        connection
            .prepare_cached(SELECT_POLLER)?
            .query_row([id], |_| Ok(()))?;
        let last: Option<i64> = connection
            .prepare_cached(SELECT_LAST_ORDER)?
            .query_row([id], |r| r.get(0))?;
        connection.prepare_cached(UPDATE_CHECK_STATE)?.execute((
            "FUTURE",
            "PENDING",
            None::<i64>,
            &now_s,
            id,
        ))?;
        connection.prepare_cached(UPDATE_EXT_STATE)?.execute((
            1_i64,
            text_ms(now + TimeDelta::hours(1)),
            false,
            &now_ms,
            id,
        ))?;
        let event = 10_000_000 + id;
        connection.prepare_cached(INSERT_RECORD)?.execute((
            id,
            event,
            None::<i64>,
            "CHARGING_STARTED",
            last.unwrap_or(0) + 1,
            "FUTURE",
            "PENDING",
            &now_s,
        ))?;
        let record = connection.last_insert_rowid();
        connection.prepare_cached(INSERT_RECORD_EVENT)?.execute((
            record,
            "FUTURE",
            id,
            event,
            &now_ms,
            1_i64,
            None::<String>,
        ))?;
        connection.prepare_cached(INSERT_OUTBOX)?.execute((
            id,
            1 + id % 64,
            1_i64,
            payload,
            "bench",
            &now_ms,
            &now_ms,
        ))?;
    }
    connection.execute_batch("COMMIT")
}
