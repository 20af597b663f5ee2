//! SQLite implementation of [`Store`](super::Store): the embedded default, one file, on the
//! SQLite C library through `rusqlite` (docs/storage.md, "SQLite driver").
//!
//! WAL, `synchronous = NORMAL`, a busy timeout, foreign keys on, and write transactions that
//! take the write lock up front (`BEGIN IMMEDIATE`), so a transaction never fails half-way on
//! a lock it could not upgrade. Times are stored as RFC 3339 UTC text with milliseconds.
//!
//! A file database has one writer connection and a small pool of readers (in parallel under
//! WAL). SQLite runs one write transaction at a time anyway: this process's writers queue in
//! order on the writer's lock, woken at once, instead of meeting in SQLite's busy handler,
//! which sleeps 1, 2, 5 … 100 ms between tries. Statements run inline on the calling task,
//! prepared once per connection and cached.

mod migrate;
mod row;
mod tx;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, ErrorCode};
use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::{Mutex, Semaphore};

use tx::{Begin, Held, ReaderLease, SqliteTx};

use super::StoreError;
use super::db::{Db, Dialect, EmbeddedMigration, Mode, names_request_key};
use super::error::DatabaseFailure;

/// How long a write waits for another process's write lock before failing (SQLITE_BUSY).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a transaction waits for the writer, or for a free reader, before the database is
/// reported unavailable (sqlx's pool waited as long).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Read connections of a file database (readers run in parallel under WAL).
const MAX_READERS: usize = 8;

/// Prepared statements kept per connection: more than the store has, so none is prepared
/// twice (rusqlite's default keeps 16).
const STATEMENT_CACHE: usize = 256;

/// Versions 1 and 2 are retired (docs/storage.md "Migrations"): never reused, so a database
/// they migrated is recognised and refused instead of being upgraded wrongly.
pub(crate) const MIGRATIONS: &[EmbeddedMigration] = &[
    (
        3,
        "production_tables",
        include_str!("../../../migrations/sqlite/0003_production_tables.sql"),
    ),
    (
        4,
        "service_tables",
        include_str!("../../../migrations/sqlite/0004_service_tables.sql"),
    ),
    (
        5,
        "subscription_removals",
        include_str!("../../../migrations/sqlite/0005_subscription_removals.sql"),
    ),
    (
        6,
        "monitors",
        include_str!("../../../migrations/sqlite/0006_monitors.sql"),
    ),
    (
        7,
        "check_lookup_indexes",
        include_str!("../../../migrations/sqlite/0007_check_lookup_indexes.sql"),
    ),
    (
        8,
        "real_megazord",
        include_str!("../../../migrations/sqlite/0008_real_megazord.sql"),
    ),
    (
        9,
        "monitor_windows",
        include_str!("../../../migrations/sqlite/0009_monitor_windows.sql"),
    ),
    (
        10,
        "monitor_window_length",
        include_str!("../../../migrations/sqlite/0010_monitor_window_length.sql"),
    ),
];

/// The SQLite store. Clones share the connections.
#[derive(Clone)]
pub struct SqliteStore {
    /// Every write transaction of this process, in turn (and, in memory, every read too).
    writer: Arc<Mutex<Connection>>,
    /// `None` in memory: the one connection is the database.
    readers: Option<Arc<Readers>>,
    name: Arc<str>,
    /// The most one store operation may take (`DB_OPERATION_TIMEOUT_SECS`).
    operation_timeout: Duration,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("database", &self.name)
            .finish_non_exhaustive()
    }
}

/// Idle read connections, opened as needed up to [`MAX_READERS`].
struct Readers {
    path: PathBuf,
    idle: StdMutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

impl Readers {
    fn put_back(&self, connection: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(connection);
    }

    async fn lease(self: &Arc<Readers>) -> Result<ReaderLease, StoreError> {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| unavailable("no SQLite read connection was free"))?
            .expect("the semaphore is never closed");
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let connection = match idle {
            Some(connection) => connection,
            None => open_file(&self.path)?,
        };
        Ok(ReaderLease {
            connection: Some(connection),
            readers: self.clone(),
            _permit: permit,
        })
    }
}

fn unavailable(what: &str) -> StoreError {
    StoreError::Unavailable(format!("{what} within {} s", ACQUIRE_TIMEOUT.as_secs()))
}

/// The settings every connection has; a file database's also WAL and `synchronous = NORMAL`
/// (set on each connection, as sqlx did: `synchronous` is per connection).
fn configure(connection: &Connection, file: bool) -> rusqlite::Result<()> {
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    connection.execute_batch("PRAGMA foreign_keys = ON")?;
    if file {
        connection.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL")?;
    }
    Ok(())
}

