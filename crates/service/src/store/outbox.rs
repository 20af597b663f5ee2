//! The robot notification outbox (SPEC §3.7): rows written with the change they announce
//! (`lifecycle::update_check`), claimed by a relay under a lease — or handed to this
//! process's relay in memory ([`OutboxHandoff`]) — and marked sent or failed.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;

use super::checks::corrupt;
use super::db::{Db, Mode, PerDialect, SqlRow, Step, Tx, args, millis, retrying};
use super::lifecycle::{LAST_ERROR_MAX_CHARS, check_lease, cut, limit_arg};
use super::{OutboxMessage, StoreError};

macro_rules! claim_outbox_sql {
    ($lock:literal) => {
        concat!(
            "SELECT id, status_check_id, robot_id, seq, payload, call_ref, attempts \
             FROM status_check_outbox \
             WHERE sent_at IS NULL AND next_attempt_at <= ? \
               AND (lock_id IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_OUTBOX: PerDialect = PerDialect {
    mysql: claim_outbox_sql!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim_outbox_sql!(""),
};

const LEASE_OUTBOX: &str =
    "UPDATE status_check_outbox SET lock_id = ?, locked_until = ? WHERE id = ?";

const OUTBOX_SENT: &str = "UPDATE status_check_outbox \
     SET sent_at = ?, lock_id = NULL, locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

const OUTBOX_FAILED: &str = "UPDATE status_check_outbox \
     SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lock_id = NULL, \
         locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

/// Unsent rows still to be tried (a dead-lettered row is not backlog: nothing will send it).
const OUTBOX_BACKLOG: &str = "SELECT COUNT(*) AS backlog FROM status_check_outbox \
     WHERE sent_at IS NULL AND next_attempt_at < ?";

/// The retry time of a dead-lettered notification (one that failed its last attempt):
/// 9999-01-01, so no claim ever takes it again. The row stays, with its last error, for an
/// operator.
pub const DEAD_LETTER_AT: DateTime<Utc> = match DateTime::from_timestamp(253_370_764_800, 0) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// Notifications committed in this process, handed to its relay in memory. A write that
/// queues notifications while the relay has room stores each row already leased to the
/// relay (`lock_id`, `locked_until`), so no other relay claims it, and hands the rows over
/// once the transaction has committed: the relay sends them at once instead of claiming them
/// first — a claim is a write, which waits its turn behind the scheduler's and the
/// consumer's. Nothing is lost in between: the rows are in the outbox, and should this
/// process die before sending them, any relay claims them once the lease has run out.
pub struct OutboxHandoff {
    lease: String,
    lease_for: TimeDelta,
    /// Most rows waiting to be taken; while as many wait, writes store their rows unleased
    /// and the relay claims them as usual.
    capacity: usize,
    waiting: Mutex<Vec<OutboxMessage>>,
    ready: Notify,
}

impl OutboxHandoff {
    pub fn new(lease: String, lease_for: Duration, capacity: usize) -> Self {
        OutboxHandoff {
            lease,
            lease_for: TimeDelta::from_std(lease_for).unwrap_or(TimeDelta::MAX),
            capacity,
            waiting: Mutex::new(Vec::new()),
            ready: Notify::new(),
        }
    }

    /// The lease the handed rows are written under.
    pub fn lease(&self) -> &str {
        &self.lease
    }

    /// Until when a row written `now` is leased to the relay; `None` while it has enough
    /// waiting.
    pub(crate) fn lease_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.lock().len() < self.capacity).then(|| now + self.lease_for)
    }

    /// Hands committed rows to the relay.
    pub(crate) fn hand_over(&self, rows: Vec<OutboxMessage>) {
        if rows.is_empty() {
            return;
        }
        self.lock().extend(rows);
        self.ready.notify_one();
    }

    /// Up to `limit` of the rows handed over, in the order of their checks and sequence
    /// numbers (two commits may hand theirs over in either order).
    pub fn take(&self, limit: usize) -> Vec<OutboxMessage> {
        let mut taken: Vec<OutboxMessage> = {
            let mut waiting = self.lock();
            let take = waiting.len().min(limit);
            waiting.drain(..take).collect()
        };
        taken.sort_by_key(|row| (row.check_id, row.seq));
        taken
    }

    /// Returns once rows were handed over since the last call (at once if they were).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<OutboxMessage>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(crate) async fn claim_outbox<D: Db>(
    db: &D,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<OutboxMessage>, StoreError> {
    check_lease(lease)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    retrying!(db, tx => claim_outbox_in(db, &mut tx, now, lease, lease_until, limit).await)
}

async fn claim_outbox_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Step<Vec<OutboxMessage>>, StoreError> {
    let now = millis(now);
    let rows = tx
        .fetch_all(db.sql(&CLAIM_OUTBOX), args![now, now, limit_arg(limit)])
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.int("id")?;
        let attempts = row.int("attempts")?;
        let message = OutboxMessage {
            id,
            check_id: row.int("status_check_id")?,
            robot_id: row.int("robot_id")?,
            seq: row.int("seq")?,
            payload: row.text("payload")?,
            call_ref: row.text("call_ref")?,
            attempts: u32::try_from(attempts)
                .map_err(|_| corrupt(format!("status_check_outbox {id}: attempts {attempts}")))?,
        };
        tx.execute(LEASE_OUTBOX, args![lease, millis(lease_until), id])
            .await?;
        claimed.push(message);
    }
    Ok(Step::Commit(claimed))
}

