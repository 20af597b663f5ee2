//! The narrow seam between the shared store logic (`checks`, `templates`, `lifecycle`, `outbox`) and the two backends
//! (SQLite on rusqlite, MySQL on sqlx).
//!
//! The SQL of both backends is the same text (`?` placeholders, back-quoted `order`/`until`,
//! which SQLite also accepts), so the logic is written once against these traits; each backend
//! only binds arguments, reads typed columns, opens transactions and classifies its errors.
//! (sqlx's own generic executor bounds make `async` code generic over the database hard to
//! keep `Send`; `AnyPool` cannot carry dates.)

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, TimeDelta, Utc};

use super::StoreError;

/// One bound value. Times are bound as given: the caller truncates them to the column's
/// precision first (see [`millis`], [`seconds_floor`]).
#[derive(Debug, Clone)]
pub enum Arg {
    Int(i64),
    OptInt(Option<i64>),
    Text(String),
    OptText(Option<String>),
    Bool(bool),
    Time(DateTime<Utc>),
    OptTime(Option<DateTime<Utc>>),
}

/// `From<$type> for Arg` as `$variant`, for the types bound as they are.
macro_rules! arg_from {
    ($($type:ty => $variant:ident),* $(,)?) => {
        $(impl From<$type> for Arg {
            fn from(value: $type) -> Self {
                Arg::$variant(value)
            }
        })*
    };
}

arg_from! {
    i64 => Int,
    Option<i64> => OptInt,
    String => Text,
    Option<String> => OptText,
    bool => Bool,
    DateTime<Utc> => Time,
    Option<DateTime<Utc>> => OptTime,
}

impl From<u32> for Arg {
    fn from(value: u32) -> Self {
        Arg::Int(i64::from(value))
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Self {
        Arg::Text(value.to_owned())
    }
}

/// `args![a, b, c]`: a `Vec<Arg>`.
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$($crate::store::db::Arg::from($value)),*]
    };
}
pub(crate) use args;

/// Typed access to a result row by column name.
pub trait SqlRow: Send + Sync + 'static {
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn boolean(&self, column: &str) -> Result<bool, StoreError>;
    fn time(&self, column: &str) -> Result<DateTime<Utc>, StoreError>;
    fn opt_time(&self, column: &str) -> Result<Option<DateTime<Utc>>, StoreError>;
}

/// What a write statement did.
#[derive(Debug, Clone, Copy)]
pub struct Done {
    /// The id the statement generated (`LAST_INSERT_ID()` / `last_insert_rowid()`).
    pub last_insert_id: i64,
    /// Rows the statement matched (MySQL connections report found rows, not changed rows;
    /// SQLite counts every row its `WHERE` selected).
    pub rows_affected: u64,
}

/// An open transaction. Dropping it without `commit` rolls it back.
#[async_trait]
pub trait Tx: Send {
    type Row: SqlRow;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<Done, StoreError>;

    async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<Self::Row>, StoreError>;

    async fn fetch_optional(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<Self::Row>, StoreError> {
        Ok(self.fetch_all(sql, args).await?.into_iter().next())
    }

    async fn commit(self) -> Result<(), StoreError>;

    /// Rolls back now (dropping the transaction rolls back too, but only once the connection
    /// is next used or returned to the pool; an explicit rollback frees MySQL's row locks at
    /// once).
    async fn rollback(self) -> Result<(), StoreError>;
}

/// Whether a transaction will write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Reads only: a consistent snapshot, no write lock.
    Read,
    /// Takes the write lock up front on SQLite (`BEGIN IMMEDIATE`); a plain transaction on
    /// MySQL, whose row locks are taken statement by statement.
    Write,
    /// [`Mode::Write`] for a transaction whose every row it changes is guarded by a lock on
    /// its `status_check` row (the changes of checks). On MySQL it runs READ COMMITTED:
    /// its locking reads lock the rows they read and no gaps between them. Under REPEATABLE
    /// READ the read of a check's last record `order` locked the index gap after it, where
    /// any other check's next record is inserted, so batches of disjoint checks waited on
    /// each other (docs/benchmarks.md, MariaDB deliveries).
    RowLocked,
}

/// The SQL dialect of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Mysql,
}

/// A statement whose text differs between the dialects: the locking reads (`FOR UPDATE`,
/// `FOR UPDATE SKIP LOCKED`), which SQLite does not have and does not need (its write
/// transactions hold the database's single write lock from `BEGIN IMMEDIATE` on).
#[derive(Debug, Clone, Copy)]
pub struct PerDialect {
    pub mysql: &'static str,
    pub sqlite: &'static str,
}

