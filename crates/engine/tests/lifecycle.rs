//! The check lifecycle against SPEC §3: windows, the past and future evaluations, skips,
//! finishing, next steps and the history cap.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::lifecycle::{
    Check, Delivery, Effect, EndReason, MissingCommand, NextSteps, Skip, Transition, WindowError,
    Windows,
};
use status_check_engine::template::{MAX_INTERVAL, PollerDefaults};
use status_check_engine::{CheckPhase, CheckResult, Event, Limits, Record, RecordPhase, Template};

// ---- helpers ----

const PASS_STEP: i64 = 101;
const FAIL_STEP: i64 = 102;
const UNKNOWN_STEP: i64 = 103;

fn anchor() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

/// `secs` seconds after the anchor (negative: before).
fn at(secs: i64) -> DateTime<Utc> {
    anchor() + TimeDelta::seconds(secs)
}

fn event(id: i64, name: &str, secs: i64) -> Event {
    Event {
        id,
        name: name.to_owned(),
        created_at: at(secs),
        level: Some(1),
        reference_id: None,
    }
}

fn one(event: Event) -> Vec<Delivery> {
    vec![Delivery::from(event)]
}

fn steps() -> NextSteps {
    NextSteps {
        pass: PASS_STEP,
        fail: FAIL_STEP,
        unknown: Some(UNKNOWN_STEP),
    }
}

fn steps_without_unknown() -> NextSteps {
    NextSteps {
        unknown: None,
        ..steps()
    }
}

fn template(yaml: &str) -> Template {
    Template::from_yaml(yaml, "test.yaml", &Limits::default())
        .unwrap_or_else(|errors| panic!("test template rejected: {errors:?}\n{yaml}"))
}

/// A template from its parts; each phase is its lines (`dependsOn: [...]`, `PASS: '...'`).
fn build(
    poll_until_end: bool,
    past_interval: i64,
    future_interval: i64,
    past: Option<&[&str]>,
    future: Option<&[&str]>,
) -> Template {
    let mut yaml = format!(
        "name: test\nversion: 1\ndescription: a test template\npollUntilEnd: {poll_until_end}\n\
         poller: {{pastInterval: {past_interval}, futureInterval: {future_interval}}}\nresources:\n"
    );
    for (key, lines) in [("pastEvents", past), ("futureEvents", future)] {
        let Some(lines) = lines else { continue };
        yaml.push_str(&format!("  {key}:\n"));
        for line in lines {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    template(&yaml)
}

/// Past: PASS when the last past event is `A`. Future: PASS on any `A`.
fn charging(poll_until_end: bool, past_interval: i64, future_interval: i64) -> Template {
    build(
        poll_until_end,
        past_interval,
        future_interval,
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'past.size() > 0 && past[past.size() - 1].name == "A"'"#,
        ]),
        Some(&[
            "dependsOn: [A]",
            r#"PASS: 'future.exists(e, e.name == "A")'"#,
        ]),
    )
}

/// PASS / FAIL / UNKNOWN when an event named `P` / `F` / `U` is in; `X` decides nothing.
fn ordered(poll_until_end: bool, future_interval: i64) -> Template {
    build(
        poll_until_end,
        3600,
        future_interval,
        Some(&[
            "dependsOn: [P, F, U, X]",
            r#"PASS: 'past.exists(e, e.name == "P")'"#,
            r#"FAIL: 'past.exists(e, e.name == "F")'"#,
            r#"UNKNOWN: 'past.exists(e, e.name == "U")'"#,
        ]),
        Some(&[
            "dependsOn: [P, F, U, X]",
            r#"PASS: 'future.exists(e, e.name == "P")'"#,
            r#"FAIL: 'future.exists(e, e.name == "F")'"#,
            r#"UNKNOWN: 'future.exists(e, e.name == "U")'"#,
        ]),
    )
}

fn new_check(
    template: &Template,
    windows: Windows,
    next_steps: NextSteps,
    limits: Limits,
) -> Check {
    Check::new(42, anchor(), windows, next_steps, template, limits)
}

/// A check with the template's default windows, started with `past` events at the anchor.
fn started(template: &Template, past: Vec<Event>) -> (Check, Transition) {
    started_with(template, past, steps(), Limits::default())
}

fn started_with(
    template: &Template,
    past: Vec<Event>,
    next_steps: NextSteps,
    limits: Limits,
) -> (Check, Transition) {
    let windows = Windows::compute(0, 0, &template.poller, anchor()).unwrap();
    let mut check = new_check(template, windows, next_steps, limits);
    let transition = check.start(template, past, anchor());
    (check, transition)
}

fn ids(check: &Check) -> Vec<i64> {
    check.history.records().iter().map(|r| r.event.id).collect()
}

fn results(check: &Check) -> Vec<CheckResult> {
    check.history.records().iter().map(|r| r.result).collect()
}

