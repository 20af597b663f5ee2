//! The rows of monitors and their state: the SQL (the same text in both dialects, but the
//! locking reads) and the mapping to [`StoredMonitor`].

use chrono::NaiveDate;
use status_check_engine::monitor::{Monitor, MonitorDefinition, WindowLength, WindowState};

use super::StoreError;
use super::checks::corrupt;
use super::db::{Arg, PerDialect, SqlRow, Tx};
use super::monitors::{MonitorSource, MonitorState, StoredMonitor};

macro_rules! select_monitor {
    ($tail:literal) => {
        concat!(
            "SELECT m.id, m.robot_id, m.rule_id, m.definition, m.source, m.version, \
             m.created_at, m.updated_at, s.session_date, s.session_end, s.window_number, \
             s.window_start, s.window_end, s.window_length_secs, s.subscription_id, s.due_at, \
             s.lock_id, \
             s.locked_at, s.state_version, s.problem \
             FROM status_check_monitor m JOIN status_check_monitor_state s \
             ON s.monitor_id = m.id ",
            $tail
        )
    };
}

pub(super) const SELECT_BY_KEY: &str = select_monitor!("WHERE m.robot_id = ? AND m.rule_id = ?");
pub(super) const SELECT_BY_ID: &str = select_monitor!("WHERE m.id = ?");
pub(super) const SELECT_ALL: &str = select_monitor!("ORDER BY m.robot_id, m.rule_id");
pub(super) const SELECT_BY_SUBSCRIPTION: &str =
    select_monitor!("WHERE s.subscription_id = ? AND m.robot_id = ?");

/// The monitor's rows, locked (MySQL) for a change of it: the monitor, then its state.
pub(super) const LOCK_MONITOR: PerDialect = PerDialect {
    mysql: "SELECT m.id AS id FROM status_check_monitor m JOIN status_check_monitor_state s \
            ON s.monitor_id = m.id WHERE m.robot_id = ? AND m.rule_id = ? FOR UPDATE",
    sqlite: "SELECT id FROM status_check_monitor WHERE robot_id = ? AND rule_id = ?",
};

pub(super) const INSERT_MONITOR: &str = "INSERT INTO status_check_monitor (robot_id, rule_id, definition, \
     enabled, source, version, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 1, ?, ?)";

pub(super) const INSERT_STATE: &str = "INSERT INTO status_check_monitor_state (monitor_id, due_at, \
     state_version, updated_at) VALUES (?, ?, 1, ?)";

pub(super) const UPDATE_MONITOR: &str = "UPDATE status_check_monitor SET definition = ?, enabled = ?, \
     source = ?, version = version + 1, updated_at = ? WHERE id = ?";

/// Ends the session (when asked) and sets when the monitor is due; the lease is left to its
/// holder, whose write then fails on the version.
pub(super) const RESET_STATE: &str = "UPDATE status_check_monitor_state SET session_date = NULL, \
     session_end = NULL, window_number = NULL, window_start = NULL, window_end = NULL, \
     window_length_secs = NULL, subscription_id = NULL, due_at = ?, state_version = state_version + 1, updated_at = ? \
     WHERE monitor_id = ?";

pub(super) const DELETE_MONITOR: &str = "DELETE FROM status_check_monitor WHERE id = ?";
pub(super) const DELETE_STATE: &str = "DELETE FROM status_check_monitor_state WHERE monitor_id = ?";

macro_rules! claim_monitors_sql {
    ($lock:literal) => {
        concat!(
            "SELECT monitor_id FROM status_check_monitor_state \
             WHERE due_at <= ? AND (lock_id IS NULL OR locked_at < ?) \
             ORDER BY due_at, monitor_id LIMIT ?",
            $lock
        )
    };
}

pub(super) const CLAIM_MONITORS: PerDialect = PerDialect {
    mysql: claim_monitors_sql!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim_monitors_sql!(""),
};

pub(super) const LEASE_MONITOR: &str =
    "UPDATE status_check_monitor_state SET lock_id = ?, locked_at = ? WHERE monitor_id = ?";

macro_rules! write_state_sql {
    ($fence:literal) => {
        concat!(
            "UPDATE status_check_monitor_state SET session_date = ?, session_end = ?, \
             window_number = ?, window_start = ?, window_end = ?, window_length_secs = ?, \
             subscription_id = ?, \
             due_at = ?, lock_id = CASE WHEN ? THEN NULL ELSE lock_id END, \
             locked_at = CASE WHEN ? THEN NULL ELSE locked_at END, \
             problem = NULL, state_version = state_version + 1, updated_at = ? \
             WHERE monitor_id = ? AND state_version = ?",
            $fence
        )
    };
}

