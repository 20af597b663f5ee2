//! Shared test helpers: fresh, migrated databases on both backends.
//!
//! - SQLite: a file in a temporary folder.
//! - MySQL/MariaDB: a new database `sc_test_<random>` on the server `TEST_MYSQL_URL` names
//!   (`scripts/test` starts a private MariaDB and sets it), dropped again when its [`TestDb`]
//!   is (the [`DbDropGuard`] it owns). It is production-shaped: created from `tests/fixtures/tinybots-status-check.sql`
//!   (the live definition, with the other services' tables its foreign keys point at), then
//!   migrated; tests insert the other services' rows with [`Neighbours`], as those services
//!   would. Without `TEST_MYSQL_URL` the MySQL tests fail, unless
//!   `STATUS_CHECK_TESTS_WITHOUT_MYSQL=1` says to skip them.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use status_check::store::mysql::MysqlStore;
use status_check::store::sqlite::SqliteStore;
use status_check::store::{DynStore, NewCheck};

use tempfile::TempDir;

const NO_MYSQL: &str = "TEST_MYSQL_URL is not set. Run scripts/test, which starts a private \
    MariaDB and sets it, or set TEST_MYSQL_URL=mysql://USER:PASSWORD@127.0.0.1:PORT for a user \
    that may create and drop databases named sc_test_*; STATUS_CHECK_TESTS_WITHOUT_MYSQL=1 \
    skips the MySQL tests instead.";

/// The live definition of the six production tables, with stand-ins for the other services'
/// tables they point at (a copy of `../shared/tinybots-status-check.sql`).
pub const PRODUCTION_SCHEMA: &str = include_str!("../fixtures/tinybots-status-check.sql");

/// Whether MySQL tests are to be skipped: `TEST_MYSQL_URL` unset and
/// `STATUS_CHECK_TESTS_WITHOUT_MYSQL=1` (prints a warning). Unset without the switch panics
/// with how to get a server.
pub fn mysql_skipped() -> bool {
    if std::env::var("TEST_MYSQL_URL").is_ok_and(|url| !url.is_empty()) {
        return false;
    }
    if std::env::var("STATUS_CHECK_TESTS_WITHOUT_MYSQL").is_ok_and(|v| v == "1") {
        eprintln!(
            "warning: MySQL test skipped: TEST_MYSQL_URL is not set and STATUS_CHECK_TESTS_WITHOUT_MYSQL=1"
        );
        return true;
    }
    panic!("{NO_MYSQL}");
}

/// A store together with direct SQL access to its database, for tests that look at rows.
pub struct TestDb {
    pub store: DynStore,
    /// The database's URL, for a replica run as its own process (MySQL only).
    pub url: Option<String>,
    pub raw: Raw,
    /// Inserts the rows of other services that the production foreign keys need.
    pub neighbours: Neighbours,
    /// The SQLite database's folder, removed when the `TestDb` goes.
    dir: Option<TempDir>,
    /// The MySQL database, dropped when the `TestDb` goes (after the fields above).
    _drop_guard: Option<DbDropGuard>,
}

/// Drops a MySQL test database when it goes away (best effort). Only the [`TestDb`] holds it:
/// the database lives exactly as long as the test keeps its `TestDb` (the stores handed out
/// are plain `MysqlStore`s).
struct DbDropGuard {
    server: MySqlConnectOptions,
    name: String,
}

/// How long dropping a test database may take.
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

impl Drop for DbDropGuard {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = std::mem::take(&mut self.name);
        // Drop may run inside or outside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // Bounded: a server that does not answer (e.g. stopped by a fault test) must not
            // hang the test that drops it.
            let drop_database = async move {
                let mut conn = server.connect().await.ok()?;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            };
            runtime
                .block_on(async { tokio::time::timeout(DROP_TIMEOUT, drop_database).await })
                .ok()
                .flatten()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: a MySQL test database was not dropped");
        }
    }
}

impl TestDb {
    /// The SQLite file of a SQLite test database.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.path().join("status-check.db"))
    }
}

/// A fresh, migrated SQLite database.
pub async fn sqlite_db() -> TestDb {
    let db = sqlite_db_unmigrated().await;
    db.store.migrate().await.expect("SQLite migrates");
    db
}