/// A backend: opens transactions and classifies its errors.
#[async_trait]
pub trait Db: Send + Sync {
    type Tx: Tx;

    async fn begin(&self, mode: Mode) -> Result<Self::Tx, StoreError>;

    /// Applies this backend's migrations.
    async fn apply_migrations(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The database's clock, `count` readings (`Store::read_database_clock`); none where the
    /// database's clock is this process's.
    async fn read_database_clock(
        &self,
        count: usize,
    ) -> Result<Vec<crate::clock::ClockSample>, StoreError> {
        let _ = count;
        Ok(Vec::new())
    }

    /// The most one store operation may take, its retries included (the migrations are not
    /// bounded): past it the operation is abandoned and fails with `StoreError::TimedOut`.
    fn operation_timeout(&self) -> std::time::Duration;

    fn dialect(&self) -> Dialect;

    /// This backend's text of a statement that differs between the dialects.
    fn sql(&self, statement: &PerDialect) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => statement.sqlite,
            Dialect::Mysql => statement.mysql,
        }
    }
}

/// How many times a unit of work is tried in all when it fails for a reason worth another
/// try (deadlock, lock-wait timeout, busy database; a unique key lost to a concurrent writer).
pub(crate) const ATTEMPTS: u32 = 5;

/// Counts the attempts of one unit of work and waits a short, jittered, growing time before
/// the next one: 5–10 ms, then 10–20 ms, 20–40 ms, 40–80 ms.
#[derive(Debug, Default)]
pub(crate) struct Retry {
    attempts: u32,
}

impl Retry {
    /// Whether the unit that just failed with `error` is to run again; waits before saying
    /// yes. Only transient failures are retried, [`ATTEMPTS`] times in all.
    pub(crate) async fn again(&mut self, error: &StoreError) -> bool {
        error.is_transient() && self.again_after(error).await
    }

    /// Like [`Retry::again`], for a failure the caller judged worth another try (a unique key
    /// lost to a concurrent writer, whose rows the next attempt sees).
    pub(crate) async fn again_after(&mut self, error: &StoreError) -> bool {
        self.attempts += 1;
        if self.attempts >= ATTEMPTS {
            return false;
        }
        // Jitter from a random UUID (already a dependency).
        let wait = backoff(self.attempts, uuid::Uuid::new_v4().as_u128() as u64);
        tracing::debug!(attempt = self.attempts, ?wait, error = %error, "transient database failure; retrying");
        tokio::time::sleep(wait).await;
        true
    }
}

/// How a unit of work ends when it did not fail.
pub(crate) enum Step<V> {
    Commit(V),
    /// Nothing (more) to write: roll back, freeing the locks at once.
    Rollback(V),
}

/// Runs one write unit in a transaction — `$unit` uses `&mut $tx` and yields a
/// `Result<Step<_>>` — committing or rolling back as it says, and runs it again on a
/// transient failure (deadlock, lock wait timeout, SQLITE_BUSY) a bounded number of times.
///
/// `retrying!($db, "operation", $tx => …)` is also the whole of a store operation: it is
/// [`bounded`] by the backend's operation timeout, its retries included.
macro_rules! retrying {
    ($db:expr, $operation:literal, $tx:ident => $unit:expr) => {
        $crate::store::db::bounded($db, $operation, async {
            $crate::store::db::retrying!($db, $tx => $unit)
        })
        .await
    };
    ($db:expr, $tx:ident => $unit:expr) => {{
        let mut retry = $crate::store::db::Retry::default();
        loop {
            let result = async {
                let mut $tx =
                    $crate::store::db::Db::begin($db, $crate::store::db::Mode::Write).await?;
                let result = $unit;
                $crate::store::db::finish($tx, result).await
            }
            .await;
            match result {
                Ok(value) => break Ok(value),
                Err(error) => {
                    if !retry.again(&error).await {
                        break Err(error);
                    }
                }
            }
        }
    }};
}
pub(crate) use retrying;

/// Commits or rolls back the transaction as the unit's result says; an error rolls back.
pub(crate) async fn finish<T: Tx, V>(
    tx: T,
    result: Result<Step<V>, StoreError>,
) -> Result<V, StoreError> {
    match result {
        Ok(Step::Commit(value)) => {
            tx.commit().await?;
            Ok(value)
        }
        Ok(Step::Rollback(value)) => {
            tx.rollback().await?;
            Ok(value)
        }
        Err(error) => {
            // The error is what matters; a failed rollback closes the connection anyway.
            tx.rollback().await.ok();
            Err(error)
        }
    }
}

