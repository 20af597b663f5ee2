//! Transactions of the SQLite backend: statements run inline, on the calling task, through
//! the connection's cache of prepared statements.
//!
//! A statement takes microseconds, so handing it to another thread would cost more than it
//! saves (docs/storage.md, "SQLite driver"). The one wait that can be long — another process
//! holding the write lock — is spent asleep on the runtime ([`begin_immediate`]), never in
//! SQLite's busy handler on a worker thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::types::Value;
use rusqlite::{Connection, Statement};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit};

use sqlx::migrate::Migration;

use super::row::SqliteRow;
use super::{BUSY_TIMEOUT, Readers, migrate};
use crate::store::StoreError;
use crate::store::db::{Arg, Done, EmbeddedMigration, Tx, sqlite_text};
use crate::store::error::DatabaseFailure;

/// The connection a transaction holds: the writer (under its lock) or a pooled reader.
pub(super) enum Held {
    Writer(OwnedMutexGuard<Connection>),
    Reader(ReaderLease),
}

/// A read connection on loan from the pool, with its permit; returned when dropped.
pub(super) struct ReaderLease {
    pub(super) connection: Option<Connection>,
    pub(super) readers: Arc<Readers>,
    pub(super) _permit: OwnedSemaphorePermit,
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        // A connection still inside a transaction (its rollback failed) is not reused.
        if let Some(connection) = self.connection.take()
            && connection.is_autocommit()
        {
            self.readers.put_back(connection);
        }
    }
}

/// How a transaction begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Begin {
    /// `BEGIN`: a read snapshot from the first statement on.
    Deferred,
    /// `BEGIN IMMEDIATE`: the write lock up front.
    Immediate,
}

/// An open transaction. Dropped without `commit`, it rolls back at once (a few microseconds),
/// so the connection is clean for the next user.
pub struct SqliteTx {
    held: Held,
    open: bool,
}

impl SqliteTx {
    /// A transaction on `held`, begun as `begin` says.
    pub(super) async fn begin(mut held: Held, begin: Begin) -> Result<SqliteTx, StoreError> {
        // A connection left inside a transaction (a failed rollback) starts clean.
        if !connection(&held).is_autocommit() {
            run(connection(&held), "ROLLBACK", &[])?;
        }
        match begin {
            Begin::Immediate => begin_immediate(&mut held).await?,
            Begin::Deferred => {
                run(connection(&held), "BEGIN", &[])?;
            }
        }
        Ok(SqliteTx { held, open: true })
    }

    fn connection(&self) -> &Connection {
        connection(&self.held)
    }

    /// The migrations still to apply (the history checked under the write lock).
    pub(super) fn pending_migrations(
        &self,
        embedded: &[EmbeddedMigration],
    ) -> Result<Vec<Migration>, StoreError> {
        migrate::pending(self.connection(), embedded)
    }

    /// Applies `migration` and commits.
    pub(super) fn apply_migration(mut self, migration: &Migration) -> Result<(), StoreError> {
        migrate::apply_in_transaction(self.connection(), migration)?;
        self.open = false;
        Ok(())
    }

    /// A round trip.
    pub(super) fn ping(mut self) -> Result<(), StoreError> {
        run(self.connection(), "SELECT 1", &[])?;
        self.end("COMMIT")
    }

    fn end(&mut self, sql: &'static str) -> Result<(), StoreError> {
        run(self.connection(), sql, &[])?;
        self.open = false;
        Ok(())
    }
}

fn connection(held: &Held) -> &Connection {
    match held {
        Held::Writer(guard) => guard,
        Held::Reader(lease) => lease
            .connection
            .as_ref()
            .expect("a leased reader holds its connection until dropped"),
    }
}

impl Drop for SqliteTx {
    fn drop(&mut self) {
        // SQLite ends a transaction itself after some errors (SQLITE_FULL, an I/O error).
        if self.open && !self.connection().is_autocommit() {
            run(self.connection(), "ROLLBACK", &[]).ok();
        }
    }
}

/// Waits between tries for the write lock another process holds: SQLite's own busy handler
/// would sleep on the worker thread, stalling every task on it.
const BUSY_PAUSES_MS: [u64; 8] = [1, 2, 5, 10, 15, 20, 25, 50];