/// One transaction for a whole batch: on SQLite every write transaction waits its turn for
/// the single writer, so one per sent row would halve the deadline throughput.
pub(crate) async fn outbox_sent<D: Db>(
    db: &D,
    ids: &[i64],
    lease: &str,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    retrying!(db, tx => async {
        let mut marked = Vec::with_capacity(ids.len());
        for &id in ids {
            let done = tx.execute(OUTBOX_SENT, args![millis(now), id, lease]).await?;
            if done.rows_affected > 0 {
                marked.push(id);
            }
        }
        Ok(Step::Commit(marked))
    }
    .await)
}

pub(crate) async fn outbox_failed<D: Db>(
    db: &D,
    id: i64,
    lease: &str,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<bool, StoreError> {
    write_one(
        db,
        OUTBOX_FAILED,
        args![
            cut(error, LAST_ERROR_MAX_CHARS),
            millis(next_attempt_at),
            id,
            lease
        ],
    )
    .await
}

/// One statement in its own transaction, retried on transient failures; whether it matched
/// a row.
async fn write_one<D: Db>(
    db: &D,
    sql: &'static str,
    args: Vec<super::db::Arg>,
) -> Result<bool, StoreError> {
    retrying!(db, tx => tx
                .execute(sql, args.clone())
                .await
                .map(|done| Step::Commit(done.rows_affected > 0)))
}

pub(crate) async fn outbox_backlog<D: Db>(db: &D) -> Result<i64, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx
        .fetch_optional(OUTBOX_BACKLOG, args![DEAD_LETTER_AT])
        .await?;
    tx.commit().await?;
    match row {
        Some(row) => row.int("backlog"),
        None => Ok(0),
    }
}

/// Sent rows older than the retention, oldest first: a range over `idx_status_check_outbox_due`.
const SENT_BEFORE: &str = "SELECT id FROM status_check_outbox \
     WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?";

const DELETE_OUTBOX_ROW: &str = "DELETE FROM status_check_outbox WHERE id = ?";

/// Deletes up to `limit` rows sent before `sent_before`, in one transaction; how many. (A
/// `DELETE … LIMIT` SQLite does not have; MySQL takes no `LIMIT` in an `IN` subquery.)
pub(crate) async fn purge_sent_outbox<D: Db>(
    db: &D,
    sent_before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    retrying!(db, tx => async {
        let ids = tx
            .fetch_all(SENT_BEFORE, args![millis(sent_before), limit_arg(limit)])
            .await?
            .iter()
            .map(|row| row.int("id"))
            .collect::<Result<Vec<_>, _>>()?;
        for &id in &ids {
            tx.execute(DELETE_OUTBOX_ROW, args![id]).await?;
        }
        Ok(Step::Commit(ids.len() as u64))
    }
    .await)
}
