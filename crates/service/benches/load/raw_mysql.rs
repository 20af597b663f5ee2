//! MariaDB for the load bench (`TEST_MYSQL_URL`): databases made the way the integration
//! tests make them (the production schema, then the service's migrations), the other
//! services' rows their foreign keys need, and the physical limit — the same grouped writes
//! through a plain client (the blocking `mysql` crate, prepared statements, as many
//! connections at once as the replicas' pools hold).

use std::str::FromStr as _;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Datelike as _, Timelike as _, Utc};
use mysql::prelude::Queryable as _;
use mysql::{Conn, Opts, OptsBuilder, TxOpts, Value};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use status_check::store::Store as _;
use status_check::store::mysql::MysqlStore;

use super::*;
use crate::writes::{Arg, Write};

/// The live definition of the production tables with stand-ins for the other services'
/// tables they point at — the integration tests' fixture.
const PRODUCTION_SCHEMA: &str = include_str!("../../tests/fixtures/tinybots-status-check.sql");

/// The MariaDB server's URL, when the bench has one.
pub(super) fn server_url() -> Option<String> {
    std::env::var("TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
}

fn connect(url: &str) -> anyhow::Result<Conn> {
    let opts = Opts::from_url(url).context("TEST_MYSQL_URL is not a MySQL URL")?;
    // As the service's sessions: UTC, utf8mb4.
    let opts =
        OptsBuilder::from_opts(opts).init(vec!["SET time_zone = '+00:00'", "SET NAMES utf8mb4"]);
    Conn::new(opts).context("cannot connect to TEST_MYSQL_URL")
}

/// A fresh database `sc_test_bench_<random>` on the server (the test user may create
/// `sc_test_*`), from the production schema and migrated by the service; dropped on drop.
pub(super) struct BenchDatabase {
    server: String,
    name: String,
    /// The database's URL, for the service.
    pub(super) url: String,
}

impl BenchDatabase {
    pub(super) async fn create(server: &str) -> anyhow::Result<BenchDatabase> {
        let name = format!("sc_test_bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = connect(server)?;
        // A database name cannot be a bound parameter; this one is made of hex digits only.
        admin.query_drop(format!("CREATE DATABASE `{name}`"))?;
        let db = BenchDatabase {
            server: server.to_owned(),
            url: format!("{}/{name}", server.trim_end_matches('/')),
            name,
        };
        let mut conn = db.conn()?;
        conn.query_drop(PRODUCTION_SCHEMA)
            .context("the production schema does not load")?;
        drop(conn);
        let store = MysqlStore::connect(&db.url).await?;
        store.migrate().await?;
        Ok(db)
    }

    /// A plain client connection to the database.
    pub(super) fn conn(&self) -> anyhow::Result<Conn> {
        connect(&self.url)
    }

    /// An sqlx pool on the database, for the Megazord simulator's rows.
    pub(super) async fn pool(&self) -> anyhow::Result<MySqlPool> {
        let options = MySqlConnectOptions::from_str(&self.url)?;
        Ok(MySqlPoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?)
    }
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        let dropped = connect(&self.server).and_then(|mut admin| {
            Ok(admin.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))?)
        });
        if let Err(e) = dropped {
            eprintln!("warning: bench database {} not dropped: {e:#}", self.name);
        }
    }
}

/// A server variable, as text (`SELECT @@name`).
pub(super) fn server_variable(conn: &mut Conn, name: &str) -> anyhow::Result<String> {
    ensure!(
        name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "not a variable name: {name}"
    );
    let value: Option<String> = conn.query_first(format!("SELECT CAST(@@{name} AS CHAR)"))?;
    Ok(value.unwrap_or_default())
}

/// Inserts `rows` (each a list of values for `columns`) with `INSERT IGNORE`, 1,000 a statement.
pub(super) fn insert_rows(
    conn: &mut Conn,
    table: &str,
    columns: &[&str],
    rows: impl IntoIterator<Item = Vec<i64>>,
) -> anyhow::Result<()> {
    let tuple = format!("({})", vec!["?"; columns.len()].join(", "));
    insert_rows_as(conn, table, columns, &tuple, rows)
}

/// [`insert_rows`] with each row's values placed by `tuple` (e.g. `(?, CONCAT('r', ?))`).
fn insert_rows_as(
    conn: &mut Conn,
    table: &str,
    columns: &[&str],
    tuple: &str,
    rows: impl IntoIterator<Item = Vec<i64>>,
) -> anyhow::Result<()> {
    let rows: Vec<Vec<i64>> = rows.into_iter().collect();
    for chunk in rows.chunks(1_000) {
        let sql = format!(
            "INSERT IGNORE INTO {table} ({}) VALUES {}",
            columns.join(", "),
            vec![tuple; chunk.len()].join(", ")
        );
        let values: Vec<Value> = chunk.iter().flatten().map(|v| Value::Int(*v)).collect();
        conn.exec_drop(sql, values)?;
    }
    Ok(())
}

