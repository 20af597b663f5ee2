//! Properties of a monitor session's windows (SPEC §12) for any event sequence: the windows
//! cover the session from its (possibly late) start to its end without gaps or overlaps,
//! every quiet full window alarms exactly once and no other does, alarm numbers run 1, 2, 3…,
//! and advancing in one step or in many (repeating events already seen) gives the same result.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use proptest::prelude::*;
use status_check_engine::monitor::{
    Session, WindowEnding, WindowLength, WindowSpan, WindowState, advance,
};

fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_300_800, 0).unwrap() + TimeDelta::seconds(seconds)
}

fn session(length: i64) -> Session {
    Session {
        date: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
        start: at(0),
        end: at(length),
    }
}

#[derive(Debug, Clone)]
struct Case {
    session_length: i64,
    window: i64,
    watch_from: i64,
    /// Seconds from the session start; some after its end.
    events: Vec<i64>,
    /// Instants of the intermediate calls, for the many-steps run.
    cuts: Vec<i64>,
}

fn cases() -> impl Strategy<Value = Case> {
    (1i64..=7200, 1i64..=1800).prop_flat_map(|(session_length, window)| {
        let late = prop_oneof![Just(0), 0..session_length];
        let events = prop::collection::vec(-30..session_length + 60, 0..40);
        let cuts = prop::collection::vec(0..session_length + 60, 0..12);
        (late, events, cuts).prop_map(move |(watch_from, events, cuts)| Case {
            session_length,
            window,
            watch_from,
            events,
            cuts,
        })
    })
}

/// An independent model: step through the session one second at a time. At each instant a
/// window that has run its length (or reached the session end) ends first, then an event
/// restarts the open window.
fn simulate(case: &Case) -> Vec<(u32, i64, i64, WindowEnding)> {
    let end = case.session_length;
    let mut spans = Vec::new();
    let (mut number, mut start) = (1, case.watch_from);
    for t in case.watch_from + 1..=end {
        if t == (start + case.window).min(end) {
            if t == end && t - start < case.window {
                spans.push((number, start, t, WindowEnding::SessionEnded));
                break;
            }
            spans.push((number, start, t, WindowEnding::Expired));
            number += 1;
            start = t;
            if t == end {
                break;
            }
        }
        if case.events.contains(&t) && t > start {
            spans.push((number, start, t, WindowEnding::Reset));
            start = t;
        }
    }
    spans
}

fn window(case: &Case) -> WindowLength {
    WindowLength::from_seconds(case.window).unwrap()
}

fn event_times(events: &[i64]) -> Vec<DateTime<Utc>> {
    events.iter().map(|s| at(*s)).collect()
}

fn one_step(case: &Case) -> (Vec<WindowSpan>, Option<WindowState>) {
    let opened = WindowState::open(
        &session(case.session_length),
        window(case),
        at(case.watch_from),
    )
    .unwrap();
    let after = at(case.session_length + 3600);
    let result = advance(&opened, window(case), &event_times(&case.events), after).unwrap();
    (result.spans, result.state)
}

fn in_seconds(instant: DateTime<Utc>) -> i64 {
    (instant - at(0)).num_seconds()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn windows_cover_the_session_and_quiet_ones_alarm_exactly_once(case in cases()) {
        let (spans, state) = one_step(&case);
        prop_assert_eq!(state, None, "the session is over after its end");
        // No gaps, no overlaps, from the late start to the session end.
        prop_assert_eq!(spans.first().map(|s| in_seconds(s.start)), Some(case.watch_from));
        prop_assert_eq!(spans.last().map(|s| in_seconds(s.end)), Some(case.session_length));
        for pair in spans.windows(2) {
            prop_assert_eq!(pair[0].end, pair[1].start);
        }
        let events_in = |span: &WindowSpan| {
            let (start, end) = (in_seconds(span.start), in_seconds(span.end));
            case.events.iter().any(|e| start < *e && *e < end)
        };
        let mut expired = 0;
        for (i, span) in spans.iter().enumerate() {
            prop_assert!(span.start < span.end);
            prop_assert_eq!(span.number, expired + 1, "numbers run on without gaps");
            let length = in_seconds(span.end) - in_seconds(span.start);
            match span.ending {
                WindowEnding::Expired => {
                    prop_assert!(!events_in(span), "an alarmed window saw no event: {:?}", span);
                    prop_assert_eq!(length, case.window);
                    expired += 1;
                }
                WindowEnding::Reset => {
                    prop_assert!(case.events.contains(&in_seconds(span.end)));
                    prop_assert!(!events_in(span), "a reset ends at the first event");
                }
                WindowEnding::SessionEnded => {
                    prop_assert_eq!(i, spans.len() - 1);
                    prop_assert!(length < case.window);
                    prop_assert!(!events_in(span));
                }
            }
        }
        // A quiet full window is exactly one that alarms: every stretch of `window` seconds
        // after a (re)start without an event ended in an alarm.
        let simulated: Vec<_> = spans
            .iter()
            .map(|s| (s.number, in_seconds(s.start), in_seconds(s.end), s.ending))
            .collect();
        prop_assert_eq!(simulated, simulate(&case));
    }

    #[test]
    fn advancing_in_many_steps_gives_the_same_as_in_one(case in cases()) {
        let (expected_spans, expected_state) = one_step(&case);
        let mut cuts = case.cuts.clone();
        cuts.sort_unstable();
        cuts.push(case.session_length + 3600);
        let mut state = Some(
            WindowState::open(&session(case.session_length), window(&case), at(case.watch_from))
                .unwrap(),
        );
        let mut spans = Vec::new();
        for cut in cuts {
            let Some(current) = state else { break };
            // Every event seen so far again, as a redelivery or a repeated backfill would.
            let seen: Vec<i64> = case.events.iter().copied().filter(|e| *e <= cut).collect();
            let result = advance(&current, window(&case), &event_times(&seen), at(cut)).unwrap();
            spans.extend(result.spans);
            state = result.state;
        }
        prop_assert_eq!(spans, expected_spans);
        prop_assert_eq!(state, expected_state);
    }

    #[test]
    fn event_order_in_a_call_does_not_matter(case in cases()) {
        let (expected, _) = one_step(&case);
        let mut reversed = case.clone();
        reversed.events.reverse();
        prop_assert_eq!(one_step(&reversed).0, expected);
    }
}