fn has_subscribe(transition: &Transition) -> bool {
    transition
        .effects
        .iter()
        .any(|effect| matches!(effect, Effect::Subscribe { .. }))
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

fn defaults(past_interval: i64, future_interval: i64) -> PollerDefaults {
    PollerDefaults {
        past_interval,
        future_interval,
    }
}

// ---- §3.1 windows ----

#[test]
fn windows_use_the_node_intervals_when_set() {
    let windows = Windows::compute(600, 300, &defaults(3600, 60), anchor()).unwrap();
    assert_eq!(windows.anchor, anchor());
    assert!(windows.has_past);
    assert_eq!(windows.since, Some(at(-600)));
    assert_eq!(windows.until, Some(at(300)));
}

#[test]
fn windows_fall_back_to_template_defaults_for_zero() {
    let windows = Windows::compute(0, 0, &defaults(3600, 600), anchor()).unwrap();
    assert!(windows.has_past);
    assert_eq!(windows.since, Some(at(-3600)));
    assert_eq!(windows.until, Some(at(600)));

    // Each interval falls back on its own.
    let windows = Windows::compute(0, 30, &defaults(3600, 600), anchor()).unwrap();
    assert_eq!(windows.since, Some(at(-3600)));
    assert_eq!(windows.until, Some(at(30)));
    let windows = Windows::compute(120, 0, &defaults(3600, 600), anchor()).unwrap();
    assert_eq!(windows.since, Some(at(-120)));
    assert_eq!(windows.until, Some(at(600)));
}

#[test]
fn windows_minus_one_is_an_unbounded_past() {
    for (node, default) in [(-1, 3600), (0, -1)] {
        let windows = Windows::compute(node, 0, &defaults(default, 600), anchor()).unwrap();
        assert!(windows.has_past, "node {node}, default {default}");
        assert_eq!(windows.since, None, "node {node}, default {default}");
        assert!(windows.in_past(anchor() - TimeDelta::days(3650)));
        assert!(windows.in_past(anchor()));
        assert!(!windows.in_past(at(1)));
    }
}

#[test]
fn windows_zero_everywhere_means_no_past_and_no_future_phase() {
    let windows = Windows::compute(0, 0, &defaults(0, 0), anchor()).unwrap();
    assert!(!windows.has_past);
    assert_eq!(windows.since, Some(anchor()));
    assert_eq!(windows.until, None);
    assert!(!windows.in_past(anchor()));
    assert!(!windows.in_past(at(-1)));
    assert!(!windows.in_future(at(1)));
}

#[test]
fn windows_past_is_closed_and_future_is_open_at_the_anchor() {
    let windows = Windows::compute(600, 300, &defaults(0, 0), anchor()).unwrap();
    assert!(!windows.in_past(at(-601)));
    assert!(windows.in_past(at(-600)));
    assert!(windows.in_past(anchor()));
    assert!(!windows.in_past(at(1)));
    assert!(!windows.in_future(anchor()));
    assert!(windows.in_future(at(1)));
    assert!(windows.in_future(at(300)));
    assert!(!windows.in_future(at(301)));
}

#[test]
fn windows_reject_out_of_range_intervals() {
    let d = defaults(3600, 600);
    assert_eq!(
        Windows::compute(-2, 0, &d, anchor()),
        Err(WindowError::Past(-2))
    );
    assert_eq!(
        Windows::compute(MAX_INTERVAL + 1, 0, &d, anchor()),
        Err(WindowError::Past(MAX_INTERVAL + 1))
    );
    assert_eq!(
        Windows::compute(0, -1, &d, anchor()),
        Err(WindowError::Future(-1))
    );
    assert_eq!(
        Windows::compute(0, MAX_INTERVAL + 1, &d, anchor()),
        Err(WindowError::Future(MAX_INTERVAL + 1))
    );
    assert_eq!(
        Windows::compute(i64::MIN, i64::MAX, &d, anchor()),
        Err(WindowError::Past(i64::MIN))
    );
    let widest = Windows::compute(MAX_INTERVAL, MAX_INTERVAL, &d, anchor()).unwrap();
    assert_eq!(widest.since, Some(at(-MAX_INTERVAL)));
    assert_eq!(widest.until, Some(at(MAX_INTERVAL)));
}

// ---- §3.2 past evaluation ----

#[test]
fn past_events_outside_the_window_or_not_depended_on_are_skipped() {
    let t = charging(false, 600, 600);
    let (check, transition) = started(
        &t,
        vec![
            event(1, "A", -601),
            event(2, "B", -600),
            event(3, "B", 0),
            event(4, "A", 1),
            event(5, "C", -10),
        ],
    );
    assert_eq!(ids(&check), vec![2, 3]);
    assert_eq!(transition.appended, 2);
    let mut skipped = transition.skipped.clone();
    skipped.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        skipped,
        vec![
            Skip::NotDependedOn(5),
            Skip::OutOfWindow(1),
            Skip::OutOfWindow(4)
        ]
    );
    // Last past event is B: PENDING, so the check waits for the future.
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);
}

#[test]
fn unbounded_past_admits_old_events() {
    let t = charging(false, -1, 600);
    let (check, _) = started(&t, vec![event(1, "A", -10 * 365 * 24 * 3600)]);
    assert_eq!(check.windows.since, None);
    assert_eq!(ids(&check), vec![1]);
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(check.phase, CheckPhase::Completed);
}

#[test]
fn no_past_phase_takes_no_past_events() {
    let t = charging(false, 0, 600);
    let (check, transition) = started(&t, vec![event(1, "A", -5)]);
    assert!(check.history.is_empty());
    assert_eq!(transition.appended, 0);
    assert_eq!(transition.skipped.len(), 1);
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);
    assert!(has_subscribe(&transition));
}

#[test]
fn past_rules_are_tried_pass_fail_unknown_first_true_wins() {
    let cases: &[(&[&str], CheckResult)] = &[
        (&["P", "F", "U"], CheckResult::Pass),
        (&["U", "F", "P"], CheckResult::Pass),
        (&["F", "U"], CheckResult::Fail),
        (&["U", "F"], CheckResult::Fail),
        (&["U"], CheckResult::Unknown),
        (&["U", "X"], CheckResult::Unknown),
        (&["X"], CheckResult::Pending),
        (&[], CheckResult::Pending),
    ];
    let t = ordered(false, 600);
    for (names, expected) in cases {
        let events = names
            .iter()
            .enumerate()
            .map(|(i, name)| event(i as i64 + 1, name, -100 + i as i64))
            .collect();
        let (check, transition) = started(&t, events);
        assert_eq!(check.result, *expected, "past events {names:?}");
        assert!(transition.rule_failures.is_empty());
        assert!(results(&check).iter().all(|r| r == expected), "{names:?}");
    }
}

