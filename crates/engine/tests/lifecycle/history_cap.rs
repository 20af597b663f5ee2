//! §4.3: the cap on a check's history.

use super::*;

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
        deliveries([
            event(3, "A", 10),
            event(1, "A", 10),
            event(6, "A", 700),
            event(7, "Z", 15),
        ]),
        at(20),
    );
    let skipped = sorted_skips(&transition.skipped);
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
