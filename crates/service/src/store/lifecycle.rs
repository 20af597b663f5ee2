//! The store's behaviour, written once for both backends: the SQL (identical text in both
//! dialects), the transactions, and the mapping between rows and the engine's types.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use status_check_engine::{Event, Record};

use crate::jobs::{Job, Lease};

use super::checks::{insert_record, stored_deadline, stored_reference_id};
use super::db::bounded;
use super::db::{
    Arg, Db, Dialect, Mode, PerDialect, Retry, SqlRow, Step, Tx, args, cut, finish, limit_arg,
    millis, retrying, seconds_floor,
};
use super::in_list::{InList, MAX_IDS};
use super::{
    BatchedUpdate, CheckUpdate, Claimed, Fence, Notifications, OutboxMessage, StoreError,
    StoredCheck, UpdateOutcome,
};

/// A statement that locks a check's `status_check` row — the first lock of every change of a
/// check (lock order: status_check, then status_check_poller, then status_check_ext). On
/// SQLite a plain read: `BEGIN IMMEDIATE` already holds the database's write lock.
pub(super) const LOCK_CHECK: PerDialect = PerDialect {
    mysql: "SELECT phase, result, next_step_id FROM status_check WHERE id = ? FOR UPDATE",
    sqlite: "SELECT phase, result, next_step_id FROM status_check WHERE id = ?",
};

/// The poller's lease, read and locked (second in the lock order) after the check's row.
pub(super) const LOCK_POLLER: PerDialect = PerDialect {
    mysql: "SELECT lock_id FROM status_check_poller WHERE status_check_id = ? FOR UPDATE",
    sqlite: "SELECT lock_id FROM status_check_poller WHERE status_check_id = ?",
};

/// [`LOCK_CHECK`] and [`LOCK_POLLER`] as SQLite runs them (for the driver benchmark).
pub const LOCK_CHECK_SQLITE: &str = LOCK_CHECK.sqlite;
pub const LOCK_POLLER_SQLITE: &str = LOCK_POLLER.sqlite;

/// What a change of a check reads under its locks, in one statement for a whole batch: each
/// check's row (locked first, in id order), its poller's lease (locked second) and the last
/// record's `order` — on MySQL a locking read too. (A plain read there would see a snapshot
/// taken before the later checks were locked, so a record another replica committed to one
/// of them meanwhile would go unseen.) The transaction runs READ COMMITTED
/// ([`Mode::RowLocked`]), so this read locks no gap where other checks' records go.
macro_rules! lock_for_change_sql {
    ($lock:literal) => {
        concat!(
            "SELECT sc.id AS id, sc.phase AS phase, sc.result AS result, \
             sc.next_step_id AS next_step_id, p.lock_id AS lock_id, \
             (SELECT MAX(r.`order`) FROM status_check_record r \
              WHERE r.status_check_id = sc.id",
            $lock,
            ") AS last_order \
             FROM status_check sc \
             LEFT JOIN status_check_poller p ON p.status_check_id = sc.id \
             WHERE sc.id IN "
        )
    };
}

static LOCK_FOR_CHANGE_MYSQL: InList = InList::new(
    lock_for_change_sql!(" FOR UPDATE"),
    " ORDER BY sc.id FOR UPDATE",
);
static LOCK_FOR_CHANGE_SQLITE: InList = InList::new(lock_for_change_sql!(""), " ORDER BY sc.id");

pub const UPDATE_CHECK_STATE: &str = "UPDATE status_check \
     SET phase = ?, result = ?, next_step_id = ?, updated_at = ? WHERE id = ?";

pub const RELEASE_POLLER: &str = "UPDATE status_check_poller SET lock_id = NULL, updated_at = ? \
     WHERE status_check_id = ?";

pub const UPDATE_EXT_STATE: &str = "UPDATE status_check_ext SET notification_seq = ?, \
     deadline_at = ?, lease_taken_at = CASE WHEN ? THEN NULL ELSE lease_taken_at END, \
     updated_at = ? WHERE status_check_id = ?";

pub const INSERT_OUTBOX: &str = "INSERT INTO status_check_outbox (status_check_id, robot_id, seq, \
     payload, call_ref, created_at, attempts, next_attempt_at, lock_id, locked_until, sent_at, \
     last_error) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, NULL, NULL)";

/// An outbox row written leased to this process's relay (`OutboxHandoff`).
const INSERT_OUTBOX_LEASED: &str = "INSERT INTO status_check_outbox (status_check_id, robot_id, \
     seq, payload, call_ref, created_at, attempts, next_attempt_at, lock_id, locked_until, \
     sent_at, last_error) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL, NULL)";

