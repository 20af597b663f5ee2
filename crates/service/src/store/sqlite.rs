//! SQLite implementation of [`Store`](super::Store): the embedded default, one file.
//!
//! WAL, a busy timeout, foreign keys on, and write transactions that take the write lock up
//! front (`BEGIN IMMEDIATE`), so a transaction never fails half-way on a lock it could not
//! upgrade. Times are stored as RFC 3339 UTC text with milliseconds (docs/storage.md).
//!
//! A file database has two pools: readers (in parallel under WAL) and a single writer
//! connection. SQLite runs one write transaction at a time anyway; queueing writers on the
//! pool (in order, woken at once) instead of in SQLite's busy handler (which sleeps 1, 2, 5 …
//! 100 ms between tries) keeps the write lock busy — measured: about twice the finalisations
//! per second under a burst of deadlines (docs/benchmarks.md).

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use super::StoreError;
use super::db::{
    Arg, Db, Dialect, Done, EmbeddedMigration, Failure, Mode, SqlRow, Tx, migrator,
    names_request_key, refuse_retired, sqlite_text,
};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read connections of a file database (readers run in parallel under WAL).
const MAX_READERS: u32 = 8;

/// Versions 1 and 2 are retired (docs/storage.md "Migrations"): never reused, so a database
/// they migrated is recognised and refused instead of being upgraded wrongly.
const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        3,
        "production_tables",
        include_str!("../../migrations/sqlite/0003_production_tables.sql"),
    ),
    (
        4,
        "service_tables",
        include_str!("../../migrations/sqlite/0004_service_tables.sql"),
    ),
    (
        5,
        "subscription_removals",
        include_str!("../../migrations/sqlite/0005_subscription_removals.sql"),
    ),
];

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    readers: SqlitePool,
    /// One connection: every write transaction of this process, in turn.
    writer: SqlitePool,
    operation_timeout: Duration,
}

impl SqliteStore {
    /// Opens (creating it if missing) the database a URL names: `sqlite://status-check.db`,
    /// `sqlite:///abs/path.db`, or `sqlite::memory:` (one private in-memory database, held by
    /// a single connection that is never closed).
    ///
    /// An error names the file and its cause once (`cannot open SQLite database FILE: …`).
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::connect("read the SQLite URL".to_owned(), &e))?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let target = format!("open SQLite database {}", options.get_filename().display());
        let opened = |e: sqlx::Error| StoreError::connect(target.clone(), &e);
        if in_memory {
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
                .map_err(opened)?;
            return Ok(SqliteStore {
                readers: pool.clone(),
                writer: pool,
                operation_timeout: super::DEFAULT_OPERATION_TIMEOUT,
            });
        }
        let options = options
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal);
        // The writer first: it creates the file and switches it to WAL before readers open it.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(opened)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(MAX_READERS)
            .connect_with(options)
            .await
            .map_err(opened)?;
        Ok(SqliteStore {
            readers,
            writer,
            operation_timeout: super::DEFAULT_OPERATION_TIMEOUT,
        })
    }

    /// Bounds every store operation by `limit` (`DB_OPERATION_TIMEOUT_SECS`): a write waiting
    /// its turn for the single writer connection counts.
    pub fn with_operation_timeout(mut self, limit: Duration) -> SqliteStore {
        self.operation_timeout = limit;
        self
    }
}

#[async_trait]
impl Db for SqliteStore {
    type Tx = Transaction<'static, Sqlite>;

    async fn begin(&self, mode: Mode) -> Result<Self::Tx, StoreError> {
        Ok(match mode {
            Mode::Read => self.readers.begin().await?,
            Mode::Write => self.writer.begin_with("BEGIN IMMEDIATE").await?,
        })
    }

    async fn apply_migrations(&self) -> Result<(), StoreError> {
        let applied: Vec<i64> = match sqlx::query_scalar::<_, String>(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.writer)
        .await?
        {
            Some(_) => {
                sqlx::query_scalar("SELECT version FROM _sqlx_migrations")
                    .fetch_all(&self.writer)
                    .await?
            }
            None => Vec::new(),
        };
        refuse_retired(&applied)?;
        migrator(MIGRATIONS).run(&self.writer).await?;
        Ok(())
    }

    /// On a reader (it must not queue behind writes).
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.readers).await?;
        Ok(())
    }

    fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    fn classify(&self, error: &StoreError) -> Failure {
        let StoreError::Database(sqlx::Error::Database(error)) = error else {
            return Failure::Other;
        };
        if error.is_unique_violation() {
            return Failure::Duplicate {
                request_key: names_request_key(error.message()),
            };
        }
        // SQLITE_BUSY and SQLITE_LOCKED with their extended codes.
        let primary = error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .map(|code| code & 0xff);
        match primary {
            Some(5 | 6) => Failure::Transient,
            _ => Failure::Other,
        }
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

type Query = sqlx::query::Query<'static, Sqlite, <Sqlite as sqlx::Database>::Arguments>;

fn bind(mut query: Query, args: Vec<Arg>) -> Query {
    for arg in args {
        query = match arg {
            Arg::Int(value) => query.bind(value),
            Arg::OptInt(value) => query.bind(value),
            Arg::Text(value) => query.bind(value),
            Arg::OptText(value) => query.bind(value),
            Arg::Bool(value) => query.bind(value),
            Arg::Time(value) => query.bind(sqlite_text(value)),
            Arg::OptTime(value) => query.bind(value.map(sqlite_text)),
        };
    }
    query
}

#[async_trait]
impl Tx for Transaction<'static, Sqlite> {
    type Row = SqliteRow;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<Done, StoreError> {
        let result = bind(sqlx::query(sql), args).execute(&mut **self).await?;
        Ok(Done {
            last_insert_id: result.last_insert_rowid(),
            rows_affected: result.rows_affected(),
        })
    }

    async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        Ok(bind(sqlx::query(sql), args).fetch_all(&mut **self).await?)
    }

    async fn commit(self) -> Result<(), StoreError> {
        Transaction::commit(self).await?;
        Ok(())
    }

    async fn rollback(self) -> Result<(), StoreError> {
        Transaction::rollback(self).await?;
        Ok(())
    }
}

impl SqlRow for SqliteRow {
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }

    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Store, Synced};
    use status_check_engine::TemplateDefinition;

    #[test]
    fn every_migration_file_is_embedded() {
        super::super::db::assert_all_embedded("sqlite", MIGRATIONS);
    }

    /// The behaviour suite runs on files; an in-memory database must work as well.
    #[tokio::test]
    async fn in_memory_database_works() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.unwrap();
        let definition = TemplateDefinition {
            name: "in-memory".into(),
            version: 1,
            description: String::new(),
            is_active: true,
            poll_until_end: false,
            poller: Default::default(),
            past: Some(status_check_engine::template::PhaseDefinition {
                depends_on: vec!["A".into()],
                pass: Some("true".into()),
                ..Default::default()
            }),
            future: None,
        };
        let Synced::Created(id) = store
            .sync_template(&definition, &|_| true, Utc::now())
            .await
            .unwrap()
        else {
            panic!("expected Created");
        };
        let stored = store.template_versions("in-memory").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!((stored[0].id, &stored[0].definition), (id, &Ok(definition)));
    }
}
