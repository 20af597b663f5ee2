//! Which future phases decide alike in any order (`Template::future_decides_alike_in_any_order`).
//! The service skips the confirming read of Megazord for them (SPEC §3.4: reordering never
//! changes the outcome), so the claim is checked here the hard way: the same events delivered
//! one at a time in every order end the check the same.

use status_check_engine::rules::Rule;

use super::*;

fn shipped(name: &str) -> Template {
    let path = format!(
        "{}/../../templates/{name}.v1.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    template(&std::fs::read_to_string(path).unwrap())
}

#[test]
fn the_shipped_templates_that_decide_alike_in_any_order() {
    assert!(shipped("robot-is-charging").future_decides_alike_in_any_order());
    assert!(shipped("resident-activity").future_decides_alike_in_any_order());
    // Two rules: the box going offline last is UNKNOWN, an opening PASS.
    assert!(!shipped("medication-box-opened").future_decides_alike_in_any_order());
    // pollUntilEnd: decided at the deadline, on all its events.
    assert!(!shipped("toilet-activity").future_decides_alike_in_any_order());
}

#[test]
fn only_exists_over_the_events_with_a_test_of_each_alone_counts() {
    let alike = |rule: &str| {
        Rule::compile(rule, &Limits::default())
            .unwrap_or_else(|e| panic!("{rule}: {e}"))
            .holds_once_any_event_does()
    };
    for rule in [
        r#"future.exists(e, e.name == "A")"#,
        r#"events.exists(x, x.name in ["A", "B"] && x.level > 2)"#,
        r#"future.exists(e, e.name.startsWith("CHARGING") || e.id == 3)"#,
    ] {
        assert!(alike(rule), "{rule}");
    }
    for rule in [
        // Reads something besides the event: another order sees another value.
        r#"future.exists(e, e.createdAt > now - duration("5m"))"#,
        r#"future.exists(e, future.size() == 1)"#,
        r#"future.exists(e, e.createdAt > plannedAt)"#,
        // Not `exists` over the future or all events.
        r#"past.exists(e, e.name == "A")"#,
        r#"future.all(e, e.name == "A")"#,
        r#"future.exists_one(e, e.name == "A")"#,
        r#"future.filter(e, e.name == "A").size() >= 2"#,
        r#"future.size() > 0"#,
        r#"future.exists(e, e.name == "A") && future.size() < 3"#,
    ] {
        assert!(!alike(rule), "{rule}");
    }
}

/// Every order of `events` (by index), delivered one at a time from the anchor on.
fn outcomes_in_every_order(
    template: &Template,
    events: &[Event],
) -> Vec<(CheckPhase, CheckResult)> {
    let mut orders: Vec<Vec<usize>> = vec![Vec::new()];
    for _ in events {
        let mut longer = Vec::new();
        for order in &orders {
            for i in (0..events.len()).filter(|i| !order.contains(i)) {
                let mut next = order.clone();
                next.push(i);
                longer.push(next);
            }
        }
        orders = longer;
    }
    orders
        .into_iter()
        .map(|order| {
            let (mut check, _) = started(template, Vec::new());
            for (n, i) in order.into_iter().enumerate() {
                let now = at(100 + n as i64);
                check.take_future(template, one(events[i].clone()), now);
            }
            (check.phase, check.result)
        })
        .collect()
}

#[test]
fn a_phase_that_decides_alike_ends_the_same_in_every_order() {
    let events = [
        event(1, "B", 10),
        event(2, "A", 20),
        event(3, "B", 30),
        event(4, "A", 40),
    ];
    let alike = charging(false, 3600, 600);
    assert!(alike.future_decides_alike_in_any_order());
    let outcomes = outcomes_in_every_order(&alike, &events);
    assert_eq!(outcomes.len(), 24);
    assert!(
        outcomes
            .iter()
            .all(|o| *o == (CheckPhase::Completed, CheckResult::Pass)),
        "{outcomes:?}"
    );
    // Whereas PASS on `P` and FAIL on `F` end as whichever comes first: the claim must say no.
    let order_matters = ordered(false, 600);
    assert!(!order_matters.future_decides_alike_in_any_order());
    let outcomes = outcomes_in_every_order(
        &order_matters,
        &[event(1, "P", 10), event(2, "F", 20), event(3, "X", 30)],
    );
    assert!(
        outcomes.iter().any(|o| *o != outcomes[0]),
        "some order ends it otherwise: {outcomes:?}"
    );
}
