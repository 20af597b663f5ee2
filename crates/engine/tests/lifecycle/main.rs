//! The check lifecycle against SPEC §3: windows, the past and future evaluations, skips,
//! finishing, next steps and the history cap — one file per concern; the helpers they share are
//! here.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::lifecycle::{
    Check, Delivery, Effect, EndReason, MissingCommand, NextSteps, Skip, Transition, WindowError,
    Windows,
};
use status_check_engine::template::{MAX_INTERVAL, PollerDefaults};
use status_check_engine::{CheckPhase, CheckResult, Event, Limits, Record, RecordPhase, Template};

mod finishing;
mod future;
mod history_cap;
mod order;
mod past;
mod rule_inputs;
mod snapshot;
mod windows;

// ---- helpers ----

const PASS_STEP: i64 = 101;
const FAIL_STEP: i64 = 102;
const UNKNOWN_STEP: i64 = 103;

fn anchor() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

/// `secs` seconds after the anchor (negative: before).
fn at(secs: i64) -> DateTime<Utc> {
    anchor() + TimeDelta::seconds(secs)
}

fn event(id: i64, name: &str, secs: i64) -> Event {
    Event {
        id,
        name: name.to_owned(),
        created_at: at(secs),
        level: Some(1),
        reference_id: None,
    }
}

fn one(event: Event) -> Vec<Delivery> {
    vec![Delivery::from(event)]
}

/// Several events, delivered in this order.
fn deliveries<const N: usize>(events: [Event; N]) -> Vec<Delivery> {
    events.into_iter().map(Delivery::from).collect()
}

/// What a transition skipped, in a stable order.
fn sorted_skips(skipped: &[Skip]) -> Vec<Skip> {
    let mut skipped = skipped.to_vec();
    skipped.sort_by_key(|s| format!("{s:?}"));
    skipped
}

fn steps() -> NextSteps {
    NextSteps {
        pass: PASS_STEP,
        fail: FAIL_STEP,
        unknown: Some(UNKNOWN_STEP),
    }
}

fn steps_without_unknown() -> NextSteps {
    NextSteps {
        unknown: None,
        ..steps()
    }
}

fn template(yaml: &str) -> Template {
    Template::from_yaml(yaml, "test.yaml", &Limits::default())
        .unwrap_or_else(|errors| panic!("test template rejected: {errors:?}\n{yaml}"))
}

/// A template from its parts; each phase is its lines (`dependsOn: [...]`, `PASS: '...'`).
fn build(
    poll_until_end: bool,
    past_interval: i64,
    future_interval: i64,
    past: Option<&[&str]>,
    future: Option<&[&str]>,
) -> Template {
    let mut yaml = format!(
        "name: test\nversion: 1\ndescription: a test template\npollUntilEnd: {poll_until_end}\n\
         poller: {{pastInterval: {past_interval}, futureInterval: {future_interval}}}\nresources:\n"
    );
    for (key, lines) in [("pastEvents", past), ("futureEvents", future)] {
        let Some(lines) = lines else { continue };
        yaml.push_str(&format!("  {key}:\n"));
        for line in lines {
            yaml.push_str(&format!("    {line}\n"));
        }
    }
    template(&yaml)
}

/// Past: PASS when the last past event is `A`. Future: PASS on any `A`.
fn charging(poll_until_end: bool, past_interval: i64, future_interval: i64) -> Template {
    build(
        poll_until_end,
        past_interval,
        future_interval,
        Some(&[
            "dependsOn: [A, B]",
            r#"PASS: 'past.size() > 0 && past[past.size() - 1].name == "A"'"#,
        ]),
        Some(&[
            "dependsOn: [A]",
            r#"PASS: 'future.exists(e, e.name == "A")'"#,
        ]),
    )
}

/// PASS / FAIL / UNKNOWN when an event named `P` / `F` / `U` is in; `X` decides nothing.
fn ordered(poll_until_end: bool, future_interval: i64) -> Template {
    build(
        poll_until_end,
        3600,
        future_interval,
        Some(&[
            "dependsOn: [P, F, U, X]",
            r#"PASS: 'past.exists(e, e.name == "P")'"#,
            r#"FAIL: 'past.exists(e, e.name == "F")'"#,
            r#"UNKNOWN: 'past.exists(e, e.name == "U")'"#,
        ]),
        Some(&[
            "dependsOn: [P, F, U, X]",
            r#"PASS: 'future.exists(e, e.name == "P")'"#,
            r#"FAIL: 'future.exists(e, e.name == "F")'"#,
            r#"UNKNOWN: 'future.exists(e, e.name == "U")'"#,
        ]),
    )
}

fn new_check(
    template: &Template,
    windows: Windows,
    next_steps: NextSteps,
    limits: Limits,
) -> Check {
    Check::new(42, anchor(), windows, next_steps, template, limits)
}

/// A check with the template's default windows, started with `past` events at the anchor.
fn started(template: &Template, past: Vec<Event>) -> (Check, Transition) {
    started_with(template, past, steps(), Limits::default())
}

fn started_with(
    template: &Template,
    past: Vec<Event>,
    next_steps: NextSteps,
    limits: Limits,
) -> (Check, Transition) {
    let windows = Windows::compute(0, 0, &template.poller, anchor()).unwrap();
    let mut check = new_check(template, windows, next_steps, limits);
    let transition = check.start(template, past, anchor());
    (check, transition)
}

fn ids(check: &Check) -> Vec<i64> {
    check.history.records().iter().map(|r| r.event.id).collect()
}

fn results(check: &Check) -> Vec<CheckResult> {
    check.history.records().iter().map(|r| r.result).collect()
}

fn has_subscribe(transition: &Transition) -> bool {
    transition
        .effects
        .iter()
        .any(|effect| matches!(effect, Effect::Subscribe { .. }))
}

type Snapshot = (
    CheckPhase,
    CheckResult,
    Option<i64>,
    Option<EndReason>,
    Vec<Record>,
);

fn snapshot(check: &Check) -> Snapshot {
    (
        check.phase,
        check.result,
        check.next_step_id,
        check.end_reason,
        check.history.records().to_vec(),
    )
}

fn defaults(past_interval: i64, future_interval: i64) -> PollerDefaults {
    PollerDefaults {
        past_interval,
        future_interval,
    }
}
