//! The rule cost bound (SPEC §13 "Resource bounds"): a budget per evaluation, counted on the
//! native path and checked from the static bound on the interpreter; rules whose cost grows
//! faster than linearly in the history refused at load; `matches()` patterns compiled once.

use std::path::Path;

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::rules::{DEFAULT_COST_BUDGET, Limits, Rule, RuleVars};
use status_check_engine::{CheckResult, Event, History, Record, RecordPhase, Template};

fn anchor() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn vars() -> RuleVars {
    RuleVars {
        now: anchor(),
        since: None,
        until: Some(anchor() + TimeDelta::hours(1)),
        planned_at: anchor(),
        robot_id: 42,
    }
}

/// `past` past records and `future` future ones, oldest first named by cycling through
/// `names`.
fn history(past: usize, future: usize, names: &[&str]) -> History {
    let record = |i: usize, phase: RecordPhase| {
        let offset = i as i64 - past as i64;
        let offset = match phase {
            RecordPhase::Past => offset,
            RecordPhase::Future => offset + 1,
        };
        Record {
            order: 0,
            phase,
            event: Event {
                id: 1 + i as i64,
                name: names[i % names.len()].to_owned(),
                created_at: anchor() + TimeDelta::seconds(offset),
                level: Some(1),
                reference_id: Some(format!("ref-{i}")),
            },
            outgoing_event_id: None,
            result: CheckResult::Pending,
            created_at: anchor(),
        }
    };
    let records = (0..past)
        .map(|i| record(i, RecordPhase::Past))
        .chain((0..future).map(|i| record(past + i, RecordPhase::Future)))
        .enumerate()
        .map(|(i, mut r)| {
            r.order = i as u32 + 1;
            r
        })
        .collect();
    History::from_records(records)
}

fn limits(cost_budget: u64) -> Limits {
    Limits {
        cost_budget,
        ..Limits::default()
    }
}

fn yaml(past_pass: &str) -> String {
    format!(
        "name: cost\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A, B]\n    PASS: '{past_pass}'\n    FAIL: 'past.size() > 0'\n"
    )
}

