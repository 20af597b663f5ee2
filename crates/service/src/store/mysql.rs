//! MySQL / MariaDB implementation of [`Store`](super::Store): production (MySQL 8, MariaDB
//! ≥ 10.6), on the existing `tinybots` tables plus this service's own (docs/storage.md).
//!
//! Every connection sets `time_zone = '+00:00'`, so `TIMESTAMP` columns read and write UTC.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, NaiveDateTime, Utc};
use sqlx::mysql::{
    MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlPool, MySqlPoolOptions,
    MySqlRow, MySqlSslMode,
};
use sqlx::pool::PoolConnection;
use sqlx::{ConnectOptions as _, Connection as _, MySql, Row};

use super::StoreError;
use super::db::{
    Arg, Db, Dialect, Done, EmbeddedMigration, Mode, SqlRow, Tx, migrator, names_request_key,
    refuse_retired,
};
use super::error::DatabaseFailure;
use crate::clock::ClockSample;

/// Connections of the pool unless configured (`DB_POOL_SIZE`).
pub const DEFAULT_POOL_SIZE: u32 = 10;

/// MySQL error numbers: deadlock, lock wait timeout.
const ER_LOCK_DEADLOCK: u16 = 1213;
const ER_LOCK_WAIT_TIMEOUT: u16 = 1205;
/// A write at READ COMMITTED refused: the binary log is in `binlog_format=STATEMENT`.
const ER_BINLOG_STMT_MODE_AND_ROW_ENGINE: u16 = 1665;
/// MariaDB ≥ 11.6 with `innodb_snapshot_isolation`: a row changed since the transaction's
/// snapshot ("Record has changed since last read"): retried like a deadlock.
const ER_CHECKREAD: u16 = 1020;

/// The server cannot serve now, though the statement is fine: too many connections (1040), a
/// shutdown (1053), a read-only server (1290 `--read-only`/`super_read_only`, as a former
/// primary after a failover; 1836 `innodb_read_only`), this connection killed (1927, MariaDB)
/// or closed for being idle (4031, MySQL ≥ 8.0.24; on MariaDB 4031 is a missing trigger's
/// error, which no statement here can meet) — a 503 and another try later, like a lost
/// connection, not a 500.
const UNAVAILABLE: [u16; 6] = [1040, 1053, 1290, 1836, 1927, 4031];

/// Versions 1 and 2 are retired (docs/storage.md "Migrations"): never reused, so a database
/// they migrated is recognised and refused instead of being upgraded wrongly.
const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        3,
        "production_tables",
        include_str!("../../migrations/mysql/0003_production_tables.sql"),
    ),
    (
        4,
        "service_tables",
        include_str!("../../migrations/mysql/0004_service_tables.sql"),
    ),
    (
        5,
        "subscription_removals",
        include_str!("../../migrations/mysql/0005_subscription_removals.sql"),
    ),
    (
        6,
        "monitors",
        include_str!("../../migrations/mysql/0006_monitors.sql"),
    ),
    (
        8,
        "real_megazord",
        include_str!("../../migrations/mysql/0008_real_megazord.sql"),
    ),
    (
        9,
        "monitor_windows",
        include_str!("../../migrations/mysql/0009_monitor_windows.sql"),
    ),
    (
        10,
        "monitor_window_length",
        include_str!("../../migrations/mysql/0010_monitor_window_length.sql"),
    ),
];

/// The MySQL / MariaDB store.
#[derive(Debug, Clone)]
pub struct MysqlStore {
    pool: MySqlPool,
    operation_timeout: Duration,
    /// Every transaction is `START TRANSACTION READ ONLY` (`templates backtest`).
    read_only: bool,
    /// [`Mode::RowLocked`] runs READ COMMITTED — until the server refuses a write at that
    /// level (its binary log logs statements: `binlog_format=STATEMENT`); the refused
    /// transaction is retried, and every later one runs, at REPEATABLE READ
    /// ([`MysqlTx::answered`]).
    read_committed: Arc<AtomicBool>,
    /// Each session's `innodb_lock_wait_timeout`, in seconds, set as it connects: half the
    /// operation's bound, so a wait for a lock ends as a lock-wait timeout (retried) within
    /// the bound. At the server's default (50 s) the bound ended it first and the dropped
    /// connection's statement went on waiting, then holding locks, for up to 50 s.
    lock_wait_secs: Arc<AtomicU64>,
}

