//! The store's one error type, and the bounds of connecting and of an operation.

use std::time::Duration;

/// A database failure. `Conflict` is a constraint the caller may act on; everything else is
/// an internal error whose cause is logged and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// From the SQLite backend (rusqlite).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("while executing migration {version}: {source}")]
    SqliteMigration {
        version: i64,
        source: rusqlite::Error,
    },
    /// No connection was free in time (the database is overloaded or stuck).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The database cannot be reached or opened. `target` says which — backend, host and port
    /// or file, never a password — and `cause` the innermost reason, once: it has no `source`,
    /// so an error chain printed with `{:#}` does not repeat it.
    #[error("cannot {target}: {cause}")]
    Connect { target: String, cause: String },
    /// The database did not finish `operation` within the operation timeout
    /// (`DB_OPERATION_TIMEOUT_SECS`): frozen, overloaded or cut off. The operation was
    /// abandoned; what it had not committed is rolled back (docs/operations.md).
    #[error("the database did not finish {operation} within {} ms", after.as_millis())]
    TimedOut {
        operation: &'static str,
        after: Duration,
    },
}

/// How long opening the first connection may take before start-up gives up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most one store operation may take unless configured otherwise
/// (`DB_OPERATION_TIMEOUT_SECS`).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

impl StoreError {
    /// `error` met while doing `target` (e.g. "connect to MySQL at db:3306"), as a
    /// [`StoreError::Connect`] carrying its innermost cause. sqlx's errors print their source
    /// in their own message *and* return it as `source()`; only the innermost is kept.
    pub(crate) fn connect(target: String, error: &sqlx::Error) -> StoreError {
        let mut innermost: &(dyn std::error::Error + 'static) = error;
        while let Some(source) = innermost.source() {
            innermost = source;
        }
        let cause = match error {
            sqlx::Error::Tls(_) => format!("TLS: {innermost}"),
            _ => innermost.to_string(),
        };
        StoreError::Connect { target, cause }
    }

    /// No connection within [`CONNECT_TIMEOUT`].
    pub(crate) fn connect_timed_out(target: String) -> StoreError {
        StoreError::Connect {
            target,
            cause: format!("no connection within {} s", CONNECT_TIMEOUT.as_secs()),
        }
    }
}
