//! Rule evaluation cost (SPEC §10): every shipped template, each phase it has, over histories
//! of 10, 100 and 1,000 records, three ways side by side:
//!
//! - `native`: `PhaseRules::evaluate`, the path the service takes (native closures where the
//!   rule's shape allows, else the interpreter);
//! - `interpreter`: every rule through `Rule::evaluate_interpreted`, in PASS, FAIL, UNKNOWN
//!   order, first true wins (the same semantics, on the CEL interpreter alone);
//! - `hand-written`: a plain Rust function per template phase computing the same rules over the
//!   same sorted `&[Event]` slices — the limit to compare to.
//!
//! Plus `exists-100`: the single rule `events.exists(e, e.name == "X")` over 100 events, the
//! reference measurement of SPEC §10.
//!
//! Before anything is timed, each input is evaluated once by all three and the results are
//! asserted equal to each other and to the outcome the scenario was built to reach (so the bench
//! fails loudly if a hand-written function and its rule diverge, or a scenario stops taking the
//! path it was designed for). The histories are synthetic worst cases, not lifecycle-reachable
//! ones: wherever a rule can be made to scan the whole list it sees, the matching event is
//! absent (see each scenario). At the end, `cargo bench` prints every case with its ratio to the
//! hand-written limit of the same run and to SPEC §10's targets (criterion medians).
//! Run: `cargo bench -p status-check-engine --bench rules`; results in `docs/benchmarks.md`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{BenchmarkId, Criterion};
use status_check_engine::rules::{PhaseRules, Rule, RuleInput, RuleVars};
use status_check_engine::{CheckResult, Event, History, Limits, Record, RecordPhase, Template};

/// History lengths measured (records in the history, past and future together).
const LENGTHS: [usize; 3] = [10, 100, 1_000];

const TEMPLATES_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates");

const OPENED: &str = "MEDICATION_BOX_OPENED";
const OFFLINE: &str = "MEDICATION_BOX_OFFLINE";
const MOTION: &str = "MOTION_DETECTED";
const STARTED: &str = "CHARGING_STARTED";
const STOPPED: &str = "CHARGING_STOPPED";
const VISIT: &str = "TOILET_VISIT";

/// A hand-written phase: `past` and `future` are the sorted slices the rule sees (`future` is
/// empty for a past rule, as it is for the rule); returns the first true outcome or PENDING.
type Hand = fn(&[Event], &[Event], &RuleVars) -> CheckResult;

/// The name of record `i` of `n` in one phase of a generated history.
type Names = fn(usize, usize) -> &'static str;

/// How to build the histories of one template, and the hand-written equivalent of its rules.
struct Scenario {
    template: &'static str,
    /// Names of the past records.
    past_names: Names,
    /// The past records lie in `[since, plannedAt + past_end)`.
    past_end: TimeDelta,
    /// Names of the future records.
    future_names: Names,
    /// Hand-written past rules and the outcome the past scenario must reach.
    past: Option<(Hand, CheckResult)>,
    /// Hand-written future rules and the outcome the future scenario must reach.
    future: Option<(Hand, CheckResult)>,
}

fn scenarios() -> Vec<Scenario> {
    vec![
        // Past: OPENED / OFFLINE alternate, all before plannedAt - 30m, the last one OFFLINE:
        // PASS scans every record and is false, UNKNOWN (O(1)) is true.
        // Future: only OFFLINE records: PASS scans every future record and is false, UNKNOWN
        // (the last event) is true.
        Scenario {
            template: "medication-box-opened",
            past_names: |i, n| {
                if i + 1 == n || i % 2 == 1 {
                    OFFLINE
                } else {
                    OPENED
                }
            },
            past_end: TimeDelta::minutes(-31),
            future_names: |_, _| OFFLINE,
            past: Some((medication_past, CheckResult::Unknown)),
            future: Some((medication_future, CheckResult::Unknown)),
        },
        // Every record is MOTION_DETECTED (the only name it depends on), so `exists` is true on
        // the first record whatever the length: no full scan is possible with its own events.
        Scenario {
            template: "resident-activity",
            past_names: |_, _| MOTION,
            past_end: TimeDelta::zero(),
            future_names: |_, _| MOTION,
            past: Some((resident_past, CheckResult::Pass)),
            future: Some((resident_future, CheckResult::Pass)),
        },
        // Past: STARTED / STOPPED alternate, the last STOPPED: the rule reads only the last
        // record (O(1)) and is false → PENDING. Future: CHARGING_STARTED is its only name, so
        // `future.exists` is true on the first future record.
        Scenario {
            template: "robot-is-charging",
            past_names: |i, n| {
                if i + 1 == n || i % 2 == 1 {
                    STOPPED
                } else {
                    STARTED
                }
            },
            past_end: TimeDelta::zero(),
            future_names: |_, _| STARTED,
            past: Some((charging_past, CheckResult::Pending)),
            future: Some((charging_future, CheckResult::Pass)),
        },
        // Every record is a TOILET_VISIT, so with ≥ 4 records PASS filters the whole list twice
        // (≥ 1 true, ≤ 3 false) and FAIL filters it once more (> 3 true) → FAIL. The future
        // rules filter `events`, i.e. past and future records.
        Scenario {
            template: "toilet-activity",
            past_names: |_, _| VISIT,
            past_end: TimeDelta::zero(),
            future_names: |_, _| VISIT,
            past: Some((toilet_past, CheckResult::Fail)),
            future: Some((toilet_future, CheckResult::Fail)),
        },
    ]
}

