//! Properties of the lifecycle that must hold for any deliveries (SPEC §3.3, §3.4): processing
//! is idempotent, and with `pollUntilEnd` the order of deliveries never changes the outcome.

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use proptest::sample::{Index, subsequence};
use status_check_engine::lifecycle::{Check, Delivery, EndReason, NextSteps, Skip, Windows};
use status_check_engine::template::PollerDefaults;
use status_check_engine::{CheckPhase, CheckResult, Event, Limits, Record, Template};

const FUTURE_INTERVAL: i64 = 600;

fn anchor() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    anchor() + TimeDelta::seconds(secs)
}

/// The evaluation time for every decision: the rules here do not read `now`.
fn now() -> DateTime<Utc> {
    at(1)
}

/// Future rules that would give different answers if they saw events in arrival order
/// rather than sorted, and one (UNKNOWN) that errors on short histories.
fn template(poll_until_end: bool) -> Template {
    let yaml = format!(
        r#"
name: prop
version: 1
pollUntilEnd: {poll_until_end}
poller: {{pastInterval: 3600, futureInterval: {FUTURE_INTERVAL}}}
resources:
  pastEvents:
    dependsOn: [A, B]
    PASS: 'past.size() > 100'
  futureEvents:
    dependsOn: [A, B]
    PASS: 'future.size() >= 2 && future[future.size() - 1].name == "A" && future[0].name == "B"'
    FAIL: 'future.size() >= 3 && future[1].name == "A"'
    UNKNOWN: 'future[4].name == "B"'
"#
    );
    Template::from_yaml(&yaml, "prop.yaml", &Limits::default())
        .unwrap_or_else(|errors| panic!("{errors:?}"))
}

thread_local! {
    static UNTIL_END: Template = template(true);
    static FIRST_DECISIVE: Template = template(false);
}

fn with_template<R>(poll_until_end: bool, f: impl FnOnce(&Template) -> R) -> R {
    if poll_until_end {
        UNTIL_END.with(f)
    } else {
        FIRST_DECISIVE.with(f)
    }
}

fn started(template: &Template, limits: Limits) -> Check {
    let windows = Windows::compute(0, 0, &template.poller, anchor()).unwrap();
    let next_steps = NextSteps {
        pass: 1,
        fail: 2,
        unknown: Some(3),
    };
    let mut check = Check::new(42, anchor(), windows, next_steps, template, limits);
    check.start(template, vec![], now());
    assert_eq!(check.phase, CheckPhase::Future);
    check
}

fn deliver_each(check: &mut Check, template: &Template, events: &[Event]) {
    for event in events {
        check.take_future(template, vec![Delivery::from(event.clone())], now());
    }
}

type Snapshot = (
    CheckPhase,
    CheckResult,
    Option<i64>,
    Option<EndReason>,
    Vec<Record>,
);

fn snapshot(check: &Check) -> Snapshot {
    (
        check.phase,
        check.result,
        check.next_step_id,
        check.end_reason,
        check.history.records().to_vec(),
    )
}

fn outcome(check: &Check) -> (CheckPhase, CheckResult, Option<i64>, Vec<i64>) {
    let mut ids: Vec<i64> = check.history.records().iter().map(|r| r.event.id).collect();
    ids.sort_unstable();
    (check.phase, check.result, check.next_step_id, ids)
}

/// Events with distinct random ids, names from `names` and times (seconds from the anchor)
/// from `times`, in random order.
fn events(
    names: &'static [&'static str],
    times: impl Strategy<Value = i64> + Clone + 'static,
    max: usize,
) -> impl Strategy<Value = Vec<Event>> {
    prop::collection::btree_set(1i64..100_000, 0..=max)
        .prop_flat_map(move |ids| {
            let n = ids.len();
            (
                Just(ids),
                prop::collection::vec((prop::sample::select(names), times.clone()), n),
            )
        })
        .prop_map(|(ids, attrs)| {
            ids.into_iter()
                .zip(attrs)
                .map(|(id, (name, secs))| Event {
                    id,
                    name: name.to_owned(),
                    created_at: at(secs),
                    level: Some(1),
                    reference_id: None,
                })
                .collect::<Vec<_>>()
        })
        .prop_shuffle()
}

