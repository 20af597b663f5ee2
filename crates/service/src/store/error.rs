//! The store's one error type, and the bounds of connecting and of an operation.

use std::time::Duration;

/// A cause kept as the driver gave it, but named as no driver's type: its message and its
/// chain of sources.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A database failure, naming no driver: callers decide on its kind ([`Self::is_unavailable`],
/// [`Self::database_failure`]), never on a driver's error. `Conflict` is a constraint the
/// caller may act on; everything else is an internal error whose cause is logged and never
/// shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    /// A statement the database refused or could not run.
    #[error(transparent)]
    Database(DatabaseError),
    /// The migrations could not be checked or applied.
    #[error(transparent)]
    Migrate(Cause),
    #[error("while executing migration {version}: {source}")]
    MigrationFailed { version: i64, source: Cause },
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

/// What kind of failure a database error is, as far as anyone above the driver decides on
/// it. The backend sorts its driver's errors into these once, where it converts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseFailure {
    /// A unique key was violated; `request_key` when it is `uk_status_check_ext_request`.
    Duplicate {
        request_key: bool,
    },
    /// Deadlock or lock-wait timeout (MySQL), a locked database (SQLite): the whole
    /// transaction may be retried.
    Transient,
    /// Another connection holds SQLite's write lock: transient, and what `BEGIN IMMEDIATE`
    /// waits out.
    Busy,
    /// The connection failed, or the pool is closed or had no connection in time: worth
    /// another try later.
    Unavailable,
    Other,
}

/// A statement the database refused or could not run: its kind and the driver's error (its
/// message and sources, as the driver gave them).
#[derive(Debug)]
pub struct DatabaseError {
    failure: DatabaseFailure,
    cause: Cause,
}

impl DatabaseError {
    pub(crate) fn new(failure: DatabaseFailure, cause: impl Into<Cause>) -> Self {
        DatabaseError {
            failure,
            cause: cause.into(),
        }
    }
}

/// The driver's error stands for itself: its message, and its sources as its own.
impl std::fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.cause.fmt(f)
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.source()
    }
}

/// How long opening the first connection may take before start-up gives up.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The most one store operation may take unless configured otherwise
/// (`DB_OPERATION_TIMEOUT_SECS`).
pub const DEFAULT_OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

impl StoreError {
    /// The database could not be reached or did not answer in time: worth another try later
    /// (the API answers 503, not 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::TimedOut { .. } | StoreError::Unavailable(_) => true,
            StoreError::Database(error) => error.failure == DatabaseFailure::Unavailable,
            _ => false,
        }
    }

    /// The kind of a database error; `None` for every other failure.
    pub fn database_failure(&self) -> Option<DatabaseFailure> {
        match self {
            StoreError::Database(error) => Some(error.failure),
            _ => None,
        }
    }

    /// A deadlock, lock-wait timeout or busy database: the whole transaction may be retried.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(
            self.database_failure(),
            Some(DatabaseFailure::Transient | DatabaseFailure::Busy)
        )
    }

    /// A unique key was violated (`request_key`: `uk_status_check_ext_request`, the create's).
    pub(crate) fn is_duplicate(&self) -> Option<bool> {
        match self.database_failure() {
            Some(DatabaseFailure::Duplicate { request_key }) => Some(request_key),
            _ => None,
        }
    }

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

/// sqlx's errors (MySQL, and the migrations' bookkeeping), sorted by kind.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let failure = match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                DatabaseFailure::Unavailable
            }
            sqlx::Error::Database(refused) => super::mysql::failure_of(refused.as_ref()),
            _ => DatabaseFailure::Other,
        };
        StoreError::Database(DatabaseError::new(failure, error))
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> Self {
        StoreError::Migrate(error.into())
    }
}

/// rusqlite's errors (the SQLite backend), sorted by kind.
impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        let failure = super::sqlite::failure_of(&error);
        StoreError::Database(DatabaseError::new(failure, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_or_closed_pool_or_connection_is_unavailable_and_nothing_else_is() {
        for error in [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        ] {
            let error = StoreError::from(error);
            assert!(error.is_unavailable(), "{error:?}");
            assert_eq!(error.database_failure(), Some(DatabaseFailure::Unavailable));
        }
        let timed_out = StoreError::TimedOut {
            operation: "a read",
            after: Duration::from_millis(5),
        };
        assert!(timed_out.is_unavailable());
        assert!(StoreError::Unavailable("no connection".to_owned()).is_unavailable());
        for error in [
            StoreError::from(sqlx::Error::RowNotFound),
            StoreError::Conflict("changed".to_owned()),
            StoreError::Corrupt("bad".to_owned()),
            StoreError::from(rusqlite::Error::QueryReturnedNoRows),
        ] {
            assert!(!error.is_unavailable(), "{error:?}");
        }
    }

    #[test]
    fn the_drivers_error_speaks_for_itself() {
        let error = StoreError::from(sqlx::Error::RowNotFound);
        assert_eq!(error.to_string(), sqlx::Error::RowNotFound.to_string());
        assert_eq!(error.database_failure(), Some(DatabaseFailure::Other));
    }
}