/// A fresh SQLite database without any table (for upgrade tests).
pub async fn sqlite_db_unmigrated() -> TestDb {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("status-check.db");
    let url = format!("sqlite://{}", path.display());
    let store = SqliteStore::connect(&url).await.expect("SQLite opens");
    let raw = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::from_str(&url)
                .unwrap()
                .foreign_keys(true),
        )
        .await
        .expect("a second connection to the SQLite file");
    TestDb {
        store: Arc::new(store),
        url: None,
        raw: Raw::Sqlite(raw),
        neighbours: Neighbours(None),
        dir: Some(dir),
        _drop_guard: None,
    }
}

/// A fresh, migrated MySQL database; `None` when MySQL tests are skipped.
pub async fn mysql_db() -> Option<TestDb> {
    if mysql_skipped() {
        return None;
    }
    let url = std::env::var("TEST_MYSQL_URL").unwrap();
    Some(mysql_db_at(&url).await)
}

/// A fresh MySQL database without any table (a database of its own); `None` when MySQL
/// tests are skipped.
pub async fn mysql_db_unmigrated() -> Option<TestDb> {
    if mysql_skipped() {
        return None;
    }
    let url = std::env::var("TEST_MYSQL_URL").unwrap();
    Some(mysql_db_unmigrated_at(&url, status_check::store::DEFAULT_OPERATION_TIMEOUT).await)
}

/// A fresh MySQL database created from [`PRODUCTION_SCHEMA`], not migrated: production as
/// this service finds it; `None` when MySQL tests are skipped.
pub async fn mysql_db_production_unmigrated() -> Option<TestDb> {
    if mysql_skipped() {
        return None;
    }
    let url = std::env::var("TEST_MYSQL_URL").unwrap();
    Some(mysql_production_at(&url, status_check::store::DEFAULT_OPERATION_TIMEOUT).await)
}

/// A fresh, migrated MySQL database whose every store operation is bounded by `limit`;
/// `None` when MySQL tests are skipped.
pub async fn mysql_db_bounded(limit: Duration) -> Option<TestDb> {
    if mysql_skipped() {
        return None;
    }
    let url = std::env::var("TEST_MYSQL_URL").unwrap();
    Some(mysql_db_at_bounded(&url, limit).await)
}

/// A fresh, migrated, production-shaped database on the MySQL server `url` names (e.g. a
/// private one a test stops and starts).
pub async fn mysql_db_at(url: &str) -> TestDb {
    mysql_db_at_bounded(url, status_check::store::DEFAULT_OPERATION_TIMEOUT).await
}

/// [`mysql_db_at`], every store operation bounded by `limit`.
pub async fn mysql_db_at_bounded(url: &str, limit: Duration) -> TestDb {
    let db = mysql_production_at(url, limit).await;
    db.store.migrate().await.expect("MySQL migrates");
    db
}

async fn mysql_production_at(url: &str, limit: Duration) -> TestDb {
    let mut db = mysql_db_unmigrated_at(url, limit).await;
    let Raw::Mysql(pool) = &db.raw else {
        unreachable!("a MySQL test database")
    };
    sqlx::raw_sql(AssertSqlSafe(PRODUCTION_SCHEMA))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("the production schema file does not load: {e}"));
    db.neighbours = Neighbours(Some(pool.clone()));
    db
}

