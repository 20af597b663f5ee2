//! The period of a backtest: `--since 7d` (a span back from now: `s`, `m`, `h`, `d`, `w`),
//! or a time (RFC 3339) or a date (`YYYY-MM-DD`, midnight UTC); `--until` likewise,
//! defaulting to now.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

/// `--since` when none is given.
pub const DEFAULT_SINCE: &str = "7d";

/// A point in time as `--since`/`--until` take it, relative to `now`.
pub fn parse(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.to_utc());
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    let span = span(text).ok_or_else(|| {
        format!(
            "{text:?} is neither a span back from now (e.g. 7d, 36h, 90m, 2w) nor a time \
             (RFC 3339, e.g. 2026-11-20T08:00:00Z) nor a date (YYYY-MM-DD)"
        )
    })?;
    now.checked_sub_signed(span)
        .ok_or_else(|| format!("{text:?} reaches back too far"))
}

fn span(text: &str) -> Option<TimeDelta> {
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if number < 0 {
        return None;
    }
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        'w' => 604_800,
        _ => return None,
    };
    TimeDelta::try_seconds(number.checked_mul(seconds)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn spans_times_and_dates() {
        let now = at("2026-11-20T08:00:00Z");
        assert_eq!(parse("7d", now).unwrap(), at("2026-11-13T08:00:00Z"));
        assert_eq!(parse("36h", now).unwrap(), at("2026-11-18T20:00:00Z"));
        assert_eq!(parse("90m", now).unwrap(), at("2026-11-20T06:30:00Z"));
        assert_eq!(parse("2w", now).unwrap(), at("2026-11-06T08:00:00Z"));
        assert_eq!(parse("30s", now).unwrap(), at("2026-11-20T07:59:30Z"));
        assert_eq!(
            parse("2026-11-01T10:00:00+01:00", now).unwrap(),
            at("2026-11-01T09:00:00Z")
        );
        assert_eq!(
            parse("2026-11-01", now).unwrap(),
            at("2026-11-01T00:00:00Z")
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_forms_it_takes() {
        let now = at("2026-11-20T08:00:00Z");
        for text in ["", "7", "d", "-1d", "7y", "last week", "2026-13-01"] {
            let error = parse(text, now).unwrap_err();
            assert!(error.contains("span back from now"), "{text}: {error}");
        }
    }
}