/// `BEGIN IMMEDIATE`, waiting up to [`BUSY_TIMEOUT`] (asleep, off the worker thread) while
/// another process holds the write lock; then SQLITE_BUSY, as SQLite's busy timeout would.
/// (This process's own writers queue on the writer's lock and never meet here.)
async fn begin_immediate(held: &mut Held) -> Result<(), StoreError> {
    let started = Instant::now();
    let mut pauses = BUSY_PAUSES_MS
        .iter()
        .chain(std::iter::repeat(&BUSY_PAUSES_MS[7]));
    loop {
        let result = run(connection(held), "BEGIN IMMEDIATE", &[]);
        match result {
            Err(error) if is_busy(&error) && started.elapsed() < BUSY_TIMEOUT => {
                let pause = pauses.next().copied().unwrap_or(50);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

fn is_busy(error: &StoreError) -> bool {
    error.database_failure() == Some(DatabaseFailure::Busy)
}

/// Binds `args` to the statement's parameters, all of them.
fn bind(statement: &mut Statement<'_>, args: &[Arg]) -> rusqlite::Result<()> {
    let expected = statement.parameter_count();
    if args.len() != expected {
        return Err(rusqlite::Error::InvalidParameterCount(args.len(), expected));
    }
    for (index, arg) in args.iter().enumerate() {
        let at = index + 1;
        match arg {
            Arg::Int(value) => statement.raw_bind_parameter(at, value),
            Arg::OptInt(value) => statement.raw_bind_parameter(at, value),
            Arg::Text(value) => statement.raw_bind_parameter(at, value.as_str()),
            Arg::OptText(value) => statement.raw_bind_parameter(at, value.as_deref()),
            Arg::Bool(value) => statement.raw_bind_parameter(at, i64::from(*value)),
            Arg::Time(value) => statement.raw_bind_parameter(at, sqlite_text(*value)),
            Arg::OptTime(value) => statement.raw_bind_parameter(at, value.map(sqlite_text)),
        }?;
    }
    Ok(())
}

/// Runs a statement to its end (rows it returns are passed over); what it did.
fn run(connection: &Connection, sql: &str, args: &[Arg]) -> Result<Done, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let mut rows = statement.raw_query();
    while rows.next()?.is_some() {}
    Ok(Done {
        last_insert_id: connection.last_insert_rowid(),
        rows_affected: connection.changes(),
    })
}

/// Up to `limit` rows of a query, owned.
fn fetch(
    connection: &Connection,
    sql: &str,
    args: &[Arg],
    limit: usize,
) -> Result<Vec<SqliteRow>, StoreError> {
    let mut statement = connection.prepare_cached(sql)?;
    bind(&mut statement, args)?;
    let columns: Arc<[Box<str>]> = statement
        .column_names()
        .into_iter()
        .map(Box::from)
        .collect();
    let width = columns.len();
    let mut rows = statement.raw_query();
    let mut fetched = Vec::new();
    while fetched.len() < limit
        && let Some(row) = rows.next()?
    {
        let values = (0..width)
            .map(|index| row.get::<_, Value>(index))
            .collect::<rusqlite::Result<Box<[Value]>>>()?;
        fetched.push(SqliteRow::new(columns.clone(), values));
    }
    Ok(fetched)
}

#[async_trait]
impl Tx for SqliteTx {
    type Row = SqliteRow;

    async fn execute(&mut self, sql: &'static str, args: Vec<Arg>) -> Result<Done, StoreError> {
        run(self.connection(), sql, &args)
    }

    async fn fetch_all(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        fetch(self.connection(), sql, &args, usize::MAX)
    }

    async fn fetch_optional(
        &mut self,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<SqliteRow>, StoreError> {
        Ok(fetch(self.connection(), sql, &args, 1)?.pop())
    }

    async fn commit(mut self) -> Result<(), StoreError> {
        self.end("COMMIT")
    }

    async fn rollback(mut self) -> Result<(), StoreError> {
        if self.connection().is_autocommit() {
            // SQLite rolled it back already (after SQLITE_FULL, an I/O error …).
            self.open = false;
            return Ok(());
        }
        self.end("ROLLBACK")
    }
}
