//! §3.5: finishing a check at its deadline, and the next step each result leads to.

use super::*;

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
        deliveries([event(3, "A", 30), event(1, "A", 10), event(2, "A", 20)]),
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
