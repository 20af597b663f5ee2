//! The window state machine of one session (SPEC §12).
//!
//! - Windows are half-open, `[start, min(start + window, session end))`.
//! - **Numbering**: the open window is window `alarmsSent + 1`. An event restarts the open
//!   window at the event's time and it **keeps its number**; only a window that passes
//!   quietly (and alarms) makes the next one `number + 1`. So the alarm references of a session
//!   run 1, 2, 3, … without gaps, whatever the events did.
//! - **An event exactly at a window's end** belongs to the next window: at that instant the
//!   window has passed (and alarms), the next one opens there, and the event restarts it at
//!   the same instant — a no-op. An event exactly at the open window's start changes nothing
//!   either. Events before the open window's start, or at or after the session's end, are
//!   ignored; events later than `now` (a clock ahead of ours) count as happening at `now`.
//! - **The session end cuts the last window.** A window cut short by it does not alarm: an
//!   alarm means a full window length passed without the event, and a cut window is shorter.
//!   A window whose full length ends exactly at the session end is not cut and does alarm.
//!   "Full" is the length the window was given when it opened (or restarted): a monitor whose
//!   length changed meanwhile keeps its open window's end, and judges it by its own length.
//! - **Catch-up**: [`advance`] steps through every window end up to `now` in one call, taking
//!   the (backfilled) events in time order, so a service that was down alarms each window
//!   that passed quietly meanwhile, once, numbered in order.

use std::fmt;

use chrono::{DateTime, NaiveDate, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use super::{Session, WindowLength};

/// The open window of a session: what the service stores between calls (camelCase, the
/// fields the internal API shows).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowState {
    pub session_date: NaiveDate,
    pub session_end: DateTime<Utc>,
    /// From 1; always `alarms_sent() + 1`.
    pub window_number: u32,
    pub window_start: DateTime<Utc>,
    /// At most `session_end`.
    pub window_end: DateTime<Utc>,
    /// The length the window was given when it opened or last restarted (the monitor's then):
    /// whether the session's end cut it is judged by it.
    pub window_length: WindowLength,
}

/// How a window span ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WindowEnding {
    /// A full window passed without the event: run every action once.
    Expired,
    /// The event happened at `end`; the window restarts there with the same number.
    Reset,
    /// The session ended before the window's full length; no alarm.
    SessionEnded,
}

/// A stretch of time one window was open, from its (re)start to its end. The spans of a
/// session follow each other without gaps or overlaps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WindowSpan {
    pub number: u32,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub ending: WindowEnding,
}

impl WindowSpan {
    /// Whether this span's end runs the monitor's actions.
    pub fn alarms(&self) -> bool {
        self.ending == WindowEnding::Expired
    }
}

/// What [`advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advance {
    /// The session the spans belong to (for the alarms' reference ids).
    pub session_date: NaiveDate,
    /// The state after; `None` when the session is over (its last window ended).
    pub state: Option<WindowState>,
    /// Every span that ended, in time order. Empty: nothing changed.
    pub spans: Vec<WindowSpan>,
}

impl Advance {
    /// The spans that alarm, in order; their numbers run on from the input state's.
    pub fn alarms(&self) -> impl Iterator<Item = &WindowSpan> {
        self.spans.iter().filter(|span| span.alarms())
    }
}

/// A stored state that breaks the invariants (`window_number ≥ 1`,
/// `window_start < window_end ≤ session_end`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidWindowState(pub String);

impl fmt::Display for InvalidWindowState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid window state: {}", self.0)
    }
}

impl std::error::Error for InvalidWindowState {}

impl WindowState {
    /// Opens a session: window 1 starts at `max(session start, watch_from)` — a session
    /// opened late (service started or monitor created mid-session) starts its first window
    /// then. `watch_from` is the instant the service starts watching (its clock when it opens
    /// the session), cut to its whole second: Megazord stamps events in whole seconds, and
    /// only boundaries in whole seconds tell for sure which window an event stamped with its
    /// second was in. `None` when the session is already over.
    pub fn open(
        session: &Session,
        window: WindowLength,
        watch_from: DateTime<Utc>,
    ) -> Option<WindowState> {
        let watch_from = watch_from.trunc_subsecs(0);
        if watch_from >= session.end {
            return None;
        }
        let start = watch_from.max(session.start);
        Some(WindowState {
            session_date: session.date,
            session_end: session.end,
            window_number: 1,
            window_start: start,
            window_end: clipped_end(start, window, session.end),
            window_length: window,
        })
    }

