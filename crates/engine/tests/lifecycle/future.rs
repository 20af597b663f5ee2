//! §3.2 / §3.3: the future evaluation of deliveries, and rules that error at run time (§4.3).

use super::*;

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
        deliveries([event(2, "A", 10), event(3, "A", 20), event(2, "A", 10)]),
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
    let skipped = sorted_skips(&queue.skipped);
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

/// Before the anchor is out of the future window; stamped with the anchor's own (whole)
/// second is in: Megazord stamps in whole seconds, so it may have happened after the anchor.
#[test]
fn future_events_before_the_anchor_are_out_of_window() {
    let t = charging(false, 3600, 600);
    let (mut check, _) = started(&t, vec![]);
    let transition = check.take_future(
        &t,
        deliveries([event(1, "A", -1), event(2, "A", -30)]),
        at(5),
    );
    let skipped = sorted_skips(&transition.skipped);
    assert_eq!(skipped, vec![Skip::OutOfWindow(1), Skip::OutOfWindow(2)]);
    assert!(check.history.is_empty());
    assert_eq!(check.result, CheckResult::Pending);
    assert_eq!(check.phase, CheckPhase::Future);

    let transition = check.take_future(&t, one(event(3, "A", 0)), at(5));
    assert_eq!(transition.appended, 1, "stamped with the anchor's second");
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
        deliveries([event(3, "A", 20), event(2, "A", 10)]),
        at(20),
    );
    let skipped = sorted_skips(&transition.skipped);
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
        deliveries([event(3, "A", 30), event(2, "A", 20)]),
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
    assert_eq!(transition.rule_failures[0].rule.outcome, CheckResult::Pass);
    assert_eq!(transition.rule_failures[0].phase, RecordPhase::Past);
    assert!(!transition.rule_failures[0].rule.error.message.is_empty());
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
    assert_eq!(transition.rule_failures[0].rule.outcome, CheckResult::Pass);
    assert_eq!(transition.rule_failures[0].phase, RecordPhase::Future);

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
