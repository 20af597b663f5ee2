//! Monitors' storage (SPEC §12), in this service's own tables (migrations 0006, 0009): the
//! monitors, the running state of each (its open session and window, the session's
//! subscription, when the worker is due, the worker's lease), the actions outbox (alarms to
//! post) and the sessions' history (each window and how it ended).
//!
//! Every state write is a compare-and-set on `state_version` (and, for the worker, on its
//! lease): whoever decided on an older state writes nothing and decides again. The write, the
//! alarms it decided and the removal of a session's subscription are one transaction.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use status_check_engine::monitor::{AlarmRequest, Monitor, WindowState};

use super::NEVER;
use super::StoreError;
use super::checks::corrupt;
use super::db::limit_arg;
use super::db::{Arg, Db, SqlRow, Step, Tx, args, bounded, millis, read_all, retrying};
use super::monitor_windows::{self, WindowRecord};
use super::removals::queue_in;
use crate::jobs::Lease;

/// Who last wrote a monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorSource {
    /// `MONITORS_FILE` / `TOILET_MONITORING_CONFIG`, synced at start.
    File,
    /// The internal API.
    Api,
}

impl MonitorSource {
    pub fn as_str(self) -> &'static str {
        match self {
            MonitorSource::File => "file",
            MonitorSource::Api => "api",
        }
    }

    pub(super) fn parse(text: &str) -> Result<MonitorSource, StoreError> {
        match text {
            "file" => Ok(MonitorSource::File),
            "api" => Ok(MonitorSource::Api),
            other => Err(corrupt(format!("monitor source {other:?}"))),
        }
    }
}

/// The running state of a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorState {
    /// The open session's window; `None` when no session is open.
    pub window: Option<WindowState>,
    /// The open session's Megazord subscription.
    pub subscription_id: Option<i64>,
    /// When the worker must act next (see [`NEVER`] for a disabled monitor).
    pub due_at: DateTime<Utc>,
    /// The worker's lease.
    pub lock_id: Option<String>,
    pub locked_at: Option<DateTime<Utc>>,
    /// Grows with every write; a write names the version it was decided on.
    pub version: i64,
    /// Why the session cannot be opened (e.g. Megazord knows no event schema of the watched
    /// name); `None` once a decision was written, or when nothing is wrong.
    pub problem: Option<String>,
}

/// A monitor as stored, with its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMonitor {
    pub id: i64,
    pub monitor: Monitor,
    pub source: MonitorSource,
    /// 1 when created, + 1 at every change.
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub state: MonitorState,
}

/// What `put_monitor` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorPut {
    Created(StoredMonitor),
    /// Changed; a session that watched something else (another event type, timezone or daily
    /// times), or of a monitor now disabled, was ended and its subscription queued for
    /// removal.
    Replaced(StoredMonitor),
    /// The same definition and source were stored already: nothing written.
    Unchanged(StoredMonitor),
}

/// One alarm a window's end decided, for the actions outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAction {
    pub session_date: NaiveDate,
    pub window_number: u32,
    pub window_end: DateTime<Utc>,
    pub alarm: AlarmRequest,
}

/// What a decision on a monitor's state writes, in one transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// The open window after the decision; `None` when no session is open.
    pub window: Option<WindowState>,
    pub subscription_id: Option<i64>,
    pub due_at: DateTime<Utc>,
    /// Clear the worker's lease.
    pub release_lease: bool,
    /// Alarms to post (one row each; a row already there for its reference and action is
    /// left alone).
    pub actions: Vec<NewAction>,
    /// A subscription to queue for removal (its session ended), with the reason.
    pub remove_subscription: Option<(i64, &'static str)>,
    /// The session's history: the spans that ended (a row already there for the same window
    /// start gets its end) and the window opened.
    pub windows: Vec<WindowRecord>,
}

