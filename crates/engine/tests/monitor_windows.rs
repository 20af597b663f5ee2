//! The window state machine of a monitor session (SPEC §12): window math, late start, resets,
//! the session end, events at boundaries, catch-up after downtime, numbering, references.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use status_check_engine::monitor::{
    Session, WindowEnding, WindowLength, WindowSpan, WindowState, advance, parse_monitor_list,
};

/// 2026-06-01 at `hh:mm:ss` UTC.
fn at(hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 6, 1)
        .unwrap()
        .and_hms_opt(hour, minute, second)
        .unwrap()
        .and_utc()
}

/// The session 08:00–10:00 UTC.
fn session() -> Session {
    Session {
        date: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        start: at(8, 0, 0),
        end: at(10, 0, 0),
    }
}

fn minutes(n: i64) -> WindowLength {
    WindowLength::from_seconds(n * 60).unwrap()
}

fn span(number: u32, start: DateTime<Utc>, end: DateTime<Utc>, ending: WindowEnding) -> WindowSpan {
    WindowSpan {
        number,
        start,
        end,
        ending,
    }
}

/// A window given 30 minutes (the length most tests run with).
fn state(number: u32, start: DateTime<Utc>, end: DateTime<Utc>) -> WindowState {
    given(number, start, end, minutes(30))
}

fn given(
    number: u32,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    length: WindowLength,
) -> WindowState {
    WindowState {
        session_date: session().date,
        session_end: session().end,
        window_number: number,
        window_start: start,
        window_end: end,
        window_length: length,
    }
}

use WindowEnding::{Expired, Reset, SessionEnded};

#[test]
fn a_session_opened_on_time_starts_window_one_at_its_start() {
    let opened = WindowState::open(&session(), minutes(30), at(7, 59, 0)).unwrap();
    assert_eq!(opened, state(1, at(8, 0, 0), at(8, 30, 0)));
    assert_eq!(opened.alarms_sent(), 0);
    assert_eq!(opened.due_at(), at(8, 30, 0));
}

#[test]
fn a_late_start_opens_the_first_window_then() {
    let opened = WindowState::open(&session(), minutes(30), at(8, 10, 0)).unwrap();
    assert_eq!(opened, state(1, at(8, 10, 0), at(8, 40, 0)));
    // Late enough that the first window is cut by the session end.
    let opened = WindowState::open(&session(), minutes(30), at(9, 50, 0)).unwrap();
    assert_eq!(opened, state(1, at(9, 50, 0), at(10, 0, 0)));
    // Too late: the session is over.
    assert_eq!(
        WindowState::open(&session(), minutes(30), at(10, 0, 0)),
        None
    );
}

/// Opened at 08:10:00.400, window 1 starts at 08:10:00: in whole seconds, as Megazord stamps
/// events, so an event stamped 08:40:00 (it may have happened at 08:40:00.700, after the
/// window's end) is the next window's, and window 1 alarms.
#[test]
fn a_window_opened_mid_second_starts_at_that_second() {
    let opened = at(8, 10, 0) + TimeDelta::milliseconds(400);
    let open = WindowState::open(&session(), minutes(30), opened).unwrap();
    assert_eq!(open, state(1, at(8, 10, 0), at(8, 40, 0)));
    let result = advance(&open, minutes(30), &[at(8, 40, 0)], at(8, 40, 1)).unwrap();
    assert_eq!(
        result.spans,
        [span(1, at(8, 10, 0), at(8, 40, 0), Expired)],
        "window 1 passed without the event"
    );
}

#[test]
fn nothing_happens_before_the_window_ends() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(30), &[], at(8, 29, 59)).unwrap();
    assert!(result.spans.is_empty());
    assert_eq!(result.state, Some(open));
}

#[test]
fn a_quiet_window_alarms_once_and_the_next_opens_at_its_end() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(30), &[], at(8, 30, 0)).unwrap();
    assert_eq!(result.spans, [span(1, at(8, 0, 0), at(8, 30, 0), Expired)]);
    let next = result.state.unwrap();
    assert_eq!(next, state(2, at(8, 30, 0), at(9, 0, 0)));
    assert_eq!(next.alarms_sent(), 1);
    // Asking again at the same instant changes nothing: the alarm is not repeated.
    let again = advance(&next, minutes(30), &[], at(8, 30, 0)).unwrap();
    assert!(again.spans.is_empty());
}