/// Runs one store operation within the backend's operation timeout. Past it the operation is
/// dropped where it stands — its transaction is never committed and the backend cleans its
/// connection up (MySQL: closed if a statement was in flight, so the server rolls back) — and
/// it fails with `StoreError::TimedOut`, counted by `db_operation_timeouts_total`.
pub(crate) async fn bounded<B: Db + ?Sized, V>(
    db: &B,
    operation: &'static str,
    work: impl std::future::Future<Output = Result<V, StoreError>>,
) -> Result<V, StoreError> {
    let limit = db.operation_timeout();
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => {
            metrics::counter!("db_operation_timeouts_total", "operation" => operation).increment(1);
            Err(StoreError::TimedOut {
                operation,
                after: limit,
            })
        }
    }
}

/// Every row `sql` selects, each made a value by `of`, read in a transaction of its own: one
/// consistent snapshot. (`.pop()` of it: the row a statement that selects one at most finds.)
pub(crate) async fn read_all<D: Db + ?Sized, V>(
    db: &D,
    sql: &'static str,
    args: Vec<Arg>,
    of: impl Fn(&<D::Tx as Tx>::Row) -> Result<V, StoreError>,
) -> Result<Vec<V>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let rows = tx.fetch_all(sql, args).await?;
    tx.commit().await?;
    rows.iter().map(of).collect()
}

/// Deletes, in one transaction, up to `limit` rows that `select` finds older than `before`
/// (its arguments: the time, the limit; it selects `id`, oldest first), one `delete` (by id)
/// each — SQLite has no `DELETE … LIMIT`, MySQL takes no `LIMIT` in an `IN` subquery; how
/// many. The purges of sent jobs, subscribe records and ended monitor windows.
pub(crate) async fn purge_older<D: Db + ?Sized>(
    db: &D,
    select: &'static str,
    delete: &'static str,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    let limit = limit_arg(limit);
    retrying!(db, tx => async {
        let ids = tx
            .fetch_all(select, args![millis(before), limit])
            .await?
            .iter()
            .map(|row| row.int("id"))
            .collect::<Result<Vec<_>, _>>()?;
        for &id in &ids {
            tx.execute(delete, args![id]).await?;
        }
        Ok(Step::Commit(ids.len() as u64))
    }
    .await)
}

/// The unique-violation message of either backend names the request key: MySQL/MariaDB by
/// the key's name, SQLite by the table and its columns.
pub(crate) fn names_request_key(message: &str) -> bool {
    message.contains("uk_status_check_ext_request") || message.contains("status_check_ext.")
}

/// The wait after the `attempt`th failure (1-based): 5 ms × 2^(attempt − 1), capped at
/// 80 ms, plus up to as much again from `random`.
fn backoff(attempt: u32, random: u64) -> std::time::Duration {
    let base_us = 5_000u64 << attempt.saturating_sub(1).min(4);
    std::time::Duration::from_micros(base_us + random % (base_us + 1))
}

// ---- Migrations ----

/// One embedded migration: version, description, SQL. The file is
/// `migrations/<dialect>/<version as 4 digits>_<description>.sql`; version, description and
/// checksum are what `sqlx::migrate!` would derive from it, so either can apply them.
pub(crate) type EmbeddedMigration = (i64, &'static str, &'static str);

/// A migrator over embedded migrations. (`sqlx::migrate!` needs sqlx's `macros` feature,
/// which the workspace does not enable.)
pub(crate) fn migrator(migrations: &[EmbeddedMigration]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The migration versions of the pre-release schema (before the live tinybots definition was
/// known): never valid on a production database, so replaced by versions 3 and 4 rather than
/// edited — an edited file would fail sqlx's checksum with a message that says nothing useful.
pub(crate) const RETIRED_VERSIONS: [i64; 2] = [1, 2];

/// Refuses a database whose migration history holds a retired version, saying what to do.
pub(crate) fn refuse_retired(applied: &[i64]) -> Result<(), StoreError> {
    match applied.iter().find(|v| RETIRED_VERSIONS.contains(v)) {
        None => Ok(()),
        Some(version) => Err(StoreError::Corrupt(format!(
            "this database was migrated by a pre-release schema of status-check (migration \
             {version:04}, retired: its tables do not match the production definition); it \
             cannot be upgraded in place. Move its checks elsewhere if they matter, drop this \
             service's tables and _sqlx_migrations, and run `status-check migrate` again \
             (docs/storage.md, \"Migrations\")"
        ))),
    }
}

/// Every file in the migrations folder of `dialect` is embedded, and nothing else: a new file
/// that was not added to the list fails the unit tests.
#[cfg(test)]
pub(crate) fn assert_all_embedded(dialect: &str, migrations: &[EmbeddedMigration]) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = migrations
        .iter()
        .map(|(version, description, sql)| {
            let name = format!("{version:04}_{description}.sql");
            let text = std::fs::read_to_string(dir.join(&name)).unwrap();
            assert_eq!(&text, sql, "{name} is embedded from another file");
            name
        })
        .collect();
    assert_eq!(
        on_disk, embedded,
        "migrations/{dialect} and the embedded list differ"
    );
}

// ---- Time ----

/// The smallest value a MySQL `TIMESTAMP` holds (UTC).
pub const TIMESTAMP_MIN: DateTime<Utc> = match DateTime::from_timestamp(1, 0) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// The largest value a MySQL `TIMESTAMP` holds (UTC): 2038-01-19T03:14:07Z.
pub const TIMESTAMP_MAX: DateTime<Utc> = match DateTime::from_timestamp(i32::MAX as i64, 0) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// Truncated to the millisecond: the precision of the `DATETIME(3)` columns.
pub fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(3)
}

