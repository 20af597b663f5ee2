//! Timelines (SPEC §15): a check, or a monitor's day, drawn as SVG on one time axis.
//!
//! Pure: plain data in, SVG text out — no store, no clock, no I/O — so the pages, `templates
//! test --svg` and the backtest draw with the same code and the pictures are tested as
//! functions. Everything that came from outside (event names, reference ids, template names)
//! is spliced in by `maud`, which escapes it, after [`style::clean`] removed what XML cannot
//! carry. Every mark has a `<title>` (a tooltip, and what a screen reader says).
//!
//! Marks carry classes the browser test counts: `event-mark` (one per record or watched
//! event), `notification-mark`, `window-bar`, `alarm-mark`, `ref-mark`.

pub mod axis;
mod check;
mod monitor;
pub mod style;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_monitor;

use chrono::{DateTime, NaiveDate, Utc};
use jiff::tz::TimeZone;
use status_check_engine::{CheckPhase, CheckResult, RecordPhase};

pub use check::{check_svg, outcome_text as check_outcome_text};
pub use monitor::{day_bounds, monitor_svg, summary_text as monitor_summary_text};

/// Width of the pictures in pixels (the pages let a narrower screen scroll the picture, the
/// table under it reflows).
pub const WIDTH: f64 = 960.0;

/// A timezone with the name it was asked by.
#[derive(Debug, Clone)]
pub struct Zone {
    pub name: String,
    pub tz: TimeZone,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
        }
    }

    /// An IANA name (`Europe/Amsterdam`); case does not matter.
    pub fn named(name: &str) -> Result<Zone, String> {
        let name = name.trim();
        let tz = TimeZone::get(name).map_err(|_| {
            format!("{name:?} is not an IANA timezone name (e.g. \"Europe/Amsterdam\")")
        })?;
        let name = tz.iana_name().unwrap_or(name).to_owned();
        Ok(Zone { name, tz })
    }

    /// An instant as the tables show it, in this zone.
    pub fn format(&self, at: DateTime<Utc>) -> String {
        axis::format_instant(at, &self.tz)
    }
}

/// The look-back of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PastWindow {
    /// No past phase (`pastInterval` 0).
    None,
    /// From this instant to the creation.
    Since(DateTime<Utc>),
    /// Unbounded (`pastInterval` −1).
    Unbounded,
}

/// One record of a check's history.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRecord {
    pub order: u32,
    pub phase: RecordPhase,
    pub event_name: String,
    pub incoming_event_id: Option<i64>,
    /// When the event happened; `None` on a record the Node service wrote, which kept only
    /// when it recorded it (the mark then sits at `recorded_at`, drawn hollow).
    pub event_at: Option<DateTime<Utc>>,
    pub recorded_at: DateTime<Utc>,
    /// The result of the evaluation that took this record in.
    pub result: CheckResult,
}

impl TimelineRecord {
    /// Where the record is drawn.
    pub fn at(&self) -> DateTime<Utc> {
        self.event_at.unwrap_or(self.recorded_at)
    }
}

/// One notification sent (or waiting to be sent) to the robot.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelineNotification {
    pub seq: i64,
    /// When it was decided (written to the outbox).
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Why it will never be sent, when it was given up (dead-lettered).
    pub given_up: Option<String>,
    pub phase: String,
    pub result: String,
    pub next_step_id: Option<i64>,
}

/// Everything the picture of a check shows.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckTimeline {
    /// `None` for a replay (`templates test`).
    pub id: Option<i64>,
    pub robot_id: Option<i64>,
    pub template: String,
    pub template_version: i64,
    pub planned_at: Option<DateTime<Utc>>,
    /// The anchor: when the check was created.
    pub created_at: DateTime<Utc>,
    pub past: PastWindow,
    /// The end of the future window; `None` without one.
    pub deadline: Option<DateTime<Utc>>,
    pub poll_until_end: bool,
    pub records: Vec<TimelineRecord>,
    pub phase: CheckPhase,
    pub result: CheckResult,
    /// What the robot runs next, as shown (`step 124`, or a replay's `pass`).
    pub next_step: Option<String>,
    /// When it ended (its last change), for an ended check.
    pub ended_at: Option<DateTime<Utc>>,
    pub notifications: Vec<TimelineNotification>,
    /// The reader's now, drawn on an open check.
    pub now: Option<DateTime<Utc>>,
}

/// How one window of a monitor's session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowOutcome {
    /// A watched event restarted it.
    Reset,
    /// It passed without the event: the alarms were posted.
    Expired,
    /// The session ended first (no alarm).
    SessionEnded,
    /// The monitor was disabled, changed or deleted while it was open (no alarm).
    Stopped,
    /// Still open.
    Open,
}

impl WindowOutcome {
    pub fn describe(self) -> &'static str {
        match self {
            WindowOutcome::Reset => "reset by an event",
            WindowOutcome::Expired => "expired, alarmed",
            WindowOutcome::SessionEnded => "closed by the session's end",
            WindowOutcome::Stopped => "stopped (monitor changed)",
            WindowOutcome::Open => "open now",
        }
    }
}

/// One stretch a window was open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowBar {
    pub number: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub outcome: WindowOutcome,
}

/// An alarm a window's end posted (or is posting).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmMark {
    pub window_number: u32,
    pub reference_id: String,
    pub event_name: String,
    /// The window's end that decided it.
    pub at: DateTime<Utc>,
    /// When Megazord accepted it; `None` while it is still being retried.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Everything the picture of a monitor's day shows.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorDay {
    pub robot_id: i64,
    pub rule_id: String,
    pub event_type: String,
    /// The local date, in the monitor's timezone.
    pub date: NaiveDate,
    /// The day's session `[start, end)`; `None` when that day has none.
    pub session: Option<(DateTime<Utc>, DateTime<Utc>)>,
    pub windows: Vec<WindowBar>,
    /// The watched events' times.
    pub events: Vec<DateTime<Utc>>,
    pub alarms: Vec<AlarmMark>,
    pub now: Option<DateTime<Utc>>,
}

impl MonitorDay {
    /// Whether the day's session should have begun by `now` and yet nothing of it is kept: the
    /// page cannot tell whether an alarm fired (before the monitor existed, past the
    /// retention, a disabled monitor, a session that could not open).
    pub fn nothing_kept(&self) -> bool {
        let begun = match (self.session, self.now) {
            (Some((start, _)), Some(now)) => start <= now,
            _ => false,
        };
        begun && self.windows.is_empty() && self.alarms.is_empty()
    }
}