#[test]
fn an_event_restarts_the_window_at_its_time_keeping_the_number() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(30), &[at(8, 20, 0)], at(8, 25, 0)).unwrap();
    assert_eq!(result.spans, [span(1, at(8, 0, 0), at(8, 20, 0), Reset)]);
    assert_eq!(result.alarms().count(), 0);
    let restarted = result.state.unwrap();
    assert_eq!(restarted, state(1, at(8, 20, 0), at(8, 50, 0)));
    // No alarm at the old end; the first alarm is still number 1.
    let quiet = advance(&restarted, minutes(30), &[], at(8, 50, 0)).unwrap();
    assert_eq!(quiet.spans, [span(1, at(8, 20, 0), at(8, 50, 0), Expired)]);
}

#[test]
fn an_event_exactly_at_a_window_end_belongs_to_the_next_window() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(30), &[at(8, 30, 0)], at(8, 30, 0)).unwrap();
    // The window had passed when the event came: it alarms, and the event starts window 2,
    // which already starts at that instant.
    assert_eq!(result.spans, [span(1, at(8, 0, 0), at(8, 30, 0), Expired)]);
    assert_eq!(result.state, Some(state(2, at(8, 30, 0), at(9, 0, 0))));
    // One instant earlier the event is inside window 1 and resets it.
    let just_before = at(8, 30, 0) - TimeDelta::milliseconds(1);
    let result = advance(&open, minutes(30), &[just_before], at(8, 30, 0)).unwrap();
    assert_eq!(result.spans, [span(1, at(8, 0, 0), just_before, Reset)]);
}

#[test]
fn events_at_the_window_start_or_before_it_change_nothing() {
    let open = state(1, at(8, 10, 0), at(8, 40, 0));
    let result = advance(
        &open,
        minutes(30),
        &[at(7, 0, 0), at(8, 5, 0), at(8, 10, 0)],
        at(8, 20, 0),
    )
    .unwrap();
    assert!(result.spans.is_empty());
    assert_eq!(result.state, Some(open));
}

#[test]
fn an_event_later_than_now_counts_as_happening_now() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(30), &[at(8, 10, 2)], at(8, 10, 0)).unwrap();
    assert_eq!(result.spans, [span(1, at(8, 0, 0), at(8, 10, 0), Reset)]);
    assert_eq!(result.state, Some(state(1, at(8, 10, 0), at(8, 40, 0))));
}

#[test]
fn the_session_end_cuts_the_last_window_which_then_does_not_alarm() {
    let open = WindowState::open(&session(), minutes(45), at(8, 0, 0)).unwrap();
    let result = advance(&open, minutes(45), &[], at(10, 0, 0)).unwrap();
    assert_eq!(
        result.spans,
        [
            span(1, at(8, 0, 0), at(8, 45, 0), Expired),
            span(2, at(8, 45, 0), at(9, 30, 0), Expired),
            span(3, at(9, 30, 0), at(10, 0, 0), SessionEnded),
        ]
    );
    assert_eq!(result.state, None, "the session is over");
}

#[test]
fn a_reset_near_the_end_leaves_a_cut_window_without_alarm() {
    let open = state(4, at(9, 30, 0), at(10, 0, 0));
    let result = advance(&open, minutes(30), &[at(9, 40, 0)], at(10, 0, 0)).unwrap();
    assert_eq!(
        result.spans,
        [
            span(4, at(9, 30, 0), at(9, 40, 0), Reset),
            span(4, at(9, 40, 0), at(10, 0, 0), SessionEnded),
        ]
    );
    assert_eq!(result.state, None);
}

#[test]
fn a_full_window_ending_exactly_at_the_session_end_alarms() {
    let open = WindowState::open(&session(), minutes(30), at(8, 0, 0)).unwrap();
    let result = advance(&open, minutes(30), &[], at(12, 0, 0)).unwrap();
    let numbers: Vec<u32> = result.alarms().map(|s| s.number).collect();
    assert_eq!(numbers, [1, 2, 3, 4]);
    assert_eq!(result.spans.last().unwrap().end, at(10, 0, 0));
    assert_eq!(result.state, None);
}

