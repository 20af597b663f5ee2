//! The native fast path must agree with the CEL interpreter — the reference — on every rule
//! and every history: same value, or both an error. Every rule of every shipped template
//! (`templates/*.yaml`) must run natively (SPEC §10 "Rules") and is held to the same test.

use std::path::Path;
use std::sync::LazyLock;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use status_check_engine::rules::{Limits, Rule, RuleVars};
use status_check_engine::{CheckResult, Event, History, Record, RecordPhase, Template};

/// Rules covering every shape the native compiler knows, with the error cases that make
/// `&&`, `||` and the macros subtle (null fields, missing indexes, null `since`/`until`).
const NATIVE_RULES: &[&str] = &[
    r#"events.exists(e, e.name == "A")"#,
    r#"events.all(e, e.level >= 1)"#,
    r#"events.exists(e, e.level > 1)"#,
    r#"events.exists_one(e, e.name == "B")"#,
    r#"events.exists_one(e, e.level == 2)"#,
    r#"events.filter(e, e.name == "A").size() >= 2"#,
    r#"events.filter(e, e.level > 0).size() == 1"#,
    r#"events.size() > 0 && events[events.size() - 1].name == "A""#,
    r#"events[0].name == "A" || events.size() == 0"#,
    r#"events[0].name == "A" && events.size() == 0"#,
    r#"events.size() == 0 || events[0].name == "A""#,
    r#"past.exists(e, now - e.createdAt < duration("30m"))"#,
    r#"future.all(e, e.createdAt <= until)"#,
    r#"since == null || events.all(e, e.createdAt >= since)"#,
    r#"events.exists(e, e.referenceId == null)"#,
    r#"events.exists(e, e.referenceId.startsWith("ref-1"))"#,
    r#"events.exists(e, e.name.endsWith("B") || e.name.contains("C"))"#,
    r#"events.exists(e, e.name in ["A", "C"])"#,
    r#"events.exists(e, e.level in [2, null])"#,
    r#"events.exists(e, e.phase == "FUTURE")"#,
    r#"robotId == 42 && plannedAt < now"#,
    r#"!events.exists(e, e.name == "A")"#,
    r#"events.size() > 2 ? events[2].id > 10 : false"#,
    r#"events.exists(a, events.exists(b, a.id != b.id && a.name == b.name))"#,
    r#"events.filter(e, e.name == "A").exists(e, e.level == 1)"#,
    r#"size(events) == past.size() + future.size()"#,
    r#"events.exists(e, e.createdAt + duration("1h") > now)"#,
    r#"timestamp("2026-01-01T00:00:00Z") < now"#,
    r#"-events.size() < 0"#,
    r#"events.all(e, e.level > 0) && true"#,
    r#"events.exists(e, e.level == 1) || events.exists(e, e.level > 1)"#,
    r#"until != null && until - now > duration("5m")"#,
    r#"events.size() >= 2 && events[1].createdAt - events[0].createdAt < duration("10m")"#,
    r#"events.exists(e, e.id % 2 == 0) || true"#,
    // The specialised path (infallible per-element tests, invariants computed once), and the
    // near-misses beside it that must take the general path.
    r#"events.all(e, e.name != "A")"#,
    r#"events.exists_one(e, "C" == e.name)"#,
    r#"events.exists_one(e, e.phase == "PAST")"#,
    r#"past.exists(e, e.name == "A" && e.createdAt >= plannedAt - duration("30m"))"#,
    r#"events.exists(e, e.createdAt >= since)"#,
    r#"events.all(e, e.createdAt < until && e.createdAt >= since)"#,
    r#"events.exists(e, until - e.createdAt > duration("50m"))"#,
    r#"events.exists(e, e.createdAt - now < duration("-10m"))"#,
    r#"events.exists(e, e.name in ["B", "C"] && e.id in [100, 103, 105])"#,
    r#"events.exists(e, !e.name.startsWith("A") && e.phase.endsWith("URE"))"#,
    r#"events.all(e, e.name.contains("B") || robotId != 42)"#,
    r#"events.exists(e, e.id > events.size() + 100 - 3)"#,
    r#"events.exists(e, e.id >= events[events.size() - 1].id)"#,
    r#"events.exists(e, e.id == events[3].id)"#,
    r#"events.exists(e, e.name < "B" && e.name >= "A")"#,
    r#"events.exists(e, events[5].name == e.name)"#,
    r#"events.exists(e, e.createdAt == events[0].createdAt) || false"#,
    r#"events.exists(e, e.name == "A" || e.level == 2)"#,
    r#"events.exists(e, e.name == "A" && e.level == 2)"#,
    r#"events.all(e, e.name == "A" || e.referenceId.startsWith("ref"))"#,
    r#"events.exists(e, e.name in ["A", 1])"#,
    r#"events.filter(e, e.name == "A").size() <= 2"#,
    r#"size(events.filter(e, e.name != "B" && e.phase == "FUTURE")) == 2"#,
    r#"past.filter(e, e.createdAt > since).size() > 1"#,
    r#"events.filter(e, e.name == "A").all(x, x.id > 102)"#,
    r#"events.filter(e, e.name == "A").exists_one(x, x.phase == "PAST")"#,
    r#"events.filter(e, e.name != "C").filter(x, x.id % 2 == 0).size() > 0 || true"#,
    r#"events.filter(e, e.name != "C").filter(x, x.id < 105).size() == 2"#,
    r#"events.filter(e, e.name == "A").filter(x, x.level > 0).size() == 1"#,
    r#"events.filter(e, e.level > 0).exists(x, x.name == "B")"#,
    r#"events.filter(e, e.createdAt >= since).size() == events.size()"#,
    r#"events.filter(e, e.name == "B")[0].id > 0"#,
    r#"events.exists(a, events.exists(b, a.id != b.id && a.name == b.name))"#,
    r#"events.exists(a, events.all(b, b.createdAt >= a.createdAt || b.phase != a.phase))"#,
    r#"events.size() > 0 && events[events.size() - 1].name == "A""#,
    r#"past[size(past) - 1].name != "B""#,
    r#"future[future.size() - 1].id == 105 || "C" == future[0].name"#,
    r#"events[events.size() - 1].level == 1"#,
    // A count compared with a literal stops at literal + 1; every operator, either side.
    r#"events.filter(e, e.name == "A").size() < 2"#,
    r#"events.filter(e, e.name == "A").size() == 0"#,
    r#"events.filter(e, e.name != "C").size() != 3"#,
    r#"events.filter(e, e.name == "A").size() > -1"#,
    r#"3 >= events.filter(e, e.level > 0).size()"#,
    r#"1 < size(past.filter(e, e.name == "B"))"#,
    r#"2 == events.filter(e, e.name == "A" || e.name == "B").size()"#,
    r#"events.filter(e, e.name == "A").size() >= 9223372036854775807"#,
    r#"events.filter(e, e.name == "A").size() >= 1 && events.filter(e, e.name == "A").size() <= 3"#,
    // `matches` with a literal pattern (compiled once, at load), specialised and general.
    r#"events.exists(e, e.name.matches("^A"))"#,
    r#"events.all(e, matches(e.name, "A|B") || e.phase.matches("URE$"))"#,
    r#"events.exists(e, e.referenceId.matches("^ref-[12]$"))"#,
    r#"events.size() > 0 && events[0].name.matches("[AC]")"#,
];