// ---- Hand-written equivalents of the shipped rules ----

/// PASS `past.exists(e, e.name == OPENED && e.createdAt >= plannedAt - duration("30m"))`;
/// UNKNOWN `past.size() > 0 && past[past.size() - 1].name == OFFLINE`.
fn medication_past(past: &[Event], _future: &[Event], vars: &RuleVars) -> CheckResult {
    let from = vars.planned_at - TimeDelta::minutes(30);
    if past
        .iter()
        .any(|e| e.name == OPENED && e.created_at >= from)
    {
        CheckResult::Pass
    } else if past.last().is_some_and(|e| e.name == OFFLINE) {
        CheckResult::Unknown
    } else {
        CheckResult::Pending
    }
}

/// PASS `future.exists(e, e.name == OPENED)`;
/// UNKNOWN `events[events.size() - 1].name == OFFLINE` (an empty history errors: false).
fn medication_future(past: &[Event], future: &[Event], _vars: &RuleVars) -> CheckResult {
    if future.iter().any(|e| e.name == OPENED) {
        CheckResult::Pass
    } else if future
        .last()
        .or(past.last())
        .is_some_and(|e| e.name == OFFLINE)
    {
        CheckResult::Unknown
    } else {
        CheckResult::Pending
    }
}

/// PASS `past.exists(e, e.name == MOTION)`.
fn resident_past(past: &[Event], _future: &[Event], _vars: &RuleVars) -> CheckResult {
    if past.iter().any(|e| e.name == MOTION) {
        CheckResult::Pass
    } else {
        CheckResult::Pending
    }
}

/// PASS `future.exists(e, e.name == MOTION)`.
fn resident_future(_past: &[Event], future: &[Event], _vars: &RuleVars) -> CheckResult {
    if future.iter().any(|e| e.name == MOTION) {
        CheckResult::Pass
    } else {
        CheckResult::Pending
    }
}

/// PASS `events.size() > 0 && events[events.size() - 1].name == STARTED` (events = past).
fn charging_past(past: &[Event], _future: &[Event], _vars: &RuleVars) -> CheckResult {
    if past.last().is_some_and(|e| e.name == STARTED) {
        CheckResult::Pass
    } else {
        CheckResult::Pending
    }
}

/// PASS `future.exists(e, e.name == STARTED)`.
fn charging_future(_past: &[Event], future: &[Event], _vars: &RuleVars) -> CheckResult {
    if future.iter().any(|e| e.name == STARTED) {
        CheckResult::Pass
    } else {
        CheckResult::Pending
    }
}

/// PASS `1 <= count <= 3`, FAIL `count > 3`, with `count` the TOILET_VISIT records.
fn toilet_outcome(count: usize) -> CheckResult {
    match count {
        1..=3 => CheckResult::Pass,
        0 => CheckResult::Pending,
        _ => CheckResult::Fail,
    }
}

/// Over `past`.
fn toilet_past(past: &[Event], _future: &[Event], _vars: &RuleVars) -> CheckResult {
    toilet_outcome(past.iter().filter(|e| e.name == VISIT).count())
}

/// Over `events` (past then future).
fn toilet_future(past: &[Event], future: &[Event], _vars: &RuleVars) -> CheckResult {
    toilet_outcome(
        past.iter()
            .chain(future)
            .filter(|e| e.name == VISIT)
            .count(),
    )
}

// ---- Histories ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Past,
    Future,
}

impl Phase {
    fn label(self) -> &'static str {
        match self {
            Phase::Past => "past",
            Phase::Future => "future",
        }
    }
}

/// One generated history with the same events as plain sorted slices.
struct Case {
    past: Vec<Event>,
    future: Vec<Event>,
    history: History,
    vars: RuleVars,
}

