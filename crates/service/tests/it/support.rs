//! Shared test helpers: fresh, migrated databases on both backends.
//!
//! - SQLite: a file in a temporary folder.
//! - MySQL/MariaDB: a new database `sc_test_<random>` on the server `TEST_MYSQL_URL` names
//!   (`scripts/test` starts a private MariaDB and sets it), dropped again when the store is
//!   dropped. Without `TEST_MYSQL_URL` the MySQL tests fail, unless
//!   `STATUS_CHECK_TESTS_WITHOUT_MYSQL=1` says to skip them.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};
use status_check::store::mysql::MysqlStore;
use status_check::store::sqlite::SqliteStore;
use status_check::store::{
    CheckKey, Claimed, Created, Decide, DynStore, Fence, NewCheck, OutboxMessage, Render, Store,
    StoreError, StoredCheck, StoredTemplate, Synced, UpdateOutcome,
};
use status_check_engine::TemplateDefinition;
use tempfile::TempDir;

const NO_MYSQL: &str = "TEST_MYSQL_URL is not set. Run scripts/test, which starts a private \
    MariaDB and sets it, or set TEST_MYSQL_URL=mysql://USER:PASSWORD@127.0.0.1:PORT for a user \
    that may create and drop databases named sc_test_*; STATUS_CHECK_TESTS_WITHOUT_MYSQL=1 \
    skips the MySQL tests instead.";

/// A migrated SQLite store on a file in a new temporary folder (keep the folder alive).
pub async fn sqlite_store() -> (DynStore, TempDir) {
    let db = sqlite_db().await;
    (
        db.store,
        db.dir.expect("a SQLite test database has a folder"),
    )
}

/// A migrated MySQL store on a fresh database, dropped when the store is. Panics without
/// `TEST_MYSQL_URL`; check [`mysql_skipped`] first to honour `STATUS_CHECK_TESTS_WITHOUT_MYSQL`.
pub async fn mysql_store() -> DynStore {
    let url = std::env::var("TEST_MYSQL_URL").unwrap_or_else(|_| panic!("{NO_MYSQL}"));
    mysql_db_at(&url).await.store
}

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
    pub raw: Raw,
    dir: Option<TempDir>,
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
        raw: Raw::Sqlite(raw),
        dir: Some(dir),
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

/// A fresh MySQL database without any table (for upgrade tests); `None` when MySQL tests are
/// skipped.
pub async fn mysql_db_unmigrated() -> Option<TestDb> {
    if mysql_skipped() {
        return None;
    }
    let url = std::env::var("TEST_MYSQL_URL").unwrap();
    Some(mysql_db_unmigrated_at(&url).await)
}

async fn mysql_db_at(url: &str) -> TestDb {
    let db = mysql_db_unmigrated_at(url).await;
    db.store.migrate().await.expect("MySQL migrates");
    db
}

async fn mysql_db_unmigrated_at(url: &str) -> TestDb {
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
    let guard = DropDatabase {
        server: server.clone(),
        name: name.clone(),
    };
    let options = server.database(&name);
    let store = MysqlStore::connect_with(options.clone())
        .await
        .expect("MySQL connects");
    let raw = MySqlPoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .expect("a second pool on the test database");
    TestDb {
        store: Arc::new(DroppingStore {
            inner: store,
            _guard: guard,
        }),
        raw: Raw::Mysql(raw),
        dir: None,
    }
}

/// Drops the test database (best effort) when the store that uses it is dropped.
struct DropDatabase {
    server: MySqlConnectOptions,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = std::mem::take(&mut self.name);
        // Drop may run inside or outside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut conn = server.connect().await.ok()?;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: a MySQL test database was not dropped");
        }
    }
}

/// A MySQL store that drops its test database when it goes away.
struct DroppingStore {
    inner: MysqlStore,
    _guard: DropDatabase,
}

#[async_trait]
impl Store for DroppingStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError> {
        self.inner.create_check(check).await
    }

    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError> {
        self.inner.get_check(id).await
    }

    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError> {
        self.inner.find_check(key).await
    }

    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError> {
        self.inner.sync_template(definition, now).await
    }

    async fn active_template(&self, name: &str) -> Result<Option<StoredTemplate>, StoreError> {
        self.inner.active_template(name).await
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError> {
        self.inner.template_by_id(id).await
    }

    async fn find_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredCheck>, StoreError> {
        self.inner
            .find_by_subscription(robot_id, subscription_id)
            .await
    }

    async fn update_check(
        &self,
        id: i64,
        fence: Fence<'_>,
        decide: Decide<'_>,
        render: Render<'_>,
        call_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.inner
            .update_check(id, fence, decide, render, call_ref, now)
            .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim_due(now, lease, limit).await
    }

    async fn release_stale_leases(&self, taken_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.release_stale_leases(taken_before).await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner
            .claim_outbox(now, lease, lease_until, limit)
            .await
    }

    async fn outbox_sent(
        &self,
        ids: &[i64],
        lease: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.outbox_sent(ids, lease, now).await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        lease: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .outbox_failed(id, lease, next_attempt_at, error)
            .await
    }

    async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        self.inner.outbox_backlog().await
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
    pub fn is_mysql(&self) -> bool {
        matches!(self, Raw::Mysql(_))
    }

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

    /// Applies only the first migration (the schema before the scheduler and the outbox), as
    /// `store.migrate()` would have recorded it.
    pub async fn migrate_to_first_schema(&self) {
        use sqlx::SqlSafeStr;
        use sqlx::migrate::{Migration, MigrationType, Migrator};
        let sql = match self {
            Raw::Sqlite(_) => include_str!("../../migrations/sqlite/0001_init.sql"),
            Raw::Mysql(_) => include_str!("../../migrations/mysql/0001_init.sql"),
        };
        let migrator = Migrator::with_migrations(vec![Migration::new(
            1,
            "init".into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )]);
        match self {
            Raw::Sqlite(pool) => migrator.run(pool).await,
            Raw::Mysql(pool) => migrator.run(pool).await,
        }
        .expect("the first migration applies");
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
    pub async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Raw::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Raw::Mysql(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
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