/// Shapes the native compiler leaves to the interpreter; they must still agree (trivially:
/// both run the interpreter), and must not be native.
const INTERPRETED_RULES: &[&str] = &[
    r#"events.map(e, e.id).size() > 1"#,
    r#"events.exists(e, has(e.level))"#,
    r#"events.exists(e, e.id % 2 == 0)"#,
];

fn compile(source: &str) -> Rule {
    Rule::compile(source, &Limits::default()).unwrap_or_else(|e| panic!("{source}: {e}"))
}

#[test]
fn supported_shapes_compile_to_native_code() {
    for source in NATIVE_RULES.iter().filter(|s| !s.contains('%')) {
        assert!(compile(source).is_native(), "expected native: {source}");
    }
    for source in INTERPRETED_RULES {
        assert!(
            !compile(source).is_native(),
            "expected interpreted: {source}"
        );
    }
}

fn base() -> DateTime<Utc> {
    DateTime::from_timestamp(1_780_000_000, 0).unwrap()
}

#[derive(Debug, Clone)]
struct Spec {
    name: &'static str,
    phase: RecordPhase,
    offset: i64,
    level: Option<i64>,
    reference: Option<u8>,
}

fn spec() -> impl Strategy<Value = Spec> {
    spec_named(vec!["A", "B", "C"])
}

