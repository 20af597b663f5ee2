//! A read-only view of a database, for `templates backtest` (SPEC §14): the file opened
//! read-only (SQLite) or every transaction `READ ONLY` (MySQL, where a user with only
//! `SELECT` suffices). It offers reads only; the database itself refuses any write.

use chrono::{DateTime, Utc};

use super::check_reads::{
    EndedChecksPage, count_ended_checks, ended_checks_page, ended_checks_start,
};
use super::db::bounded;
use super::mysql::MysqlStore;
use super::sqlite::SqliteStore;
use super::templates::template_versions;
use super::{StoreError, StoredCheck, StoredTemplate};

/// Connections of a read-only MySQL pool: a backtest reads one page at a time.
const MYSQL_CONNECTIONS: u32 = 2;

/// The most one read may take. An offline tool reading a production database: wider than the
/// service's bound (a request's), still a bound — a page over a busy replica is not a hang.
const OPERATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A database opened for reading only.
#[derive(Debug, Clone)]
pub enum ReadOnlyStore {
    Sqlite(SqliteStore),
    Mysql(MysqlStore),
}

impl ReadOnlyStore {
    /// Opens the database a URL names: `mysql://…`, or `sqlite:…` / a file path (which must
    /// exist). Errors name the database and the cause, never a password.
    pub async fn open(url: &str) -> Result<ReadOnlyStore, StoreError> {
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let url = url.replacen("mariadb://", "mysql://", 1);
            let store = MysqlStore::connect_sized(&url, MYSQL_CONNECTIONS).await?;
            return Ok(ReadOnlyStore::Mysql(
                store.read_only().with_operation_timeout(OPERATION_TIMEOUT),
            ));
        }
        let url = if url.starts_with("sqlite:") {
            url.to_owned()
        } else {
            format!("sqlite://{url}")
        };
        Ok(ReadOnlyStore::Sqlite(
            SqliteStore::open_read_only(&url)
                .await?
                .with_operation_timeout(OPERATION_TIMEOUT),
        ))
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
        match self {
            ReadOnlyStore::Sqlite(db) => {
                bounded(db, "template_versions", template_versions(db, name)).await
            }
            ReadOnlyStore::Mysql(db) => {
                bounded(db, "template_versions", template_versions(db, name)).await
            }
        }
    }

    /// One page of ended checks with their records, in id order.
    pub async fn ended_checks(
        &self,
        page: &EndedChecksPage<'_>,
    ) -> Result<Vec<StoredCheck>, StoreError> {
        match self {
            ReadOnlyStore::Sqlite(db) => {
                bounded(db, "ended_checks", ended_checks_page(db, page)).await
            }
            ReadOnlyStore::Mysql(db) => {
                bounded(db, "ended_checks", ended_checks_page(db, page)).await
            }
        }
    }

    /// The id after which the checks created at `since` or later begin (the pages' start).
    pub async fn ended_checks_start(&self, since: DateTime<Utc>) -> Result<i64, StoreError> {
        match self {
            ReadOnlyStore::Sqlite(db) => {
                bounded(db, "ended_checks_start", ended_checks_start(db, since)).await
            }
            ReadOnlyStore::Mysql(db) => {
                bounded(db, "ended_checks_start", ended_checks_start(db, since)).await
            }
        }
    }

    /// How many checks the pages hold, from `page.after` on (its limit aside).
    pub async fn count_ended_checks(&self, page: &EndedChecksPage<'_>) -> Result<u64, StoreError> {
        match self {
            ReadOnlyStore::Sqlite(db) => {
                bounded(db, "count_ended_checks", count_ended_checks(db, page)).await
            }
            ReadOnlyStore::Mysql(db) => {
                bounded(db, "count_ended_checks", count_ended_checks(db, page)).await
            }
        }
    }
}