#[test]
fn decisive_past_result_completes_at_once_without_poll_until_end() {
    let t = ordered(false, 600);
    let cases = [
        ("P", steps(), CheckResult::Pass, PASS_STEP),
        ("F", steps(), CheckResult::Fail, FAIL_STEP),
        ("U", steps(), CheckResult::Unknown, UNKNOWN_STEP),
        (
            "U",
            steps_without_unknown(),
            CheckResult::Unknown,
            FAIL_STEP,
        ),
    ];
    for (name, next_steps, result, next) in cases {
        let (check, transition) =
            started_with(&t, vec![event(1, name, -10)], next_steps, Limits::default());
        assert_eq!(check.phase, CheckPhase::Completed, "{name}");
        assert_eq!(check.result, result, "{name}");
        assert_eq!(check.next_step_id, Some(next), "{name}");
        assert_eq!(check.end_reason, Some(EndReason::Decided), "{name}");
        assert_eq!(check.deadline(), None);
        assert!(transition.changed);
        // Nothing to subscribe to, nothing to unsubscribe; the create response tells the robot.
        assert!(transition.effects.is_empty(), "{:?}", transition.effects);
    }
}

#[test]
fn decisive_past_result_with_poll_until_end_enters_future_and_subscribes() {
    let t = build(
        true,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.exists(e, e.name == "A")'"#]),
        Some(&[
            "dependsOn: [C, D]",
            r#"FAIL: 'future.exists(e, e.name == "D")'"#,
        ]),
    );
    let (check, transition) = started(&t, vec![event(1, "A", -10)]);
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(check.end_reason, None);
    assert_eq!(check.deadline(), Some(at(600)));
    assert_eq!(
        transition.effects,
        vec![Effect::Subscribe {
            event_names: vec!["C".to_owned(), "D".to_owned()],
            until: at(600),
        }]
    );
    assert_eq!(results(&check), vec![CheckResult::Pass]);
}

#[test]
fn open_past_result_with_a_future_window_enters_future_and_subscribes() {
    let t = charging(false, 3600, 600);
    let (check, transition) = started(&t, vec![event(1, "B", -10)]);
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.next_step_id, None);
    assert_eq!(check.deadline(), Some(at(600)));
    assert!(transition.changed);
    assert_eq!(
        transition.effects,
        vec![Effect::Subscribe {
            event_names: vec!["A".to_owned()],
            until: at(600),
        }]
    );
}

#[test]
fn open_past_result_without_a_future_window_fails_at_once() {
    let t = charging(false, 3600, 0);
    let (check, transition) = started(&t, vec![event(1, "B", -10)]);
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(check.end_reason, Some(EndReason::NoFuture));
    assert_eq!(check.deadline(), None);
    assert!(!has_subscribe(&transition));
    // The record keeps the result of the evaluation that took it in.
    assert_eq!(results(&check), vec![CheckResult::Pending]);
}

#[test]
fn open_past_result_without_future_rules_fails_at_once() {
    let t = build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.size() > 3'"#]),
        None,
    );
    let (check, transition) = started(&t, vec![event(1, "A", -10)]);
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(check.end_reason, Some(EndReason::NoFuture));
    assert!(!has_subscribe(&transition));
}

#[test]
fn poll_until_end_decisive_past_without_future_window_completes_with_it() {
    let t = ordered(true, 0);
    let (check, transition) = started(&t, vec![event(1, "U", -10)]);
    assert_eq!(check.phase, CheckPhase::Completed);
    assert_eq!(check.result, CheckResult::Unknown);
    assert_eq!(check.next_step_id, Some(UNKNOWN_STEP));
    assert!(!has_subscribe(&transition));
}

#[test]
fn past_records_are_sorted_by_time_then_id_and_numbered() {
    let t = build(
        false,
        3600,
        600,
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'past.size() == 4 && past[0].id == 7 && past[1].id == 2 && past[2].id == 5 && past[3].id == 1'"#,
        ]),
        Some(&["dependsOn: [A]", r#"PASS: 'future.size() > 0'"#]),
    );
    let (check, transition) = started(
        &t,
        vec![
            event(1, "A", -10),
            event(5, "B", -20),
            event(2, "B", -20),
            event(7, "A", -30),
        ],
    );
    assert_eq!(ids(&check), vec![7, 2, 5, 1]);
    let orders: Vec<u32> = check.history.records().iter().map(|r| r.order).collect();
    assert_eq!(orders, vec![1, 2, 3, 4]);
    assert!(
        check
            .history
            .records()
            .iter()
            .all(|r| r.phase == RecordPhase::Past && r.created_at == anchor())
    );
    assert_eq!(check.result, CheckResult::Pass, "{:?}", transition);
    assert_eq!(results(&check), vec![CheckResult::Pass; 4]);
}

#[test]
fn duplicate_past_events_are_recorded_once() {
    let t = charging(false, 3600, 600);
    let (check, transition) = started(&t, vec![event(1, "B", -10), event(1, "B", -10)]);
    assert_eq!(ids(&check), vec![1]);
    assert_eq!(transition.skipped, vec![Skip::Duplicate(1)]);
}

#[test]
fn starting_twice_changes_nothing() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "B", -10)]);
    let before = snapshot(&check);
    let transition = check.start(&t, vec![event(2, "A", -5)], anchor());
    assert_eq!(snapshot(&check), before);
    assert!(!transition.changed);
    assert!(transition.effects.is_empty());
    assert_eq!(transition.skipped, vec![Skip::NotListening(2)]);
}

// ---- §3.2 / §3.3 future evaluation ----

