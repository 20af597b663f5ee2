//! The time axis: instants to x, and ticks that read well from seconds to years, labelled in
//! a timezone.
//!
//! Steps up to an hour are whole steps of real time from an instant whose local clock reads a
//! multiple of the step, so both 02:30s of a fall-back night get a tick. Longer steps walk the
//! local calendar (every 3 h, every day, every month), so ticks stay on round local times
//! after a daylight-saving change; a spring-forward hour that does not exist is skipped.

use chrono::{DateTime, Utc};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp, ZonedDateTime};

/// Maps instants between `start` and `end` to x between `left` and `right`.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub left: f64,
    pub right: f64,
}

impl Scale {
    /// A scale over `[start, end]`; an empty or reversed range is widened to a minute.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>, left: f64, right: f64) -> Scale {
        let end = if end > start {
            end
        } else {
            start + chrono::TimeDelta::seconds(60)
        };
        Scale {
            start,
            end,
            left,
            right,
        }
    }

    pub fn x(&self, at: DateTime<Utc>) -> f64 {
        let span = (self.end - self.start).num_milliseconds() as f64;
        let offset = (at - self.start).num_milliseconds() as f64;
        let x = self.left + (self.right - self.left) * offset / span;
        x.clamp(self.left, self.right)
    }

    pub fn width(&self) -> f64 {
        self.right - self.left
    }

    /// The range in seconds.
    pub fn seconds(&self) -> i64 {
        (self.end - self.start).num_seconds()
    }
}

/// One tick of the axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub at: DateTime<Utc>,
    /// The local time as the label shows it.
    pub label: String,
    /// The local date, under the time, where it changed since the previous tick (or on the
    /// first); `None` when the label is a date already.
    pub date: Option<String>,
}

/// A step between ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Real seconds (≤ 1 h).
    Seconds(i64),
    /// Local-calendar hours.
    Hours(i64),
    Days(i64),
    Months(i64),
    Years(i64),
}

impl Step {
    fn approx_seconds(self) -> i64 {
        match self {
            Step::Seconds(s) => s,
            Step::Hours(h) => h * 3600,
            Step::Days(d) => d * 86_400,
            Step::Months(m) => m * 30 * 86_400,
            Step::Years(y) => y * 365 * 86_400,
        }
    }
}

const STEPS: [Step; 26] = [
    Step::Seconds(1),
    Step::Seconds(2),
    Step::Seconds(5),
    Step::Seconds(10),
    Step::Seconds(15),
    Step::Seconds(30),
    Step::Seconds(60),
    Step::Seconds(120),
    Step::Seconds(300),
    Step::Seconds(600),
    Step::Seconds(900),
    Step::Seconds(1800),
    Step::Seconds(3600),
    Step::Hours(2),
    Step::Hours(3),
    Step::Hours(6),
    Step::Hours(12),
    Step::Days(1),
    Step::Days(2),
    Step::Days(7),
    Step::Months(1),
    Step::Months(3),
    Step::Months(6),
    Step::Years(1),
    Step::Years(5),
    Step::Years(10),
];

/// The smallest step giving at most `max_ticks` ticks over the scale.
fn step_for(scale: &Scale, max_ticks: usize) -> Step {
    let seconds = scale.seconds().max(1);
    let max_ticks = max_ticks.max(2) as i64;
    STEPS
        .into_iter()
        .find(|step| seconds / step.approx_seconds() < max_ticks)
        .unwrap_or(Step::Years(100))
}

pub(crate) fn to_timestamp(at: DateTime<Utc>) -> Timestamp {
    Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

pub(crate) fn from_timestamp(at: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.as_millisecond()).unwrap_or_default()
}

/// The local time of `at` in `zone`.
pub fn local(at: DateTime<Utc>, zone: &TimeZone) -> ZonedDateTime {
    to_timestamp(at).to_zoned_datetime(zone.clone())
}