/// The script version and steps a check references (as Micro-Managers stores them).
pub(super) fn insert_script_steps(conn: &mut Conn, steps: &[i64]) -> anyhow::Result<()> {
    insert_rows(conn, "script_version", &["id"], [vec![SCRIPT_VERSION_ID]])?;
    insert_rows(
        conn,
        "script_step",
        &["id", "script_version_id"],
        steps.iter().map(|&step| vec![step, SCRIPT_VERSION_ID]),
    )
}

/// Robot accounts (as the robot-account service creates them).
pub(super) fn insert_robots(
    conn: &mut Conn,
    robots: impl IntoIterator<Item = i64>,
) -> anyhow::Result<()> {
    // `username` is unique and has no default.
    insert_rows_as(
        conn,
        "robot_account",
        &["id", "username"],
        "(?, CONCAT('robot-', ?))",
        robots.into_iter().map(|id| vec![id, id]),
    )
}

fn date_value(t: DateTime<Utc>) -> Value {
    Value::Date(
        t.year() as u16,
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
        t.timestamp_subsec_micros(),
    )
}

/// Runs one unit's writes in `tx` (prepared statements, cached per connection); returns the
/// id its first statement inserted.
pub(super) fn execute(tx: &mut mysql::Transaction<'_>, writes: &[Write]) -> mysql::Result<i64> {
    let mut inserted: Vec<i64> = Vec::with_capacity(writes.len());
    for w in writes {
        let values: Vec<Value> = w
            .args
            .iter()
            .map(|arg| match arg {
                Arg::Int(v) => Value::Int(*v),
                Arg::Text(v) => Value::Bytes(v.clone().into_bytes()),
                Arg::Time(t) => date_value(*t),
                Arg::Bool(v) => Value::Int(i64::from(*v)),
                Arg::Null => Value::NULL,
                Arg::InsertId(n) => Value::Int(inserted.get(*n).copied().unwrap_or(0)),
            })
            .collect();
        tx.exec_drop(w.sql, values)?;
        inserted.push(tx.last_insert_id().unwrap_or(0) as i64);
    }
    Ok(inserted.first().copied().unwrap_or(0))
}

/// Units `0..units` (each `unit(index)`'s writes) on `writers` connections at once, each
/// connection taking the units `lane(index)` gives it, in order, `group` per transaction;
/// units per second from the first begin to the last commit.
pub(super) fn run_grouped(
    db: &BenchDatabase,
    writers: usize,
    units: usize,
    group: usize,
    lane: impl Fn(usize) -> usize + Sync,
    unit: impl Fn(usize) -> Vec<Write> + Sync,
) -> anyhow::Result<f64> {
    ensure!(
        group > 0 && writers > 0,
        "a group and a writer hold at least one unit"
    );
    let mut lanes: Vec<Vec<usize>> = vec![Vec::new(); writers];
    for index in 0..units {
        lanes[lane(index) % writers].push(index);
    }
    let mut conns = (0..writers)
        .map(|_| db.conn())
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = std::sync::Barrier::new(writers + 1);
    let (unit, start) = (&unit, &start);
    let began = std::thread::scope(|scope| -> anyhow::Result<Instant> {
        let threads: Vec<_> = conns
            .iter_mut()
            .zip(&lanes)
            .map(|(conn, lane)| {
                scope.spawn(move || -> anyhow::Result<()> {
                    start.wait();
                    for chunk in lane.chunks(group) {
                        let mut tx = conn.start_transaction(TxOpts::default())?;
                        for &index in chunk {
                            execute(&mut tx, &unit(index))?;
                        }
                        tx.commit()?;
                    }
                    Ok(())
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a raw MariaDB writer panicked"))??;
        }
        Ok(began)
    })?;
    Ok(units as f64 / began.elapsed().as_secs_f64())
}

/// Inserts units' writes in large transactions (set-up, not measured); returns each unit's
/// first inserted id.
pub(super) fn seed(conn: &mut Conn, units: &[Vec<Write>]) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(units.len());
    for chunk in units.chunks(2_000) {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        for writes in chunk {
            ids.push(execute(&mut tx, writes)?);
        }
        tx.commit()?;
    }
    Ok(ids)
}

/// The template row raw checks reference: a description and a template of its own.
pub(super) fn insert_template(conn: &mut Conn) -> anyhow::Result<i64> {
    conn.exec_drop(
        "INSERT INTO status_check_description (name, description) VALUES ('raw-limit', '')",
        (),
    )?;
    let description = conn.last_insert_id() as i64;
    conn.exec_drop(
        "INSERT INTO status_check_template (template_description_id, past_event_dependencies, \
         future_event_dependencies) VALUES (?, '[]', '[]')",
        (description,),
    )?;
    Ok(conn.last_insert_id() as i64)
}