#[test]
fn future_event_is_recorded_and_evaluated_over_all_records() {
    let t = build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.size() > 5'"#]),
        Some(&[
            "dependsOn: [B]",
            r#"PASS: 'past.size() == 1 && future.size() == 1 && events.size() == 2 && events[0].phase == "PAST" && events[1].phase == "FUTURE"'"#,
        ]),
    );
    let (mut check, _) = started(&t, vec![event(1, "A", -10)]);
    let transition = check.take_future(
        &t,
        vec![Delivery {
            event: event(2, "B", 10),
            outgoing_event_id: Some(70_002),
        }],
        at(11),
    );
    assert_eq!(transition.appended, 1);
    assert_eq!(check.result, CheckResult::Pass);
    let record = &check.history.records()[1];
    assert_eq!(record.order, 2);
    assert_eq!(record.phase, RecordPhase::Future);
    assert_eq!(record.outgoing_event_id, Some(70_002));
    assert_eq!(record.created_at, at(11));
    assert_eq!(record.result, CheckResult::Pass);
}

#[test]
fn pending_future_delivery_records_without_notifying() {
    let t = build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.size() > 5'"#]),
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'future.exists(e, e.name == "A")'"#,
        ]),
    );
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(&t, one(event(1, "B", 10)), at(10));
    assert_eq!(transition.appended, 1);
    assert!(!transition.changed);
    assert!(transition.effects.is_empty());
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(results(&check), vec![CheckResult::Pending]);
}

#[test]
fn decisive_future_result_completes_with_unsubscribe_and_notify() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "B", -10)]);
    let transition = check.take_future(&t, one(event(2, "A", 30)), at(30));
    assert_eq!(check.phase, CheckPhase::Completed);
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(check.next_step_id, Some(PASS_STEP));
    assert_eq!(check.end_reason, Some(EndReason::Decided));
    assert_eq!(check.deadline(), None);
    assert!(transition.changed);
    assert_eq!(
        transition.effects,
        vec![Effect::Unsubscribe, Effect::NotifyRobot]
    );
    assert_eq!(
        results(&check),
        vec![CheckResult::Pending, CheckResult::Pass]
    );
}

#[test]
fn future_rules_first_true_wins_in_order_pass_fail_unknown() {
    let cases: &[(&[&str], CheckResult, i64)] = &[
        (&["U", "F", "P"], CheckResult::Pass, PASS_STEP),
        (&["U", "F"], CheckResult::Fail, FAIL_STEP),
        (&["X", "U"], CheckResult::Unknown, UNKNOWN_STEP),
    ];
    // pollUntilEnd, so that every event is in before the last evaluation.
    let t = ordered(true, 600);
    for (names, expected, next) in cases {
        let (mut check, _) = started(&t, vec![]);
        let deliveries = names
            .iter()
            .enumerate()
            .map(|(i, name)| Delivery::from(event(i as i64 + 1, name, 10)))
            .collect();
        check.take_future(&t, deliveries, at(20));
        assert_eq!(check.result, *expected, "{names:?}");
        assert_eq!(check.phase, CheckPhase::Future, "{names:?}");
        check.finalise();
        assert_eq!(check.result, *expected, "{names:?}");
        assert_eq!(check.next_step_id, Some(*next), "{names:?}");
        assert_eq!(check.phase, CheckPhase::Completed, "{names:?}");
    }
}

#[test]
fn duplicate_delivery_is_skipped_and_recorded_once() {
    let t = charging(true, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    check.take_future(&t, one(event(5, "A", 10)), at(10));
    let before = snapshot(&check);
    let transition = check.take_future(&t, one(event(5, "A", 10)), at(20));
    assert_eq!(transition.skipped, vec![Skip::Duplicate(5)]);
    assert_eq!(transition.appended, 0);
    assert!(!transition.changed);
    assert!(transition.effects.is_empty());
    assert_eq!(snapshot(&check), before);
    assert_eq!(ids(&check), vec![5]);
}

#[test]
fn duplicate_is_skipped_across_backfill_and_queue_delivery() {
    let t = charging(true, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "A", -10)]);
    // Backfill after subscribing: a batch, itself holding a duplicate.
    let backfill = check.take_future(
        &t,
        vec![
            Delivery::from(event(2, "A", 10)),
            Delivery::from(event(3, "A", 20)),
            Delivery::from(event(2, "A", 10)),
        ],
        at(25),
    );
    assert_eq!(backfill.appended, 2);
    assert_eq!(backfill.skipped, vec![Skip::Duplicate(2)]);
    // The queue then delivers the same events (with their outgoing ids), and a past one.
    let queue = check.take_future(
        &t,
        vec![
            Delivery {
                event: event(3, "A", 20),
                outgoing_event_id: Some(9003),
            },
            Delivery {
                event: event(1, "A", 10),
                outgoing_event_id: Some(9001),
            },
        ],
        at(30),
    );
    assert_eq!(queue.appended, 0);
    let mut skipped = queue.skipped.clone();
    skipped.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(skipped, vec![Skip::Duplicate(1), Skip::Duplicate(3)]);
    assert_eq!(ids(&check), vec![1, 2, 3]);
    assert!(
        check
            .history
            .records()
            .iter()
            .all(|r| r.outgoing_event_id.is_none())
    );
}

#[test]
fn events_created_after_polling_until_are_late() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(&t, one(event(1, "A", 601)), at(602));
    assert_eq!(transition.skipped, vec![Skip::Late(1)]);
    assert_eq!(transition.appended, 0);
    assert!(!transition.changed);
    assert!(check.history.is_empty());
    assert_eq!(check.phase, CheckPhase::Future);

    // The window's end itself is inside.
    let transition = check.take_future(&t, one(event(2, "A", 600)), at(600));
    assert_eq!(transition.appended, 1);
    assert_eq!(check.result, CheckResult::Pass);
}

