//! Replaying sample events through a template exactly as the service would (SPEC §4.5):
//! the past evaluation, each future event delivered in file order at its own time, then the
//! deadline. Used by `status-check templates test` and by the shipped templates' fixtures.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::lifecycle::{Check, Delivery, NextSteps, Skip, Windows};
use crate::model::{CheckPhase, CheckResult, Event, RecordPhase};
use crate::rules::Limits;
use crate::template::Template;

/// One event of an events file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SampleEvent {
    #[serde(default)]
    pub id: Option<i64>,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub phase: RecordPhase,
}

/// What happened at one step of a replay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplayStep {
    /// `PAST`, `FUTURE` or `DEADLINE`.
    pub step: String,
    /// The event taken in or skipped at this step.
    pub event: Option<String>,
    /// Why the event was skipped, if it was.
    pub skipped: Option<String>,
    pub result: CheckResult,
    pub phase: CheckPhase,
}

/// A whole replay: every step and the final state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Replay {
    pub anchor: DateTime<Utc>,
    pub steps: Vec<ReplayStep>,
    pub phase: CheckPhase,
    pub result: CheckResult,
    /// The command whose next step the robot runs: `pass`, `fail` or `unknown`.
    pub next_command: Option<String>,
    /// Rule errors met on the way, as `RULE: message`.
    pub rule_errors: Vec<String>,
}

// Stand-in step ids that map the next step back to its command.
const PASS: i64 = 1;
const FAIL: i64 = 2;
const UNKNOWN: i64 = 3;

/// Replays `events` through `template` with its default windows.
///
/// `now` is the check's creation time (the anchor). Without it, the anchor is one second
/// after the last `PAST` event, or one second before the first `FUTURE` event.
pub fn replay(template: &Template, events: &[SampleEvent], now: Option<DateTime<Utc>>) -> Replay {
    let anchor = now.unwrap_or_else(|| default_anchor(events));
    let windows = Windows::compute(0, 0, &template.poller, anchor)
        .expect("a validated template's defaults are valid windows");
    let next_steps = NextSteps {
        pass: PASS,
        fail: FAIL,
        unknown: Some(UNKNOWN),
    };
    let limits = Limits::default();
    let mut check = Check::new(42, anchor, windows, next_steps, template, limits);
    let mut steps = Vec::new();
    let mut rule_errors = Vec::new();
    let to_event = |(i, sample): (usize, &SampleEvent)| Event {
        id: sample.id.unwrap_or(i as i64 + 1),
        name: sample.name.clone(),
        created_at: sample.created_at,
        level: Some(1),
        reference_id: None,
    };
    let all: Vec<(RecordPhase, Event)> = events
        .iter()
        .enumerate()
        .map(|item| (item.1.phase, to_event(item)))
        .collect();

    let past: Vec<Event> = all
        .iter()
        .filter(|(phase, _)| *phase == RecordPhase::Past)
        .map(|(_, event)| event.clone())
        .collect();
    let transition = check.start(template, past.clone(), anchor);
    rule_errors.extend(transition.rule_failures.iter().map(describe_failure));
    let mut past_sorted = past;
    past_sorted.sort_by_key(|e| (e.created_at, e.id));
    for event in &past_sorted {
        let skipped = transition
            .skipped
            .iter()
            .find(|skip| skip.event_id() == event.id)
            .map(describe_skip);
        let result = check
            .history
            .records()
            .iter()
            .find(|record| record.event.id == event.id)
            .map_or(check.result, |record| record.result);
        steps.push(ReplayStep {
            step: "PAST".into(),
            event: Some(describe_event(event)),
            skipped,
            result,
            phase: check.phase,
        });
    }
    if past_sorted.is_empty() {
        steps.push(ReplayStep {
            step: "PAST".into(),
            event: None,
            skipped: None,
            result: check.result,
            phase: check.phase,
        });
    }

    for (_, event) in all
        .iter()
        .filter(|(phase, _)| *phase == RecordPhase::Future)
    {
        // Delivered at its own time, as Megazord would; never before the check exists.
        let delivered_at = event.created_at.max(anchor);
        let transition =
            check.take_future(template, vec![Delivery::from(event.clone())], delivered_at);
        rule_errors.extend(transition.rule_failures.iter().map(describe_failure));
        steps.push(ReplayStep {
            step: "FUTURE".into(),
            event: Some(describe_event(event)),
            skipped: transition.skipped.first().map(describe_skip),
            result: check.result,
            phase: check.phase,
        });
    }

    if !check.phase.is_final() {
        check.finalise();
        steps.push(ReplayStep {
            step: "DEADLINE".into(),
            event: None,
            skipped: None,
            result: check.result,
            phase: check.phase,
        });
    }

    Replay {
        anchor,
        steps,
        phase: check.phase,
        result: check.result,
        next_command: check.next_step_id.map(|id| {
            match id {
                PASS => "pass",
                UNKNOWN => "unknown",
                _ => "fail",
            }
            .to_owned()
        }),
        rule_errors,
    }
}

fn default_anchor(events: &[SampleEvent]) -> DateTime<Utc> {
    let at = |phase| {
        events
            .iter()
            .filter(move |e| e.phase == phase)
            .map(|e| e.created_at)
    };
    at(RecordPhase::Past)
        .max()
        .map(|last| last + TimeDelta::seconds(1))
        .or_else(|| {
            at(RecordPhase::Future)
                .min()
                .map(|first| first - TimeDelta::seconds(1))
        })
        .unwrap_or_default()
}

fn describe_event(event: &Event) -> String {
    format!(
        "{} #{} at {}",
        event.name,
        event.id,
        event
            .created_at
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    )
}

fn describe_skip(skip: &Skip) -> String {
    match skip {
        Skip::Duplicate(_) => "duplicate",
        Skip::Late(_) => "after the future window",
        Skip::OutOfWindow(_) => "outside the window",
        Skip::NotDependedOn(_) => "not in dependsOn",
        Skip::NotListening(_) => "check not waiting for events",
    }
    .to_owned()
}

fn describe_failure(failure: &crate::lifecycle::FailedRule) -> String {
    format!(
        "{} {}: {}",
        failure.phase.as_str(),
        failure.rule.outcome,
        failure.rule.error
    )
}