/// A session's lock wait for an operation bound: half of it, in whole seconds, at least 1.
fn lock_wait_secs(operation_timeout: Duration) -> u64 {
    (operation_timeout.as_secs() / 2).max(1)
}

fn lock_wait_statement(secs: u64) -> String {
    format!("SET SESSION innodb_lock_wait_timeout = {secs}")
}

impl MysqlStore {
    /// Connects to `mysql://user:password@host:port/database` (TLS when the server offers
    /// it, as MySQL 8's default authentication needs).
    pub async fn connect(url: &str) -> Result<MysqlStore, StoreError> {
        MysqlStore::connect_sized(url, DEFAULT_POOL_SIZE).await
    }

    /// [`MysqlStore::connect`] with a pool of `pool_size` connections.
    pub async fn connect_sized(url: &str, pool_size: u32) -> Result<MysqlStore, StoreError> {
        // sqlx's URL errors name the part that is wrong, never the URL itself.
        let options = MySqlConnectOptions::from_str(url)
            .map_err(|e| StoreError::connect("read the MySQL URL".to_owned(), &e))?;
        MysqlStore::connect_pool(options, pool_size).await
    }

    /// Connects with explicit options (e.g. built from `DB_RW_HOST`, `DB_PORT`, … without
    /// putting a password into a URL).
    ///
    /// One connection is opened first, within [`CONNECT_TIMEOUT`](super::CONNECT_TIMEOUT):
    /// its error is the real cause (refused, access denied, unknown database), where the
    /// pool would retry a refused connection until its acquire timeout and then report only
    /// that it timed out. The error names host, port and database, never the password.
    pub async fn connect_with(options: MySqlConnectOptions) -> Result<MysqlStore, StoreError> {
        MysqlStore::connect_pool(options, DEFAULT_POOL_SIZE).await
    }

    async fn connect_pool(
        options: MySqlConnectOptions,
        pool_size: u32,
    ) -> Result<MysqlStore, StoreError> {
        let options = options
            .timezone(Some("+00:00".to_owned()))
            .charset("utf8mb4");
        let host = options.get_host();
        let mut target = match options.get_socket() {
            Some(socket) => format!("connect to MySQL at {}", socket.display()),
            None if host.contains(':') => {
                format!("connect to MySQL at [{host}]:{}", options.get_port())
            }
            None => format!("connect to MySQL at {host}:{}", options.get_port()),
        };
        if let Some(database) = options.get_database() {
            target.push_str(&format!(" (database {database})"));
        }
        let mut first = tokio::time::timeout(super::CONNECT_TIMEOUT, options.connect())
            .await
            .map_err(|_| StoreError::connect_timed_out(target.clone()))?
            .map_err(|e| StoreError::connect(target.clone(), &e))?;
        // The session setting every pooled connection makes: refused here, start-up says why
        // (refused in the pool's `after_connect`, every acquire would only time out).
        sqlx::query(sqlx::AssertSqlSafe(lock_wait_statement(lock_wait_secs(
            super::DEFAULT_OPERATION_TIMEOUT,
        ))))
        .execute(&mut first)
        .await
        .map_err(|e| StoreError::connect(target.clone(), &e))?;
        // Only a probe: the pool opens its own.
        let _ = first.close().await;
        let lock_wait = Arc::new(AtomicU64::new(lock_wait_secs(
            super::DEFAULT_OPERATION_TIMEOUT,
        )));
        let session_lock_wait = lock_wait.clone();
        let pool = MySqlPoolOptions::new()
            .max_connections(pool_size.max(1))
            // Connections open lazily, after `with_operation_timeout` set the value.
            .min_connections(0)
            .after_connect(move |conn, _| {
                let secs = session_lock_wait.load(Ordering::Relaxed);
                Box::pin(async move {
                    sqlx::query(sqlx::AssertSqlSafe(lock_wait_statement(secs)))
                        .execute(conn)
                        .await
                        .map(drop)
                })
            })
            .connect_lazy_with(options);
        Ok(MysqlStore {
            pool,
            operation_timeout: super::DEFAULT_OPERATION_TIMEOUT,
            read_only: false,
            read_committed: Arc::new(AtomicBool::new(true)),
            lock_wait_secs: lock_wait,
        })
    }

    /// A pooled connection with nothing open on it yet.
    async fn session(&self) -> Result<MysqlTx, StoreError> {
        Ok(MysqlTx {
            conn: Some(self.pool.acquire().await?),
            state: TxState::Done,
            rollback_wait: self.operation_timeout,
            read_committed: None,
        })
    }

