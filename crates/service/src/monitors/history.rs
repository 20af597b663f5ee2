//! The history of monitor sessions (SPEC §12 "History"): every decision on a session's windows
//! writes, with the new state and in its transaction, the spans that ended — reset by an event
//! (which one), expired (the alarm's reference id), cut by the session's end — and the window
//! it opened; an operator reads one day's session back (`?date=` on the internal API) to
//! answer "did the alarm fire on Tuesday night, and why". Kept at least as long as sent
//! notifications (the outbox retention), purged by the relay in bounded batches.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use status_check_engine::monitor::{Monitor, WindowEnding, WindowSpan, WindowState};

use super::Monitors;
use crate::store::{StoreError, WindowClose, WindowRecord};

/// Window spans purged per step at most.
const PURGE_BATCH: usize = 500;

/// One day's session of a monitor, as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHistory {
    pub session_date: NaiveDate,
    /// The day's session, `[start, end)`, as it was when it ran (of its last opening, when it
    /// was opened more than once that day).
    pub session_start: DateTime<Utc>,
    pub session_end: DateTime<Utc>,
    /// The session's Megazord subscription (of its last opening).
    pub subscription_id: Option<i64>,
    /// Every window span, in time order; the last one may still be open (`ending` `None`).
    pub windows: Vec<WindowRecord>,
}

impl SessionHistory {
    /// The alarms the session raised, by their reference ids.
    pub fn alarms(&self) -> impl Iterator<Item = &str> {
        self.windows
            .iter()
            .filter_map(|window| window.reference_id.as_deref())
    }
}

impl Monitors {
    /// The history of the monitor's session of `date` (its local date); `None` when nothing
    /// is kept for that day (no session ran, or it is older than the retention).
    pub async fn session_history(
        &self,
        robot_id: i64,
        rule_id: &str,
        date: NaiveDate,
    ) -> Result<Option<SessionHistory>, super::MonitorError> {
        let windows = self.store.monitor_windows(robot_id, rule_id, date).await?;
        let Some(last) = windows.last() else {
            return Ok(None);
        };
        Ok(Some(SessionHistory {
            session_date: date,
            session_start: last.session_start,
            session_end: last.session_end,
            subscription_id: last.subscription_id,
            windows,
        }))
    }

    /// Deletes a batch of window spans that ended before the retention; how many.
    pub async fn purge_window_history(&self) -> Result<u64, StoreError> {
        let retention = TimeDelta::from_std(self.settings.retention).unwrap_or(TimeDelta::MAX);
        self.store
            .purge_monitor_windows(self.now() - retention, PURGE_BATCH)
            .await
    }
}

/// What a decision on one session did, for its history.
pub(super) struct Decided<'a> {
    pub monitor: &'a Monitor,
    pub session_date: NaiveDate,
    pub session_end: DateTime<Utc>,
    pub subscription_id: Option<i64>,
    /// The spans that ended, in time order.
    pub spans: &'a [WindowSpan],
    /// The window left open; `None` when the session is over.
    pub open: Option<&'a WindowState>,
    /// The watched events taken in: Megazord's id and the time each counted at.
    pub events: &'a [(i64, DateTime<Utc>)],
}

/// The history rows of a decision: each span that ended, then the window left open.
pub(super) fn window_records(decided: &Decided<'_>) -> Vec<WindowRecord> {
    let session_start = decided
        .monitor
        .session_on(decided.session_date)
        .map(|session| session.start)
        .or_else(|| decided.spans.first().map(|span| span.start))
        .or_else(|| decided.open.map(|window| window.window_start))
        .unwrap_or(decided.session_end);
    let record = |number, start, end, ending| WindowRecord {
        session_date: decided.session_date,
        session_start,
        session_end: decided.session_end,
        subscription_id: decided.subscription_id,
        number,
        start,
        end,
        ending,
        reference_id: None,
        reset_event_id: None,
    };
    let mut records: Vec<WindowRecord> = decided
        .spans
        .iter()
        .map(|span| {
            let ending = match span.ending {
                WindowEnding::Reset => WindowClose::Reset,
                WindowEnding::Expired => WindowClose::Expired,
                WindowEnding::SessionEnded => WindowClose::SessionEnded,
            };
            let mut kept = record(span.number, span.start, span.end, Some(ending));
            match span.ending {
                WindowEnding::Expired => {
                    kept.reference_id = Some(
                        decided
                            .monitor
                            .reference_id(decided.session_date, span.number),
                    );
                }
                WindowEnding::Reset => {
                    kept.reset_event_id = decided
                        .events
                        .iter()
                        .filter(|(_, at)| *at == span.end)
                        .map(|(id, _)| *id)
                        .min();
                }
                WindowEnding::SessionEnded => {}
            }
            kept
        })
        .collect();
    if let Some(open) = decided.open {
        records.push(record(
            open.window_number,
            open.window_start,
            open.window_end,
            None,
        ));
    }
    records
}
