//! Physical SQLite limits (SPEC §10): the rows the service writes per unit, through the SQLite
//! C library directly — `rusqlite`, one connection, WAL, `synchronous=NORMAL`, foreign keys
//! on, every statement prepared once (`prepare_cached`) — on a file the service's own
//! migrations created. Each shape runs one unit per `BEGIN IMMEDIATE` transaction and grouped,
//! several units per transaction, as the service groups them. Shared by (a), (b) and (c); the
//! statements are the store's own (`store::sql`), so a limit follows the service's SQL.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::Utc;
use rusqlite::types::Value;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use status_check::store::Store as _;
use status_check::store::sqlite::SqliteStore;
use tokio::sync::oneshot;

use super::*;
use crate::create_floor::FUTURE_NAMES;
use crate::writes::{
    Arg, RawCheck, Write, create_writes, raw_subscription, subscribe_intent_write,
};

/// The service's SQLite busy timeout (store/sqlite/).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a database file as the service opens its writer: WAL, synchronous NORMAL, foreign
/// keys on, a 5 s busy timeout.
pub(super) fn open(path: &Path) -> anyhow::Result<Connection> {
    let conn = Connection::open(path).with_context(|| format!("open {}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    ensure!(
        mode == "wal",
        "{} did not switch to WAL: {mode}",
        path.display()
    );
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

/// A database for a limit: a fresh file migrated by the service, opened directly.
pub(super) struct RawDb {
    pub(super) conn: Connection,
    /// A template row for the checks to reference.
    pub(super) template_id: i64,
}

impl RawDb {
    pub(super) async fn create(path: &Path) -> anyhow::Result<RawDb> {
        let store = SqliteStore::connect(&sqlite_url(path)).await?;
        store.migrate().await?;
        drop(store);
        let conn = open(path)?;
        conn.execute(
            "INSERT INTO status_check_description (name, description) VALUES ('raw-limit', '')",
            [],
        )?;
        let description = conn.last_insert_rowid();
        conn.execute(
            "INSERT INTO status_check_template (template_description_id, \
             past_event_dependencies, future_event_dependencies) VALUES (?, '[]', '[]')",
            [description],
        )?;
        let template_id = conn.last_insert_rowid();
        Ok(RawDb { conn, template_id })
    }

    /// A database [`RawDb::create`] made, opened again.
    pub(super) fn open_existing(path: &Path) -> anyhow::Result<RawDb> {
        let conn = open(path)?;
        let template_id = conn.query_row(
            "SELECT t.id FROM status_check_template t JOIN status_check_description d \
             ON d.id = t.template_description_id WHERE d.name = 'raw-limit'",
            [],
            |row| row.get(0),
        )?;
        Ok(RawDb { conn, template_id })
    }

    /// Bulk-inserts checks in large transactions (set-up, not measured); returns their ids.
    pub(super) fn seed(
        &mut self,
        checks: impl Iterator<Item = RawCheck>,
    ) -> anyhow::Result<Vec<i64>> {
        let now = Utc::now();
        let mut ids = Vec::new();
        let mut checks = checks.peekable();
        while checks.peek().is_some() {
            let tx = self.begin()?;
            for check in checks.by_ref().take(10_000) {
                ids.push(execute(&tx, &create_writes(&check, now))?);
            }
            tx.commit()?;
        }
        Ok(ids)
    }

    pub(super) fn begin(&mut self) -> rusqlite::Result<Transaction<'_>> {
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
    }

    /// Runs units `0..units`, `group` per `BEGIN IMMEDIATE` transaction, in order; returns
    /// units per second.
    pub(super) fn run_grouped(
        &mut self,
        units: usize,
        group: usize,
        mut unit: impl FnMut(&Transaction<'_>, usize) -> rusqlite::Result<i64>,
    ) -> anyhow::Result<f64> {
        ensure!(group > 0, "a group holds at least one unit");
        let began = Instant::now();
        let mut next = 0;
        while next < units {
            let tx = self.begin()?;
            for index in next..(next + group).min(units) {
                unit(&tx, index)?;
            }
            tx.commit()?;
            next += group;
        }
        Ok(units as f64 / began.elapsed().as_secs_f64())
    }
}

/// Runs one unit's writes in `tx`; returns the id its first statement inserted.
pub(super) fn execute(tx: &Transaction<'_>, writes: &[Write]) -> rusqlite::Result<i64> {
    let mut inserted = Vec::with_capacity(writes.len());
    for w in writes {
        let values = w.args.iter().map(|arg| match arg {
            Arg::Int(v) => Value::Integer(*v),
            Arg::Text(v) => Value::Text(v.clone()),
            Arg::Time(t) => Value::Text(text_time(*t)),
            Arg::Bool(v) => Value::Integer(i64::from(*v)),
            Arg::Null => Value::Null,
            Arg::InsertId(n) => Value::Integer(inserted.get(*n).copied().unwrap_or(0)),
        });
        tx.prepare_cached(w.sql)?
            .execute(rusqlite::params_from_iter(values))?;
        inserted.push(tx.last_insert_rowid());
    }
    Ok(inserted.first().copied().unwrap_or(0))
}

/// A raw limit measured both ways.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limit {
    /// Units per second, one unit per transaction.
    pub(super) single: f64,
    /// Units per second, `group` units per transaction.
    pub(super) grouped: f64,
    pub(super) group: usize,
    /// Whether the service groups these writes: the figure stands beside `grouped`.
    pub(super) service_groups: bool,
}

impl Limit {
    /// The limit a figure stands beside.
    pub(super) fn beside(&self) -> f64 {
        if self.service_groups {
            self.grouped
        } else {
            self.single
        }
    }

    /// How the chosen limit was measured, e.g. "grouped ×50".
    pub(super) fn shape(&self) -> String {
        if self.service_groups {
            format!("grouped ×{}", self.group)
        } else {
            "1 per tx".to_owned()
        }
    }

    /// "raw SQLite 12345/s grouped ×50 (1 per tx: 5000/s)".
    pub(super) fn describe(&self, what: &str) -> String {
        let (other_label, other) = if self.service_groups {
            ("1 per tx".to_owned(), self.single)
        } else {
            (format!("×{}", self.group), self.grouped)
        };
        format!(
            "{what} {:.0}/s {} ({other_label}: {other:.0}/s)",
            self.beside(),
            self.shape()
        )
    }
}

// ---- (a): creates through one writer, as the service's store writes ----

/// What waits for the writer: a create's rows, or (the floor) the record of a subscribe about
/// to be made; each with where to say it committed.
enum Request {
    Create(RawCheck, oneshot::Sender<Result<(), String>>),
    SubscribeIntent(Write, oneshot::Sender<Result<i64, String>>),
}

/// Hands creates to a [`RawCreateWriter`] and waits for their commit.
#[derive(Clone)]
pub(super) struct RawCreates {
    requests: mpsc::Sender<Request>,
}

impl RawCreates {
    /// Writes `check`'s rows (with whatever other creates are waiting) and waits for the commit.
    pub(super) async fn write(&self, check: RawCheck) -> Result<(), String> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::Create(check, done))
            .map_err(|_| "the raw writer stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the raw writer dropped a create".to_owned())?
    }

    /// Records a subscribe about to be made, in its own transaction as the service does;
    /// its id, which the create's write then deletes.
    pub(super) async fn record_subscribe_intent(&self, intent: Write) -> Result<i64, String> {
        let (done, committed) = oneshot::channel();
        self.requests
            .send(Request::SubscribeIntent(intent, done))
            .map_err(|_| "the raw writer stopped".to_owned())?;
        committed
            .await
            .map_err(|_| "the raw writer dropped a subscribe's record".to_owned())?
    }
}