#[test]
fn future_events_at_or_before_the_anchor_are_out_of_window() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(
        &t,
        vec![
            Delivery::from(event(1, "A", 0)),
            Delivery::from(event(2, "A", -30)),
        ],
        at(5),
    );
    let mut skipped = transition.skipped.clone();
    skipped.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(skipped, vec![Skip::OutOfWindow(1), Skip::OutOfWindow(2)]);
    assert!(check.history.is_empty());
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);
}

#[test]
fn future_events_not_depended_on_are_skipped() {
    // B is a past dependency only.
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(&t, one(event(1, "B", 10)), at(10));
    assert_eq!(transition.skipped, vec![Skip::NotDependedOn(1)]);
    assert!(check.history.is_empty());
    assert!(!transition.changed);
}

#[test]
fn deliveries_to_an_ended_check_change_nothing() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "B", -10)]);
    check.take_future(&t, one(event(2, "A", 10)), at(10));
    assert_eq!(check.phase, CheckPhase::Completed);
    let before = snapshot(&check);
    let transition = check.take_future(
        &t,
        vec![
            Delivery::from(event(3, "A", 20)),
            Delivery::from(event(2, "A", 10)),
        ],
        at(20),
    );
    let mut skipped = transition.skipped.clone();
    skipped.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(skipped, vec![Skip::NotListening(2), Skip::NotListening(3)]);
    assert!(!transition.changed);
    assert_eq!(transition.appended, 0);
    assert!(transition.effects.is_empty());
    assert_eq!(snapshot(&check), before);

    // Also after a check failed at once (no future window).
    let t = charging(false, 3600, 0);
    let (mut check, _) = started(&t, vec![]);
    assert_eq!(check.phase, CheckPhase::Failed);
    let before = snapshot(&check);
    let transition = check.take_future(&t, one(event(4, "A", 10)), at(10));
    assert_eq!(transition.skipped, vec![Skip::NotListening(4)]);
    assert!(!transition.changed && transition.effects.is_empty());
    assert_eq!(snapshot(&check), before);
}

#[test]
fn deliveries_before_start_change_nothing() {
    let t = charging(false, 3600, 600);
    let windows = Windows::compute(0, 0, &t.poller, anchor()).unwrap();
    let mut check = new_check(&t, windows, steps(), Limits::default());
    let transition = check.take_future(&t, one(event(1, "A", 10)), at(10));
    assert_eq!(transition.skipped, vec![Skip::NotListening(1)]);
    assert_eq!(check.phase, CheckPhase::Created);
    assert!(check.history.is_empty());
    assert!(!transition.changed && transition.effects.is_empty());
}

#[test]
fn batch_stops_taking_events_once_decided() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(
        &t,
        vec![
            Delivery::from(event(3, "A", 30)),
            Delivery::from(event(2, "A", 20)),
        ],
        at(40),
    );
    // Taken in (time, id) order: 2 decides, 3 comes after the end.
    assert_eq!(ids(&check), vec![2]);
    assert_eq!(transition.skipped, vec![Skip::NotListening(3)]);
    assert_eq!(
        transition.effects,
        vec![Effect::Unsubscribe, Effect::NotifyRobot]
    );
}

// ---- §4.3 rules that error at run time ----

#[test]
fn past_rule_error_counts_as_false_and_is_reported() {
    let t = build(
        false,
        3600,
        600,
        Some(&[
            "dependsOn: [A]",
            r#"PASS: 'events[5].name == "A"'"#,
            "FAIL: 'events.size() > 0'",
        ]),
        Some(&["dependsOn: [A]", "PASS: 'future.size() > 0'"]),
    );
    let (check, transition) = started(&t, vec![event(1, "A", -10)]);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.phase, CheckPhase::Completed);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(transition.rule_failures.len(), 1, "{transition:?}");
    assert_eq!(transition.rule_failures[0].outcome, CheckResult::Pass);
    assert!(!transition.rule_failures[0].error.message.is_empty());
}

#[test]
fn future_rule_error_counts_as_false_and_is_reported() {
    let t = build(
        true,
        3600,
        600,
        Some(&["dependsOn: [A]", "PASS: 'past.size() > 3'"]),
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'events[5].name == "A"'"#,
            r#"UNKNOWN: 'future.exists(e, e.name == "B")'"#,
        ]),
    );
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(&t, one(event(1, "A", 10)), at(10));
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(transition.rule_failures.len(), 1, "{transition:?}");
    assert_eq!(transition.rule_failures[0].outcome, CheckResult::Pass);

    let transition = check.take_future(&t, one(event(2, "B", 20)), at(20));
    assert_eq!(check.result, CheckResult::Unknown);
    assert_eq!(transition.rule_failures.len(), 1);

    // With six events the PASS rule runs without error.
    let more = (3..=6)
        .map(|id| Delivery::from(event(id, "A", 20 + id)))
        .collect();
    let transition = check.take_future(&t, more, at(30));
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(transition.rule_failures.len(), 3, "{transition:?}");
    check.finalise();
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(check.next_step_id, Some(PASS_STEP));
}

// ---- §3.5 finishing ----

#[test]
fn finalise_pending_fails_with_the_fail_step() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "B", -10)]);
    let transition = check.finalise();
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(check.end_reason, Some(EndReason::Deadline));
    assert_eq!(check.deadline(), None);
    assert!(transition.changed);
    assert_eq!(
        transition.effects,
        vec![Effect::Unsubscribe, Effect::NotifyRobot]
    );
    assert_eq!(transition.appended, 0);
    // The records keep the results of the evaluations that took them in.
    assert_eq!(results(&check), vec![CheckResult::Pending]);
}