fn load(past_pass: &str, limits: &Limits) -> Result<Template, String> {
    Template::from_yaml(&yaml(past_pass), "templates/cost.yaml", limits).map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

// ---- the budget ----

#[test]
fn a_native_rule_over_its_budget_errors_and_counts_as_false() {
    let limits = limits(1_000);
    let template = load(r#"past.exists(e, e.name == "C")"#, &limits).unwrap();
    let past = template.past.as_ref().unwrap();
    assert!(past.pass.as_ref().unwrap().is_native());

    // 500 records: within the budget, the rule is false and the FAIL rule decides.
    let small = history(500, 0, &["A", "B"]);
    let evaluation = past.evaluate(&small.past_input(&vars()));
    assert_eq!(evaluation.result, CheckResult::Fail);
    assert!(evaluation.errors.is_empty(), "{evaluation:?}");

    // 5,000 records: the PASS rule would visit them all; it errors, counts as false, and is
    // reported like any rule error.
    let large = history(5_000, 0, &["A", "B"]);
    let evaluation = past.evaluate(&large.past_input(&vars()));
    assert_eq!(evaluation.result, CheckResult::Fail);
    assert_eq!(evaluation.errors.len(), 1, "{evaluation:?}");
    assert_eq!(evaluation.errors[0].outcome, CheckResult::Pass);
    let message = &evaluation.errors[0].error.message;
    assert!(message.contains("cost budget of 1000"), "{message}");
}

#[test]
fn the_native_count_is_the_elements_visited_and_an_exceeded_budget_is_never_absorbed() {
    let records = history(300, 200, &["A", "B", "C"]);
    let vars = vars();
    let input = records.full_input(&vars);
    let cost = |source: &str, budget: u64| {
        let rule = Rule::compile(source, &limits(budget)).unwrap();
        assert!(rule.is_native(), "{source}");
        rule.evaluate_with_cost(&input)
    };
    // `exists` stops at its first match (the first record is an A).
    assert_eq!(cost(r#"events.exists(e, e.name == "A")"#, 10).1, 1);
    assert_eq!(cost(r#"events.exists(e, e.name == "D")"#, 1_000).1, 500);
    // The general path counts alike (a nullable field keeps it off the specialised one).
    assert_eq!(cost(r#"events.exists(e, e.level == 2)"#, 1_000).1, 500);
    assert_eq!(cost(r#"future.all(e, e.level == 1)"#, 1_000).1, 200);
    // A nested comprehension: 1 + 500 per outer element visited (the inner one stops at the
    // first record); the budget stops it part way.
    let nested = r#"past.all(a, events.exists(b, b.name == "A" && a.id > 0))"#;
    assert_eq!(cost(nested, 1_000_000), (Ok(true), 300 * 2));
    let (result, spent) = cost(
        r#"past.all(a, !events.exists(b, b.level == 2 && a.id > 0))"#,
        10_000,
    );
    assert!(result.unwrap_err().message.contains("cost budget"));
    assert!(spent <= 10_000 + 500, "{spent}");
    // `error || true` is true for a rule error, but not for an exceeded budget.
    let (result, _) = cost(r#"events.exists(e, e.name == "D") || true"#, 100);
    assert!(result.is_err(), "{result:?}");
    let (result, _) = cost(r#"events[9999].name == "A" || true"#, 100);
    assert_eq!(result, Ok(true));
}

#[test]
fn an_interpreted_rule_is_checked_against_its_static_bound_before_it_runs() {
    let limits = limits(1_000);
    // `%` keeps the rule on the interpreter; its static bound is one unit per record.
    let template = load(r#"past.exists(e, e.id % 2 == 7)"#, &limits).unwrap();
    let past = template.past.as_ref().unwrap();
    let rule = past.pass.as_ref().unwrap();
    assert!(!rule.is_native());
    assert_eq!(rule.cost_bound().at(1_000), 1_000);

    let small = history(1_000, 0, &["A"]);
    let evaluation = past.evaluate(&small.past_input(&vars()));
    assert_eq!(evaluation.result, CheckResult::Fail);
    assert!(evaluation.errors.is_empty(), "{evaluation:?}");

    let large = history(1_001, 0, &["A"]);
    let evaluation = past.evaluate(&large.past_input(&vars()));
    assert_eq!(evaluation.result, CheckResult::Fail);
    assert_eq!(evaluation.errors.len(), 1, "{evaluation:?}");
    let message = &evaluation.errors[0].error.message;
    assert!(
        message.contains("up to 1001 elements") && message.contains("cost budget of 1000"),
        "{message}"
    );
}

/// Measures the default: every shipped rule, over a history at the default cap, on both paths.
/// Histories of each dependency name alone, and of none of them (every comprehension then
/// runs to the end).
#[test]
fn every_shipped_rule_stays_far_below_the_default_budget_at_the_history_cap() {
    let cap = Limits::default().history_cap;
    assert_eq!(Limits::default().cost_budget, DEFAULT_COST_BUDGET);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut costliest = (0, String::new());
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let template = Template::from_yaml(&text, &path.display().to_string(), &Limits::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        for (past_only, phase) in [(true, &template.past), (false, &template.future)] {
            let Some(phase) = phase else { continue };
            let mut names: Vec<Vec<&str>> =
                phase.depends_on.iter().map(|n| vec![n.as_str()]).collect();
            names.push(vec!["NOT_A_DEPENDENCY"]);
            for names in &names {
                for (past, future) in [(cap, 0), (cap / 2, cap / 2), (1, cap - 1)] {
                    let records = history(past, future, names);
                    let vars = vars();
                    let input = if past_only {
                        records.past_input(&vars)
                    } else {
                        records.full_input(&vars)
                    };
                    for (outcome, rule) in phase.rules() {
                        let (result, spent) = rule.evaluate_with_cost(&input);
                        assert!(result.is_ok(), "{}: {result:?}", rule.source());
                        let bound = rule.cost_bound().at(past + future);
                        assert!(spent <= bound, "{}: {spent} > {bound}", rule.source());
                        if bound > costliest.0 {
                            costliest = (
                                bound,
                                format!("{} {outcome}: {}", path.display(), rule.source()),
                            );
                        }
                    }
                }
            }
        }
    }
    eprintln!(
        "costliest shipped rule at the cap of {cap}: {} units ({}); budget {DEFAULT_COST_BUDGET}",
        costliest.0, costliest.1
    );
    assert!(
        costliest.0 * 10 <= DEFAULT_COST_BUDGET,
        "a shipped rule spends {} of the default budget {DEFAULT_COST_BUDGET}: {}",
        costliest.0,
        costliest.1
    );
}

// ---- the static estimate at load ----

#[test]
fn rules_whose_cost_grows_faster_than_linearly_are_refused_at_load() {
    let limits = Limits::default();
    for (rule, power) in [
        (
            "events.all(a, events.all(b, events.all(c, a.id <= b.id && b.id <= c.id)))",
            "the cube",
        ),
        ("events.all(a, events.all(b, a.id <= b.id))", "the square"),
        (
            r#"events.exists(a, past.filter(b, b.name == a.name).size() > 1)"#,
            "the square",
        ),
        (
            r#"past.filter(e, e.name == "A").exists(a, past.exists(b, b.id == a.id + 1))"#,
            "the square",
        ),
    ] {
        let error = load(rule, &limits).unwrap_err();
        assert!(
            error.starts_with("templates/cost.yaml:6: resources.pastEvents.PASS: nested comprehension over the history")
                && error.contains(&format!("cost grows with {power} of the history length")),
            "{rule}: {error}"
        );
    }
    // One level, several in sequence, or a nesting over a constant list: linear, accepted.
    for rule in [
        r#"events.all(a, a.id > 0)"#,
        r#"past.exists(e, e.name == "A") && past.filter(e, e.name == "B").size() <= 3"#,
        r#"past.filter(e, e.name == "A").exists(x, x.id > 3)"#,
        r#"["A", "B"].all(n, past.exists(e, e.name == n))"#,
    ] {
        let template = load(rule, &limits).unwrap_or_else(|e| panic!("{rule}: {e}"));
        let bound = template
            .past
            .as_ref()
            .unwrap()
            .pass
            .as_ref()
            .unwrap()
            .cost_bound()
            .clone();
        assert_eq!(bound.degree(), 1, "{rule}");
    }
}

/// Lists the rule builds from the history cost what copying them costs: a copy of the history
/// for every record is quadratic, however it is written.
#[test]
fn copying_the_history_for_every_record_is_refused_as_quadratic() {
    let limits = Limits::default();
    for rule in [
        "events.map(e, events).size() > 0",
        "events.all(a, size(past + future) > 0)",
        "events.exists(a, [past, future].size() > 1)",
    ] {
        let error = load(rule, &limits).unwrap_err();
        assert!(
            error.contains("cost grows with the square of the history length"),
            "{rule}: {error}"
        );
    }
    // Copied once, or a record put into a list: linear.
    for rule in [
        "size(past + future) > 0",
        r#"past.map(e, e.name).exists(n, n == "A")"#,
    ] {
        load(rule, &limits).unwrap_or_else(|e| panic!("{rule}: {e}"));
    }
}

/// The optional syntax (`a[?i]`, `a.?f`) is not CEL a rule may use: its values would hide a
/// history list from the estimate (a quadratic rule taken for a linear one).
#[test]
fn the_optional_syntax_is_refused() {
    let error = load(
        "events.all(a, [events][?0].value().all(b, b.id != a.id))",
        &Limits::default(),
    )
    .unwrap_err();
    assert!(error.contains("syntax error"), "{error}");
}

/// A rule whose cost is past the budget whatever the history — constant lists nested deep —
/// is refused at load, before any trial runs it (nothing would stop the trial).
#[test]
fn a_rule_over_the_budget_even_on_an_empty_history_is_refused_without_running() {
    let ten = "[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]";
    let rule = format!(
        "{ten}.all(a, {ten}.all(b, {ten}.all(c, {ten}.all(d, {ten}.all(f, {ten}.all(g, true))))))"
    );
    let error = load(&rule, &Limits::default()).unwrap_err();
    assert!(
        error.contains("rule may visit up to")
            && error.contains("more than the cost budget of 200000 per evaluation"),
        "{error}"
    );
}

/// Chains of comprehensions take the native compiler work that grows steeply with their
/// length: a rule may hold eight at most.
#[test]
fn a_rule_with_more_than_eight_comprehensions_is_refused() {
    let link = r#".filter(e, e.level > 0)"#;
    let eight = format!("events{}.size() > 0", link.repeat(8));
    load(&eight, &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    let nine = format!("events{}.size() > 0", link.repeat(9));
    let error = load(&nine, &Limits::default()).unwrap_err();
    assert!(
        error.contains("rule has 9 comprehensions") && error.contains("limit of 8"),
        "{error}"
    );
}

/// A long chain of operators is a deep tree that the parser's nesting cap does not count
/// (`1+1+…+1`: 510 deep in 1,024 characters): past 32 levels a rule is refused before anything
/// walks it. Walking one 50 deep already overflowed a 2 MiB worker thread's stack in a debug
/// build (in release, about ten times deeper), which aborts the whole process.
#[test]
fn a_rule_deeper_than_32_is_refused_before_anything_walks_it() {
    let chain = |n: usize| format!("{} > 0", vec!["1"; n].join("+"));
    load(&chain(30), &Limits::default()).unwrap_or_else(|e| panic!("{e}"));
    for n in [40, 510] {
        let error = load(&chain(n), &Limits::default()).unwrap_err();
        let deep = n + 1;
        assert!(
            error.contains(&format!(
                "rule is {deep} operations deep, more than the limit of 32"
            )),
            "{error}"
        );
    }
}

// ---- regexes compiled once ----

#[test]
fn a_literal_pattern_runs_natively_and_a_computed_one_is_refused() {
    let limits = Limits::default();
    let template = load(r#"past.exists(e, e.name.matches("^[AB]$"))"#, &limits).unwrap();
    let rule = template.past.as_ref().unwrap().pass.as_ref().unwrap();
    // Native: the pattern was compiled when the rule was, and is not compiled again.
    assert!(rule.is_native());
    let records = history(3, 0, &["A"]);
    assert_eq!(rule.evaluate(&records.past_input(&vars())), Ok(true));

    for (rule, expected) in [
        (
            r#"past.exists(e, e.name.matches(e.referenceId))"#,
            "matches() needs a literal pattern",
        ),
        (
            r#"past.exists(e, matches(e.name, "^" + "A"))"#,
            "matches() needs a literal pattern",
        ),
        (
            r#"past.exists(e, e.name.matches("(A"))"#,
            r#"matches() pattern "(A" is not a valid regular expression: unclosed group"#,
        ),
        (
            r#"past.exists(e, e.name.matches("^A") && e.id % 2 == 0)"#,
            "a rule using matches() must run natively, where its pattern is compiled once at \
             load (the interpreter compiles it on every call); this one does not: the native \
             compiler does not support '%'",
        ),
    ] {
        let error = load(rule, &limits).unwrap_err();
        assert!(error.contains(expected), "{rule}: {error}");
    }
}