#[test]
fn catch_up_after_downtime_alarms_each_missed_window_once_numbered_in_order() {
    // Stored before the crash: window 1 open from 08:00. Back at 09:40, the backfill found
    // one event at 08:50.
    let stored = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&stored, minutes(30), &[at(8, 50, 0)], at(9, 40, 0)).unwrap();
    assert_eq!(
        result.spans,
        [
            span(1, at(8, 0, 0), at(8, 30, 0), Expired),
            span(2, at(8, 30, 0), at(8, 50, 0), Reset),
            span(2, at(8, 50, 0), at(9, 20, 0), Expired),
        ]
    );
    assert_eq!(result.state, Some(state(3, at(9, 20, 0), at(9, 50, 0))));
    // The same backfill again (a retry after a failed commit) gives the same answer.
    assert_eq!(
        advance(
            &stored,
            minutes(30),
            &[at(8, 50, 0), at(8, 50, 0)],
            at(9, 40, 0)
        )
        .unwrap(),
        result
    );
}

#[test]
fn catch_up_past_the_session_end_closes_the_session() {
    let stored = state(2, at(9, 0, 0), at(9, 30, 0));
    let next_day = at(10, 0, 0) + TimeDelta::days(1);
    let result = advance(
        &stored,
        minutes(30),
        &[at(9, 45, 0), at(10, 5, 0)],
        next_day,
    )
    .unwrap();
    assert_eq!(
        result.spans,
        [
            span(2, at(9, 0, 0), at(9, 30, 0), Expired),
            span(3, at(9, 30, 0), at(9, 45, 0), Reset),
            span(3, at(9, 45, 0), at(10, 0, 0), SessionEnded),
        ]
    );
    assert_eq!(result.state, None);
    assert_eq!(result.session_date, session().date);
}

#[test]
fn a_changed_window_length_applies_from_the_next_window() {
    let open = state(1, at(8, 0, 0), at(8, 30, 0));
    let result = advance(&open, minutes(10), &[], at(8, 30, 0)).unwrap();
    assert_eq!(result.spans, [span(1, at(8, 0, 0), at(8, 30, 0), Expired)]);
    assert_eq!(
        result.state,
        Some(given(2, at(8, 30, 0), at(8, 40, 0), minutes(10)))
    );
}

/// The session's end judges the last window by the length it was given, not by a length the
/// monitor took meanwhile (the open window keeps its end): a full quiet window alarms after a
/// change to a longer length, a cut one does not after a change to a shorter one.
#[test]
fn the_last_window_is_judged_by_the_length_it_was_given() {
    // A 30 min window that ends exactly at the session's end (10:00): full. The monitor is now
    // 45 min long.
    let full = state(4, at(9, 30, 0), at(10, 0, 0));
    let result = advance(&full, minutes(45), &[], at(10, 0, 0)).unwrap();
    assert_eq!(result.spans, [span(4, at(9, 30, 0), at(10, 0, 0), Expired)]);
    // A 45 min window cut to 20 min by the session's end; the monitor is now 10 min long.
    let cut = given(2, at(9, 40, 0), at(10, 0, 0), minutes(45));
    let result = advance(&cut, minutes(10), &[], at(10, 0, 0)).unwrap();
    assert_eq!(
        result.spans,
        [span(2, at(9, 40, 0), at(10, 0, 0), SessionEnded)]
    );
}

#[test]
fn a_broken_stored_state_is_refused() {
    for broken in [
        state(0, at(8, 0, 0), at(8, 30, 0)),
        state(1, at(8, 30, 0), at(8, 30, 0)),
        state(1, at(9, 50, 0), at(10, 10, 0)),
    ] {
        assert!(broken.validate().is_err(), "{broken:?}");
        assert!(advance(&broken, minutes(30), &[], at(9, 0, 0)).is_err());
    }
}

#[test]
fn a_four_second_window_all_day_alarms_every_quiet_four_seconds() {
    let whole_day = Session {
        date: session().date,
        start: at(0, 0, 0),
        end: at(0, 0, 0) + TimeDelta::days(1),
    };
    let window = WindowLength::parse("4s").unwrap();
    let open = WindowState::open(&whole_day, window, at(12, 0, 1)).unwrap();
    // Quiet for 20 s, an event at 12:00:22, quiet again until 12:00:29.
    let result = advance(&open, window, &[at(12, 0, 22)], at(12, 0, 29)).unwrap();
    let alarm_ends: Vec<_> = result.alarms().map(|s| (s.number, s.end)).collect();
    assert_eq!(
        alarm_ends,
        [
            (1, at(12, 0, 5)),
            (2, at(12, 0, 9)),
            (3, at(12, 0, 13)),
            (4, at(12, 0, 17)),
            (5, at(12, 0, 21)),
            (6, at(12, 0, 26)),
        ]
    );
    assert_eq!(result.state.unwrap().window_end, at(12, 0, 30));
}