    /// Alarms this session has raised so far.
    pub fn alarms_sent(&self) -> u32 {
        self.window_number.saturating_sub(1)
    }

    /// The next instant at which [`advance`] has something to do without events: the open
    /// window's end (the session's end for its last window).
    pub fn due_at(&self) -> DateTime<Utc> {
        self.window_end
    }

    /// Checks the invariants of a state read back from storage.
    pub fn validate(&self) -> Result<(), InvalidWindowState> {
        if self.window_number == 0 {
            return Err(InvalidWindowState("window numbers start at 1".to_owned()));
        }
        if self.window_start >= self.window_end {
            return Err(InvalidWindowState(format!(
                "window {} starts at {} but ends at {}",
                self.window_number, self.window_start, self.window_end
            )));
        }
        if self.window_end > self.session_end {
            return Err(InvalidWindowState(format!(
                "window {} ends at {}, after its session's end {}",
                self.window_number, self.window_end, self.session_end
            )));
        }
        Ok(())
    }
}

/// Moves a session's windows forward to `now`: every window end at or before `now` is
/// decided, taking `events` (the times of the watched events — deliveries and backfill, in
/// any order, duplicates harmless) in time order. `window` is the monitor's window length,
/// used for the windows that open from here on.
///
/// Applying the events and times in one call or spread over many calls gives the same spans
/// and state, so the service may call this for each delivery and at each window end, or once
/// after downtime.
pub fn advance(
    state: &WindowState,
    window: WindowLength,
    events: &[DateTime<Utc>],
    now: DateTime<Utc>,
) -> Result<Advance, InvalidWindowState> {
    state.validate()?;
    let mut events: Vec<DateTime<Utc>> = events.iter().map(|at| (*at).min(now)).collect();
    events.sort_unstable();
    let mut stepper = Stepper {
        state: *state,
        window,
        spans: Vec::new(),
    };
    let mut open = true;
    for at in events {
        open = stepper.pass_window_ends(at);
        if !open {
            break;
        }
        stepper.take_event(at);
    }
    if open {
        open = stepper.pass_window_ends(now);
    }
    Ok(Advance {
        session_date: state.session_date,
        state: open.then_some(stepper.state),
        spans: stepper.spans,
    })
}

struct Stepper {
    state: WindowState,
    window: WindowLength,
    spans: Vec<WindowSpan>,
}

impl Stepper {
    /// Ends every window whose end is at or before `instant`. Returns whether the session is
    /// still open.
    fn pass_window_ends(&mut self, instant: DateTime<Utc>) -> bool {
        while self.state.window_end <= instant {
            let WindowState {
                session_end,
                window_number,
                window_start,
                window_end,
                window_length,
                ..
            } = self.state;
            let cut_short =
                window_end == session_end && window_end - window_start < window_length.as_delta();
            self.spans.push(WindowSpan {
                number: window_number,
                start: window_start,
                end: window_end,
                ending: if cut_short {
                    WindowEnding::SessionEnded
                } else {
                    WindowEnding::Expired
                },
            });
            if window_end >= session_end {
                return false;
            }
            self.state.window_number += 1;
            self.state.window_start = window_end;
            self.state.window_end = clipped_end(window_end, self.window, session_end);
            self.state.window_length = self.window;
        }
        true
    }

    /// An event at `at` (no window end at or before it is pending) restarts the open window.
    fn take_event(&mut self, at: DateTime<Utc>) {
        if at <= self.state.window_start {
            return;
        }
        self.spans.push(WindowSpan {
            number: self.state.window_number,
            start: self.state.window_start,
            end: at,
            ending: WindowEnding::Reset,
        });
        self.state.window_start = at;
        self.state.window_end = clipped_end(at, self.window, self.state.session_end);
        self.state.window_length = self.window;
    }
}

/// `min(start + window, session_end)`.
fn clipped_end(
    start: DateTime<Utc>,
    window: WindowLength,
    session_end: DateTime<Utc>,
) -> DateTime<Utc> {
    start
        .checked_add_signed(window.as_delta())
        .map_or(session_end, |end| end.min(session_end))
}