#[test]
fn finalise_decisive_result_completes_with_it() {
    let cases = [
        ("P", steps(), CheckResult::Pass, PASS_STEP),
        ("F", steps(), CheckResult::Fail, FAIL_STEP),
        ("U", steps(), CheckResult::Unknown, UNKNOWN_STEP),
        (
            "U",
            steps_without_unknown(),
            CheckResult::Unknown,
            FAIL_STEP,
        ),
    ];
    let t = ordered(true, 600);
    for (name, next_steps, result, next) in cases {
        let (mut check, _) = started_with(&t, vec![], next_steps, Limits::default());
        check.take_future(&t, one(event(1, name, 10)), at(10));
        assert_eq!(
            check.phase,
            CheckPhase::Future,
            "pollUntilEnd keeps it open"
        );
        assert_eq!(check.result, result);
        let transition = check.finalise();
        assert_eq!(check.phase, CheckPhase::Completed, "{name}");
        assert_eq!(check.result, result, "{name}");
        assert_eq!(check.next_step_id, Some(next), "{name}");
        assert_eq!(check.end_reason, Some(EndReason::Deadline));
        assert_eq!(
            transition.effects,
            vec![Effect::Unsubscribe, Effect::NotifyRobot]
        );
    }
}

#[test]
fn finalise_on_an_ended_check_does_nothing() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![event(1, "A", -10)]);
    assert_eq!(check.phase, CheckPhase::Completed);
    let before = snapshot(&check);
    let transition = check.finalise();
    assert_eq!(transition, Transition::default());
    assert_eq!(snapshot(&check), before);

    let (mut check, _) = started(&t, vec![event(1, "B", -10)]);
    check.finalise();
    let before = snapshot(&check);
    let transition = check.finalise();
    assert_eq!(transition, Transition::default());
    assert_eq!(snapshot(&check), before);
    assert_eq!(check.end_reason, Some(EndReason::Deadline));
}

#[test]
fn poll_until_end_last_evaluation_stands() {
    let t = build(
        true,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.size() >= 1'"#]),
        Some(&[
            "dependsOn: [A]",
            "PASS: 'events.size() <= 2'",
            "FAIL: 'events.size() == 3'",
        ]),
    );
    let (mut check, start) = started(&t, vec![event(1, "A", -10)]);
    assert_eq!(check.result, CheckResult::Pass);
    assert!(has_subscribe(&start));

    let transition = check.take_future(&t, one(event(2, "A", 10)), at(10));
    assert_eq!(check.result, CheckResult::Pass);
    assert!(!transition.changed);
    assert!(transition.effects.is_empty());

    let transition = check.take_future(&t, one(event(3, "A", 20)), at(20));
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.phase, CheckPhase::Future);
    assert!(transition.changed);
    assert_eq!(transition.effects, vec![Effect::NotifyRobot]);

    let transition = check.take_future(&t, one(event(4, "A", 30)), at(30));
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(transition.effects, vec![Effect::NotifyRobot]);

    // Each record keeps the result of the evaluation that took it in.
    assert_eq!(
        results(&check),
        vec![
            CheckResult::Pass,
            CheckResult::Pass,
            CheckResult::Fail,
            CheckResult::Pending
        ]
    );
    let orders: Vec<u32> = check.history.records().iter().map(|r| r.order).collect();
    assert_eq!(orders, vec![1, 2, 3, 4]);

    check.finalise();
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
}