    /// Bounds every store operation by `limit` (`DB_OPERATION_TIMEOUT_SECS`).
    pub fn with_operation_timeout(mut self, limit: Duration) -> MysqlStore {
        self.operation_timeout = limit;
        self.lock_wait_secs
            .store(lock_wait_secs(limit), Ordering::Relaxed);
        self
    }

    /// Every transaction begins `START TRANSACTION READ ONLY`: the server refuses any write,
    /// and a user with only `SELECT` suffices (`templates backtest`, SPEC §14).
    pub fn read_only(mut self) -> MysqlStore {
        self.read_only = true;
        self
    }
}

#[async_trait]
impl Db for MysqlStore {
    type Tx = MysqlTx;

    /// Reads and writes alike: InnoDB takes row locks statement by statement; reads see one
    /// snapshot (REPEATABLE READ) — but for [`Mode::RowLocked`] (READ COMMITTED).
    async fn begin(&self, mode: Mode) -> Result<MysqlTx, StoreError> {
        let read_committed = !self.read_only
            && mode == Mode::RowLocked
            && self.read_committed.load(Ordering::Relaxed);
        let mut tx = self.session().await?;
        tx.read_committed = read_committed.then(|| self.read_committed.clone());
        let begin = match mode {
            _ if self.read_only => "START TRANSACTION READ ONLY",
            // One round trip; the level holds for this transaction only.
            Mode::RowLocked if read_committed => {
                "SET TRANSACTION ISOLATION LEVEL READ COMMITTED; BEGIN"
            }
            Mode::Read | Mode::Write | Mode::RowLocked => "BEGIN",
        };
        sqlx::raw_sql(begin).execute(tx.sending()).await?;
        tx.state = TxState::Open;
        Ok(tx)
    }

    async fn apply_migrations(&self) -> Result<(), StoreError> {
        // One connection, so the session prepared here is the one the migrations run on.
        let options = (*self.pool.connect_options()).clone();
        let pool = MySqlPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await?;
        let result = migrate_on(&pool).await;
        pool.close().await;
        result
    }

    /// On a pooled connection, closed rather than returned should the ping be abandoned.
    async fn ping(&self) -> Result<(), StoreError> {
        let mut session = self.session().await?;
        sqlx::raw_sql("SELECT 1").execute(session.sending()).await?;
        session.state = TxState::Done;
        Ok(())
    }

    /// `UTC_TIMESTAMP(6)` (the session's time zone does not matter), on one pooled
    /// connection, closed rather than returned should a reading be abandoned.
    async fn read_database_clock(&self, count: usize) -> Result<Vec<ClockSample>, StoreError> {
        let mut session = self.session().await?;
        let mut samples = Vec::with_capacity(count);
        for _ in 0..count {
            let local_sent = Utc::now();
            let sent = Instant::now();
            let database: NaiveDateTime = sqlx::query_scalar("SELECT UTC_TIMESTAMP(6)")
                .fetch_one(session.sending())
                .await?;
            let received = Instant::now();
            session.state = TxState::Done;
            samples.push(ClockSample {
                sent,
                received,
                local_sent,
                database: database.and_utc(),
            });
        }
        Ok(samples)
    }

    fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    fn dialect(&self) -> Dialect {
        Dialect::Mysql
    }
}

/// Runs the migrations on a one-connection pool. (Through `&mut MySqlConnection` they would
/// not compile in a `Send` future: "`Acquire` is not general enough".)
async fn migrate_on(pool: &MySqlPool) -> Result<(), StoreError> {
    // With explicit_defaults_for_timestamp off (the default before MariaDB 10.10), the first
    // `TIMESTAMP NOT NULL` column of a new table silently becomes `ON UPDATE
    // CURRENT_TIMESTAMP` (the poller's `since`, the check's `planned_at`). Turn it on for this
    // session, or refuse.
    let mut conn = pool.acquire().await?;
    let explicit: i64 =
        sqlx::query_scalar("SELECT CAST(@@SESSION.explicit_defaults_for_timestamp AS SIGNED)")
            .fetch_one(&mut *conn)
            .await?;
    if explicit == 0 {
        sqlx::query("SET SESSION explicit_defaults_for_timestamp = 1")
            .execute(&mut *conn)
            .await
            .map_err(|e| {
                sqlx::Error::Configuration(
                    format!(
                        "the server has explicit_defaults_for_timestamp = OFF and this session \
                         cannot turn it on ({e}); set it ON for the server, or the migrations \
                         would create TIMESTAMP columns that change on every update"
                    )
                    .into(),
                )
            })?;
    }
    let history: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.TABLES \
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if history > 0 {
        let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
            .fetch_all(&mut *conn)
            .await?;
        refuse_retired(&applied)?;
    }
    drop(conn);
    migrator(MIGRATIONS).run(pool).await?;
    Ok(())
}

