//! For the SQLite driver benchmark (`cargo bench -p status-check --bench sqlite_driver`):
//! the write unit of a delivery — what `update_check` runs for a decision that appends one
//! record and notifies the robot — through a backend's `Db` seam (`store::seam`), several
//! units per transaction if asked. Bench code, kept out of the library; the statements are the
//! store's own (`store::sql`), so the unit follows the service's SQL.

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use status_check::store::StoreError;
use status_check::store::seam::{Arg, Db, Mode, SqlRow, Tx, millis, seconds_floor};
use status_check::store::sql::{
    INSERT_CHECK, INSERT_CHECK_EXT, INSERT_OUTBOX, INSERT_POLLER, INSERT_RECORD,
    INSERT_RECORD_EVENT, LOCK_CHECK_SQLITE, LOCK_POLLER_SQLITE, UPDATE_CHECK_STATE,
    UPDATE_EXT_STATE,
};

/// `args![a, b, c]`: the bound values of one statement (the store's macro, for the seam).
macro_rules! args {
    ($($value:expr),* $(,)?) => {
        vec![$(Arg::from($value)),*]
    };
}

/// A check's reads under its lock, as SQLite runs them: the store's per-check locking reads
/// (store/lifecycle.rs), and the last record's `order` (which the store reads for a whole
/// batch in one statement).
pub const SELECT_CHECK: &str = LOCK_CHECK_SQLITE;
pub const SELECT_POLLER: &str = LOCK_POLLER_SQLITE;
pub const SELECT_LAST_ORDER: &str =
    "SELECT MAX(`order`) AS last_order FROM status_check_record WHERE status_check_id = ?";

/// A backend the benchmark drives.
#[async_trait]
pub trait WriteUnits: Send + Sync {
    /// Inserts a template and `count` open checks (large transactions; set-up); their ids.
    async fn seed_checks(&self, count: usize) -> Result<Vec<i64>, StoreError>;

    /// One delivery unit for each check, `per_transaction` units per transaction. `round`
    /// (1, 2, …) numbers the pass: a check gets its `round`th record and notification.
    async fn write_units(
        &self,
        checks: &[i64],
        per_transaction: usize,
        round: i64,
        payload: &str,
    ) -> Result<(), StoreError>;
}

#[async_trait]
impl<D: Db + 'static> WriteUnits for D {
    async fn seed_checks(&self, count: usize) -> Result<Vec<i64>, StoreError> {
        seed(self, count).await
    }

    async fn write_units(
        &self,
        checks: &[i64],
        per_transaction: usize,
        round: i64,
        payload: &str,
    ) -> Result<(), StoreError> {
        for group in checks.chunks(per_transaction.max(1)) {
            let mut tx = self.begin(Mode::Write).await?;
            for &id in group {
                unit(&mut tx, id, round, payload, Utc::now()).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

async fn seed<D: Db>(db: &D, count: usize) -> Result<Vec<i64>, StoreError> {
    let mut tx = db.begin(Mode::Write).await?;
    let description = tx
        .execute(
            "INSERT INTO status_check_description (name, description) VALUES ('bench', '')",
            args![],
        )
        .await?
        .last_insert_id;
    let template = tx
        .execute(
            "INSERT INTO status_check_template (template_description_id, \
             past_event_dependencies, future_event_dependencies) VALUES (?, '[]', '[]')",
            args![description],
        )
        .await?
        .last_insert_id;
    let now = Utc::now();
    let (now_ms, now_s) = (millis(now), seconds_floor(now));
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let (robot, scheduled) = (1 + (n % 64) as i64, n as i64);
        let id = tx
            .execute(
                INSERT_CHECK,
                args![
                    robot,
                    template,
                    "FUTURE",
                    Some(70_000_000 + scheduled),
                    Some("PENDING".to_owned()),
                    103_i64,
                    None::<i64>,
                    1_i64,
                    scheduled,
                    now_s,
                    now_s,
                    now_s
                ],
            )
            .await?
            .last_insert_id;
        let deadline: DateTime<Utc> = now_ms + TimeDelta::hours(1);
        tx.execute(
            INSERT_CHECK_EXT,
            args![
                id,
                robot,
                103_i64,
                scheduled,
                Some(now_ms),
                now_ms,
                3600_i64,
                3600_i64,
                Some(1031_i64),
                Some(1032_i64),
                Some(1033_i64),
                now_ms,
                now_ms,
                Some(deadline),
                None::<DateTime<Utc>>,
                None::<DateTime<Utc>>
            ],
        )
        .await?;
        tx.execute(
            INSERT_POLLER,
            args![
                id,
                Some(now_s - TimeDelta::hours(1)),
                Some(seconds_floor(deadline) + TimeDelta::seconds(1)),
                now_s,
                now_s
            ],
        )
        .await?;
        ids.push(id);
    }
    tx.commit().await?;
    Ok(ids)
}

/// `update_in` (store/lifecycle.rs) for a delivery: the three reads under the lock, the
/// check's and its ext row's state, one record with its event row, one outbox row.
async fn unit<T: Tx>(
    tx: &mut T,
    id: i64,
    round: i64,
    payload: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    tx.fetch_optional(SELECT_CHECK, args![id]).await?;
    tx.fetch_optional(SELECT_POLLER, args![id]).await?;
    let order = tx
        .fetch_optional(SELECT_LAST_ORDER, args![id])
        .await?
        .map(|row| row.opt_int("last_order"))
        .transpose()?
        .flatten()
        .unwrap_or(0)
        + 1;
    let (now_ms, now_s) = (millis(now), seconds_floor(now));
    tx.execute(
        UPDATE_CHECK_STATE,
        args!["FUTURE", Some("PENDING".to_owned()), None::<i64>, now_s, id],
    )
    .await?;
    tx.execute(
        UPDATE_EXT_STATE,
        args![round, Some(now_ms + TimeDelta::hours(1)), false, now_ms, id],
    )
    .await?;
    let event = round * 10_000_000 + id;
    let record = tx
        .execute(
            INSERT_RECORD,
            args![
                id,
                Some(event),
                None::<i64>,
                "CHARGING_STARTED",
                order,
                "FUTURE",
                "PENDING",
                now_s
            ],
        )
        .await?
        .last_insert_id;
    tx.execute(
        INSERT_RECORD_EVENT,
        args![record, "FUTURE", id, event, now_ms, 1_i64, None::<String>],
    )
    .await?;
    tx.execute(
        INSERT_OUTBOX,
        args![id, 1 + id % 64, round, payload, "bench", now_ms, now_ms],
    )
    .await?;
    Ok(())
}