/// Truncated to the second: the precision of the production `TIMESTAMP`/`DATETIME` columns.
/// (MySQL would round on insert; truncating first makes both backends store the same value.)
pub fn seconds_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(0)
}

/// Rounded up to the second.
pub(crate) fn seconds_ceil(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = seconds_floor(t);
    if floor == t {
        t
    } else {
        floor + TimeDelta::seconds(1)
    }
}

/// Within the range of a `TIMESTAMP` column.
pub(crate) fn clamp_timestamp(t: DateTime<Utc>) -> DateTime<Utc> {
    t.clamp(TIMESTAMP_MIN, TIMESTAMP_MAX)
}

/// How SQLite stores every time: RFC 3339, UTC, always three fractional digits, so the text
/// sorts and compares like the time it holds.
pub(crate) fn sqlite_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// The jobs' `last_error` columns (outbox, removals, monitor actions) and a monitor's `problem`
/// are `VARCHAR(1024)`.
pub(crate) const LAST_ERROR_MAX_CHARS: usize = 1024;

/// `text` cut to `max_chars` characters, to fit its column.
pub(crate) fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// A row limit as a statement's argument.
pub(crate) fn limit_arg(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn truncation_and_rounding() {
        let t = at("2026-11-20T08:00:01.123456Z");
        assert_eq!(millis(t), at("2026-11-20T08:00:01.123Z"));
        assert_eq!(seconds_floor(t), at("2026-11-20T08:00:01Z"));
        assert_eq!(seconds_ceil(t), at("2026-11-20T08:00:02Z"));
        assert_eq!(
            seconds_ceil(at("2026-11-20T08:00:01Z")),
            at("2026-11-20T08:00:01Z")
        );
        assert_eq!(TIMESTAMP_MIN, at("1970-01-01T00:00:01Z"));
        assert_eq!(TIMESTAMP_MAX, at("2038-01-19T03:14:07Z"));
        assert_eq!(clamp_timestamp(at("2100-01-01T00:00:00Z")), TIMESTAMP_MAX);
    }

    #[test]
    fn sqlite_text_sorts_like_time() {
        assert_eq!(
            sqlite_text(at("2026-11-20T08:00:01Z")),
            "2026-11-20T08:00:01.000Z"
        );
        assert_eq!(
            sqlite_text(at("2026-11-20T08:00:01.5Z")),
            "2026-11-20T08:00:01.500Z"
        );
        assert!(
            sqlite_text(at("2026-11-20T08:00:01.999Z")) < sqlite_text(at("2026-11-20T08:00:02Z"))
        );
    }

    #[test]
    fn backoff_grows_and_is_jittered() {
        use std::time::Duration;
        let ms = Duration::from_millis;
        assert_eq!(backoff(1, 0), ms(5));
        assert_eq!(backoff(1, 5_000), ms(10));
        assert_eq!(backoff(2, 0), ms(10));
        assert_eq!(backoff(4, 0), ms(40));
        assert!(backoff(4, u64::MAX) <= ms(80));
        assert_eq!(backoff(9, 0), ms(80));
    }

    #[test]
    fn request_key_is_recognised_in_both_dialects() {
        assert!(names_request_key(
            "Duplicate entry '1-2-3-2026-11-20 08:00:00.000' for key 'uk_status_check_ext_request'"
        ));
        assert!(names_request_key(
            "UNIQUE constraint failed: status_check_ext.robot_id, status_check_ext.step_id"
        ));
        assert!(!names_request_key(
            "UNIQUE constraint failed: status_check_record_event.status_check_id"
        ));
        assert!(!names_request_key(
            "Duplicate entry '7-5001' for key 'uk_status_check_record_event_incoming'"
        ));
    }
}
