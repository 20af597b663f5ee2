//! Daily sessions: one per local day in the monitor's timezone, computed with the IANA rules
//! so that daylight-saving days are right.
//!
//! A local time `T` of a day becomes **the first instant at which the local clock reads `T`
//! or later**:
//! - in a spring-forward gap (T does not exist that day), the instant the clocks jump, i.e.
//!   the first instant after the gap — `02:30` on 2026-03-29 in Europe/Amsterdam is
//!   `03:00+02:00` (01:00 UTC);
//! - in a fall-back fold (T happens twice), the earlier of the two — `02:30` on 2026-10-25
//!   in Europe/Amsterdam is `02:30+02:00` (00:30 UTC);
//! - `24:00` is the next day's `00:00`, by the same rule.
//!
//! So a session that spans a clock change is that much shorter or longer (in Europe/Amsterdam
//! 00:00–24:00 lasts 23 h on 2026-03-29 and 25 h on 2026-10-25; 08:00–22:00 lasts 14 h every
//! day), and a session whose start and end fall in the same gap is empty: that day has none.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use jiff::Timestamp;
use jiff::civil::{self, Date};
use jiff::tz::{AmbiguousOffset, TimeZone};
use serde::{Deserialize, Serialize};

use super::fields::ClockTime;
use super::{DailyWindow, Monitor};

/// One local day's session of a monitor: `[start, end)` in UTC, named by its local date (the
/// `sessionDate` of the alarm references).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl Session {
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.start <= instant && instant < self.end
    }
}

impl Monitor {
    /// The session on a local date; `None` when that day has none (start and end in one
    /// daylight-saving gap) or the date is beyond the year 9999.
    pub fn session_on(&self, date: NaiveDate) -> Option<Session> {
        session_on(self.timezone.zone(), self.daily, date)
    }

    /// The session that contains `instant`, else the next one to start after it. Sessions are
    /// half-open: at a session's end instant this is the next day's session. `None` only for
    /// instants beyond the year 9999.
    pub fn session_at_or_after(&self, instant: DateTime<Utc>) -> Option<Session> {
        let zone = self.timezone.zone();
        let local = zone.to_datetime(Timestamp::from_second(instant.timestamp()).ok()?);
        // The day before too: a fold across midnight can make the local date read a day early.
        let mut date = local.date().yesterday().ok()?;
        // A week always holds a non-empty session: gaps happen a few times a year at most.
        for _ in 0..8 {
            if let Some(session) = session_on(zone, self.daily, to_chrono_date(date)?)
                && session.end > instant
            {
                return Some(session);
            }
            date = date.tomorrow().ok()?;
        }
        None
    }
}

fn session_on(zone: &TimeZone, daily: DailyWindow, date: NaiveDate) -> Option<Session> {
    let local_date = to_jiff_date(date)?;
    let start = first_instant_at_or_after(zone, local_date, daily.start())?;
    let end = first_instant_at_or_after(zone, local_date, daily.end())?;
    (start < end).then_some(Session { date, start, end })
}

/// The first instant at which the local clock on `date` reads `time` or later (see the module
/// documentation).
fn first_instant_at_or_after(
    zone: &TimeZone,
    date: Date,
    time: ClockTime,
) -> Option<DateTime<Utc>> {
    let local = if time == ClockTime::END_OF_DAY {
        date.tomorrow().ok()?.at(0, 0, 0, 0)
    } else {
        // Both fit in an i8: hour < 24, minute < 60.
        let hour = i8::try_from(time.hour()).ok()?;
        let minute = i8::try_from(time.minute()).ok()?;
        civil::DateTime::new(date.year(), date.month(), date.day(), hour, minute, 0, 0).ok()?
    };
    let ambiguous = zone.to_ambiguous_timestamp(local);
    let instant = match ambiguous.offset() {
        AmbiguousOffset::Unambiguous { .. } | AmbiguousOffset::Fold { .. } => {
            ambiguous.earlier().ok()?
        }
        // `earlier()` reads the time with the offset after the gap, which lands before the
        // jump; the transition that follows it is the jump itself.
        AmbiguousOffset::Gap { .. } => {
            let before_jump = ambiguous.earlier().ok()?;
            zone.following(before_jump).next()?.timestamp()
        }
    };
    DateTime::from_timestamp(instant.as_second(), 0)
}

fn to_jiff_date(date: NaiveDate) -> Option<Date> {
    let year = i16::try_from(date.year()).ok()?;
    // Month 1–12 and day 1–31 fit in an i8.
    let month = i8::try_from(date.month()).ok()?;
    let day = i8::try_from(date.day()).ok()?;
    Date::new(year, month, day).ok()
}

fn to_chrono_date(date: Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        i32::from(date.year()),
        u32::try_from(date.month()).ok()?,
        u32::try_from(date.day()).ok()?,
    )
}
