//! Monitors' daily sessions (SPEC §12): local days in the monitor's timezone, right on the
//! daylight-saving days. Europe/Amsterdam springs forward on 2026-03-29 (02:00 CET → 03:00
//! CEST, at 01:00 UTC) and falls back on 2026-10-25 (03:00 CEST → 02:00 CET, at 01:00 UTC).

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use status_check_engine::monitor::{
    ActionDefinition, DailyDefinition, Monitor, MonitorDefinition, Session,
};

fn monitor(timezone: Option<&str>, start: &str, end: &str, window: &str) -> Monitor {
    Monitor::from_definition(&MonitorDefinition {
        robot_id: Some(42),
        rule_id: Some("no-toilet".to_owned()),
        event_type: Some("TOILET_ACTIVITY".to_owned()),
        window: Some(window.to_owned()),
        timezone: timezone.map(str::to_owned),
        daily: Some(DailyDefinition {
            start: Some(start.to_owned()),
            end: Some(end.to_owned()),
        }),
        actions: Some(vec![ActionDefinition {
            kind: Some("alarm".to_owned()),
            event_name: Some("NO_TOILET_ACTIVITY_ALARM".to_owned()),
            level: None,
        }]),
        enabled: None,
    })
    .unwrap()
}

fn amsterdam(start: &str, end: &str) -> Monitor {
    monitor(Some("Europe/Amsterdam"), start, end, "1m")
}

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn date(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn session(date_text: &str, start: &str, end: &str) -> Session {
    Session {
        date: date(date_text),
        start: utc(start),
        end: utc(end),
    }
}

#[test]
fn an_ordinary_day_is_the_local_times_at_the_local_offset() {
    let m = amsterdam("08:00", "22:00");
    assert_eq!(
        m.session_on(date("2026-03-28")),
        Some(session(
            "2026-03-28",
            "2026-03-28T07:00:00Z",
            "2026-03-28T21:00:00Z"
        ))
    );
    // Summer time: UTC+2.
    assert_eq!(
        m.session_on(date("2026-07-01")),
        Some(session(
            "2026-07-01",
            "2026-07-01T06:00:00Z",
            "2026-07-01T20:00:00Z"
        ))
    );
}

#[test]
fn the_timezone_defaults_to_utc() {
    let m = monitor(None, "08:00", "24:00", "2h");
    assert_eq!(m.timezone().name(), "UTC");
    assert_eq!(
        m.session_on(date("2026-03-29")),
        Some(session(
            "2026-03-29",
            "2026-03-29T08:00:00Z",
            "2026-03-30T00:00:00Z"
        ))
    );
}

#[test]
fn spring_forward_day_is_an_hour_shorter_when_the_session_spans_the_jump() {
    let whole_day = amsterdam("00:00", "24:00")
        .session_on(date("2026-03-29"))
        .unwrap();
    assert_eq!(
        whole_day,
        session("2026-03-29", "2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")
    );
    assert_eq!(whole_day.end - whole_day.start, TimeDelta::hours(23));
    // A session after the jump keeps its length, at the new offset.
    let daytime = amsterdam("08:00", "22:00")
        .session_on(date("2026-03-29"))
        .unwrap();
    assert_eq!(
        daytime,
        session("2026-03-29", "2026-03-29T06:00:00Z", "2026-03-29T20:00:00Z")
    );
}

#[test]
fn a_start_in_the_spring_forward_gap_is_the_first_instant_after_it() {
    // 02:30 does not exist on 2026-03-29: the clocks go from 01:59:59 CET to 03:00 CEST.
    let s = amsterdam("02:30", "05:00")
        .session_on(date("2026-03-29"))
        .unwrap();
    assert_eq!(s.start, utc("2026-03-29T01:00:00Z"), "03:00 CEST");
    assert_eq!(s.end, utc("2026-03-29T03:00:00Z"), "05:00 CEST");
    // An end in the gap is the jump too.
    let s = amsterdam("01:00", "02:30")
        .session_on(date("2026-03-29"))
        .unwrap();
    assert_eq!(s.start, utc("2026-03-29T00:00:00Z"), "01:00 CET");
    assert_eq!(s.end, utc("2026-03-29T01:00:00Z"), "the jump");
}

#[test]
fn a_session_wholly_inside_the_gap_does_not_happen_that_day() {
    let m = amsterdam("02:00", "02:45");
    assert_eq!(m.session_on(date("2026-03-29")), None);
    // Looking for it finds the next day's.
    assert_eq!(
        m.session_at_or_after(utc("2026-03-28T23:30:00Z")),
        Some(session(
            "2026-03-30",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:45:00Z"
        ))
    );
}

#[test]
fn fall_back_day_is_an_hour_longer_when_the_session_spans_the_fold() {
    let whole_day = amsterdam("00:00", "24:00")
        .session_on(date("2026-10-25"))
        .unwrap();
    assert_eq!(
        whole_day,
        session("2026-10-25", "2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")
    );
    assert_eq!(whole_day.end - whole_day.start, TimeDelta::hours(25));
    let daytime = amsterdam("08:00", "22:00")
        .session_on(date("2026-10-25"))
        .unwrap();
    assert_eq!(daytime.end - daytime.start, TimeDelta::hours(14));
    assert_eq!(daytime.start, utc("2026-10-25T07:00:00Z"), "08:00 CET");
}

#[test]
fn a_time_in_the_fall_back_fold_is_its_earlier_instant() {
    // 02:30 happens twice on 2026-10-25: at 00:30 UTC (CEST) and at 01:30 UTC (CET).
    let s = amsterdam("02:30", "02:45")
        .session_on(date("2026-10-25"))
        .unwrap();
    assert_eq!(s.start, utc("2026-10-25T00:30:00Z"));
    assert_eq!(s.end, utc("2026-10-25T00:45:00Z"));
    let s = amsterdam("01:00", "02:30")
        .session_on(date("2026-10-25"))
        .unwrap();
    assert_eq!(s.end - s.start, TimeDelta::minutes(90));
}

#[test]
fn the_session_for_an_instant_is_the_one_containing_it_else_the_next() {
    let m = amsterdam("08:00", "22:00");
    let today = session("2026-06-10", "2026-06-10T06:00:00Z", "2026-06-10T20:00:00Z");
    let tomorrow = session("2026-06-11", "2026-06-11T06:00:00Z", "2026-06-11T20:00:00Z");
    for (instant, expected) in [
        ("2026-06-10T00:00:00Z", today),
        ("2026-06-10T05:59:59Z", today),
        ("2026-06-10T06:00:00Z", today),
        ("2026-06-10T13:00:00Z", today),
        ("2026-06-10T19:59:59.999Z", today),
        // Half-open: at its end a session is over.
        ("2026-06-10T20:00:00Z", tomorrow),
        ("2026-06-10T23:30:00Z", tomorrow),
    ] {
        assert_eq!(
            m.session_at_or_after(utc(instant)),
            Some(expected),
            "{instant}"
        );
    }
    assert!(!today.contains(utc("2026-06-10T05:59:59Z")));
    assert!(today.contains(utc("2026-06-10T06:00:00Z")));
    assert!(today.contains(utc("2026-06-10T19:59:59.999Z")));
    assert!(!today.contains(utc("2026-06-10T20:00:00Z")));
}

#[test]
fn whole_day_sessions_follow_each_other_across_local_midnight() {
    let m = amsterdam("00:00", "24:00");
    let first = m.session_at_or_after(utc("2026-10-24T12:00:00Z")).unwrap();
    assert_eq!(first.date, date("2026-10-24"));
    let mut current = first;
    let mut lengths = Vec::new();
    for _ in 0..3 {
        let next = m.session_at_or_after(current.end).unwrap();
        assert_eq!(
            next.start, current.end,
            "no gap between {current:?} and {next:?}"
        );
        assert_eq!(next.date, current.date.succ_opt().unwrap());
        lengths.push((next.end - next.start).num_hours());
        current = next;
    }
    assert_eq!(lengths, [25, 24, 24]);
    // The local date names the session, even though it starts the evening before in UTC.
    assert_eq!(
        m.session_at_or_after(utc("2026-10-24T22:30:00Z"))
            .unwrap()
            .date,
        date("2026-10-25")
    );
}

#[test]
fn the_bundled_tz_database_knows_the_zones_so_a_machine_without_zoneinfo_works() {
    let bundled = jiff::tz::TimeZoneDatabase::bundled();
    assert!(!bundled.is_definitively_empty());
    let zone = bundled.get("Europe/Amsterdam").unwrap();
    let jump: jiff::Timestamp = "2026-03-29T01:00:00Z".parse().unwrap();
    let before = jump
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    assert_eq!(zone.to_offset(before).seconds(), 3600);
    assert_eq!(zone.to_offset(jump).seconds(), 7200);
}
