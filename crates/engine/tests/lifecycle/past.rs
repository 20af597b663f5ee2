//! §3.2: the past evaluation when a check starts.

use super::*;

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
    let skipped = sorted_skips(&transition.skipped);
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
    // A is in the past rules' dependsOn: it is skipped because the window is empty.
    assert_eq!(transition.skipped, vec![Skip::OutOfWindow(1)]);
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