/// Times inside the future window, crowded at its ends so that equal times are common.
fn inside() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        1i64..=4,
        1i64..=FUTURE_INTERVAL,
        FUTURE_INTERVAL - 3..=FUTURE_INTERVAL
    ]
}

/// Times around the future window, including before the anchor and after the deadline.
fn around() -> impl Strategy<Value = i64> + Clone {
    prop_oneof![
        -3i64..=3,
        1i64..=FUTURE_INTERVAL,
        FUTURE_INTERVAL - 3..=FUTURE_INTERVAL + 3
    ]
}

/// Depended-on names, and one that is not.
const ANY: &[&str] = &["A", "B", "C"];
const DEPENDED_ON: &[&str] = &["A", "B"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// (a) Delivering an event a second time, right away, leaves the check as one delivery
    /// does; the repeat itself reports no change and no effect.
    #[test]
    fn same_delivery_twice_is_same_as_once(
        poll_until_end in any::<bool>(),
        events in events(ANY, around(), 10),
        which in any::<Index>(),
    ) {
        with_template(poll_until_end, |t| {
            let mut once = started(t, Limits::default());
            let mut twice = started(t, Limits::default());
            deliver_each(&mut once, t, &events);
            let repeat = if events.is_empty() { None } else { Some(which.index(events.len())) };
            for (i, event) in events.iter().enumerate() {
                twice.take_future(t, vec![Delivery::from(event.clone())], now());
                if repeat == Some(i) {
                    let before = snapshot(&twice);
                    let again = twice.take_future(t, vec![Delivery::from(event.clone())], now());
                    prop_assert_eq!(snapshot(&twice), before);
                    prop_assert!(!again.changed);
                    prop_assert_eq!(again.appended, 0);
                    prop_assert!(again.effects.is_empty());
                    prop_assert!(again.rule_failures.is_empty());
                    prop_assert_eq!(again.skipped.len(), 1);
                }
            }
            prop_assert_eq!(snapshot(&twice), snapshot(&once));
            Ok(())
        })?;
    }

    /// (b) With `pollUntilEnd`, the outcome after the deadline and the set of records do not
    /// depend on the order or batching of the deliveries.
    #[test]
    fn poll_until_end_outcome_is_independent_of_delivery_order(
        (events, shuffled) in events(DEPENDED_ON, inside(), 12)
            .prop_flat_map(|events| (Just(events.clone()), Just(events).prop_shuffle())),
    ) {
        UNTIL_END.with(|t| {
            let reversed: Vec<Event> = events.iter().rev().cloned().collect();
            let mut outcomes = Vec::new();
            let mut open_results = Vec::new();
            for order in [&events, &reversed, &shuffled] {
                let mut check = started(t, Limits::default());
                deliver_each(&mut check, t, order);
                prop_assert_eq!(check.phase, CheckPhase::Future);
                open_results.push(check.result);
                check.finalise();
                prop_assert!(check.phase.is_final());
                outcomes.push(outcome(&check));
            }
            // All at once, as a backfill.
            let mut batch = started(t, Limits::default());
            batch.take_future(t, events.iter().cloned().map(Delivery::from).collect(), now());
            open_results.push(batch.result);
            batch.finalise();
            outcomes.push(outcome(&batch));

            let all: Vec<i64> = {
                let mut ids: Vec<i64> = events.iter().map(|e| e.id).collect();
                ids.sort_unstable();
                ids
            };
            prop_assert_eq!(&outcomes[0].3, &all, "every event in the window is recorded");
            for (i, other) in outcomes.iter().enumerate().skip(1) {
                prop_assert_eq!(other, &outcomes[0], "order {}", i);
                prop_assert_eq!(open_results[i], open_results[0]);
            }
            Ok(())
        })?;
    }

    /// (c) Redelivering any subset of the events already delivered, in any order and as one
    /// batch or one by one, changes nothing.
    #[test]
    fn redelivering_delivered_events_changes_nothing(
        poll_until_end in any::<bool>(),
        (events, again) in events(ANY, around(), 10).prop_flat_map(|events| {
            let n = events.len();
            (Just(events.clone()), subsequence(events, 0..=n).prop_shuffle())
        }),
        as_batch in any::<bool>(),
    ) {
        with_template(poll_until_end, |t| {
            let mut check = started(t, Limits::default());
            deliver_each(&mut check, t, &events);
            let before = snapshot(&check);
            let transitions = if as_batch {
                vec![check.take_future(t, again.iter().cloned().map(Delivery::from).collect(), now())]
            } else {
                again
                    .iter()
                    .map(|e| check.take_future(t, vec![Delivery::from(e.clone())], now()))
                    .collect()
            };
            prop_assert_eq!(snapshot(&check), before);
            let mut skipped = 0;
            for transition in transitions {
                prop_assert!(!transition.changed);
                prop_assert_eq!(transition.appended, 0);
                prop_assert!(transition.effects.is_empty());
                skipped += transition.skipped.len();
            }
            prop_assert_eq!(skipped, again.len());
            Ok(())
        })?;
    }

    /// Whatever is delivered, the history never passes the cap, never holds an event twice,
    /// only holds depended-on events inside the window, numbers its records 1..n, and a
    /// check that ended never changes again.
    #[test]
    fn history_stays_within_its_invariants(
        poll_until_end in any::<bool>(),
        events in events(ANY, around(), 10),
        cap in 1usize..=6,
    ) {
        with_template(poll_until_end, |t| {
            let limits = Limits { history_cap: cap, ..Limits::default() };
            let mut check = started(t, limits);
            let mut ended: Option<Snapshot> = None;
            let mut accepted = 0;
            for event in &events {
                let transition = check.take_future(t, vec![Delivery::from(event.clone())], now());
                if let Some(frozen) = &ended {
                    prop_assert_eq!(&snapshot(&check), frozen);
                    prop_assert!(transition.effects.is_empty());
                    prop_assert_eq!(&transition.skipped, &vec![Skip::NotListening(event.id)]);
                }
                let admissible = DEPENDED_ON.contains(&event.name.as_str())
                    && check.windows.in_future(event.created_at);
                if transition.appended == 1 {
                    prop_assert!(admissible);
                    accepted += 1;
                }
                if check.phase.is_final() && ended.is_none() {
                    ended = Some(snapshot(&check));
                }
            }
            let records = check.history.records();
            prop_assert!(records.len() <= cap);
            prop_assert_eq!(records.len(), accepted);
            let orders: Vec<u32> = records.iter().map(|r| r.order).collect();
            let expected: Vec<u32> = (1..=records.len() as u32).collect();
            prop_assert_eq!(orders, expected);
            let mut ids: Vec<i64> = records.iter().map(|r| r.event.id).collect();
            ids.sort_unstable();
            ids.dedup();
            prop_assert_eq!(ids.len(), records.len());
            if check.end_reason == Some(EndReason::HistoryCap) {
                prop_assert_eq!(records.len(), cap);
                prop_assert_eq!(check.result, CheckResult::Fail);
                prop_assert_eq!(check.next_step_id, Some(2));
            }
            if poll_until_end {
                prop_assert!(matches!(
                    check.end_reason,
                    None | Some(EndReason::HistoryCap)
                ));
            }
            Ok(())
        })?;
    }

    /// Windows: an instant is never in both the past and the future window, and each window
    /// is exactly the interval SPEC §3.1 gives.
    #[test]
    fn windows_match_their_intervals(
        past in -1i64..=100_000,
        future in 0i64..=100_000,
        default_past in -1i64..=100_000,
        default_future in 0i64..=100_000,
        offset in -200_000i64..=200_000,
    ) {
        let defaults = PollerDefaults { past_interval: default_past, future_interval: default_future };
        let windows = Windows::compute(past, future, &defaults, anchor()).unwrap();
        let past = if past == 0 { default_past } else { past };
        let future = if future == 0 { default_future } else { future };
        let instant = at(offset);
        prop_assert!(!(windows.in_past(instant) && windows.in_future(instant)));
        let in_past = match past {
            -1 => offset <= 0,
            0 => false,
            p => (-p..=0).contains(&offset),
        };
        prop_assert_eq!(windows.in_past(instant), in_past);
        prop_assert_eq!(windows.in_future(instant), offset > 0 && offset <= future);
        prop_assert_eq!(windows.until, (future > 0).then(|| at(future)));
    }
}