/// Due checks, oldest deadline first. The join order is fixed to the one the deadline index
/// serves — ext (range on `idx_status_check_ext_deadline`, already in ORDER BY order) →
/// status_check → poller (by primary key) — with MySQL's `STRAIGHT_JOIN` and SQLite's
/// `CROSS JOIN` (without statistics SQLite would otherwise start from the poller's `lock_id`
/// index: every free poller, i.e. every check that ever ended). On MySQL the rows are read,
/// locked and skipped in deadline order, so two claimers never miss a row between them;
/// `SKIP LOCKED` passes over checks another transaction holds (a claimer, or a change under
/// way) without waiting, so a claim never waits for a row lock and cannot take part in a
/// deadlock.
macro_rules! claim_due_sql {
    ($join:literal, $lock:literal) => {
        concat!(
            "SELECT e.status_check_id AS id, e.deadline_at AS deadline_at \
             FROM status_check_ext e ",
            $join,
            " status_check sc ON sc.id = e.status_check_id ",
            $join,
            " status_check_poller p ON p.status_check_id = e.status_check_id \
             WHERE e.deadline_at <= ? AND sc.phase NOT IN ('COMPLETED', 'FAILED') \
             AND p.lock_id IS NULL \
             ORDER BY e.deadline_at, e.status_check_id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_DUE: PerDialect = PerDialect {
    mysql: claim_due_sql!("STRAIGHT_JOIN", " FOR UPDATE SKIP LOCKED"),
    sqlite: claim_due_sql!("CROSS JOIN", ""),
};

/// [`CLAIM_DUE`] as SQLite runs it.
pub const CLAIM_DUE_SQLITE: &str = CLAIM_DUE.sqlite;

pub const LEASE_POLLER: &str = "UPDATE status_check_poller SET lock_id = ?, updated_at = ? \
     WHERE status_check_id = ? AND lock_id IS NULL";

pub const LEASE_EXT: &str =
    "UPDATE status_check_ext SET lease_taken_at = ? WHERE status_check_id = ?";

/// Sorted by the caller (an `ORDER BY` here leads SQLite to scan the table in id order
/// instead of using `idx_status_check_ext_lease`); at most a batch at a time.
const SELECT_STALE_LEASES: &str =
    "SELECT status_check_id AS id FROM status_check_ext WHERE lease_taken_at < ? LIMIT ?";

/// Stale leases released per transaction: a pile of them (finalisations failing for a while)
/// is released in short transactions, each holding few row locks, instead of one that
/// outgrows the operation's bound and rolls back every time.
const STALE_RELEASE_BATCH: usize = 100;

/// Batches per call, each under its own bound: what is left is the next tick's.
const STALE_RELEASE_BATCHES: usize = 10;

const FORGET_STALE_LEASE: &str = "UPDATE status_check_ext SET lease_taken_at = NULL \
     WHERE status_check_id = ? AND lease_taken_at < ?";

/// `status_check_outbox.call_ref` is `VARCHAR(256)`.
const CALL_REF_MAX_CHARS: usize = 256;

/// Writes a batch of decisions in one transaction (group commit): each as `update_check`
/// writes it alone — fenced, checked for staleness, nothing written for it when it is not
/// `Updated` — and the batch commits once. The checks are locked in id order, so two
/// batches (or a batch and a claim) never wait for each other in a circle. The
/// notifications are handed to this process's relay once the batch has committed.
pub(crate) async fn update_checks<D: Db>(
    db: &D,
    batch: &[BatchedUpdate<'_>],
    notifications: &Notifications<'_>,
    now: DateTime<Utc>,
) -> Result<Vec<UpdateOutcome>, StoreError> {
    for item in batch {
        check_orders(item.current, &item.update)?;
    }
    let mut lock_order: Vec<usize> = (0..batch.len()).collect();
    lock_order.sort_by_key(|&index| batch[index].current.id);
    if let Some(pair) = lock_order
        .windows(2)
        .find(|pair| batch[pair[0]].current.id == batch[pair[1]].current.id)
    {
        return Err(StoreError::Conflict(format!(
            "a batch of updates names status_check {} twice",
            batch[pair[0]].current.id
        )));
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let outbox = Outbox {
        render: notifications.render,
        handoff: notifications
            .handoff
            .and_then(|handoff| Some((handoff.lease(), handoff.lease_until(now)?))),
    };
    let ids: Vec<i64> = lock_order
        .iter()
        .map(|&index| batch[index].current.id)
        .collect();
    let mut retry = Retry::default();
    loop {
        let mut handed = Vec::new();
        let result = async {
            let mut tx = db.begin(Mode::RowLocked).await?;
            let result = async {
                let mut locked = lock_for_change(db, &mut tx, &ids).await?;
                let mut outcomes = vec![UpdateOutcome::NotFound; batch.len()];
                for &index in &lock_order {
                    let item = &batch[index];
                    let (Step::Commit(outcome) | Step::Rollback(outcome)) = update_in(
                        db,
                        &mut tx,
                        locked.remove(&item.current.id),
                        item,
                        &outbox,
                        now,
                        &mut handed,
                    )
                    .await?;
                    outcomes[index] = outcome;
                }
                Ok(Step::Commit(outcomes))
            }
            .await;
            finish(tx, result).await
        }
        .await;
        let error = match result {
            Ok(outcomes) => {
                if let Some(handoff) = notifications.handoff {
                    handoff.hand_over(handed);
                }
                return Ok(outcomes);
            }
            Err(error) => error,
        };
        if error.is_duplicate().is_some() {
            // A decision repeated an incoming event its check has (or a notification
            // sequence number): a bug upstream. Nothing was written.
            let ids: Vec<i64> = batch.iter().map(|item| item.current.id).collect();
            return Err(StoreError::Conflict(format!(
                "status_check {ids:?}: an update repeats what its check already holds \
                 (an incoming event recorded twice?): {error}"
            )));
        }
        if !retry.again(&error).await {
            return Err(error);
        }
    }
}

/// Locks the checks `ids` (sorted) with their pollers, [`MAX_IDS`] per statement, and reads
/// what deciding whether each is still as loaded needs; by check id.
async fn lock_for_change<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    ids: &[i64],
) -> Result<HashMap<i64, <D::Tx as Tx>::Row>, StoreError> {
    let statement = match db.dialect() {
        Dialect::Mysql => &LOCK_FOR_CHANGE_MYSQL,
        Dialect::Sqlite => &LOCK_FOR_CHANGE_SQLITE,
    };
    let mut locked = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IDS) {
        let (sql, ids) = statement.for_ids(chunk);
        for row in tx
            .fetch_all(sql, ids.into_iter().map(Arg::from).collect())
            .await?
        {
            locked.insert(row.int("id")?, row);
        }
    }
    Ok(locked)
}

/// One check's part of an `update_checks` attempt, in the lock order status_check → poller
/// → ext, on its row as [`lock_for_change`] locked and read it (`None`: it is gone). Reads
/// no history: the decision was made on `current`, and the locked row and the last record's
/// `order` say whether that is still the check (any change of a check changes its phase,
/// result or next step, or adds a record).
async fn update_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    locked: Option<<D::Tx as Tx>::Row>,
    item: &BatchedUpdate<'_>,
    outbox: &Outbox<'_>,
    now: DateTime<Utc>,
    handed: &mut Vec<Job<OutboxMessage>>,
) -> Result<Step<UpdateOutcome>, StoreError> {
    let BatchedUpdate {
        current,
        fence,
        update,
        call_ref,
    } = item;
    let (current, fence, call_ref) = (*current, *fence, *call_ref);
    let id = current.id;
    let Some(locked) = locked else {
        return Ok(Step::Rollback(UpdateOutcome::NotFound));
    };
    let lock_id = locked.opt_text("lock_id")?;
    if let Fence::Lease(lease) = fence
        && lock_id.as_deref() != Some(lease.as_str())
    {
        return Ok(Step::Rollback(UpdateOutcome::Fenced));
    }
    let last_order = locked.opt_int("last_order")?.unwrap_or(0);
    let unchanged = locked.text("phase")? == current.phase.as_str()
        && locked.opt_text("result")?.as_deref().unwrap_or("PENDING") == current.result.as_str()
        && locked.opt_int("next_step_id")? == current.next_step_id
        && last_order == i64::from(last_stored_order(current));
    if !unchanged {
        return Ok(Step::Rollback(UpdateOutcome::Stale));
    }

    let now_ms = millis(now);
    let now_seconds = seconds_floor(now);
    tx.execute(
        UPDATE_CHECK_STATE,
        args![
            update.phase.as_str(),
            Some(update.result.as_str().to_owned()),
            update.next_step_id,
            now_seconds,
            id
        ],
    )
    .await?;
    if update.release_lease {
        tx.execute(RELEASE_POLLER, args![now_seconds, id]).await?;
    }
    let seq = current.notification_seq + i64::from(update.notify);
    tx.execute(
        UPDATE_EXT_STATE,
        args![
            seq,
            stored_deadline(update.deadline),
            update.release_lease,
            now_ms,
            id
        ],
    )
    .await?;
    for record in &update.new_records {
        insert_record(tx, id, record).await?;
    }
    if update.remove_subscription
        && let Some(subscription_id) = current.subscription_id
    {
        super::removals::queue_in(db, tx, current.key.robot_id, subscription_id, "ended", now)
            .await?;
    }
    let updated = after_update(current.clone(), update.clone(), seq, now);
    if update.notify {
        let payload = (outbox.render)(&updated, seq);
        let call_ref = cut(call_ref, CALL_REF_MAX_CHARS);
        let robot_id = updated.key.robot_id;
        match outbox.handoff {
            None => {
                tx.execute(
                    INSERT_OUTBOX,
                    args![id, robot_id, seq, payload, call_ref, now_ms, now_ms],
                )
                .await?;
            }
            Some((lease, lease_until)) => {
                let inserted = tx
                    .execute(
                        INSERT_OUTBOX_LEASED,
                        args![
                            id,
                            robot_id,
                            seq,
                            payload.clone(),
                            call_ref.clone(),
                            now_ms,
                            now_ms,
                            lease.as_str(),
                            millis(lease_until)
                        ],
                    )
                    .await?;
                handed.push(Job {
                    id: inserted.last_insert_id,
                    attempts: 0,
                    payload: OutboxMessage {
                        check_id: id,
                        robot_id,
                        seq,
                        payload,
                        call_ref,
                    },
                });
            }
        }
    }
    Ok(Step::Commit(UpdateOutcome::Updated(Box::new(updated))))
}

/// How one write attempt stores its notifications: the payload, and the lease of the relay
/// they are handed to (when it has room).
struct Outbox<'a> {
    render: super::Render<'a>,
    handoff: Option<(&'a Lease, DateTime<Utc>)>,
}

fn last_stored_order(check: &StoredCheck) -> u32 {
    check.records.iter().map(|r| r.order).max().unwrap_or(0)
}

/// The check as the update left it, built from what was loaded and written — the same value
/// a fresh read returns (the suite compares them), without reading the history back: the
/// times are truncated as the writes truncate them.
fn after_update(
    mut check: StoredCheck,
    update: CheckUpdate,
    seq: i64,
    now: DateTime<Utc>,
) -> StoredCheck {
    check.phase = update.phase;
    check.result = update.result;
    check.next_step_id = update.next_step_id;
    check.notification_seq = seq;
    check.updated_at = millis(now);
    check
        .records
        .extend(update.new_records.into_iter().map(|record| Record {
            created_at: seconds_floor(record.created_at),
            event: Event {
                created_at: millis(record.event.created_at),
                reference_id: stored_reference_id(record.event.reference_id.as_deref()),
                ..record.event
            },
            ..record
        }));
    check
}

/// New records continue the stored `order`s one by one; anything else is a decision made on
/// another state than the stored one — a bug, refused before anything is written.
fn check_orders(check: &StoredCheck, update: &CheckUpdate) -> Result<(), StoreError> {
    let mut last = last_stored_order(check);
    for record in &update.new_records {
        if Some(record.order) != last.checked_add(1) {
            return Err(StoreError::Conflict(format!(
                "status_check {}: a new record has order {} where {} was next",
                check.id,
                record.order,
                u64::from(last) + 1
            )));
        }
        last = record.order;
    }
    Ok(())
}

async fn claim_due_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    now: DateTime<Utc>,
    lease: &Lease,
    limit: usize,
) -> Result<Step<Vec<Claimed>>, StoreError> {
    let rows = tx
        .fetch_all(db.sql(&CLAIM_DUE), args![millis(now), limit_arg(limit)])
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let check_id = row.int("id")?;
        let deadline = row.time("deadline_at")?;
        // The rows are locked (MySQL) or the database is (SQLite): the lease is still free.
        let done = tx
            .execute(
                LEASE_POLLER,
                args![lease.as_str(), seconds_floor(now), check_id],
            )
            .await?;
        if done.rows_affected == 0 {
            continue;
        }
        tx.execute(LEASE_EXT, args![millis(now), check_id]).await?;
        claimed.push(Claimed { check_id, deadline });
    }
    Ok(Step::Commit(claimed))
}

