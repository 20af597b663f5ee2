//! The monitors' actions outbox (SPEC §12 "Exactly once"): alarms written with the window end
//! that decided them (`monitors::write_monitor_state`), claimed by the relay under a lease,
//! marked sent or failed, purged after the retention — as the robot notification outbox.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::checks::corrupt;
use super::db::{Db, Mode, PerDialect, SqlRow, Step, Tx, args, millis, retrying};
use super::lifecycle::{LAST_ERROR_MAX_CHARS, check_lease, cut, limit_arg};
use super::monitor_rows::{parse_date, to_u32};
use super::monitors::{NEVER, PendingAction};

macro_rules! claim_actions_sql {
    ($lock:literal) => {
        concat!(
            "SELECT id, monitor_id, robot_id, rule_id, session_date, window_number, \
             reference_id, event_name, level, window_end, attempts \
             FROM status_check_monitor_action \
             WHERE sent_at IS NULL AND next_attempt_at <= ? \
               AND (lock_id IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_ACTIONS: PerDialect = PerDialect {
    mysql: claim_actions_sql!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim_actions_sql!(""),
};

const LEASE_ACTION: &str =
    "UPDATE status_check_monitor_action SET lock_id = ?, locked_until = ? WHERE id = ?";

const ACTION_SENT: &str = "UPDATE status_check_monitor_action \
     SET sent_at = ?, lock_id = NULL, locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

const ACTION_FAILED: &str = "UPDATE status_check_monitor_action \
     SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lock_id = NULL, \
         locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

const ACTION_BACKLOG: &str = "SELECT COUNT(*) AS backlog FROM status_check_monitor_action \
     WHERE sent_at IS NULL AND next_attempt_at < ?";

const SENT_ACTIONS_BEFORE: &str = "SELECT id FROM status_check_monitor_action \
     WHERE sent_at IS NOT NULL AND sent_at < ? ORDER BY sent_at LIMIT ?";

const DELETE_ACTION: &str = "DELETE FROM status_check_monitor_action WHERE id = ?";

pub(super) async fn claim<D: Db>(
    db: &D,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<PendingAction>, StoreError> {
    check_lease(lease)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let now = millis(now);
    retrying!(db, tx => async {
        let rows = tx
            .fetch_all(db.sql(&CLAIM_ACTIONS), args![now, now, limit_arg(limit)])
            .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let id = row.int("id")?;
            let level = row.opt_int("level")?;
            claimed.push(PendingAction {
                id,
                monitor_id: row.int("monitor_id")?,
                robot_id: row.int("robot_id")?,
                rule_id: row.text("rule_id")?,
                session_date: parse_date(&row.text("session_date")?)?,
                window_number: to_u32(row.int("window_number")?, "window_number")?,
                reference_id: row.text("reference_id")?,
                event_name: row.text("event_name")?,
                level: level
                    .map(|level| {
                        u8::try_from(level)
                            .map_err(|_| corrupt(format!("monitor action {id}: level {level}")))
                    })
                    .transpose()?,
                window_end: row.time("window_end")?,
                attempts: to_u32(row.int("attempts")?, "attempts")?,
            });
            tx.execute(LEASE_ACTION, args![lease, millis(lease_until), id])
                .await?;
        }
        Ok(Step::Commit(claimed))
    }
    .await)
}

pub(super) async fn sent<D: Db>(
    db: &D,
    id: i64,
    lease: &str,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let args = args![millis(now), id, lease];
    retrying!(db, tx => tx
        .execute(ACTION_SENT, args.clone())
        .await
        .map(|done| Step::Commit(done.rows_affected > 0)))
}

pub(super) async fn failed<D: Db>(
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
        .execute(ACTION_FAILED, args.clone())
        .await
        .map(|done| Step::Commit(done.rows_affected > 0)))
}

pub(super) async fn backlog<D: Db>(db: &D) -> Result<i64, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx.fetch_optional(ACTION_BACKLOG, args![NEVER]).await?;
    tx.commit().await?;
    match row {
        Some(row) => row.int("backlog"),
        None => Ok(0),
    }
}

pub(super) async fn purge_sent<D: Db>(
    db: &D,
    sent_before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    retrying!(db, tx => async {
        let ids = tx
            .fetch_all(SENT_ACTIONS_BEFORE, args![millis(sent_before), limit_arg(limit)])
            .await?
            .iter()
            .map(|row| row.int("id"))
            .collect::<Result<Vec<_>, _>>()?;
        for &id in &ids {
            tx.execute(DELETE_ACTION, args![id]).await?;
        }
        Ok(Step::Commit(ids.len() as u64))
    }
    .await)
}