pub(super) const WRITE_STATE: &str = write_state_sql!("");
pub(super) const WRITE_STATE_LEASED: &str = write_state_sql!(" AND lock_id = ?");

pub(super) const RELEASE_MONITOR: &str = "UPDATE status_check_monitor_state SET lock_id = NULL, \
     locked_at = NULL, due_at = ?, problem = ?, updated_at = ? \
     WHERE monitor_id = ? AND lock_id = ?";

pub(super) const INSERT_ACTION: PerDialect = PerDialect {
    mysql: "INSERT INTO status_check_monitor_action (monitor_id, robot_id, rule_id, \
            session_date, window_number, action_index, reference_id, event_name, level, \
            window_end, created_at, attempts, next_attempt_at) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON DUPLICATE KEY UPDATE id = id",
    sqlite: "INSERT INTO status_check_monitor_action (monitor_id, robot_id, rule_id, \
             session_date, window_number, action_index, reference_id, event_name, level, \
             window_end, created_at, attempts, next_attempt_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) \
             ON CONFLICT (reference_id, action_index) DO NOTHING",
};

pub(super) const LAST_ALARM: &str = "SELECT MAX(window_number) AS last FROM status_check_monitor_action \
     WHERE robot_id = ? AND rule_id = ? AND session_date = ?";

/// The session date as stored: `YYYY-MM-DD`.
pub(super) fn date_text(date: NaiveDate) -> String {
    date.format("%Y-%m-%d").to_string()
}

pub(super) fn parse_date(text: &str) -> Result<NaiveDate, StoreError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| corrupt(format!("session date {text:?}")))
}

pub(super) fn canonical_json(monitor: &Monitor) -> Result<String, StoreError> {
    serde_json::to_string(&monitor.definition())
        .map_err(|e| corrupt(format!("a monitor's definition does not serialise: {e}")))
}

pub(super) fn to_u32(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| corrupt(format!("{what}: {value}")))
}

pub(super) fn monitor_of<R: SqlRow>(row: &R) -> Result<StoredMonitor, StoreError> {
    let id = row.int("id")?;
    let text = row.text("definition")?;
    let definition: MonitorDefinition = serde_json::from_str(&text)
        .map_err(|e| corrupt(format!("status_check_monitor {id}: definition: {e}")))?;
    let monitor = Monitor::from_deployed_definition(&definition).map_err(|errors| {
        let fields: Vec<String> = errors.iter().map(ToString::to_string).collect();
        corrupt(format!("status_check_monitor {id}: {}", fields.join("; ")))
    })?;
    let window = match row.opt_text("session_date")? {
        None => None,
        Some(date) => {
            // A window opened before migration 0010 has no length of its own: the monitor's.
            let window_length = match row.opt_int("window_length_secs")? {
                Some(seconds) => WindowLength::from_seconds(seconds).map_err(|e| {
                    corrupt(format!(
                        "status_check_monitor_state {id}: window_length_secs {e}"
                    ))
                })?,
                None => monitor.window(),
            };
            let window = WindowState {
                session_date: parse_date(&date)?,
                session_end: row.time("session_end")?,
                window_number: to_u32(row.int("window_number")?, "window_number")?,
                window_start: row.time("window_start")?,
                window_end: row.time("window_end")?,
                window_length,
            };
            window
                .validate()
                .map_err(|e| corrupt(format!("status_check_monitor_state {id}: {e}")))?;
            Some(window)
        }
    };
    Ok(StoredMonitor {
        id,
        monitor,
        source: MonitorSource::parse(&row.text("source")?)?,
        version: row.int("version")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        state: MonitorState {
            window,
            subscription_id: row.opt_int("subscription_id")?,
            due_at: row.time("due_at")?,
            lock_id: row.opt_text("lock_id")?,
            locked_at: row.opt_time("locked_at")?,
            version: row.int("state_version")?,
            problem: row.opt_text("problem")?,
        },
    })
}

pub(super) async fn read_one<T: Tx>(
    tx: &mut T,
    sql: &'static str,
    args: Vec<Arg>,
) -> Result<Option<StoredMonitor>, StoreError> {
    tx.fetch_optional(sql, args)
        .await?
        .as_ref()
        .map(monitor_of)
        .transpose()
}