#[test]
fn each_record_in_a_batch_keeps_its_own_result() {
    let t = build(
        true,
        3600,
        600,
        Some(&["dependsOn: [A]", r#"PASS: 'past.size() > 5'"#]),
        Some(&[
            "dependsOn: [A]",
            "PASS: 'future.size() == 1'",
            "UNKNOWN: 'future.size() == 2'",
        ]),
    );
    let (mut check, _) = started(&t, vec![]);
    check.take_future(
        &t,
        vec![
            Delivery::from(event(3, "A", 30)),
            Delivery::from(event(1, "A", 10)),
            Delivery::from(event(2, "A", 20)),
        ],
        at(40),
    );
    assert_eq!(ids(&check), vec![1, 2, 3]);
    assert_eq!(
        results(&check),
        vec![
            CheckResult::Pass,
            CheckResult::Unknown,
            CheckResult::Pending
        ]
    );
    assert_eq!(check.result, CheckResult::Pending);
}

// ---- next steps ----

#[test]
fn next_steps_from_commands() {
    let steps = NextSteps::from_commands([("pass", 1), ("fail", 2)]).unwrap();
    assert_eq!(
        steps,
        NextSteps {
            pass: 1,
            fail: 2,
            unknown: None
        }
    );
    let steps =
        NextSteps::from_commands([("other", 9), ("unknown", 3), ("fail", 2), ("pass", 1)]).unwrap();
    assert_eq!(
        steps,
        NextSteps {
            pass: 1,
            fail: 2,
            unknown: Some(3)
        }
    );
}

#[test]
fn next_steps_require_pass_and_fail() {
    assert_eq!(
        NextSteps::from_commands([("fail", 2), ("unknown", 3)]),
        Err(MissingCommand("pass"))
    );
    assert_eq!(
        NextSteps::from_commands([("pass", 1), ("unknown", 3), ("Fail", 2)]),
        Err(MissingCommand("fail"))
    );
    assert!(NextSteps::from_commands([("maybe", 1)]).is_err());
    assert!(NextSteps::from_commands(std::iter::empty::<(&str, i64)>()).is_err());
}

#[test]
fn next_step_follows_the_result() {
    let with = steps();
    assert_eq!(with.for_result(CheckResult::Pending), None);
    assert_eq!(with.for_result(CheckResult::Pass), Some(PASS_STEP));
    assert_eq!(with.for_result(CheckResult::Fail), Some(FAIL_STEP));
    assert_eq!(with.for_result(CheckResult::Unknown), Some(UNKNOWN_STEP));
    let without = steps_without_unknown();
    assert_eq!(without.for_result(CheckResult::Unknown), Some(FAIL_STEP));
    assert_eq!(without.for_result(CheckResult::Pass), Some(PASS_STEP));
}

// ---- history cap (§4.3) ----

fn capped() -> Limits {
    Limits {
        history_cap: 3,
        ..Limits::default()
    }
}

fn never_deciding() -> Template {
    build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", "PASS: 'past.size() > 100'"]),
        Some(&["dependsOn: [A]", "PASS: 'events.size() > 100'"]),
    )
}

#[test]
fn more_past_events_than_the_cap_fail_the_check() {
    let t = never_deciding();
    let events = (1..=4).map(|id| event(id, "A", -10 * id)).collect();
    let (check, transition) = started_with(&t, events, steps(), capped());
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(check.end_reason, Some(EndReason::HistoryCap));
    assert!(check.history.is_empty());
    assert_eq!(transition.appended, 0);
    assert!(!has_subscribe(&transition));
}

#[test]
fn past_events_up_to_the_cap_are_fine() {
    let t = never_deciding();
    // Four events, one outside the window: three count.
    let mut events: Vec<Event> = (1..=3).map(|id| event(id, "A", -10 * id)).collect();
    events.push(event(4, "A", -7200));
    let (check, transition) = started_with(&t, events, steps(), capped());
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(check.end_reason, None);
    assert_eq!(check.history.len(), 3);
    assert!(has_subscribe(&transition));
}

#[test]
fn future_delivery_past_the_cap_fails_the_check() {
    let t = never_deciding();
    let past = (1..=2).map(|id| event(id, "A", -10 * id)).collect();
    let (mut check, _) = started_with(&t, past, steps(), capped());
    let transition = check.take_future(&t, one(event(3, "A", 10)), at(10));
    assert_eq!(transition.appended, 1);
    assert_eq!(check.phase, CheckPhase::Future);

    let transition = check.take_future(&t, one(event(4, "A", 20)), at(20));
    assert_eq!(check.phase, CheckPhase::Failed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(check.next_step_id, Some(FAIL_STEP));
    assert_eq!(check.end_reason, Some(EndReason::HistoryCap));
    assert_eq!(transition.appended, 0);
    assert!(!check.history.contains(4));
    assert_eq!(ids(&check), vec![2, 1, 3]);
    assert_eq!(
        transition.effects,
        vec![Effect::Unsubscribe, Effect::NotifyRobot]
    );

    // Ended: further deliveries change nothing.
    let before = snapshot(&check);
    let transition = check.take_future(&t, one(event(5, "A", 30)), at(30));
    assert_eq!(snapshot(&check), before);
    assert!(transition.effects.is_empty());
}

#[test]
fn duplicates_and_skips_do_not_count_towards_the_cap() {
    let t = never_deciding();
    let past = (1..=2).map(|id| event(id, "A", -10 * id)).collect();
    let (mut check, _) = started_with(&t, past, steps(), capped());
    check.take_future(&t, one(event(3, "A", 10)), at(10));
    // At the cap: a duplicate, a late event and an unknown name are skipped as such.
    let transition = check.take_future(
        &t,
        vec![
            Delivery::from(event(3, "A", 10)),
            Delivery::from(event(1, "A", 10)),
            Delivery::from(event(6, "A", 700)),
            Delivery::from(event(7, "Z", 15)),
        ],
        at(20),
    );
    let mut skipped = transition.skipped.clone();
    skipped.sort_by_key(|s| format!("{s:?}"));
    assert_eq!(
        skipped,
        vec![
            Skip::Duplicate(1),
            Skip::Duplicate(3),
            Skip::Late(6),
            Skip::NotDependedOn(7)
        ]
    );
    assert_eq!(check.phase, CheckPhase::Future);
    assert_eq!(check.end_reason, None);
}

// ---- rules see events sorted (SPEC §4.2: oldest first) ----

#[test]
fn rules_see_events_sorted_whatever_the_arrival_order() {
    let t = build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", "PASS: 'past.size() > 100'"]),
        Some(&[
            "dependsOn: [LAST, OTHER]",
            r#"PASS: 'events[events.size() - 1].name == "LAST"'"#,
        ]),
    );
    // Arrival order OTHER@300 then LAST@100: sorted, OTHER stays last.
    let (mut check, _) = started(&t, vec![]);
    check.take_future(&t, one(event(1, "OTHER", 300)), at(300));
    check.take_future(&t, one(event(2, "LAST", 100)), at(301));
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);
    // Records stay in arrival order.
    assert_eq!(ids(&check), vec![1, 2]);

    // Same time: the id breaks the tie. LAST (id 9) arrives before OTHER (id 4).
    let (mut check, _) = started(&t, vec![]);
    check.take_future(&t, one(event(9, "LAST", 200)), at(200));
    assert_eq!(check.result, CheckResult::Pass, "only event");
    let (mut check, _) = started(&t, vec![]);
    check.take_future(&t, one(event(4, "OTHER", 200)), at(200));
    check.take_future(&t, one(event(9, "LAST", 200)), at(201));
    assert_eq!(check.result, CheckResult::Pass);

    // Past events come before future ones, whatever their ids.
    let t = build(
        false,
        3600,
        600,
        Some(&["dependsOn: [A]", "PASS: 'past.size() > 100'"]),
        Some(&[
            "dependsOn: [B]",
            "PASS: 'events.size() == 3 && events[0].id == 50 && events[1].id == 40 && events[2].id == 3'",
        ]),
    );
    let (mut check, _) = started(&t, vec![event(40, "A", -5), event(50, "A", -50)]);
    check.take_future(&t, one(event(3, "B", 5)), at(5));
    assert_eq!(check.result, CheckResult::Pass);
}

