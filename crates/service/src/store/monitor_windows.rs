//! The history of monitor sessions (SPEC §12 "History", migration 0009): one row per window
//! span — opened, then ended by an event, by passing quietly (the alarm), by the session's end,
//! or by the monitor being stopped — written in the transaction that writes the monitor's state
//! (`monitors::write_monitor_state`), read back one day's session at a time, and purged after
//! the outbox retention in bounded batches, as the sent outbox rows are.

use chrono::{DateTime, NaiveDate, Utc};

use super::StoreError;
use super::checks::corrupt;
use super::db::{Db, PerDialect, SqlRow, Tx, args, millis, purge_older, read_all};
use super::monitor_rows::{date_text, parse_date, to_u32};

/// How a window span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WindowClose {
    /// An event restarted the window at the span's end (same window number).
    Reset,
    /// A full window passed without the event: the monitor alarmed.
    Expired,
    /// The session ended before the window's full length: no alarm.
    SessionEnded,
    /// The monitor was disabled, changed to watch something else, or deleted while the
    /// window was open: its session ended there.
    Stopped,
}

impl WindowClose {
    /// As stored and as the internal API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            WindowClose::Reset => "reset",
            WindowClose::Expired => "expired",
            WindowClose::SessionEnded => "sessionEnded",
            WindowClose::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Result<WindowClose, StoreError> {
        match text {
            "reset" => Ok(WindowClose::Reset),
            "expired" => Ok(WindowClose::Expired),
            "sessionEnded" => Ok(WindowClose::SessionEnded),
            "stopped" => Ok(WindowClose::Stopped),
            other => Err(corrupt(format!("monitor window ending {other:?}"))),
        }
    }
}

/// One window span of a monitor's session, as kept in its history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRecord {
    pub session_date: NaiveDate,
    /// The day's session, `[start, end)` (the first window may start later: a late start).
    pub session_start: DateTime<Utc>,
    pub session_end: DateTime<Utc>,
    /// The session's Megazord subscription.
    pub subscription_id: Option<i64>,
    /// The window's number (alarms of the session before it + 1).
    pub number: u32,
    /// When the window (re)started.
    pub start: DateTime<Utc>,
    /// When it ended; while it is open, when it is due to end.
    pub end: DateTime<Utc>,
    /// How it ended; `None` while it is open.
    pub ending: Option<WindowClose>,
    /// The alarm's reference id, for an expired window.
    pub reference_id: Option<String>,
    /// Megazord's id of the event that reset the window (at `end`).
    pub reset_event_id: Option<i64>,
}

/// Writes a span: a new row, or the end of the row of the same window (re)start.
const UPSERT_WINDOW: PerDialect = PerDialect {
    mysql: "INSERT INTO status_check_monitor_window (robot_id, rule_id, session_date, \
            session_start, session_end, subscription_id, window_number, window_start, \
            window_end, ending, reference_id, reset_event_id, updated_at) \
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
            ON DUPLICATE KEY UPDATE window_end = VALUES(window_end), ending = VALUES(ending), \
            reference_id = VALUES(reference_id), reset_event_id = VALUES(reset_event_id), \
            subscription_id = VALUES(subscription_id), updated_at = VALUES(updated_at)",
    sqlite: "INSERT INTO status_check_monitor_window (robot_id, rule_id, session_date, \
             session_start, session_end, subscription_id, window_number, window_start, \
             window_end, ending, reference_id, reset_event_id, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (robot_id, rule_id, session_date, window_number, window_start) \
             DO UPDATE SET window_end = excluded.window_end, ending = excluded.ending, \
             reference_id = excluded.reference_id, reset_event_id = excluded.reset_event_id, \
             subscription_id = excluded.subscription_id, updated_at = excluded.updated_at",
};

/// Ends the monitor's open window (if any) now: its session was stopped.
const STOP_OPEN_WINDOW: &str = "UPDATE status_check_monitor_window SET ending = 'stopped', \
     window_end = CASE WHEN window_end > ? THEN ? ELSE window_end END, updated_at = ? \
     WHERE robot_id = ? AND rule_id = ? AND ending IS NULL";

const SELECT_SESSION: &str = "SELECT robot_id, rule_id, session_date, session_start, \
     session_end, subscription_id, window_number, window_start, window_end, ending, \
     reference_id, reset_event_id FROM status_check_monitor_window \
     WHERE robot_id = ? AND rule_id = ? AND session_date = ? \
     ORDER BY window_start, window_number";

/// Rows that ended before the retention, oldest first: a range over
/// `idx_status_check_monitor_window_end`.
const ENDED_BEFORE: &str = "SELECT id FROM status_check_monitor_window \
     WHERE window_end < ? ORDER BY window_end LIMIT ?";

const DELETE_WINDOW: &str = "DELETE FROM status_check_monitor_window WHERE id = ?";

/// Writes the spans of a state write, inside its transaction.
pub(super) async fn write_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    robot_id: i64,
    rule_id: &str,
    windows: &[WindowRecord],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    for window in windows {
        tx.execute(
            db.sql(&UPSERT_WINDOW),
            args![
                robot_id,
                rule_id,
                date_text(window.session_date),
                millis(window.session_start),
                millis(window.session_end),
                window.subscription_id,
                window.number,
                millis(window.start),
                millis(window.end),
                window.ending.map(|e| e.as_str().to_owned()),
                window.reference_id.clone(),
                window.reset_event_id,
                millis(now),
            ],
        )
        .await?;
    }
    Ok(())
}

/// Ends the monitor's open window at `now` as `stopped`, inside a transaction that ends its
/// session (disabled, changed, deleted).
pub(super) async fn stop_in<T: Tx>(
    tx: &mut T,
    robot_id: i64,
    rule_id: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now = millis(now);
    tx.execute(STOP_OPEN_WINDOW, args![now, now, now, robot_id, rule_id])
        .await
        .map(drop)
}

pub(super) async fn session<D: Db>(
    db: &D,
    robot_id: i64,
    rule_id: &str,
    session_date: NaiveDate,
) -> Result<Vec<WindowRecord>, StoreError> {
    let args = args![robot_id, rule_id, date_text(session_date)];
    read_all(db, SELECT_SESSION, args, record_of).await
}

fn record_of<R: SqlRow>(row: &R) -> Result<WindowRecord, StoreError> {
    Ok(WindowRecord {
        session_date: parse_date(&row.text("session_date")?)?,
        session_start: row.time("session_start")?,
        session_end: row.time("session_end")?,
        subscription_id: row.opt_int("subscription_id")?,
        number: to_u32(row.int("window_number")?, "window_number")?,
        start: row.time("window_start")?,
        end: row.time("window_end")?,
        ending: row
            .opt_text("ending")?
            .as_deref()
            .map(WindowClose::parse)
            .transpose()?,
        reference_id: row.opt_text("reference_id")?,
        reset_event_id: row.opt_int("reset_event_id")?,
    })
}

pub(super) async fn purge<D: Db>(
    db: &D,
    ended_before: DateTime<Utc>,
    limit: usize,
) -> Result<u64, StoreError> {
    purge_older(db, ENDED_BEFORE, DELETE_WINDOW, ended_before, limit).await
}