/// Candidates first (a plain read over `idx_status_check_ext_lease`), then each in the lock
/// order with the condition checked again on the locked row: a lease renewed or released
/// since the read is left alone. Checks are taken in id order, so two replicas releasing at
/// once wait for each other instead of deadlocking.
async fn release_stale_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    taken_before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Step<(u64, usize)>, StoreError> {
    let taken_before = millis(taken_before);
    let now_seconds = seconds_floor(now);
    let mut candidates = tx
        .fetch_all(
            SELECT_STALE_LEASES,
            args![taken_before, limit_arg(STALE_RELEASE_BATCH)],
        )
        .await?
        .iter()
        .map(|row| row.int("id"))
        .collect::<Result<Vec<_>, _>>()?;
    candidates.sort_unstable();
    let found = candidates.len();
    let mut released = 0;
    for id in candidates {
        if tx
            .fetch_optional(db.sql(&LOCK_CHECK), args![id])
            .await?
            .is_none()
        {
            continue;
        }
        tx.fetch_optional(db.sql(&LOCK_POLLER), args![id]).await?;
        let done = tx
            .execute(FORGET_STALE_LEASE, args![id, taken_before])
            .await?;
        if done.rows_affected == 0 {
            continue;
        }
        tx.execute(RELEASE_POLLER, args![now_seconds, id]).await?;
        released += 1;
    }
    Ok(Step::Commit((released, found)))
}