#[test]
fn poll_until_end_sorted_view_after_out_of_order_deliveries() {
    let t = build(
        true,
        3600,
        600,
        Some(&["dependsOn: [A]", "PASS: 'past.size() > 100'"]),
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'events[events.size() - 1].name == "A"'"#,
            r#"FAIL: 'events[events.size() - 1].name == "B"'"#,
        ]),
    );
    let (mut check, _) = started(&t, vec![]);
    check.take_future(&t, one(event(1, "A", 500)), at(500));
    assert_eq!(check.result, CheckResult::Pass);
    check.take_future(&t, one(event(2, "B", 100)), at(501));
    assert_eq!(check.result, CheckResult::Pass, "A@500 is still the newest");
    check.take_future(&t, one(event(3, "B", 550)), at(550));
    assert_eq!(check.result, CheckResult::Fail);
    check.finalise();
    assert_eq!(check.phase, CheckPhase::Completed);
    assert_eq!(check.result, CheckResult::Fail);
    assert_eq!(
        results(&check),
        vec![CheckResult::Pass, CheckResult::Pass, CheckResult::Fail]
    );
}

// ---- the variables a rule sees ----

#[test]
fn rules_see_the_check_variables() {
    let t = build(
        false,
        3600,
        600,
        Some(&[
            "dependsOn: [A]",
            "PASS: 'robotId == 42 && since < plannedAt && now > plannedAt && past.size() == 1'",
        ]),
        Some(&["dependsOn: [A]", "PASS: 'until > now'"]),
    );
    let windows = Windows::compute(0, 0, &t.poller, anchor()).unwrap();
    let mut check = new_check(&t, windows, steps(), Limits::default());
    check.start(&t, vec![event(1, "A", -5)], at(1));
    assert_eq!(check.result, CheckResult::Pass);

    let mut check = new_check(&t, windows, steps(), Limits::default());
    // `now` equal to plannedAt: the PASS rule is false.
    check.start(&t, vec![event(1, "A", -5)], anchor());
    assert_eq!(check.result, CheckResult::Pending);
    check.take_future(&t, one(event(2, "A", 5)), at(5));
    assert_eq!(check.result, CheckResult::Pass);
}

#[test]
fn rules_see_null_since_and_until_when_unbounded_or_absent() {
    let t = build(
        true,
        -1,
        0,
        Some(&["dependsOn: [A]", "PASS: 'since == null && until == null'"]),
        None,
    );
    let (check, transition) = started(&t, vec![event(1, "A", -5)]);
    assert!(transition.rule_failures.is_empty(), "{transition:?}");
    assert_eq!(check.result, CheckResult::Pass);
    assert_eq!(check.phase, CheckPhase::Completed);

    // Bounded windows: both set.
    let t = build(
        false,
        60,
        60,
        Some(&["dependsOn: [A]", "PASS: 'since != null && until != null'"]),
        Some(&["dependsOn: [A]", "PASS: 'future.size() > 0'"]),
    );
    let (check, _) = started(&t, vec![]);
    assert_eq!(check.result, CheckResult::Pass);
}

// ---- a template without rules (a Node service version with no runnable stand-in) ----

#[test]
fn a_template_without_rules_records_deliveries_and_keeps_the_result() {
    let runnable = charging(true, 3600, 600);
    // A check that runs (pollUntilEnd, PASS from the past), then handed a rule-less template
    // of the same shape, as a check bound to an EJS version with no CEL version would be.
    let (mut check, _) = started(&runnable, vec![event(1, "A", -60)]);
    assert_eq!(
        (check.phase, check.result),
        (CheckPhase::Future, CheckResult::Pass)
    );
    let without = Template::without_rules(runnable.definition().clone()).unwrap();
    assert!(without.future.as_ref().is_some_and(|f| !f.has_rules()));
    let transition = check.take_future(&without, one(event(2, "B", 60)), at(61));
    assert_eq!(
        transition.skipped,
        [Skip::NotDependedOn(2)],
        "dependencies still apply"
    );
    let transition = check.take_future(&without, one(event(3, "A", 90)), at(91));
    assert_eq!(transition.appended, 1);
    assert!(!transition.changed);
    assert!(transition.rule_failures.is_empty());
    assert_eq!(results(&check), [CheckResult::Pass, CheckResult::Pass]);
    assert_eq!(check.phase, CheckPhase::Future);
    // The deadline decides from the result it has.
    let transition = check.finalise();
    assert!(transition.changed);
    assert_eq!(
        (check.phase, check.result, check.next_step_id),
        (CheckPhase::Completed, CheckResult::Pass, Some(PASS_STEP))
    );
}

// ---- restore / snapshot ----

#[test]
fn a_snapshot_restores_to_the_same_check() {
    let template = charging(true, 3600, 600);
    let (mut check, _) = started(&template, vec![event(1, "A", -60)]);
    let transition = check.take_future(&template, one(event(2, "A", 30)), at(31));
    assert_eq!(
        transition
            .new_records
            .iter()
            .map(|r| r.event.id)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(transition.deadline, check.windows.until);
    let state = check.snapshot();
    let mut restored = Check::restore(state.clone(), &template, Limits::default());
    assert_eq!(restored.snapshot(), state);
    // It decides as the original would: the same event again is a duplicate, the deadline ends it.
    let again = restored.take_future(&template, one(event(2, "A", 30)), at(40));
    assert_eq!(again.skipped, [Skip::Duplicate(2)]);
    let ended = restored.finalise();
    assert_eq!(ended.deadline, None);
    assert!(ended.effects.contains(&Effect::Unsubscribe));
    assert_eq!(restored.phase, CheckPhase::Completed);
}