/// A record named one of `names`.
fn spec_named(names: Vec<&'static str>) -> impl Strategy<Value = Spec> {
    (
        prop::sample::select(names),
        prop::bool::ANY,
        0i64..3600,
        prop::option::of(0i64..3),
        prop::option::of(0u8..3),
    )
        .prop_map(|(name, future, offset, level, reference)| Spec {
            name,
            phase: if future {
                RecordPhase::Future
            } else {
                RecordPhase::Past
            },
            offset,
            level,
            reference,
        })
}

fn history(specs: &[Spec]) -> History {
    let records = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let offset = match spec.phase {
                RecordPhase::Past => -spec.offset,
                RecordPhase::Future => spec.offset + 1,
            };
            Record {
                order: i as u32 + 1,
                phase: spec.phase,
                event: Event {
                    id: 100 + i as i64,
                    name: spec.name.to_owned(),
                    created_at: base() + TimeDelta::seconds(offset),
                    level: spec.level,
                    reference_id: spec.reference.map(|r| format!("ref-{r}")),
                },
                outgoing_event_id: None,
                result: CheckResult::Pending,
                created_at: base(),
            }
        })
        .collect();
    History::from_records(records)
}

fn vars(bounded: bool, now_offset: i64) -> RuleVars {
    RuleVars {
        now: base() + TimeDelta::seconds(now_offset),
        since: bounded.then(|| base() - TimeDelta::hours(1)),
        until: bounded.then(|| base() + TimeDelta::hours(1)),
        planned_at: base(),
        robot_id: 42,
    }
}

/// Compiled once: compiling is not what these tests exercise.
static RULES: LazyLock<Vec<(&'static str, Rule)>> = LazyLock::new(|| {
    NATIVE_RULES
        .iter()
        .chain(INTERPRETED_RULES)
        .map(|source| (*source, compile(source)))
        .collect()
});