/// Changing a check: a decision written under its row lock, the scheduler's claims and stale
/// leases. Part of [`Store`](super::Store); implemented once, below, for every backend, each
/// operation bounded by the backend's operation timeout.
#[async_trait::async_trait]
pub trait CheckUpdates: Send + Sync {
    /// Writes a decision made on `current` (the check as the caller read it), in one
    /// transaction under the check's row lock (`SELECT … FOR UPDATE` on MySQL — lock order:
    /// status_check row first, then its poller, then its ext row; `BEGIN IMMEDIATE` on
    /// SQLite). The decision was made outside: no rule runs while the lock is held, and the
    /// history is not read again. Under the lock: the fence, then whether the check is still
    /// `current` (phase, result, next step and last record's `order`) — else `Stale` and
    /// nothing is written. Then status_check phase/result/next_step_id/updated_at, the new
    /// records and their event rows, the poller lease release, the pending deadline, and —
    /// when `notify` — the next `notification_seq` and the outbox row (`notifications`' payload,
    /// `call_ref`), and commits. Retries the write on deadlock / lock wait timeout /
    /// SQLITE_BUSY, up to 5 attempts with a short jittered backoff. A new record of an
    /// incoming event the check already has, or `order`s that do not follow the stored ones,
    /// are refused with `StoreError::Conflict` and nothing is written.
    async fn update_check(
        &self,
        item: BatchedUpdate<'_>,
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Writes several decisions, each as [`Store::update_check`] would, in one transaction
    /// (group commit); one outcome per item, in order. Each check at most once per batch.
    /// A failing statement fails the whole batch and nothing is written: the caller retries
    /// its items one by one, so one bad item cannot hold its batch-mates back.
    async fn update_checks(
        &self,
        batch: &[BatchedUpdate<'_>],
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<UpdateOutcome>, StoreError>;

    /// Claims up to `limit` checks in `FUTURE` whose exact deadline is ≤ `now` and whose
    /// poller holds no lease, stamping `lock_id = lease` and the lease time (`now`). MySQL:
    /// one short transaction, `SELECT … FOR UPDATE SKIP LOCKED` over the deadline index, then
    /// the UPDATEs; SQLite: the same under `BEGIN IMMEDIATE` (one writer at a time). Oldest
    /// deadline first. Concurrent claimers get disjoint sets.
    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError>;

    /// Clears leases taken before `taken_before` (their holder is presumed dead), so another
    /// replica claims the work, stamping the released rows with `now`; returns how many.
    async fn release_stale_leases(
        &self,
        taken_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> CheckUpdates for B {
    async fn update_check(
        &self,
        item: BatchedUpdate<'_>,
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<UpdateOutcome, StoreError> {
        let db = self;
        bounded(db, "update_check", async {
            let mut outcomes = update_checks(db, &[item], notifications, now).await?;
            Ok(outcomes.remove(0))
        })
        .await
    }

    async fn update_checks(
        &self,
        batch: &[BatchedUpdate<'_>],
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        bounded(
            self,
            "update_checks",
            update_checks(self, batch, notifications, now),
        )
        .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: &crate::jobs::Lease,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        retrying!(self, "claim_due", tx => claim_due_in(self, &mut tx, now, lease, limit).await)
    }

    async fn release_stale_leases(
        &self,
        taken_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut released = 0;
        for _ in 0..STALE_RELEASE_BATCHES {
            let (done, found) = retrying!(self, "release_stale_leases", tx => {
                release_stale_in(self, &mut tx, taken_before, now).await
            })?;
            released += done;
            // A short batch was the last; one that released nothing would find the same rows
            // again.
            if found < STALE_RELEASE_BATCH || done == 0 {
                break;
            }
        }
        Ok(released)
    }
}