/// The writer thread of the raw create limit: takes the creates waiting (at most `group`),
/// writes each one's rows and commits them in one transaction, then answers them. With
/// `group` 1 every create is its own transaction. A subscribe's record met on the way is
/// written at once in a transaction of its own, as the service's store writes it.
pub(super) struct RawCreateWriter {
    requests: mpsc::Sender<Request>,
    thread: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl RawCreateWriter {
    pub(super) fn spawn(mut db: RawDb, group: usize) -> RawCreateWriter {
        let (requests, waiting) = mpsc::channel::<Request>();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            let mut batch = Vec::with_capacity(group.max(1));
            while let Ok(first) = waiting.recv() {
                let mut next = Some(first);
                while let Some(request) = next.take() {
                    match request {
                        Request::Create(check, done) => batch.push((check, done)),
                        Request::SubscribeIntent(intent, done) => {
                            let written = (|| -> rusqlite::Result<i64> {
                                let tx = db.begin()?;
                                let id = execute(&tx, std::slice::from_ref(&intent))?;
                                tx.commit()?;
                                Ok(id)
                            })();
                            let _ = done.send(written.map_err(|e| e.to_string()));
                        }
                    }
                    if batch.len() < group.max(1) {
                        next = waiting.try_recv().ok();
                    }
                }
                if batch.is_empty() {
                    continue;
                }
                let now = Utc::now();
                let written = (|| -> rusqlite::Result<()> {
                    let tx = db.begin()?;
                    for (check, _) in &batch {
                        execute(&tx, &create_writes(check, now))?;
                    }
                    tx.commit()
                })();
                let answer = written.map_err(|e| e.to_string());
                for (_, done) in batch.drain(..) {
                    let _ = done.send(answer.clone());
                }
            }
            Ok(())
        });
        RawCreateWriter { requests, thread }
    }

    /// A handle that hands creates to this writer.
    pub(super) fn creates(&self) -> RawCreates {
        RawCreates {
            requests: self.requests.clone(),
        }
    }

    /// The load operation: one create's writes for robot `client + 1`, scheduledId
    /// `scheduled_base + ticket`, through the writer, as the service makes them: the
    /// subscribe's record in a transaction of its own, then the check's rows and that record's
    /// deletion in the (grouped) create write.
    pub(super) fn op(&self, template_id: i64, scheduled_base: i64) -> Op {
        let creates = self.creates();
        Arc::new(move |client, ticket| {
            let creates = creates.clone();
            Box::pin(async move {
                let (robot, scheduled) = (client as i64 + 1, scheduled_base + ticket as i64);
                let intent = creates
                    .record_subscribe_intent(subscribe_intent_write(
                        robot,
                        &FUTURE_NAMES,
                        Utc::now(),
                    ))
                    .await?;
                creates
                    .write(RawCheck {
                        subscribe_intent: Some(intent),
                        ..RawCheck::create(
                            robot,
                            scheduled,
                            template_id,
                            raw_subscription(scheduled),
                        )
                    })
                    .await
            })
        })
    }

    /// Stops the writer once every create sent is answered.
    pub(super) fn stop(self) -> anyhow::Result<()> {
        drop(self.requests);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the raw writer panicked"))?
    }
}