fn open_file(path: &Path) -> rusqlite::Result<Connection> {
    let connection = Connection::open(path)?;
    configure(&connection, true)?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (creating it if missing) the database a URL names: `sqlite://status-check.db`,
    /// `sqlite:///abs/path.db`, or `sqlite::memory:` (one private in-memory database, held by
    /// a single connection that is never closed).
    ///
    /// An error names the file and its cause once (`cannot open SQLite database FILE: …`).
    pub async fn connect(url: &str) -> Result<SqliteStore, StoreError> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        // sqlx's parser: the URLs the service always accepted, percent-decoding included.
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::connect("read the SQLite URL".to_owned(), &e))?;
        let path = options.get_filename().to_owned();
        let opened = |error: rusqlite::Error| {
            // rusqlite appends the path to SQLite's message; the target names it already.
            let cause = error.to_string();
            let suffix = format!(": {}", path.display());
            StoreError::Connect {
                target: format!("open SQLite database {}", path.display()),
                cause: cause.strip_suffix(&suffix).unwrap_or(&cause).to_owned(),
            }
        };
        if in_memory {
            let connection = Connection::open_in_memory().map_err(opened)?;
            configure(&connection, false).map_err(opened)?;
            return Ok(SqliteStore::new(connection, None, ":memory:"));
        }
        // The writer first: it creates the file and switches it to WAL before readers open it.
        let writer = open_file(&path).map_err(opened)?;
        // Only this process's own writers meet at the writer, in order on its lock; another
        // process's write lock is waited for asleep (`tx::begin_immediate`).
        writer.busy_timeout(Duration::ZERO).map_err(opened)?;
        let first_reader = open_file(&path).map_err(opened)?;
        let readers = Arc::new(Readers {
            path: path.clone(),
            idle: StdMutex::new(vec![first_reader]),
            permits: Arc::new(Semaphore::new(MAX_READERS)),
        });
        Ok(SqliteStore::new(
            writer,
            Some(readers),
            &path.display().to_string(),
        ))
    }

    /// Opens an existing database file read-only, on one connection: SQLite refuses every
    /// write (`SQLITE_OPEN_READ_ONLY`, and `query_only` besides), so the file's content stays
    /// as it was — only WAL's `-shm`/`-wal` side files may be touched by a reader. For
    /// `templates backtest` (SPEC §14). A missing file is an error, never created.
    pub async fn open_read_only(url: &str) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::connect("read the SQLite URL".to_owned(), &e))?;
        let path = options.get_filename().to_owned();
        let target = format!("open SQLite database {}", path.display());
        if !path.is_file() {
            return Err(StoreError::Connect {
                target,
                cause: "no such file".to_owned(),
            });
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let open = || -> rusqlite::Result<Connection> {
            let connection = Connection::open_with_flags(&path, flags)?;
            connection.busy_timeout(BUSY_TIMEOUT)?;
            connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            connection.execute_batch("PRAGMA query_only = ON")?;
            Ok(connection)
        };
        let connection = open().map_err(|error| StoreError::Connect {
            target: target.clone(),
            cause: error.to_string(),
        })?;
        Ok(SqliteStore::new(
            connection,
            None,
            &path.display().to_string(),
        ))
    }

    fn new(writer: Connection, readers: Option<Arc<Readers>>, name: &str) -> SqliteStore {
        SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers,
            name: name.into(),
            operation_timeout: super::DEFAULT_OPERATION_TIMEOUT,
        }
    }

    /// Bounds every store operation by `limit` (`DB_OPERATION_TIMEOUT_SECS`): a write waiting
    /// its turn for the single writer connection counts.
    pub fn with_operation_timeout(mut self, limit: Duration) -> SqliteStore {
        self.operation_timeout = limit;
        self
    }

    async fn writer(&self) -> Result<Held, StoreError> {
        let guard = tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.clone().lock_owned())
            .await
            .map_err(|_| unavailable("the SQLite writer was not free"))?;
        Ok(Held::Writer(guard))
    }
}

#[async_trait]
impl Db for SqliteStore {
    type Tx = SqliteTx;

    async fn begin(&self, mode: Mode) -> Result<SqliteTx, StoreError> {
        match (mode, &self.readers) {
            (Mode::Read, Some(readers)) => {
                SqliteTx::begin(Held::Reader(readers.lease().await?), Begin::Deferred).await
            }
            (Mode::Read, None) => SqliteTx::begin(self.writer().await?, Begin::Deferred).await,
            (Mode::Write | Mode::RowLocked, _) => {
                SqliteTx::begin(self.writer().await?, Begin::Immediate).await
            }
        }
    }

    async fn apply_migrations(&self) -> Result<(), StoreError> {
        let tx = SqliteTx::begin(self.writer().await?, Begin::Immediate).await?;
        let pending = tx.pending_migrations(MIGRATIONS)?;
        crate::store::db::Tx::commit(tx).await?;
        for migration in &pending {
            let tx = SqliteTx::begin(self.writer().await?, Begin::Immediate).await?;
            tx.apply_migration(migration)?;
        }
        Ok(())
    }

    /// On a reader (it must not queue behind writes).
    async fn ping(&self) -> Result<(), StoreError> {
        let tx = self.begin(Mode::Read).await?;
        tx.ping()
    }

    fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }
}

/// How an error of rusqlite counts (see [`StoreError`]'s conversion from rusqlite's).
pub(super) fn failure_of(error: &rusqlite::Error) -> DatabaseFailure {
    let rusqlite::Error::SqliteFailure(error, message) = error else {
        return DatabaseFailure::Other;
    };
    const UNIQUE: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE;
    const PRIMARY_KEY: i32 = rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY;
    if let UNIQUE | PRIMARY_KEY = error.extended_code {
        return DatabaseFailure::Duplicate {
            request_key: names_request_key(message.as_deref().unwrap_or_default()),
        };
    }
    // SQLITE_BUSY and SQLITE_LOCKED with their extended codes.
    match error.code {
        ErrorCode::DatabaseBusy => DatabaseFailure::Busy,
        ErrorCode::DatabaseLocked => DatabaseFailure::Transient,
        _ => DatabaseFailure::Other,
    }
}

#[cfg(test)]
mod tests;
