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
        r#"future.exists(future, future.name == "A")"#,
        r#"future.exists(e, [e].exists(x, x.name == "A"))"#,
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
        r#"future.exists(e, e.name == "A") || future.size() > 3"#,
        r#"!future.all(e, e.name != "A")"#,
        // The list is read outside the macro's scope: the element may take its name.
        r#"future.exists(e, [e].exists(x, x.name == now))"#,
    ] {
        assert!(!alike(rule), "{rule}");
    }
}

type Outcome = (CheckPhase, CheckResult, Option<i64>);

/// Every order of `events` (by index).
fn every_order(n: usize) -> Vec<Vec<usize>> {
    let mut orders: Vec<Vec<usize>> = vec![Vec::new()];
    for _ in 0..n {
        let mut longer = Vec::new();
        for order in &orders {
            for i in (0..n).filter(|i| !order.contains(i)) {
                let mut next = order.clone();
                next.push(i);
                longer.push(next);
            }
        }
        orders = longer;
    }
    orders
}

/// How the check ends with `events` delivered one at a time in `order` (no read), and how it
/// ends when they are all decided together in time order (the confirming read's path).
fn delivered_and_in_time_order(
    template: &Template,
    past: &[Event],
    events: &[Event],
    order: &[usize],
) -> (Outcome, Outcome) {
    let outcome = |check: &Check| (check.phase, check.result, check.next_step_id);
    let (mut delivered, _) = started(template, past.to_vec());
    for (n, &i) in order.iter().enumerate() {
        delivered.take_future(template, one(events[i].clone()), at(100 + n as i64));
    }
    let (mut in_order, _) = started(template, past.to_vec());
    let all = events.iter().cloned().map(Delivery::from).collect();
    in_order.take_future(template, all, at(100));
    (outcome(&delivered), outcome(&in_order))
}

#[test]
fn a_phase_that_decides_alike_ends_as_in_time_order_in_every_order() {
    // Events the rule reads but does not accept (`B`), one it errors on (`A` without a level:
    // `null > 0`), and two it accepts; and the same over `events`, with a past record in it.
    let mut no_level = event(3, "A", 30);
    no_level.level = None;
    let events = [
        event(1, "B", 10),
        event(2, "A", 20),
        no_level,
        event(4, "B", 40),
        event(5, "A", 50),
    ];
    for (rule, past) in [
        (r#"future.exists(e, e.name == "A" && e.level > 0)"#, vec![]),
        (
            r#"events.exists(e, e.name == "A" && e.level > 0)"#,
            vec![event(9, "B", -60)],
        ),
    ] {
        let pass = format!("PASS: '{rule}'");
        let alike = build(
            false,
            3600,
            600,
            Some(&["dependsOn: [B]", "FAIL: 'false'"]),
            Some(&["dependsOn: [A, B]", pass.as_str()]),
        );
        assert!(alike.future_decides_alike_in_any_order(), "{rule}");
        let orders = every_order(events.len());
        assert_eq!(orders.len(), 120);
        for order in &orders {
            let (delivered, in_order) = delivered_and_in_time_order(&alike, &past, &events, order);
            assert_eq!(
                delivered, in_order,
                "{rule}, delivered in the order {order:?}"
            );
            assert_eq!(in_order.1, CheckResult::Pass);
        }
    }
    // Whereas PASS on `P` and FAIL on `F` end as whichever comes first: the claim must say no,
    // and some delivery order does end the check otherwise than time order.
    let order_matters = ordered(false, 600);
    assert!(!order_matters.future_decides_alike_in_any_order());
    let events = [event(1, "P", 10), event(2, "F", 20), event(3, "X", 30)];
    assert!(every_order(events.len()).iter().any(|order| {
        let (delivered, in_order) =
            delivered_and_in_time_order(&order_matters, &[], &events, order);
        delivered != in_order
    }));
}
