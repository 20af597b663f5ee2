//! A read-only view of a database, for `templates backtest` (SPEC §14): the file opened
//! read-only (SQLite) or every transaction `READ ONLY` (MySQL, where a user with only
//! `SELECT` suffices). It offers reads only; the database itself refuses any write.

use chrono::{DateTime, Utc};

use super::check_reads::{
    EndedChecksPage, count_ended_checks, ended_checks_page, ended_checks_start,
};
use super::db::bounded;
use super::mysql::MysqlStore;
use super::production_only::{ProductionOnly, has_own_tables};
use super::sqlite::SqliteStore;
use super::templates::template_versions;
use super::{StoreError, StoredCheck, StoredTemplate};

/// Connections of a read-only MySQL pool: a backtest reads one page at a time.
const MYSQL_CONNECTIONS: u32 = 2;

/// The most one read may take. An offline tool reading a production database: wider than the
/// service's bound (a request's), still a bound — a page over a busy replica is not a hang.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A database opened for reading only, and whether this service ever migrated it.
#[derive(Debug, Clone)]
pub struct ReadOnlyStore {
    backend: Backend,
    /// Never migrated (the Node service's, before the cut-over): this service's own tables
    /// are read as empty (`ProductionOnly`).
    production_only: bool,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteStore),
    Mysql(MysqlStore),
}

/// `$body` with `$db` the store's backend, seen through [`ProductionOnly`] when it was never
/// migrated.
macro_rules! on_db {
    ($store:expr, $db:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(backend) => on_db!($store, backend, $db => $body),
            Backend::Mysql(backend) => on_db!($store, backend, $db => $body),
        }
    };
    ($store:expr, $backend:ident, $db:ident => $body:expr) => {
        if $store.production_only {
            let $db = &ProductionOnly($backend);
            $body
        } else {
            let $db = $backend;
            $body
        }
    };
}

impl ReadOnlyStore {
    /// Opens the database a URL names: `mysql://…`, or `sqlite:…` / a file path (which must
    /// exist). Errors name the database and the cause, never a password.
    pub async fn open(url: &str) -> Result<ReadOnlyStore, StoreError> {
        let backend = if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let store = MysqlStore::connect_sized(&url, MYSQL_CONNECTIONS).await?;
            Backend::Mysql(store.read_only().with_operation_timeout(OPERATION_TIMEOUT))
        } else {
            let url = if url.starts_with("sqlite:") {
                url.to_owned()
            } else {
                format!("sqlite://{url}")
            };
            Backend::Sqlite(
                SqliteStore::open_read_only(&url)
                    .await?
                    .with_operation_timeout(OPERATION_TIMEOUT),
            )
        };
        let production_only = match &backend {
            Backend::Sqlite(db) => !bounded(db, "has_own_tables", has_own_tables(db)).await?,
            Backend::Mysql(db) => !bounded(db, "has_own_tables", has_own_tables(db)).await?,
        };
        Ok(ReadOnlyStore {
            backend,
            production_only,
        })
    }

    /// Whether the database was never migrated by this service (the Node service's): its
    /// checks are all the Node service's.
    pub fn production_only(&self) -> bool {
        self.production_only
    }

    /// The database for messages: the SQLite file, or MySQL's host, port and database —
    /// never a password.
    pub fn describe(url: &str) -> String {
        use std::str::FromStr as _;
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            return match sqlx::mysql::MySqlConnectOptions::from_str(&url) {
                Ok(options) => format!(
                    "MySQL database {} at {}:{}",
                    options.get_database().unwrap_or("(none)"),
                    options.get_host(),
                    options.get_port()
                ),
                Err(_) => "the MySQL database".to_owned(),
            };
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        format!("SQLite database {path}")
    }

    /// Every version of the template `name`, the highest first.
    pub async fn template_versions(&self, name: &str) -> Result<Vec<StoredTemplate>, StoreError> {
        on_db!(self, db => bounded(db, "template_versions", template_versions(db, name)).await)
    }

    /// One page of ended checks with their records, in id order.
    pub async fn ended_checks(
        &self,
        page: &EndedChecksPage<'_>,
    ) -> Result<Vec<StoredCheck>, StoreError> {
        on_db!(self, db => bounded(db, "ended_checks", ended_checks_page(db, page)).await)
    }

    /// The id after which the checks created at `since` or later begin (the pages' start).
    pub async fn ended_checks_start(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        on_db!(self, db => bounded(db, "ended_checks_start", ended_checks_start(db, since)).await)
    }

    /// How many checks the pages hold, from `page.after` on (its limit aside).
    pub async fn count_ended_checks(&self, page: &EndedChecksPage<'_>) -> Result<u64, StoreError> {
        on_db!(self, db => bounded(db, "count_ended_checks", count_ended_checks(db, page)).await)
    }
}