proptest! {
    #[test]
    fn native_agrees_with_the_interpreter(
        specs in prop::collection::vec(spec(), 0..12),
        bounded in prop::bool::ANY,
        now_offset in -60i64..4000,
    ) {
        let history = history(&specs);
        let vars = vars(bounded, now_offset);
        for (source, rule) in RULES.iter() {
            for input in [history.past_input(&vars), history.full_input(&vars)] {
                let native = rule.evaluate(&input);
                let reference = rule.evaluate_interpreted(&input);
                match (&native, &reference) {
                    (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{}", source),
                    (Err(_), Err(_)) => {}
                    _ => prop_assert!(
                        false,
                        "{source}: native {native:?} but interpreter {reference:?}"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_past_rule_sees_no_future_records() {
    let specs = [
        Spec {
            name: "A",
            phase: RecordPhase::Past,
            offset: 10,
            level: None,
            reference: None,
        },
        Spec {
            name: "B",
            phase: RecordPhase::Future,
            offset: 10,
            level: None,
            reference: None,
        },
    ];
    let history = history(&specs);
    let vars = vars(true, 0);
    let rule = compile(r#"events.size() == 1 && future.size() == 0 && events[0].name == "A""#);
    for evaluate in [Rule::evaluate, Rule::evaluate_interpreted] {
        assert_eq!(evaluate(&rule, &history.past_input(&vars)), Ok(true));
        assert_eq!(evaluate(&rule, &history.full_input(&vars)), Ok(false));
    }
}

/// The shipped templates, by file name: `templates/*.yaml`, sorted.
static SHIPPED: LazyLock<Vec<(String, Template)>> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file() && path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let file = format!("templates/{}", path.file_name().unwrap().to_string_lossy());
            let text = std::fs::read_to_string(path).unwrap();
            let template = Template::from_yaml(&text, &file, &Limits::default())
                .unwrap_or_else(|errors| panic!("{file}: {errors:?}"));
            (file, template)
        })
        .collect()
});

/// Each rule of `template` with where it is: `resources.pastEvents.PASS`.
fn rules_of(template: &Template) -> Vec<(String, &Rule)> {
    [
        ("pastEvents", &template.past),
        ("futureEvents", &template.future),
    ]
    .into_iter()
    .filter_map(|(key, phase)| phase.as_ref().map(|phase| (key, phase)))
    .flat_map(|(key, phase)| {
        phase
            .rules()
            .map(move |(outcome, rule)| (format!("resources.{key}.{outcome}"), rule))
    })
    .collect()
}

/// A line for each rule of the template in `file` that runs on the interpreter.
fn fallbacks(file: &str, template: &Template) -> Vec<String> {
    rules_of(template)
        .into_iter()
        .filter(|(_, rule)| !rule.is_native())
        .map(|(field, rule)| {
            format!(
                "{file} ({} v{}): {field}: runs on the interpreter (not the native path): {}",
                template.name,
                template.version,
                rule.source()
            )
        })
        .collect()
}

#[test]
fn every_shipped_rule_runs_natively() {
    assert!(
        SHIPPED.len() >= 4,
        "shipped templates missing: {}",
        SHIPPED.len()
    );
    let fallbacks: Vec<String> = SHIPPED
        .iter()
        .flat_map(|(file, template)| fallbacks(file, template))
        .collect();
    assert!(
        fallbacks.is_empty(),
        "every shipped rule must run natively (SPEC §10):\n{}",
        fallbacks.join("\n")
    );
}

#[test]
fn a_shipped_rule_that_falls_back_is_named() {
    let yaml = "name: x\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'past.size() > 0'\n    FAIL: 'past.map(e, e.id).size() > 1'\n";
    let template = Template::from_yaml(yaml, "templates/x.yaml", &Limits::default()).unwrap();
    assert_eq!(
        fallbacks("templates/x.yaml", &template),
        [
            "templates/x.yaml (x v1): resources.pastEvents.FAIL: runs on the interpreter (not the native path): past.map(e, e.id).size() > 1"
        ]
    );
}

/// The event names the shipped templates depend on, and one none of them does.
static SHIPPED_EVENT_NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    let mut names: Vec<String> = SHIPPED
        .iter()
        .flat_map(|(_, template)| [&template.past, &template.future])
        .flatten()
        .flat_map(|phase| phase.depends_on.iter().cloned())
        .chain(["UNRELATED".to_owned()])
        .collect();
    names.sort();
    names.dedup();
    names
});

proptest! {
    #[test]
    fn shipped_rules_agree_with_the_interpreter(
        specs in prop::collection::vec(
            spec_named(SHIPPED_EVENT_NAMES.iter().map(String::as_str).collect()),
            0..16,
        ),
        bounded in prop::bool::ANY,
        now_offset in -60i64..4000,
    ) {
        let history = history(&specs);
        let vars = vars(bounded, now_offset);
        for (file, template) in SHIPPED.iter() {
            for (field, rule) in rules_of(template) {
                for input in [history.past_input(&vars), history.full_input(&vars)] {
                    let native = rule.evaluate(&input);
                    let reference = rule.evaluate_interpreted(&input);
                    match (&native, &reference) {
                        (Ok(a), Ok(b)) => prop_assert_eq!(a, b, "{}: {}", file, field),
                        (Err(_), Err(_)) => {}
                        _ => prop_assert!(
                            false,
                            "{file}: {field}: native {native:?} but interpreter {reference:?}"
                        ),
                    }
                }
            }
        }
    }
}