type Query = sqlx::query::Query<'static, MySql, <MySql as sqlx::Database>::Arguments>;

fn bind(mut query: Query, args: Vec<Arg>) -> Query {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::OptInt(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::OptText(value) => query.bind(value),
            Arg::Bool(value) => query.bind(value),
            // As a DATETIME, not the TIMESTAMP sqlx sends for `DateTime<Utc>`: the same value
            // in this UTC session, and one that holds times past 2038 (the DATETIME(3)
            // columns' far deadlines, a dead letter's retry time).
            Arg::Time(value) => query.bind(value.naive_utc()),
            Arg::OptTime(value) => query.bind(value.map(|t| t.naive_utc())),
        };
    }
    query
}

/// A transaction on a pooled connection that goes back to the pool only in a known state.
///
/// sqlx would drain an abandoned statement's answer before reusing the connection, but its
/// check on release has no time bound: against a frozen server every abandoned operation would
/// hold a pool slot until the server came back. Here a connection whose statement was
/// abandoned mid-flight (the operation timed out, its request was cancelled) is closed at
/// once instead: the server rolls back what was not committed when it sees the connection
/// gone, and the pool opens a fresh one. A transaction dropped between statements (a read
/// that needs no commit, an error) is rolled back and its connection returned.
pub struct MysqlTx {
    /// `None` only once dropped.
    conn: Option<PoolConnection<MySql>>,
    state: TxState,
    /// How long the rollback of a dropped transaction may take before its connection is
    /// closed instead.
    rollback_wait: Duration,
    /// The store's READ COMMITTED switch, when this transaction runs at that level: turned
    /// off should the server refuse a write at it.
    read_committed: Option<Arc<AtomicBool>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxState {
    /// A statement was sent and its answer not read yet (or a COMMIT/ROLLBACK failed): the
    /// session's state is unknown.
    InFlight,
    /// Inside a transaction, between statements.
    Open,
    /// No transaction open, nothing in flight.
    Done,
}

impl MysqlTx {
    /// The connection, for one statement: in flight until the caller says otherwise.
    fn sending(&mut self) -> &mut MySqlConnection {
        self.state = TxState::InFlight;
        self.conn
            .as_mut()
            .expect("a transaction has its connection until dropped")
    }

    /// A statement's answer: the transaction is open and usable again, rows or error. A
    /// write refused at READ COMMITTED turns the level off for the store's later changes.
    fn answered<T>(&mut self, answer: Result<T, sqlx::Error>) -> Result<T, StoreError> {
        self.state = TxState::Open;
        if let (Err(sqlx::Error::Database(refused)), Some(switch)) = (&answer, &self.read_committed)
            && refused
                .try_downcast_ref::<MySqlDatabaseError>()
                .is_some_and(|e| e.number() == ER_BINLOG_STMT_MODE_AND_ROW_ENGINE)
            && switch.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(
                error = %refused,
                "changes of checks run REPEATABLE READ from now on: the server refused a \
                 READ COMMITTED write (its binary log logs statements); the change is retried. \
                 With binlog_format ROW or MIXED, batches of different checks do not wait on \
                 each other's gap locks"
            );
        }
        Ok(answer?)
    }

    /// Sends `COMMIT` or `ROLLBACK`; the connection is clean once it is answered.
    async fn end(mut self, statement: &'static str) -> Result<(), StoreError> {
        sqlx::raw_sql(statement).execute(self.sending()).await?;
        self.state = TxState::Done;
        Ok(())
    }
}

impl Drop for MysqlTx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        match self.state {
            TxState::Done => drop(conn),
            // Closing the socket is the rollback.
            TxState::InFlight => drop(conn.detach()),
            TxState::Open => match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let wait = self.rollback_wait;
                    runtime.spawn(async move {
                        let mut conn = conn;
                        let rolled_back = tokio::time::timeout(
                            wait,
                            sqlx::raw_sql("ROLLBACK").execute(&mut *conn),
                        )
                        .await;
                        if !matches!(rolled_back, Ok(Ok(_))) {
                            drop(conn.detach());
                        }
                    });
                }
                Err(_) => drop(conn.detach()),
            },
        }
    }
}