#[test]
fn dst_days_have_one_window_fewer_or_more() {
    let text = r#"
- robotId: 42
  ruleId: hourly
  eventType: TOILET_ACTIVITY
  window: 1h
  timezone: Europe/Amsterdam
  daily: {start: "00:00", end: "24:00"}
  actions: [{type: alarm, eventName: NO_TOILET_ACTIVITY_ALARM}]
"#;
    let monitor = parse_monitor_list(text).unwrap().remove(0);
    for (day, windows) in [("2026-03-29", 23), ("2026-06-01", 24), ("2026-10-25", 25)] {
        let session = monitor.session_on(day.parse().unwrap()).unwrap();
        let open = WindowState::open(&session, monitor.window(), session.start).unwrap();
        let result = advance(&open, monitor.window(), &[], session.end).unwrap();
        assert_eq!(result.alarms().count(), windows, "{day}");
        assert!(
            result
                .spans
                .iter()
                .all(|s| s.end - s.start == TimeDelta::hours(1))
        );
        assert_eq!(result.state, None);
    }
}

#[test]
fn alarms_carry_the_stable_reference_of_their_window() {
    let text = r#"
- robotId: 42
  ruleId: no-toilet
  eventType: TOILET_ACTIVITY
  window: 2h
  daily: {start: "08:00", end: "22:00"}
  actions:
    - {type: alarm, eventName: NO_TOILET_ACTIVITY_ALARM}
    - {type: alarm, eventName: CARER_CALL, level: 3}
"#;
    let monitor = parse_monitor_list(text).unwrap().remove(0);
    let date: NaiveDate = "2026-03-29".parse().unwrap();
    assert_eq!(
        monitor.reference_id(date, 3),
        "status-check:42:no-toilet:2026-03-29:3"
    );
    let alarms = monitor.alarms(date, 3);
    assert_eq!(alarms.len(), 2);
    assert_eq!(
        (
            alarms[0].action_index,
            alarms[0].event_name.as_str(),
            alarms[0].level
        ),
        (0, "NO_TOILET_ACTIVITY_ALARM", None)
    );
    assert_eq!(
        (
            alarms[1].action_index,
            alarms[1].event_name.as_str(),
            alarms[1].level
        ),
        (1, "CARER_CALL", Some(3))
    );
    assert!(
        alarms
            .iter()
            .all(|a| a.reference_id == "status-check:42:no-toilet:2026-03-29:3")
    );
}

/// An action the same as an earlier one (event and level) is posted once: every post of a
/// window carries its reference id, so nothing could tell the two apart.
#[test]
fn an_action_repeated_is_one_alarm() {
    let text = r#"
- robotId: 42
  ruleId: no-toilet
  eventType: TOILET_ACTIVITY
  window: 2h
  daily: {start: "08:00", end: "22:00"}
  actions:
    - {type: alarm, eventName: NO_TOILET_ACTIVITY_ALARM}
    - {type: alarm, eventName: CARER_CALL, level: 2}
    - {type: alarm, eventName: NO_TOILET_ACTIVITY_ALARM}
    - {type: alarm, eventName: CARER_CALL, level: 1}
    - {type: alarm, eventName: CARER_CALL, level: 2}
"#;
    let monitor = parse_monitor_list(text).unwrap().remove(0);
    let date: NaiveDate = "2026-03-29".parse().unwrap();
    let alarms = monitor.alarms(date, 1);
    let posted: Vec<(usize, &str, Option<u8>)> = alarms
        .iter()
        .map(|a| (a.action_index, a.event_name.as_str(), a.level))
        .collect();
    assert_eq!(
        posted,
        [
            (0, "NO_TOILET_ACTIVITY_ALARM", None),
            (1, "CARER_CALL", Some(2)),
            (3, "CARER_CALL", Some(1)),
        ]
    );
}

#[test]
fn the_state_serialises_with_the_api_field_names() {
    let json = serde_json::to_value(state(2, at(8, 30, 0), at(9, 0, 0))).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "sessionDate": "2026-06-01",
            "sessionEnd": "2026-06-01T10:00:00Z",
            "windowNumber": 2,
            "windowStart": "2026-06-01T08:30:00Z",
            "windowEnd": "2026-06-01T09:00:00Z",
            "windowLength": "30m",
        })
    );
    let back: WindowState = serde_json::from_value(json).unwrap();
    assert_eq!(back, state(2, at(8, 30, 0), at(9, 0, 0)));
}
