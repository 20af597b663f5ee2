//! Reads for the support pages (SPEC §15): recent checks by filter, a check's notifications
//! (the outbox rows the relay has not purged yet), a monitor session's alarms. Read-only,
//! one short read transaction each.

use chrono::{DateTime, Utc};

use super::db::{Db, SqlRow, args, bounded, read_all};
use super::monitor_rows::{date_text, to_u32};
use super::{NEVER, StoreError};

/// Filters of the list of checks; every one optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckFilter {
    pub robot_id: Option<i64>,
    /// The template's name.
    pub template: Option<String>,
    /// `PENDING`, `PASS`, `FAIL` or `UNKNOWN`.
    pub result: Option<String>,
    /// Created at or after.
    pub created_from: Option<DateTime<Utc>>,
    /// Created before.
    pub created_before: Option<DateTime<Utc>>,
    /// Only ids below this one: the next page of a list, newest first.
    pub before_id: Option<i64>,
}

/// One line of the list of checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSummary {
    pub id: i64,
    pub robot_id: i64,
    pub template_name: String,
    pub template_version: i64,
    pub phase: String,
    pub result: String,
    pub next_step_id: Option<i64>,
    pub planned_at: DateTime<Utc>,
    pub created_at: Option<DateTime<Utc>>,
}

/// A robot notification as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredNotification {
    pub seq: i64,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// The message as sent (SPEC §3.7).
    pub payload: String,
    /// Sends tried so far, and the last one's error.
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Dead-lettered: it failed too often and will never be sent (SPEC §13).
    pub given_up: bool,
}

/// An alarm of a monitor's session, from the actions outbox (one per window and action).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAlarm {
    pub window_number: u32,
    pub action_index: i64,
    pub reference_id: String,
    pub event_name: String,
    /// The window end that decided it.
    pub window_end: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

macro_rules! list_checks {
    ($robot:literal) => {
        concat!(
            "SELECT sc.id AS id, sc.robot_id AS robot_id, d.name AS template_name, \
             t.version AS template_version, sc.phase AS phase, sc.result AS result, \
             sc.next_step_id AS next_step_id, sc.planned_at AS planned_at, \
             sc.created_at AS created_at \
             FROM status_check sc \
             JOIN status_check_template t ON t.id = sc.status_check_template_id \
             JOIN status_check_description d ON d.id = t.template_description_id \
             WHERE ",
            $robot,
            "(? IS NULL OR d.name = ?) AND (? IS NULL OR COALESCE(sc.result, 'PENDING') = ?) \
             AND (? IS NULL OR sc.created_at >= ?) AND (? IS NULL OR sc.created_at < ?) \
             AND (? IS NULL OR sc.id < ?) \
             ORDER BY sc.id DESC LIMIT ?"
        )
    };
}

/// With a robot: through the robot's index (production's
/// `idx_status_check_result_template_robot_id` on MySQL); without: down the primary key.
const LIST_CHECKS_OF_ROBOT: &str = list_checks!("sc.robot_id = ? AND ");
const LIST_CHECKS: &str = list_checks!("");

const NOTIFICATIONS: &str = "SELECT seq, created_at, sent_at, payload, attempts, last_error, \
     next_attempt_at FROM status_check_outbox WHERE status_check_id = ? ORDER BY seq";

const ALARMS: &str = "SELECT window_number, action_index, reference_id, event_name, window_end, \
     sent_at FROM status_check_monitor_action \
     WHERE robot_id = ? AND rule_id = ? AND session_date = ? \
     ORDER BY window_number, action_index";

/// What the support pages list: checks, a check's notifications, a session's alarms. Part of
/// [`Store`](super::Store); implemented once, below, for every backend, each operation bounded
/// by the backend's operation timeout.
#[async_trait::async_trait]
pub trait TimelineReads: Send + Sync {
    /// Checks newest first (by id), filtered, at most `limit` (the support pages' list).
    async fn list_checks(
        &self,
        filter: &CheckFilter,
        limit: usize,
    ) -> Result<Vec<CheckSummary>, StoreError>;

    /// The notifications of a check the outbox still holds (sent ones are purged after the
    /// retention), by sequence number.
    async fn check_notifications(
        &self,
        check_id: i64,
    ) -> Result<Vec<StoredNotification>, StoreError>;

    /// The alarms of a monitor's session (one row per window and action), by window.
    async fn session_alarms(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: chrono::NaiveDate,
    ) -> Result<Vec<StoredAlarm>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> TimelineReads for B {
    async fn list_checks(
        &self,
        filter: &CheckFilter,
        limit: usize,
    ) -> Result<Vec<CheckSummary>, StoreError> {
        let db = self;
        bounded(db, "list_checks", async {
            let limit = super::db::limit_arg(limit);
            let f = filter;
            let mut shared = args![
                f.template.clone(),
                f.template.clone(),
                f.result.clone(),
                f.result.clone(),
                f.created_from,
                f.created_from,
                f.created_before,
                f.created_before,
                f.before_id,
                f.before_id,
                limit
            ];
            let (sql, arguments) = match f.robot_id {
                Some(robot) => {
                    let mut arguments = args![robot];
                    arguments.append(&mut shared);
                    (LIST_CHECKS_OF_ROBOT, arguments)
                }
                None => (LIST_CHECKS, shared),
            };
            read_all(db, sql, arguments, summary_of).await
        })
        .await
    }

    async fn check_notifications(
        &self,
        check_id: i64,
    ) -> Result<Vec<StoredNotification>, StoreError> {
        bounded(self, "check_notifications", async {
            read_all(self, NOTIFICATIONS, args![check_id], notification_of).await
        })
        .await
    }

    async fn session_alarms(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: chrono::NaiveDate,
    ) -> Result<Vec<StoredAlarm>, StoreError> {
        bounded(self, "session_alarms", async {
            let args = args![robot_id, rule_id, date_text(session_date)];
            read_all(self, ALARMS, args, alarm_of).await
        })
        .await
    }
}

fn summary_of<R: SqlRow>(row: &R) -> Result<CheckSummary, StoreError> {
    Ok(CheckSummary {
        id: row.int("id")?,
        robot_id: row.int("robot_id")?,
        template_name: row.text("template_name")?,
        template_version: row.int("template_version")?,
        phase: row.text("phase")?,
        result: row
            .opt_text("result")?
            .unwrap_or_else(|| "PENDING".to_owned()),
        next_step_id: row.opt_int("next_step_id")?,
        planned_at: row.time("planned_at")?,
        created_at: row.opt_time("created_at")?,
    })
}

fn notification_of<R: SqlRow>(row: &R) -> Result<StoredNotification, StoreError> {
    let sent_at = row.opt_time("sent_at")?;
    Ok(StoredNotification {
        seq: row.int("seq")?,
        created_at: row.time("created_at")?,
        sent_at,
        payload: row.text("payload")?,
        attempts: row.int("attempts")?,
        last_error: row.opt_text("last_error")?,
        given_up: sent_at.is_none() && row.time("next_attempt_at")? >= NEVER,
    })
}

fn alarm_of<R: SqlRow>(row: &R) -> Result<StoredAlarm, StoreError> {
    Ok(StoredAlarm {
        window_number: to_u32(row.int("window_number")?, "window_number")?,
        action_index: row.int("action_index")?,
        reference_id: row.text("reference_id")?,
        event_name: row.text("event_name")?,
        window_end: row.time("window_end")?,
        sent_at: row.opt_time("sent_at")?,
    })
}
