//! The validated parts of a monitor. Each constructor checks its input, so a value of one of
//! these types is always valid; the error is a message without the field's name, which the
//! caller adds.

use std::fmt;

use chrono::TimeDelta;
use jiff::SignedDuration;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

/// A rule id: `[a-z0-9-]{1,64}` (SPEC §12). Part of every alarm's `referenceId`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(String);

impl RuleId {
    pub fn parse(text: &str) -> Result<RuleId, String> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if text.is_empty() || text.len() > 64 || !valid_chars {
            return Err(format!(
                "{text:?} is not a rule id: use 1 to 64 of a-z, 0-9 and -"
            ));
        }
        Ok(RuleId(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A robot id: a positive integer, as Megazord and the robot API use it (SPEC §2, §5.2).
pub fn check_robot_id(id: i64) -> Result<i64, String> {
    if id > 0 {
        Ok(id)
    } else {
        Err(format!("{id} is not a robot id: use a positive integer"))
    }
}

/// The length of a monitor's windows: whole seconds, from 1 s to 24 h. In JSON its canonical
/// text (`"1h30m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct WindowLength(u32);

impl From<WindowLength> for String {
    fn from(length: WindowLength) -> String {
        length.to_string()
    }
}

impl TryFrom<String> for WindowLength {
    type Error = String;

    fn try_from(text: String) -> Result<WindowLength, String> {
        WindowLength::parse(&text)
    }
}

impl WindowLength {
    /// The longest window: one day. A longer one could never end inside a daily session.
    pub const MAX_SECONDS: u32 = 24 * 3600;

    /// Parses `"2h"`, `"90m"`, `"4s"`, `"1h30m"` (also `"1h 30m"`, `"2 hours"` and ISO 8601
    /// `"PT2H"`: jiff's duration formats).
    pub fn parse(text: &str) -> Result<WindowLength, String> {
        let not_a_duration =
            || format!("{text:?} is not a duration: use e.g. \"2h\", \"90m\", \"4s\" or \"1h30m\"");
        let duration: SignedDuration = text.trim().parse().map_err(|_| not_a_duration())?;
        if duration.subsec_nanos() != 0 {
            return Err(format!("{text:?} is not a whole number of seconds"));
        }
        let seconds = duration.as_secs();
        Self::from_seconds(seconds).map_err(|message| format!("{text:?}: {message}"))
    }

    pub fn from_seconds(seconds: i64) -> Result<WindowLength, String> {
        if seconds < 1 {
            return Err("is shorter than 1s".to_owned());
        }
        match u32::try_from(seconds) {
            Ok(seconds) if seconds <= Self::MAX_SECONDS => Ok(WindowLength(seconds)),
            _ => Err("is longer than 24h".to_owned()),
        }
    }

    pub fn as_seconds(self) -> u32 {
        self.0
    }

    pub fn as_delta(self) -> TimeDelta {
        TimeDelta::seconds(i64::from(self.0))
    }
}

/// The canonical form: `"2h"`, `"1h30m"`, `"90s"` → `"1m30s"`.
impl fmt::Display for WindowLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hours, minutes, seconds) = (self.0 / 3600, self.0 / 60 % 60, self.0 % 60);
        for (value, unit) in [(hours, "h"), (minutes, "m"), (seconds, "s")] {
            if value > 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// An IANA timezone, by its name (`Europe/Amsterdam`, `UTC`).
#[derive(Debug, Clone)]
pub struct Timezone {
    name: String,
    zone: TimeZone,
}

impl Timezone {
    /// Looks the name up in the tz database (the system's, else the one bundled into the
    /// binary). Case does not matter; the stored name is the database's spelling. Fixed
    /// offsets such as `+01:00` are refused: they have no daylight-saving rules.
    pub fn parse(name: &str) -> Result<Timezone, String> {
        let zone = TimeZone::get(name.trim())
            .map_err(|_| format!("{name:?} is not an IANA timezone (e.g. \"Europe/Amsterdam\")"))?;
        let name = zone.iana_name().unwrap_or(name.trim()).to_owned();
        Ok(Timezone { name, zone })
    }

    pub fn utc() -> Timezone {
        Timezone {
            name: "UTC".to_owned(),
            zone: TimeZone::UTC,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn zone(&self) -> &TimeZone {
        &self.zone
    }
}

impl PartialEq for Timezone {
    fn eq(&self, other: &Timezone) -> bool {
        self.name == other.name
    }
}

impl Eq for Timezone {}

impl fmt::Display for Timezone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A local wall-clock time of day, `"HH:MM"`, from `00:00` to `24:00` (the next midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClockTime(u16);

impl ClockTime {
    pub const MIDNIGHT: ClockTime = ClockTime(0);
    pub const END_OF_DAY: ClockTime = ClockTime(24 * 60);

    pub fn parse(text: &str) -> Result<ClockTime, String> {
        let invalid = || format!("{text:?} is not a time: use \"HH:MM\", 00:00 to 24:00");
        let (hours, minutes) = text.split_once(':').ok_or_else(invalid)?;
        let two_digits = |part: &str| {
            (part.len() == 2 && part.bytes().all(|b| b.is_ascii_digit()))
                .then(|| part.parse::<u16>().ok())
                .flatten()
        };
        let (Some(hours), Some(minutes)) = (two_digits(hours), two_digits(minutes)) else {
            return Err(invalid());
        };
        let value = hours * 60 + minutes;
        if minutes >= 60 || value > Self::END_OF_DAY.0 {
            return Err(invalid());
        }
        Ok(ClockTime(value))
    }

    /// Minutes since local midnight.
    pub fn minutes(self) -> u16 {
        self.0
    }

    pub fn hour(self) -> u16 {
        self.0 / 60
    }

    pub fn minute(self) -> u16 {
        self.0 % 60
    }
}

impl fmt::Display for ClockTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour(), self.minute())
    }
}

/// Which part of every local day a monitor watches: `[start, end)`, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DailyWindow {
    start: ClockTime,
    end: ClockTime,
}

impl DailyWindow {
    /// `Err` names the field at fault: `("start" | "end", message)`.
    pub fn new(start: ClockTime, end: ClockTime) -> Result<DailyWindow, (&'static str, String)> {
        if start == ClockTime::END_OF_DAY {
            return Err((
                "start",
                "24:00 is the end of the day, not a start".to_owned(),
            ));
        }
        if end <= start {
            return Err((
                "end",
                format!("{end} is not after the start {start} (a session cannot pass midnight)"),
            ));
        }
        Ok(DailyWindow { start, end })
    }

    pub fn start(self) -> ClockTime {
        self.start
    }

    pub fn end(self) -> ClockTime {
        self.end
    }

    /// The length of a session on a day without a clock change.
    pub fn nominal_seconds(self) -> u32 {
        u32::from(self.end.0 - self.start.0) * 60
    }
}

/// What a monitor does when a window passes without the watched event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    /// Post an event to the robot at Megazord (SPEC §5.2 `POST …/incomings`). The level is
    /// 0 to 255, which any byte-sized level column holds; `None` posts the event without one,
    /// so Megazord's event schema decides (lower levels are more urgent, and a level nobody
    /// chose must never be sent).
    Alarm {
        event_name: String,
        level: Option<u8>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_lengths_parse_and_print_canonically() {
        for (text, seconds, canonical) in [
            ("2h", 7200, "2h"),
            ("90m", 5400, "1h30m"),
            ("4s", 4, "4s"),
            ("1h30m", 5400, "1h30m"),
            ("1h 30m 5s", 5405, "1h30m5s"),
            ("PT2H", 7200, "2h"),
            ("24h", 86_400, "24h"),
        ] {
            let length = WindowLength::parse(text).unwrap();
            assert_eq!(length.as_seconds(), seconds, "{text}");
            assert_eq!(length.to_string(), canonical, "{text}");
        }
        for text in ["0s", "-2h", "1.5s", "25h", "2", "2H", "", "1d"] {
            assert!(WindowLength::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn clock_times_take_two_digit_hours_and_minutes() {
        assert_eq!(ClockTime::parse("08:05").unwrap().minutes(), 485);
        assert_eq!(ClockTime::parse("24:00").unwrap(), ClockTime::END_OF_DAY);
        for text in ["8:00", "24:01", "12:60", "12", "12:00:00", "ab:cd", "-1:00"] {
            assert!(ClockTime::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn daily_windows_need_start_before_end() {
        let at = |t| ClockTime::parse(t).unwrap();
        assert!(DailyWindow::new(at("08:00"), at("24:00")).is_ok());
        assert_eq!(
            DailyWindow::new(at("08:00"), at("08:00")).unwrap_err().0,
            "end"
        );
        assert_eq!(
            DailyWindow::new(at("22:00"), at("06:00")).unwrap_err().0,
            "end"
        );
        assert_eq!(
            DailyWindow::new(at("24:00"), at("24:00")).unwrap_err().0,
            "start"
        );
    }

    #[test]
    fn timezones_are_iana_names() {
        assert_eq!(
            Timezone::parse("europe/amsterdam").unwrap().name(),
            "Europe/Amsterdam"
        );
        assert!(Timezone::parse("+01:00").is_err());
        assert!(Timezone::parse("Mars/Olympus").is_err());
        assert!(RuleId::parse("no-toilet-2").is_ok());
        assert!(RuleId::parse("No_Toilet").is_err());
        assert!(RuleId::parse(&"a".repeat(65)).is_err());
    }
}
