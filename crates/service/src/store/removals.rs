//! Megazord subscriptions to remove (SPEC §13 "Cleanup is exact"): queued durably — in the
//! transaction that ends a check, or on their own when a create fails after subscribing or a
//! delivery keeps coming for a subscription nothing owns — and removed by the relay role,
//! retried with backoff until Megazord answers 204 or 404. One row per subscription.

use chrono::{DateTime, Utc};

use super::checks::corrupt;
use super::db::{Db, Mode, PerDialect, SqlRow, Step, Tx, args, millis, retrying};
use super::lifecycle::{LAST_ERROR_MAX_CHARS, check_lease, cut, limit_arg};
use super::{StoreError, SubscriptionRemoval};

/// A removal, once per subscription: asking again changes nothing.
pub(super) const QUEUE_REMOVAL: PerDialect = PerDialect {
    mysql: "INSERT INTO status_check_subscription_removal (robot_id, subscription_id, reason, \
            created_at, attempts, next_attempt_at) VALUES (?, ?, ?, ?, 0, ?) \
            ON DUPLICATE KEY UPDATE id = id",
    sqlite: "INSERT INTO status_check_subscription_removal (robot_id, subscription_id, reason, \
             created_at, attempts, next_attempt_at) VALUES (?, ?, ?, ?, 0, ?) \
             ON CONFLICT (subscription_id) DO NOTHING",
};

/// [`QUEUE_REMOVAL`] as SQLite runs it.
pub const QUEUE_REMOVAL_SQLITE: &str = QUEUE_REMOVAL.sqlite;

macro_rules! claim_removals_sql {
    ($lock:literal) => {
        concat!(
            "SELECT id, robot_id, subscription_id, reason, attempts \
             FROM status_check_subscription_removal \
             WHERE done_at IS NULL AND next_attempt_at <= ? \
               AND (lock_id IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_REMOVALS: PerDialect = PerDialect {
    mysql: claim_removals_sql!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim_removals_sql!(""),
};

const LEASE_REMOVAL: &str =
    "UPDATE status_check_subscription_removal SET lock_id = ?, locked_until = ? WHERE id = ?";

/// Done, by whoever removed it (the change that ended the check tries at once; the relay
/// retries what that could not do).
const REMOVAL_DONE: &str = "UPDATE status_check_subscription_removal \
     SET done_at = ?, lock_id = NULL, locked_until = NULL \
     WHERE subscription_id = ? AND done_at IS NULL";

const REMOVAL_FAILED: &str = "UPDATE status_check_subscription_removal \
     SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lock_id = NULL, \
         locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND done_at IS NULL";

const REMOVAL_BACKLOG: &str = "SELECT COUNT(*) AS backlog \
     FROM status_check_subscription_removal WHERE done_at IS NULL";

pub(crate) async fn queue_subscription_removal<D: Db>(
    db: &D,
    robot_id: i64,
    subscription_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    retrying!(db, tx => queue_in(db, &mut tx, robot_id, subscription_id, reason, now)
        .await
        .map(Step::Commit))
}

/// Queues a removal inside another write (the change that ends a check).
pub(super) async fn queue_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    robot_id: i64,
    subscription_id: i64,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = millis(now);
    tx.execute(
        db.sql(&QUEUE_REMOVAL),
        args![robot_id, subscription_id, reason, now, now],
    )
    .await?;
    Ok(())
}

pub(crate) async fn claim_subscription_removals<D: Db>(
    db: &D,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<SubscriptionRemoval>, StoreError> {
    check_lease(lease)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    retrying!(db, tx => async {
        let now = millis(now);
        let rows = tx
            .fetch_all(db.sql(&CLAIM_REMOVALS), args![now, now, limit_arg(limit)])
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.int("id")?;
            let attempts = row.int("attempts")?;
            claimed.push(SubscriptionRemoval {
                id,
                robot_id: row.int("robot_id")?,
                subscription_id: row.int("subscription_id")?,
                reason: row.text("reason")?,
                attempts: u32::try_from(attempts).map_err(|_| {
                    corrupt(format!("status_check_subscription_removal {id}: attempts {attempts}"))
                })?,
            });
            tx.execute(LEASE_REMOVAL, args![lease, millis(lease_until), id])
                .await?;
        }
        Ok(Step::Commit(claimed))
    }
    .await)
}

/// One transaction for all: on SQLite every write waits its turn for the single writer.
pub(crate) async fn subscriptions_removed<D: Db>(
    db: &D,
    subscription_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if subscription_ids.is_empty() {
        return Ok(0);
    }
    retrying!(db, tx => async {
        let mut done = 0;
        for &subscription_id in subscription_ids {
            done += tx
                .execute(REMOVAL_DONE, args![millis(now), subscription_id])
                .await?
                .rows_affected;
        }
        Ok(Step::Commit(done))
    }
    .await)
}

pub(crate) async fn subscription_removal_failed<D: Db>(
    db: &D,
    id: i64,
    lease: &str,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<bool, StoreError> {
    let args = args![
        cut(error, LAST_ERROR_MAX_CHARS),
        millis(next_attempt_at),
        id,
        lease
    ];
    retrying!(db, tx => tx
        .execute(REMOVAL_FAILED, args.clone())
        .await
        .map(|done| Step::Commit(done.rows_affected > 0)))
}

pub(crate) async fn subscription_removal_backlog<D: Db>(db: &D) -> Result<i64, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx.fetch_optional(REMOVAL_BACKLOG, args![]).await?;
    tx.commit().await?;
    match row {
        Some(row) => row.int("backlog"),
        None => Ok(0),
    }
}
