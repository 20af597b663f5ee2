//! What a rule sees: events sorted oldest first (§4.2), the check's variables, and a template
//! without rules.

use super::*;

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
    let without = Template::without_rules(runnable.definition().clone());
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
