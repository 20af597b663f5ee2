//! Adopting a check the Node service wrote (SPEC §6.1): listing the open ones without this
//! service's row, and writing that row — window from the poller, next steps given, deadline —
//! under the check's lock.

use chrono::{DateTime, Utc};
use status_check_engine::CheckPhase;
use status_check_engine::lifecycle::NextSteps;

use super::Adopted;
use super::StoreError;
use super::check_reads::node_windows;
use super::checks::{INSERT_CHECK_EXT, INSERT_POLLER, parse, poller_bounds};
use super::db::bounded;
use super::db::{Db, SqlRow, Step, Tx, args, millis, read_all, retrying, seconds_floor};

const SELECT_UNADOPTED: &str = "SELECT sc.id AS id FROM status_check sc \
     LEFT JOIN status_check_ext e ON e.status_check_id = sc.id \
     WHERE sc.id > ? AND e.status_check_id IS NULL \
       AND sc.phase NOT IN ('COMPLETED', 'FAILED') \
     ORDER BY sc.id LIMIT ?";

const NEWEST_CHECK: &str = "SELECT id FROM status_check ORDER BY id DESC LIMIT 1";

/// What adoption reads of a check, under its row lock.
const SELECT_ADOPTION_ROW: &str = "SELECT sc.robot_id AS robot_id, sc.step_id AS step_id, \
     sc.scheduled_id AS scheduled_id, sc.phase AS phase, sc.planned_at AS planned_at, \
     sc.created_at AS created_at, p.status_check_id AS poller_id, p.since AS since, \
     p.`until` AS poller_until, p.lock_id AS lock_id, e.status_check_id AS ext_id \
     FROM status_check sc \
     LEFT JOIN status_check_poller p ON p.status_check_id = sc.id \
     LEFT JOIN status_check_ext e ON e.status_check_id = sc.id \
     WHERE sc.id = ?";

/// In the lock order of every change of a check: status_check, poller, ext.
async fn adopt_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    id: i64,
    next_steps: NextSteps,
    now: DateTime<Utc>,
) -> Result<Step<Adopted>, StoreError> {
    if tx
        .fetch_optional(db.sql(&super::lifecycle::LOCK_CHECK), args![id])
        .await?
        .is_none()
    {
        return Ok(Step::Rollback(Adopted::NotFound));
    }
    tx.fetch_optional(db.sql(&super::lifecycle::LOCK_POLLER), args![id])
        .await?;
    let Some(row) = tx.fetch_optional(SELECT_ADOPTION_ROW, args![id]).await? else {
        return Ok(Step::Rollback(Adopted::NotFound));
    };
    let phase: CheckPhase = parse(&row.text("phase")?, || format!("status_check {id}: phase"))?;
    if row.opt_int("ext_id")?.is_some() || phase.is_final() {
        return Ok(Step::Rollback(Adopted::NotNeeded));
    }
    let planned_at = row.time("planned_at")?;
    let anchor = row.opt_time("created_at")?.unwrap_or(planned_at);
    let since = row.opt_time("since")?;
    let until = row.opt_time("poller_until")?;
    let windows = node_windows(anchor, since, until);
    let now_ms = millis(now);
    // Without an `until` nothing says when it ends: it is due now, decided on what it has.
    let deadline = until.map_or(now_ms, millis);
    // A lock the Node service left behind is held like a lease taken now: released after the
    // stale window, so a Node replica still finishing it is not raced.
    let lease_taken_at = row.opt_text("lock_id")?.map(|_| now_ms);
    tx.execute(
        INSERT_CHECK_EXT,
        args![
            id,
            row.int("robot_id")?,
            row.int("step_id")?,
            row.int("scheduled_id")?,
            None::<DateTime<Utc>>,
            millis(anchor),
            windows.past_seconds,
            windows.future_seconds,
            next_steps.pass,
            next_steps.fail,
            next_steps.unknown,
            now_ms,
            now_ms,
            Some(deadline),
            lease_taken_at,
            Some(now_ms),
        ],
    )
    .await?;
    if row.opt_int("poller_id")?.is_none() {
        let now_seconds = seconds_floor(now);
        let (since, until) = poller_bounds(&windows);
        tx.execute(
            INSERT_POLLER,
            args![id, since, until, now_seconds, now_seconds],
        )
        .await?;
    }
    Ok(Step::Commit(Adopted::Now { deadline }))
}

/// The Node service's open checks (SPEC §6.1), found and adopted. Part of
/// [`Store`](super::Store); implemented once, below, for every backend, each operation bounded
/// by the backend's operation timeout.
#[async_trait::async_trait]
pub trait AdoptionStore: Send + Sync {
    /// Checks the Node service wrote that are still open and not adopted, with an id above
    /// `after`, in id order (a pass over the primary key, in batches of `limit`).
    async fn unadopted_checks(&self, after: i64, limit: usize) -> Result<Vec<i64>, StoreError>;

    /// The highest check id there is (0: none), either service's.
    async fn newest_check_id(&self) -> Result<i64, StoreError>;

    /// Adopts a check the Node service wrote (SPEC §6.1): under its row lock, when it is
    /// still open and has no `status_check_ext` row, writes one — the window from its poller
    /// (anchor = `status_check.created_at`), `next_steps`, and the deadline = the poller's
    /// `until` (`now` without one). A poller lock the Node service left counts as a lease
    /// taken `now`, released after the stale window like any other.
    async fn adopt_check(
        &self,
        id: i64,
        next_steps: NextSteps,
        now: DateTime<Utc>,
    ) -> Result<Adopted, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> AdoptionStore for B {
    async fn unadopted_checks(&self, after: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
        let db = self;
        bounded(db, "unadopted_checks", async {
            let limit = super::db::limit_arg(limit);
            read_all(db, SELECT_UNADOPTED, args![after, limit], |row| {
                row.int("id")
            })
            .await
        })
        .await
    }

    async fn newest_check_id(&self) -> Result<i64, StoreError> {
        let db = self;
        bounded(db, "newest_check_id", async {
            let ids = read_all(db, NEWEST_CHECK, args![], |row| row.int("id")).await?;
            Ok(ids.first().copied().unwrap_or(0))
        })
        .await
    }

    async fn adopt_check(
        &self,
        id: i64,
        next_steps: status_check_engine::lifecycle::NextSteps,
        now: DateTime<Utc>,
    ) -> Result<crate::store::Adopted, StoreError> {
        retrying!(self, "adopt_check", tx => adopt_in(self, &mut tx, id, next_steps, now).await)
    }
}