/// An alarm to post (a job of `Alarms`): the action a window's end decided, of its monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingAction {
    pub monitor_id: i64,
    pub robot_id: i64,
    pub rule_id: String,
    pub action: NewAction,
}

/// Monitors' storage; every [`Store`](super::Store) is one. Every operation is bounded by
/// the backend's operation timeout (`DB_OPERATION_TIMEOUT_SECS`), as `Store`'s are.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Creates or replaces the monitor `(robot, rule)`, in one transaction under its row. A
    /// new enabled monitor is due at once (its session opens then). A replaced one keeps its
    /// open session unless it is now disabled (due never) or watches something else (due at
    /// once, to open a new session); an ended session's subscription is queued for removal
    /// (`monitor_disabled`, `monitor_changed`). A changed window length alone applies from the
    /// next window.
    async fn put_monitor(
        &self,
        monitor: &Monitor,
        source: MonitorSource,
        now: DateTime<Utc>,
    ) -> Result<MonitorPut, StoreError>;

    async fn get_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
    ) -> Result<Option<StoredMonitor>, StoreError>;

    /// Every monitor, by robot and rule.
    async fn list_monitors(&self) -> Result<Vec<StoredMonitor>, StoreError>;

    /// Deletes the monitor and its state, queueing its session's subscription for removal
    /// (`monitor_deleted`); the alarms already decided stay in the outbox and are sent.
    async fn delete_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredMonitor>, StoreError>;

    /// Claims up to `limit` monitors due at `now` whose state holds no lease (or one taken
    /// before `stale_before`), leasing them to `lease`; earliest due first. MySQL: `FOR
    /// UPDATE SKIP LOCKED` over the due index; SQLite: one writer at a time. Concurrent
    /// claimers get disjoint sets.
    async fn claim_due_monitors(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredMonitor>, StoreError>;

    /// The monitor whose open session holds this subscription of this robot.
    async fn find_monitor_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredMonitor>, StoreError>;

    /// Writes a decision made on `current`: only while its state is still at
    /// `current.state.version` and — with a `lease` — held by that lease; then the actions
    /// and the subscription removal, in one transaction. Whether it was written (`false`:
    /// another write came first, or the lease is gone; nothing written).
    async fn write_monitor_state(
        &self,
        current: &StoredMonitor,
        lease: Option<&Lease>,
        change: &StateChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// Frees the lease without a decision (e.g. Megazord failed), due again at `due_at`,
    /// noting what is wrong (`problem`; `None`: nothing); whether the lease was still held.
    async fn release_monitor(
        &self,
        monitor_id: i64,
        lease: &Lease,
        due_at: DateTime<Utc>,
        problem: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The highest window number with an alarm in the session of `session_date` (0: none):
    /// a session opened again the same day numbers its windows on from there.
    async fn last_alarm_number(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<u32, StoreError>;

    /// The history of the monitor's session of `session_date`: every window span kept, in
    /// time order (a session reopened that day — the monitor changed — shows both).
    async fn monitor_windows(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<Vec<WindowRecord>, StoreError>;

    /// Deletes up to `limit` window spans that ended before `ended_before`; how many.
    async fn purge_monitor_windows(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

use super::monitor_rows::*;

#[async_trait]
impl<B: Db + 'static> MonitorStore for B {
    async fn put_monitor(
        &self,
        monitor: &Monitor,
        source: MonitorSource,
        now: DateTime<Utc>,
    ) -> Result<MonitorPut, StoreError> {
        let definition = canonical_json(monitor)?;
        let now = millis(now);
        let robot_id = monitor.robot_id();
        let rule_id = monitor.rule_id().as_str();
        retrying!(self, "put_monitor", tx => async {
            let locked = tx
                .fetch_optional(self.sql(&LOCK_MONITOR), args![robot_id, rule_id])
                .await?;
            let Some(locked) = locked else {
                let done = tx
                    .execute(
                        INSERT_MONITOR,
                        args![robot_id, rule_id, definition.clone(), monitor.enabled(),
                              source.as_str(), now, now],
                    )
                    .await?;
                let due = if monitor.enabled() { now } else { NEVER };
                tx.execute(INSERT_STATE, args![done.last_insert_id, due, now]).await?;
                let created = read_one(&mut tx, SELECT_BY_ID, args![done.last_insert_id]).await?;
                let created = created.ok_or_else(|| corrupt("a new monitor vanished".to_owned()))?;
                return Ok(Step::Commit(MonitorPut::Created(created)));
            };
            let id = locked.int("id")?;
            let before = read_one(&mut tx, SELECT_BY_ID, args![id])
                .await?
                .ok_or_else(|| corrupt(format!("status_check_monitor {id} has no state")))?;
            if before.monitor == *monitor && before.source == source {
                return Ok(Step::Rollback(MonitorPut::Unchanged(before)));
            }
            tx.execute(
                UPDATE_MONITOR,
                args![definition.clone(), monitor.enabled(), source.as_str(), now, id],
            )
            .await?;
            let was = before.monitor.enabled();
            let reason = if !monitor.enabled() && was {
                Some(("monitor_disabled", NEVER))
            } else if monitor.enabled() && (!was || !before.monitor.watches_as(monitor)) {
                Some(("monitor_changed", now))
            } else {
                None
            };
            if let Some((reason, due)) = reason {
                tx.execute(RESET_STATE, args![due, now, id]).await?;
                monitor_windows::stop_in(&mut tx, robot_id, rule_id, now).await?;
                if let Some(subscription) = before.state.subscription_id {
                    queue_in(self, &mut tx, robot_id, subscription, reason, now).await?;
                }
            }
            let after = read_one(&mut tx, SELECT_BY_ID, args![id])
                .await?
                .ok_or_else(|| corrupt(format!("status_check_monitor {id} vanished")))?;
            Ok(Step::Commit(MonitorPut::Replaced(after)))
        }
        .await)
    }

    async fn get_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        bounded(self, "get_monitor", async {
            let args = args![robot_id, rule_id];
            Ok(read_all(self, SELECT_BY_KEY, args, monitor_of).await?.pop())
        })
        .await
    }

    async fn list_monitors(&self) -> Result<Vec<StoredMonitor>, StoreError> {
        bounded(self, "list_monitors", async {
            read_all(self, SELECT_ALL, args![], monitor_of).await
        })
        .await
    }

    async fn delete_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        let now = millis(now);
        retrying!(self, "delete_monitor", tx => async {
            if tx
                .fetch_optional(self.sql(&LOCK_MONITOR), args![robot_id, rule_id])
                .await?
                .is_none()
            {
                return Ok(Step::Rollback(None));
            }
            let Some(stored) = read_one(&mut tx, SELECT_BY_KEY, args![robot_id, rule_id]).await?
            else {
                return Ok(Step::Rollback(None));
            };
            if let Some(subscription) = stored.state.subscription_id {
                queue_in(self, &mut tx, robot_id, subscription, "monitor_deleted", now).await?;
            }
            monitor_windows::stop_in(&mut tx, robot_id, rule_id, now).await?;
            tx.execute(DELETE_STATE, args![stored.id]).await?;
            tx.execute(DELETE_MONITOR, args![stored.id]).await?;
            Ok(Step::Commit(Some(stored)))
        }
        .await)
    }

    async fn claim_due_monitors(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredMonitor>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let now = millis(now);
        retrying!(self, "claim_due_monitors", tx => async {
            let ids = tx
                .fetch_all(
                    self.sql(&CLAIM_MONITORS),
                    args![now, millis(stale_before), limit_arg(limit)],
                )
                .await?
                .iter()
                .map(|row| row.int("monitor_id"))
                .collect::<Result<Vec<_>, _>>()?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                tx.execute(LEASE_MONITOR, args![lease.as_str(), now, id]).await?;
                if let Some(monitor) = read_one(&mut tx, SELECT_BY_ID, args![id]).await? {
                    claimed.push(monitor);
                }
            }
            Ok(Step::Commit(claimed))
        }
        .await)
    }

    async fn find_monitor_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        bounded(self, "find_monitor_by_subscription", async {
            let args = args![subscription_id, robot_id];
            Ok(read_all(self, SELECT_BY_SUBSCRIPTION, args, monitor_of)
                .await?
                .pop())
        })
        .await
    }

    async fn write_monitor_state(
        &self,
        current: &StoredMonitor,
        lease: Option<&Lease>,
        change: &StateChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let now = millis(now);
        let window = change.window.as_ref();
        let mut state_args = args![
            window.map(|w| date_text(w.session_date)),
            window.map(|w| millis(w.session_end)),
            window.map(|w| i64::from(w.window_number)),
            window.map(|w| millis(w.window_start)),
            window.map(|w| millis(w.window_end)),
            window.map(|w| i64::from(w.window_length.as_seconds())),
            change.subscription_id,
            millis(change.due_at),
            change.release_lease,
            change.release_lease,
            now,
            current.id,
            current.state.version,
        ];
        let sql = match lease {
            Some(lease) => {
                state_args.push(Arg::from(lease.as_str()));
                WRITE_STATE_LEASED
            }
            None => WRITE_STATE,
        };
        let robot_id = current.monitor.robot_id();
        let rule_id = current.monitor.rule_id().as_str();
        retrying!(self, "write_monitor_state", tx => async {
            let done = tx.execute(sql, state_args.clone()).await?;
            if done.rows_affected == 0 {
                return Ok(Step::Rollback(false));
            }
            for action in &change.actions {
                tx.execute(
                    self.sql(&INSERT_ACTION),
                    args![
                        current.id,
                        robot_id,
                        rule_id,
                        date_text(action.session_date),
                        action.window_number,
                        i64::try_from(action.alarm.action_index).unwrap_or(i64::MAX),
                        action.alarm.reference_id.clone(),
                        action.alarm.event_name.clone(),
                        action.alarm.level.map(i64::from),
                        millis(action.window_end),
                        now,
                        now,
                    ],
                )
                .await?;
            }
            if let Some((subscription, reason)) = change.remove_subscription {
                queue_in(self, &mut tx, robot_id, subscription, reason, now).await?;
            }
            monitor_windows::write_in(self, &mut tx, robot_id, rule_id, &change.windows, now)
                .await?;
            Ok(Step::Commit(true))
        }
        .await)
    }

    async fn release_monitor(
        &self,
        monitor_id: i64,
        lease: &Lease,
        due_at: DateTime<Utc>,
        problem: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let problem = problem.map(|p| super::db::cut(p, super::db::LAST_ERROR_MAX_CHARS));
        let args = args![
            millis(due_at),
            problem,
            millis(now),
            monitor_id,
            lease.as_str()
        ];
        retrying!(self, "release_monitor", tx => tx
            .execute(RELEASE_MONITOR, args.clone())
            .await
            .map(|done| Step::Commit(done.rows_affected > 0)))
    }

    async fn last_alarm_number(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<u32, StoreError> {
        bounded(self, "last_alarm_number", async {
            let args = args![robot_id, rule_id, date_text(session_date)];
            let mut last = read_all(self, LAST_ALARM, args, |row| row.opt_int("last")).await?;
            to_u32(last.pop().flatten().unwrap_or(0), "window_number")
        })
        .await
    }

    async fn monitor_windows(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<Vec<WindowRecord>, StoreError> {
        bounded(
            self,
            "monitor_windows",
            monitor_windows::session(self, robot_id, rule_id, session_date),
        )
        .await
    }

    async fn purge_monitor_windows(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        bounded(
            self,
            "purge_monitor_windows",
            monitor_windows::purge(self, ended_before, limit),
        )
        .await
    }
}