impl Case {
    /// `n` records. A past case holds only past records (the past phase runs before any future
    /// record exists); a future case holds `n / 10` past records and the rest future ones.
    fn new(template: &Template, scenario: &Scenario, phase: Phase, n: usize) -> Case {
        let planned_at = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
        let past_seconds = match template.poller.past_interval {
            s if s > 0 => s,
            _ => 3600,
        };
        let future_seconds = match template.poller.future_interval {
            s if s > 0 => s,
            _ => 600,
        };
        let since = planned_at - TimeDelta::seconds(past_seconds);
        let until = planned_at + TimeDelta::seconds(future_seconds);
        let (past_n, future_n) = match phase {
            Phase::Past => (n, 0),
            Phase::Future => (n / 10, n - n / 10),
        };
        let mut next_id = 5_000;
        let mut generate = |count: usize, names: Names, from, to| {
            (0..count)
                .map(|i| {
                    next_id += 1;
                    Event {
                        id: next_id,
                        name: names(i, count).to_owned(),
                        created_at: spread(from, to, i, count),
                        level: Some(1),
                        reference_id: None,
                    }
                })
                .collect::<Vec<_>>()
        };
        let past = generate(
            past_n,
            scenario.past_names,
            since,
            planned_at + scenario.past_end,
        );
        let future = generate(future_n, scenario.future_names, planned_at, until);
        let records = past
            .iter()
            .map(|e| (RecordPhase::Past, e))
            .chain(future.iter().map(|e| (RecordPhase::Future, e)))
            .enumerate()
            .map(|(i, (record_phase, event))| Record {
                order: u32::try_from(i + 1).unwrap(),
                phase: record_phase,
                event: event.clone(),
                outgoing_event_id: (record_phase == RecordPhase::Future)
                    .then_some(event.id + 90_000),
                result: CheckResult::Pending,
                created_at: event.created_at,
            })
            .collect();
        let now = match phase {
            Phase::Past => planned_at,
            Phase::Future => future.last().map_or(planned_at, |e| e.created_at),
        };
        Case {
            past,
            future,
            history: History::from_records(records),
            vars: RuleVars {
                now,
                since: Some(since),
                until: Some(until),
                planned_at,
                robot_id: 42,
            },
        }
    }

    fn input(&self, phase: Phase) -> RuleInput<'_> {
        match phase {
            Phase::Past => self.history.past_input(&self.vars),
            Phase::Future => self.history.full_input(&self.vars),
        }
    }

    /// What a hand-written function of this phase sees as `future`.
    fn future_view(&self, phase: Phase) -> &[Event] {
        match phase {
            Phase::Past => &[],
            Phase::Future => &self.future,
        }
    }
}

/// Time `i` of `n`, evenly spread strictly inside `(from, to)`: increasing and distinct.
fn spread(from: DateTime<Utc>, to: DateTime<Utc>, i: usize, n: usize) -> DateTime<Utc> {
    let span = (to - from).num_milliseconds();
    let step = span * i64::try_from(i + 1).unwrap() / i64::try_from(n + 1).unwrap();
    from + TimeDelta::milliseconds(step)
}

// ---- The three variants ----

/// The phase's rules on the interpreter only: PASS, FAIL, UNKNOWN, first true wins; a rule
/// that errors counts as false (as in `PhaseRules::evaluate`).
fn interpret(rules: &PhaseRules, input: &RuleInput<'_>) -> CheckResult {
    for (outcome, rule) in rules.rules() {
        if rule.evaluate_interpreted(input) == Ok(true) {
            return outcome;
        }
    }
    CheckResult::Pending
}

fn load_templates() -> Vec<Template> {
    let dir = Path::new(TEMPLATES_DIR);
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no templates in {}", dir.display());
    paths
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let file = path.file_name().unwrap().to_string_lossy();
            Template::from_yaml(&text, &file, &Limits::default())
                .unwrap_or_else(|errors| panic!("{file}: {errors:?}"))
        })
        .collect()
}

fn templates(c: &mut Criterion, measured: &mut Vec<Measured>) {
    let scenarios = scenarios();
    for template in load_templates() {
        let name = template.name.as_str();
        let scenario = scenarios
            .iter()
            .find(|s| s.template == name)
            .unwrap_or_else(|| {
                panic!("template {name} has no scenario and hand-written rules in this bench")
            });
        for phase in [Phase::Past, Phase::Future] {
            let (rules, hand) = match phase {
                Phase::Past => (template.past.as_ref(), scenario.past),
                Phase::Future => (template.future.as_ref(), scenario.future),
            };
            match (rules, hand) {
                (Some(rules), Some(hand)) => {
                    bench_phase(c, measured, &template, scenario, phase, rules, hand)
                }
                (None, None) => {}
                _ => panic!(
                    "{name} {}: the template's rules and the bench's hand-written rules disagree \
                     on whether the phase exists",
                    phase.label()
                ),
            }
        }
    }
}