#[async_trait]
impl Tx for MysqlTx {
    type Row = MySqlRow;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<Done, StoreError> {
        let result = bind(sqlx::query(sql), args).execute(self.sending()).await;
        let result = self.answered(result)?;
        let last_insert_id = i64::try_from(result.last_insert_id())
            .map_err(|_| StoreError::Corrupt("an id beyond 2^63 - 1".to_owned()))?;
        Ok(Done {
            last_insert_id,
            rows_affected: result.rows_affected(),
        })
    }

    async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<MySqlRow>, StoreError> {
        let rows = bind(sqlx::query(sql), args).fetch_all(self.sending()).await;
        self.answered(rows)
    }

    async fn commit(self) -> Result<(), StoreError> {
        self.end("COMMIT").await
    }

    async fn rollback(self) -> Result<(), StoreError> {
        self.end("ROLLBACK").await
    }
}

/// Integers of signed and unsigned columns alike, as `i64`.
fn int_of(row: &MySqlRow, column: &str) -> Result<Option<i64>, StoreError> {
    match row.try_get::<Option<i64>, _>(column) {
        Ok(value) => Ok(value),
        Err(sqlx::Error::ColumnDecode { .. }) => {
            let value: Option<u64> = row.try_get(column)?;
            value
                .map(|v| {
                    i64::try_from(v).map_err(|_| {
                        StoreError::Corrupt(format!("{column}: {v} is beyond 2^63 - 1"))
                    })
                })
                .transpose()
        }
        Err(e) => Err(e.into()),
    }
}

impl SqlRow for MySqlRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        int_of(self, column)?
            .ok_or_else(|| StoreError::Corrupt(format!("{column} is NULL where a value is needed")))
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        int_of(self, column)
    }

    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn boolean(&self, column: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// How a statement MySQL refused counts (see [`StoreError`]'s conversion from sqlx's).
pub(super) fn failure_of(error: &dyn sqlx::error::DatabaseError) -> DatabaseFailure {
    if error.is_unique_violation() {
        return DatabaseFailure::Duplicate {
            request_key: names_request_key(error.message()),
        };
    }
    match error.try_downcast_ref::<MySqlDatabaseError>() {
        Some(e) => failure_of_number(e.number()),
        None => DatabaseFailure::Other,
    }
}

/// What a MySQL error number means for the operation that met it.
fn failure_of_number(number: u16) -> DatabaseFailure {
    match number {
        // 1665: retried at REPEATABLE READ (`MysqlTx::answered`).
        ER_LOCK_DEADLOCK
        | ER_LOCK_WAIT_TIMEOUT
        | ER_BINLOG_STMT_MODE_AND_ROW_ENGINE
        | ER_CHECKREAD => DatabaseFailure::Transient,
        number if UNAVAILABLE.contains(&number) => DatabaseFailure::Unavailable,
        _ => DatabaseFailure::Other,
    }
}

/// The TLS mode of a MySQL URL when it encrypts without checking the server's certificate
/// (`preferred`, sqlx's default, or `required`); `None` for a verified mode, TLS switched off,
/// or a URL that does not parse. Read by the configuration's start-up warning.
pub(crate) fn unverified_tls_mode(url: &str) -> Option<&'static str> {
    let options = MySqlConnectOptions::from_str(url).ok()?;
    match options.get_ssl_mode() {
        MySqlSslMode::Preferred => Some("preferred"),
        MySqlSslMode::Required => Some("required"),
        MySqlSslMode::Disabled | MySqlSslMode::VerifyCa | MySqlSslMode::VerifyIdentity => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded() {
        super::super::db::assert_all_embedded("mysql", super::MIGRATIONS);
    }

    /// A server that cannot serve now (read-only after a failover, shutting down, the
    /// connection killed) is unavailable — 503, tried again — not a failed statement (500).
    #[test]
    fn error_numbers_are_sorted_by_what_they_mean_for_the_operation() {
        for number in [1213, 1205, 1665, 1020] {
            assert_eq!(
                failure_of_number(number),
                DatabaseFailure::Transient,
                "{number}"
            );
        }
        for number in [1040, 1053, 1290, 1836, 1927, 4031] {
            assert_eq!(
                failure_of_number(number),
                DatabaseFailure::Unavailable,
                "{number}"
            );
        }
        // A statement at fault: a foreign key, a column too long, bad syntax.
        for number in [1452, 1406, 1064] {
            assert_eq!(
                failure_of_number(number),
                DatabaseFailure::Other,
                "{number}"
            );
        }
    }
}