/// Ticks over the scale, at most one per `min_spacing` pixels, labelled in `zone`.
pub fn ticks(scale: &Scale, zone: &TimeZone, min_spacing: f64) -> Vec<Tick> {
    let max_ticks = (scale.width() / min_spacing).floor().max(2.0) as usize;
    let step = step_for(scale, max_ticks);
    let instants = match step {
        Step::Seconds(seconds) => real_steps(scale, zone, seconds),
        _ => calendar_steps(scale, zone, step),
    };
    let format = match step {
        Step::Seconds(s) if s < 60 => "%H:%M:%S",
        Step::Seconds(_) | Step::Hours(_) => "%H:%M",
        Step::Days(_) => "%d %b",
        Step::Months(_) => "%b %Y",
        Step::Years(_) => "%Y",
    };
    let label_is_date = !matches!(step, Step::Seconds(_) | Step::Hours(_));
    let mut previous_day = None;
    instants
        .into_iter()
        .map(|at| {
            let zoned = local(at, zone);
            let day = zoned.date();
            let new_day = previous_day != Some(day);
            previous_day = Some(day);
            Tick {
                at,
                label: zoned.strftime(format).to_string(),
                date: (new_day && !label_is_date).then(|| zoned.strftime("%a %d %b").to_string()),
            }
        })
        .collect()
}

/// Every `seconds` of real time from the first instant at or after the scale's start whose
/// local clock is a multiple of `seconds` since local midnight.
fn real_steps(scale: &Scale, zone: &TimeZone, seconds: i64) -> Vec<DateTime<Utc>> {
    let start = local(scale.start, zone);
    let since_midnight =
        i64::from(start.hour()) * 3600 + i64::from(start.minute()) * 60 + i64::from(start.second());
    let subsecond = i64::from(start.subsec_nanosecond()) > 0;
    let mut wait = (seconds - since_midnight.rem_euclid(seconds)) % seconds;
    if wait == 0 && subsecond {
        wait = seconds;
    }
    let first_millis = scale.start.timestamp_millis() / 1000 * 1000 + wait * 1000;
    let mut at = DateTime::from_timestamp_millis(first_millis).unwrap_or(scale.start);
    let mut out = Vec::new();
    while at <= scale.end && out.len() < 1000 {
        if at >= scale.start {
            out.push(at);
        }
        at += chrono::TimeDelta::seconds(seconds);
    }
    out
}

/// Steps of the local calendar from the start of the enclosing unit, each mapped to the first
/// instant the local clock reads it (a time in a spring-forward gap: the jump).
fn calendar_steps(scale: &Scale, zone: &TimeZone, step: Step) -> Vec<DateTime<Utc>> {
    let start = local(scale.start, zone).datetime();
    let date = start.date();
    let (first, span) = match step {
        Step::Hours(h) => (
            date.at(start.hour() - start.hour() % h as i8, 0, 0, 0),
            Span::new().hours(h),
        ),
        Step::Days(d) => (date.at(0, 0, 0, 0), Span::new().days(d)),
        Step::Months(m) => (date.first_of_month().at(0, 0, 0, 0), Span::new().months(m)),
        Step::Years(y) => (
            date.first_of_year()
                .with()
                .year(date.year() - date.year() % y as i16)
                .build()
                .unwrap_or(date)
                .at(0, 0, 0, 0),
            Span::new().years(y),
        ),
        Step::Seconds(_) => return Vec::new(),
    };
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    let mut civil = first;
    for _ in 0..1000 {
        let instant = match zone.to_ambiguous_timestamp(civil).compatible() {
            Ok(instant) => from_timestamp(instant),
            Err(_) => break,
        };
        if instant > scale.end {
            break;
        }
        if instant >= scale.start && out.last() != Some(&instant) {
            out.push(instant);
        }
        civil = match civil.checked_add(span) {
            Ok(next) => next,
            Err(_) => break,
        };
    }
    out
}

/// A duration as people say it: `45 s`, `10 min`, `2 h 30 min`, `3 d 4 h`.
pub fn human_duration(seconds: i64) -> String {
    let s = seconds.abs();
    let sign = if seconds < 0 { "−" } else { "" };
    let text = match s {
        0..60 => format!("{s} s"),
        60..3600 if s % 60 == 0 => format!("{} min", s / 60),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..172_800 if s % 3600 == 0 => format!("{} h", s / 3600),
        3600..172_800 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ if s % 86_400 == 0 => format!("{} d", s / 86_400),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    };
    format!("{sign}{text}")
}

/// An instant as the tables show it: `2026-11-20 08:00:05.250 CET` (milliseconds only when
/// there are some).
pub fn format_instant(at: DateTime<Utc>, zone: &TimeZone) -> String {
    let zoned = local(at, zone);
    let format = if zoned.subsec_nanosecond() == 0 {
        "%Y-%m-%d %H:%M:%S %Z"
    } else {
        "%Y-%m-%d %H:%M:%S%.3f %Z"
    };
    zoned.strftime(format).to_string()
}
