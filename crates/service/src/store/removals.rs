//! Megazord subscriptions to remove (SPEC §13 "Cleanup is exact"): queued durably — in the
//! transaction that ends a check, or on their own when a create fails after subscribing or a
//! delivery keeps coming for a subscription nothing owns. One row per subscription; the
//! relay works them off as jobs (`store/jobs.rs`, `checks/cleanup.rs`).

use chrono::{DateTime, Utc};

use super::StoreError;
use super::db::{Db, PerDialect, Tx, args, millis};

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