fn bench_phase(
    c: &mut Criterion,
    measured: &mut Vec<Measured>,
    template: &Template,
    scenario: &Scenario,
    phase: Phase,
    rules: &PhaseRules,
    (hand, expected): (Hand, CheckResult),
) {
    let group_name = format!("{}.{}", template.name.as_str(), phase.label());
    for (outcome, rule) in rules.rules() {
        eprintln!(
            "{group_name} {outcome}: {} `{}`",
            if rule.is_native() {
                "native"
            } else {
                "INTERPRETED (no native form)"
            },
            rule.source()
        );
    }
    let mut group = c.benchmark_group(&group_name);
    for n in LENGTHS {
        let case = Case::new(template, scenario, phase, n);
        let input = case.input(phase);
        let future = case.future_view(phase);

        // Agreement, once per input, before timing (this also builds the history's CEL values,
        // which the service keeps from one evaluation to the next).
        let native = rules.evaluate(&input);
        assert!(
            native.errors.is_empty(),
            "{group_name}/{n}: rule errors {:?}",
            native.errors
        );
        let interpreted = interpret(rules, &input);
        let by_hand = hand(&case.past, future, &case.vars);
        assert_eq!(
            (native.result, interpreted, by_hand),
            (expected, expected, expected),
            "{group_name}/{n}: (native, interpreter, hand-written) vs the scenario's outcome"
        );

        group.bench_with_input(BenchmarkId::new("native", n), &input, |b, input| {
            b.iter(|| rules.evaluate(black_box(input)).result)
        });
        group.bench_with_input(BenchmarkId::new("interpreter", n), &input, |b, input| {
            b.iter(|| interpret(rules, black_box(input)))
        });
        group.bench_with_input(BenchmarkId::new("hand-written", n), &case, |b, case| {
            b.iter(|| {
                hand(
                    black_box(&case.past),
                    black_box(future),
                    black_box(&case.vars),
                )
            })
        });
        measured.push(Measured {
            group: group_name.clone(),
            n,
        });
    }
    group.finish();
}