async fn mysql_db_unmigrated_at(url: &str, limit: Duration) -> TestDb {
    let server = MySqlConnectOptions::from_str(url)
        .unwrap_or_else(|e| panic!("TEST_MYSQL_URL is not a MySQL URL: {e}"));
    let name = format!("sc_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = server
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_MYSQL_URL: {e}"));
    // A database name cannot be a bound parameter; this one is made of hex digits only.
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE `{name}`")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    admin.close().await.ok();
    let guard = DbDropGuard {
        server: server.clone(),
        name: name.clone(),
    };
    let options = server.database(&name);
    let store = MysqlStore::connect_with(options.clone())
        .await
        .expect("MySQL connects")
        .with_operation_timeout(limit);
    let raw = MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("a second pool on the test database");
    TestDb {
        store: Arc::new(store),
        url: Some(format!("{}/{name}", url.trim_end_matches('/'))),
        raw: Raw::Mysql(raw),
        neighbours: Neighbours(None),
        dir: None,
        _drop_guard: Some(guard),
    }
}

/// Direct SQL on a test database. The SQL is the same text on both backends.
pub enum Raw {
    Sqlite(SqlitePool),
    Mysql(MySqlPool),
}

/// An outbox row as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub seq: i64,
    pub payload: String,
    pub call_ref: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl Raw {
    /// Runs a statement with one integer parameter (an id).
    pub async fn execute_for(&self, sql: &'static str, id: i64) {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).bind(id).execute(pool).await.map(drop),
            Raw::Mysql(pool) => sqlx::query(sql).bind(id).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The scheduler's columns of a check: `(deadline_at, lease_taken_at)`.
    pub async fn schedule(&self, check_id: i64) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        const SQL: &str = "SELECT deadline_at, lease_taken_at FROM status_check_ext \
                           WHERE status_check_id = ?";
        match self {
            Raw::Sqlite(pool) => {
                let row = sqlx::query(SQL)
                    .bind(check_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (row.get(0), row.get(1))
            }
            Raw::Mysql(pool) => {
                let row = sqlx::query(SQL)
                    .bind(check_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (row.get(0), row.get(1))
            }
        }
    }

    /// The outbox rows of a check, by `seq`.
    pub async fn outbox(&self, check_id: i64) -> Vec<OutboxRow> {
        const SQL: &str = "SELECT seq, payload, call_ref, attempts, last_error, created_at, \
                           next_attempt_at, sent_at FROM status_check_outbox \
                           WHERE status_check_id = ? ORDER BY seq";
        match self {
            Raw::Sqlite(pool) => sqlx::query(SQL)
                .bind(check_id)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|row| OutboxRow {
                    seq: row.get(0),
                    payload: row.get(1),
                    call_ref: row.get(2),
                    attempts: row.get(3),
                    last_error: row.get(4),
                    created_at: row.get(5),
                    next_attempt_at: row.get(6),
                    sent_at: row.get(7),
                })
                .collect(),
            Raw::Mysql(pool) => sqlx::query(SQL)
                .bind(check_id)
                .fetch_all(pool)
                .await
                .unwrap()
                .iter()
                .map(|row| OutboxRow {
                    seq: row.get(0),
                    payload: row.get(1),
                    call_ref: row.get(2),
                    attempts: i64::from(row.get::<u32, _>(3)),
                    last_error: row.get(4),
                    created_at: row.get(5),
                    next_attempt_at: row.get(6),
                    sent_at: row.get(7),
                })
                .collect(),
        }
    }

    /// The rows a query with text parameters returns, every column as text (`NULL` → `None`;
    /// the SQL is the test's own):
    /// the SQL casts each column `AS CHAR`, which reads the same on both backends but for
    /// times (see [`Raw::time_text`]).
    pub async fn texts(&self, sql: &str, values: &[&str]) -> Vec<Vec<Option<String>>> {
        fn columns<R: Row>(row: &R) -> Vec<Option<String>>
        where
            usize: sqlx::ColumnIndex<R>,
            for<'r> Option<String>: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
        {
            (0..row.len())
                .map(|i| row.try_get::<Option<String>, _>(i).unwrap())
                .collect()
        }
        match self {
            Raw::Sqlite(pool) => {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for value in values {
                    query = query.bind(*value);
                }
                query
                    .fetch_all(pool)
                    .await
                    .map(|rows| rows.iter().map(columns).collect())
            }
            Raw::Mysql(pool) => {
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for value in values {
                    query = query.bind(*value);
                }
                query
                    .fetch_all(pool)
                    .await
                    .map(|rows| rows.iter().map(columns).collect())
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// A time as this backend stores it in text: `2026-11-20 08:00:00` on MySQL,
    /// `2026-11-20T08:00:00.000Z` on SQLite.
    pub fn time_text(&self, t: DateTime<Utc>) -> String {
        match self {
            Raw::Sqlite(_) => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            Raw::Mysql(_) => t.format("%Y-%m-%d %H:%M:%S").to_string(),
        }
    }

    /// Runs a statement with text parameters.
    pub async fn execute_text(&self, sql: &'static str, values: &[&str]) {
        match self {
            Raw::Sqlite(pool) => {
                let mut query = sqlx::query(sql);
                for value in values {
                    query = query.bind(*value);
                }
                query.execute(pool).await.map(drop)
            }
            Raw::Mysql(pool) => {
                let mut query = sqlx::query(sql);
                for value in values {
                    query = query.bind(*value);
                }
                query.execute(pool).await.map(drop)
            }
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// `SHOW CREATE TABLE` of each table (MySQL), without the `AUTO_INCREMENT=` counter.
    pub async fn show_create(&self, tables: &[&str]) -> Vec<String> {
        let Raw::Mysql(pool) = self else {
            panic!("SHOW CREATE TABLE is MySQL's")
        };
        let mut shown = Vec::new();
        for table in tables {
            let row = sqlx::raw_sql(AssertSqlSafe(format!("SHOW CREATE TABLE `{table}`")))
                .fetch_one(pool)
                .await
                .unwrap_or_else(|e| panic!("SHOW CREATE TABLE {table}: {e}"));
            let text: String = row.get(1);
            let counter = without_auto_increment(&text);
            shown.push(counter);
        }
        shown
    }

    /// Runs a statement without parameters.
    pub async fn execute(&self, sql: &'static str) {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Raw::Mysql(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs a statement without parameters; the database's error as text.
    pub async fn try_execute(&self, sql: &'static str) -> Result<(), String> {
        match self {
            Raw::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(drop),
            Raw::Mysql(pool) => sqlx::query(sql).execute(pool).await.map(drop),
        }
        .map_err(|e| e.to_string())
    }

    /// The single integer a `SELECT COUNT(*) …` returns.
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await,
            Raw::Mysql(pool) => sqlx::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await,
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// The poller row of a check: `(since, until, lock_id)`.
    pub async fn poller(&self, check_id: i64) -> (DateTime<Utc>, DateTime<Utc>, Option<String>) {
        const SQL: &str = "SELECT since, `until`, lock_id FROM status_check_poller \
                           WHERE status_check_id = ?";
        match self {
            Raw::Sqlite(pool) => {
                let row = sqlx::query(SQL)
                    .bind(check_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (row.get(0), row.get(1), row.get(2))
            }
            Raw::Mysql(pool) => {
                let row = sqlx::query(SQL)
                    .bind(check_id)
                    .fetch_one(pool)
                    .await
                    .unwrap();
                (row.get(0), row.get(1), row.get(2))
            }
        }
    }

    /// `status_check.planned_at` of a check (the production column, whole seconds).
    pub async fn planned_at(&self, check_id: i64) -> DateTime<Utc> {
        const SQL: &str = "SELECT planned_at FROM status_check WHERE id = ?";
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(SQL).bind(check_id).fetch_one(pool).await,
            Raw::Mysql(pool) => sqlx::query_scalar(SQL).bind(check_id).fetch_one(pool).await,
        }
        .unwrap()
    }
}

/// The rows other services own that the production tables' foreign keys point at (robot
/// accounts, script versions and steps, Megazord's subscriptions and events), inserted the
/// way those services would before this service refers to them. A no-op on databases without
/// those tables (SQLite, and MySQL databases of this service's own).
#[derive(Clone)]
pub struct Neighbours(Option<MySqlPool>);

impl Neighbours {
    async fn insert(&self, sql: &'static str, values: &[i64]) {
        let Some(pool) = &self.0 else { return };
        let mut query = sqlx::query(sql);
        for value in values {
            query = query.bind(*value);
        }
        query
            .execute(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql} {values:?}: {e}"));
    }

    /// A robot account, as the robot-account service creates it.
    pub async fn robot(&self, robot_id: i64) {
        self.insert(
            "INSERT IGNORE INTO robot_account (id, username) VALUES (?, CONCAT('robot-', ?))",
            &[robot_id, robot_id],
        )
        .await;
    }

    /// A script version and its steps, as Micro-Managers stores them.
    pub async fn script_steps(&self, script_version_id: i64, steps: &[i64]) {
        self.insert(
            "INSERT IGNORE INTO script_version (id) VALUES (?)",
            &[script_version_id],
        )
        .await;
        for &step in steps {
            self.insert(
                "INSERT IGNORE INTO script_step (id, script_version_id) VALUES (?, ?)",
                &[step, script_version_id],
            )
            .await;
        }
    }

    /// A subscription of a robot, as Megazord creates it.
    pub async fn subscription(&self, subscription_id: i64, robot_id: i64) {
        self.robot(robot_id).await;
        self.insert(
            "INSERT IGNORE INTO event_subscription (id, robot_id) VALUES (?, ?)",
            &[subscription_id, robot_id],
        )
        .await;
    }

    /// An incoming event of a robot, as Megazord stores it.
    pub async fn incoming_event(&self, event_id: i64, robot_id: i64) {
        self.robot(robot_id).await;
        self.insert(
            "INSERT IGNORE INTO incoming_event (id, robot_id) VALUES (?, ?)",
            &[event_id, robot_id],
        )
        .await;
    }

    /// The outgoing event Megazord fans an incoming event out as, for a subscription.
    pub async fn outgoing_event(
        &self,
        outgoing_id: i64,
        source_event_id: i64,
        subscription_id: i64,
        robot_id: i64,
    ) {
        self.incoming_event(source_event_id, robot_id).await;
        self.subscription(subscription_id, robot_id).await;
        self.insert(
            "INSERT IGNORE INTO outgoing_event (id, source_event_id, subscription_id) \
             VALUES (?, ?, ?)",
            &[outgoing_id, source_event_id, subscription_id],
        )
        .await;
    }

    /// Everything a new check refers to: robot, script version, step and next steps,
    /// subscription, and the events of its records.
    pub async fn for_check(&self, check: &NewCheck) {
        let robot = check.key.robot_id;
        self.robot(robot).await;
        let mut steps = vec![
            check.key.step_id,
            check.next_steps.pass,
            check.next_steps.fail,
        ];
        steps.extend(check.next_steps.unknown);
        steps.extend(check.next_step_id);
        self.script_steps(check.script_version_id, &steps).await;
        if let Some(subscription) = check.subscription_id {
            self.subscription(subscription, robot).await;
        }
        self.for_records(&check.records, robot, check.subscription_id)
            .await;
    }

    /// The incoming (and outgoing) events of records.
    pub async fn for_records(
        &self,
        records: &[status_check_engine::Record],
        robot_id: i64,
        subscription_id: Option<i64>,
    ) {
        for record in records {
            self.incoming_event(record.event.id, robot_id).await;
            if let Some(outgoing) = record.outgoing_event_id {
                let subscription = subscription_id.expect("an outgoing event has a subscription");
                self.outgoing_event(outgoing, record.event.id, subscription, robot_id)
                    .await;
            }
        }
    }
}

/// `text` without its ` AUTO_INCREMENT=<n>` table option (a counter, not a definition).
fn without_auto_increment(text: &str) -> String {
    let Some(start) = text.find(" AUTO_INCREMENT=") else {
        return text.to_owned();
    };
    let rest = &text[start + " AUTO_INCREMENT=".len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    format!("{}{}", &text[..start], &rest[end..])
}

/// The Megazord simulator writes its rows here, as the real one does in the shared schema.
#[async_trait]
impl status_check_sim::megazord::MegazordRows for Neighbours {
    async fn subscription(&self, id: i64, robot_id: i64) {
        Neighbours::subscription(self, id, robot_id).await;
    }

    async fn incoming(&self, id: i64, robot_id: i64) {
        self.incoming_event(id, robot_id).await;
    }

    async fn outgoing(&self, id: i64, source_event_id: i64, subscription_id: i64, robot_id: i64) {
        self.outgoing_event(id, source_event_id, subscription_id, robot_id)
            .await;
    }
}

/// A lease by name, as a test's claimer holds it.
pub fn lease(name: &str) -> status_check::jobs::Lease {
    status_check::jobs::Lease::parse(name).unwrap()
}

/// Up to `limit` jobs of `queue` claimed at `now` under `holder`, leased for 30 s (as the
/// runners lease them).
pub async fn claim_jobs<K: status_check::jobs::JobKind>(
    queue: &dyn status_check::jobs::JobQueue<K>,
    now: DateTime<Utc>,
    holder: &status_check::jobs::Lease,
    limit: usize,
) -> Vec<status_check::jobs::Job<K::Payload>> {
    queue
        .claim(now, holder, now + chrono::TimeDelta::seconds(30), limit)
        .await
        .unwrap()
}