/// SPEC §10's reference: `events.exists(e, e.name == "X")` over 100 events, "X" absent, so
/// every variant scans all 100.
fn exists_100(c: &mut Criterion, measured: &mut Vec<Measured>) {
    const N: usize = 100;
    let rule = Rule::compile(r#"events.exists(e, e.name == "X")"#, &Limits::default()).unwrap();
    eprintln!(
        "exists-100: {} `{}`",
        if rule.is_native() {
            "native"
        } else {
            "INTERPRETED (no native form)"
        },
        rule.source()
    );
    let names = [MOTION, STARTED, STOPPED, VISIT, OPENED];
    let start = Utc.with_ymd_and_hms(2025, 3, 1, 7, 0, 0).unwrap();
    let end = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
    let events: Vec<Event> = (0..N)
        .map(|i| Event {
            id: 1 + i64::try_from(i).unwrap(),
            name: names[i % names.len()].to_owned(),
            created_at: spread(start, end, i, N),
            level: Some(1),
            reference_id: None,
        })
        .collect();
    let records = events
        .iter()
        .enumerate()
        .map(|(i, event)| Record {
            order: u32::try_from(i + 1).unwrap(),
            phase: RecordPhase::Past,
            event: event.clone(),
            outgoing_event_id: None,
            result: CheckResult::Pending,
            created_at: event.created_at,
        })
        .collect();
    let history = History::from_records(records);
    let vars = RuleVars {
        now: end,
        since: Some(start),
        until: Some(end + TimeDelta::minutes(10)),
        planned_at: end,
        robot_id: 42,
    };
    let input = history.full_input(&vars);
    let by_hand = |events: &[Event]| events.iter().any(|e| e.name == "X");
    assert_eq!(
        (
            rule.evaluate(&input),
            rule.evaluate_interpreted(&input),
            by_hand(&events)
        ),
        (Ok(false), Ok(false), false),
        "exists-100: (native, interpreter, hand-written)"
    );

    let mut group = c.benchmark_group("exists-100");
    group.bench_with_input(BenchmarkId::new("native", N), &input, |b, input| {
        b.iter(|| rule.evaluate(black_box(input)))
    });
    group.bench_with_input(BenchmarkId::new("interpreter", N), &input, |b, input| {
        b.iter(|| rule.evaluate_interpreted(black_box(input)))
    });
    group.bench_with_input(BenchmarkId::new("hand-written", N), &events, |b, events| {
        b.iter(|| by_hand(black_box(events)))
    });
    group.finish();
    measured.push(Measured {
        group: "exists-100".to_owned(),
        n: N,
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

// ---- Same-run ratios (SPEC §10: each benchmark prints the ratio to its limit) ----

/// SPEC §10: every shipped template within this many times hand-written Rust at 100 events.
const GOAL_TIMES_HAND: f64 = 2.0;
/// SPEC §10 (met before, kept as a floor): every shipped template at most this over 100
/// events, in nanoseconds.
const MET_NS: f64 = 1_100.0;
/// SPEC §10: V8 running `exists(e, e.name == "X")` over 100 events, in nanoseconds.
const V8_EXISTS_100_NS: f64 = 160.0;

/// One case (a group and a history length) whose three variants were registered.
struct Measured {
    group: String,
    n: usize,
}

/// Where criterion keeps its results (the same lookup criterion does, minus `cargo metadata`).
fn criterion_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        PathBuf::from(home)
    } else if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        PathBuf::from(target).join("criterion")
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/criterion")
    }
}

/// Criterion's median time per iteration of one benchmark, in nanoseconds, when it was
/// written by this run.
fn median_ns(dir: &Path, group: &str, variant: &str, n: usize, since: SystemTime) -> Option<f64> {
    let path = dir.join(format!("{group}/{variant}/{n}/new/estimates.json"));
    let fresh = std::fs::metadata(&path).ok()?.modified().ok()? >= since;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
    fresh.then(|| json["median"]["point_estimate"].as_f64())?
}

fn human(ns: f64) -> String {
    match ns {
        ns if ns >= 1e6 => format!("{:.2} ms", ns / 1e6),
        ns if ns >= 1e3 => format!("{:.2} µs", ns / 1e3),
        ns => format!("{ns:.1} ns"),
    }
}

/// Prints every measured case with its ratios to the hand-written limit of the same run, and
/// to SPEC §10's absolute targets where they apply.
fn print_ratios(measured: &[Measured], since: SystemTime) {
    let dir = criterion_dir();
    println!(
        "\nSame-run ratios (criterion medians; limit = hand-written Rust; SPEC §10 at 100 events: \
         ≤ {GOAL_TIMES_HAND}× hand-written, ≤ {MET_NS} ns):"
    );
    println!(
        "{:<30} {:>6} {:>11} {:>12} {:>12} {:>10} {:>10}  SPEC §10 target",
        "case", "events", "native", "interpreter", "hand-written", "nat÷hand", "int÷hand"
    );
    for case in measured {
        let get = |variant| median_ns(&dir, &case.group, variant, case.n, since);
        let (Some(native), Some(interpreter), Some(hand)) =
            (get("native"), get("interpreter"), get("hand-written"))
        else {
            continue; // filtered out of this run
        };
        let verdict = |met: bool| if met { "yes" } else { "NO" };
        let within = native / hand <= GOAL_TIMES_HAND;
        let target = if case.group == "exists-100" {
            format!(
                "≤ {GOAL_TIMES_HAND}× hand: {}; native ÷ V8 ({V8_EXISTS_100_NS} ns) = {:.2}×: {}",
                verdict(within),
                native / V8_EXISTS_100_NS,
                verdict(native < V8_EXISTS_100_NS)
            )
        } else if case.n == 100 {
            format!(
                "≤ {GOAL_TIMES_HAND}× hand: {}; ≤ {MET_NS} ns: {}",
                verdict(within),
                verdict(native <= MET_NS)
            )
        } else {
            String::new()
        };
        println!(
            "{:<30} {:>6} {:>11} {:>12} {:>12} {:>9.1}× {:>9.0}×  {target}",
            case.group,
            case.n,
            human(native),
            human(interpreter),
            human(hand),
            native / hand,
            interpreter / hand
        );
    }
}

fn main() {
    let started = SystemTime::now();
    let mut criterion = config().configure_from_args();
    let mut measured = Vec::new();
    exists_100(&mut criterion, &mut measured);
    templates(&mut criterion, &mut measured);
    criterion.final_summary();
    // `cargo bench` passes `--bench`; `cargo test` runs each benchmark once and saves nothing.
    if std::env::args().any(|arg| arg == "--bench") {
        print_ratios(&measured, started);
    }
}
