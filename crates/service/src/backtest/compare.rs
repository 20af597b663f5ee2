//! One check replayed through the candidate template and compared with what is stored
//! (SPEC §14): pure, no I/O. The engine's own lifecycle decides — `Check::start` over the
//! check's past records at its anchor, `Check::take_future` for each future record at the
//! time the service took it in, then `Check::finalise` — on the check's own windows.

use std::fmt;

use chrono::{DateTime, SubsecRound as _, Utc};
use serde::Serialize;
use status_check_engine::lifecycle::{Check, Delivery, NextSteps};
use status_check_engine::{
    CheckPhase, CheckResult, Event, Limits, RecordPhase, Template, TemplateDefinition,
};

use crate::store::StoredCheck;

/// What the stored template version a check ran with depended on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub version: i64,
    pub past: Vec<String>,
    pub future: Vec<String>,
    pub poll_until_end: bool,
}

impl StoredVersion {
    pub fn of(definition: &TemplateDefinition) -> StoredVersion {
        let names = |phase: &Option<status_check_engine::template::PhaseDefinition>| {
            phase
                .as_ref()
                .map(|phase| phase.depends_on.clone())
                .unwrap_or_default()
        };
        StoredVersion {
            version: definition.version,
            past: names(&definition.past),
            future: names(&definition.future),
            poll_until_end: definition.poll_until_end,
        }
    }
}

/// A result in the stored → candidate matrix: a check's result, or `UNDECIDED` for a
/// candidate that would still wait for events the check never recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatrixResult {
    Pass,
    Fail,
    Unknown,
    Pending,
    Undecided,
}

impl MatrixResult {
    pub const COLUMNS: [MatrixResult; 4] = [
        MatrixResult::Pass,
        MatrixResult::Fail,
        MatrixResult::Unknown,
        MatrixResult::Undecided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MatrixResult::Pass => "PASS",
            MatrixResult::Fail => "FAIL",
            MatrixResult::Unknown => "UNKNOWN",
            MatrixResult::Pending => "PENDING",
            MatrixResult::Undecided => "UNDECIDED",
        }
    }
}

impl From<CheckResult> for MatrixResult {
    fn from(result: CheckResult) -> Self {
        match result {
            CheckResult::Pass => MatrixResult::Pass,
            CheckResult::Fail => MatrixResult::Fail,
            CheckResult::Unknown => MatrixResult::Unknown,
            CheckResult::Pending => MatrixResult::Pending,
        }
    }
}

/// How a check ended, or that the candidate would not have ended it on what was recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// `COMPLETED` or `FAILED`; `null` when undecided.
    pub phase: Option<CheckPhase>,
    pub result: MatrixResult,
    /// `pass`, `fail` or `unknown`: the command whose next step the robot runs.
    pub next_command: Option<&'static str>,
    /// Why it is undecided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
}

/// What an undecided candidate outcome says.
pub const NEVER_RECORDED: &str = "undecided — its future was never recorded";

impl Outcome {
    fn undecided() -> Outcome {
        Outcome {
            phase: None,
            result: MatrixResult::Undecided,
            next_command: None,
            note: Some(NEVER_RECORDED),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.phase, self.note) {
            (Some(phase), _) => write!(
                f,
                "{phase} {} → {}",
                self.result.as_str(),
                self.next_command.unwrap_or("none")
            ),
            (None, Some(note)) => f.write_str(note),
            (None, None) => f.write_str(self.result.as_str()),
        }
    }
}

/// The first point at which the stored check and the candidate disagree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartsAt {
    /// The record's `order` (for a record only the candidate took in, from Megazord: none).
    pub record: Option<u32>,
    /// `PAST` or `FUTURE` for a record; `DEADLINE` when every record agrees and the end
    /// differs; `END_OF_RECORDS` when the candidate would still be waiting after them.
    pub step: &'static str,
    pub event_name: Option<String>,
    pub event_id: Option<i64>,
    pub event_created_at: Option<DateTime<Utc>>,
    /// The result after this point as stored: a result, or `not recorded`.
    pub stored: String,
    /// The result after this point for the candidate: a result, or `not taken in`.
    pub candidate: String,
}

impl fmt::Display for PartsAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.record, &self.event_name) {
            (_, Some(name)) => {
                match self.record {
                    Some(order) => write!(f, "record {order} ({} {name}", self.step)?,
                    None => write!(f, "an event from Megazord ({} {name}", self.step)?,
                }
                if let Some(id) = self.event_id {
                    write!(f, " #{id}")?;
                }
                if let Some(at) = self.event_created_at {
                    write!(
                        f,
                        " at {}",
                        at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    )?;
                }
                write!(f, "): {} vs {}", self.stored, self.candidate)
            }
            _ => write!(
                f,
                "{}: {} vs {}",
                self.step.to_lowercase().replace('_', " "),
                self.stored,
                self.candidate
            ),
        }
    }
}

/// The verdict on one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Unchanged {
        stored: Outcome,
    },
    Changed {
        stored: Outcome,
        candidate: Outcome,
        parts_at: PartsAt,
    },
    /// The candidate depends on events the check never recorded.
    NotComparable {
        missing: Vec<String>,
        reason: String,
    },
}

/// Events to read from Megazord's incomings to judge a check: each name since a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub names: Vec<(String, DateTime<Utc>)>,
}

/// A verdict, and what Megazord could supply to settle it (not comparable, or undecided).
#[derive(Debug, Clone)]
pub struct Compared {
    pub verdict: Verdict,
    pub needs: Option<Needs>,
    /// The candidate's run, for timelines of changed checks.
    pub candidate: Option<Check>,
}

/// How far a stored check's records reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recorded {
    /// Through the end of the future window, or there was none.
    Whole,
    /// Up to (and including) this event time: the check was decided by a future record
    /// before its window ended.
    Until(DateTime<Utc>),
    /// Its past only: it was decided in its past phase and never subscribed.
    PastOnly,
}

/// Stand-in next steps of a check the Node service wrote (not adopted, so its steps were
/// never read): they map the result back to its command.
const STAND_INS: NextSteps = NextSteps {
    pass: 1,
    fail: 2,
    unknown: Some(3),
};

/// Replays `check` through `candidate`. `stored` is the version the check ran with (or why
/// its dependencies cannot be read); `supplied` the events Megazord returned for
/// [`Needs`], when it was asked.
pub fn compare(
    check: &StoredCheck,
    stored: Result<&StoredVersion, &str>,
    candidate: &Template,
    limits: Limits,
    supplied: Option<&[Event]>,
) -> Compared {
    let stored = match stored {
        Ok(stored) => stored,
        Err(problem) => {
            return not_comparable(
                Vec::new(),
                format!("the stored template version's dependencies cannot be read: {problem}"),
                None,
            );
        }
    };
    let windows = check.windows;
    let anchor = windows.anchor;
    let recorded = recorded(check, stored);
    let unrecorded_future = match recorded {
        Recorded::Until(at) => windows.until.filter(|until| at < *until).map(|_| at),
        Recorded::PastOnly => windows.until.map(|_| anchor),
        Recorded::Whole => None,
    };
    // Whether the check went through its future phase: by whether it subscribed, not by the
    // deciding event's time — an event stamped with the anchor's second is a future one.
    let future_seen = match recorded {
        Recorded::Whole => windows.until.is_some(),
        Recorded::Until(_) => true,
        Recorded::PastOnly => false,
    };
    let missing = |candidate_names: Option<&Vec<String>>, stored_names: &[String]| -> Vec<String> {
        candidate_names
            .into_iter()
            .flatten()
            .filter(|name| !stored_names.contains(name))
            .cloned()
            .collect()
    };
    let missing_past = if windows.has_past {
        missing(candidate.past.as_ref().map(|p| &p.depends_on), &stored.past)
    } else {
        Vec::new()
    };
    let missing_future = if future_seen {
        missing(
            candidate.future.as_ref().map(|p| &p.depends_on),
            &stored.future,
        )
    } else {
        Vec::new()
    };
    let needs = || {
        let past_since = windows.since.unwrap_or(crate::store::TIMESTAMP_MIN);
        let mut names: Vec<(String, DateTime<Utc>)> = missing_past
            .iter()
            .map(|name| (name.clone(), past_since))
            .collect();
        let future_names = match unrecorded_future {
            Some(_) => candidate
                .future
                .as_ref()
                .map(|p| p.depends_on.clone())
                .unwrap_or_default(),
            None => missing_future.clone(),
        };
        for name in future_names {
            if !names.iter().any(|(known, _)| *known == name) {
                names.push((name, anchor));
            }
        }
        Needs { names }
    };
    if !missing_past.is_empty() && supplied.is_none() {
        return not_comparable(missing_past.clone(), "past".to_owned(), Some(needs()));
    }

    let next_steps = check.next_steps.unwrap_or(STAND_INS);
    let mut run = Check::new(
        check.key.robot_id,
        check.key.planned_at,
        windows,
        next_steps,
        candidate,
        limits,
    );
    // A record the Node service wrote has no event time but its writing, which may fall after
    // the anchor (its read of Megazord came after the check): the check took it in as a past
    // record, so the replay does too, at the anchor at the latest.
    let mut past: Vec<Event> = check
        .records
        .iter()
        .filter(|record| record.phase == RecordPhase::Past)
        .map(|record| Event {
            created_at: record.event.created_at.min(anchor),
            ..record.event.clone()
        })
        .collect();
    if let Some(supplied) = supplied {
        past.extend(
            supplied
                .iter()
                .filter(|event| missing_past.contains(&event.name))
                .cloned(),
        );
    }
    run.start(candidate, past, anchor);
    let mut undecided = false;
    if !run.phase.is_final() {
        if !missing_future.is_empty() && supplied.is_none() {
            return not_comparable(missing_future.clone(), "future".to_owned(), Some(needs()));
        }
        let mut deliveries: Vec<(DateTime<Utc>, Delivery)> = check
            .records
            .iter()
            .filter(|record| record.phase == RecordPhase::Future)
            .map(|record| {
                let delivery = Delivery {
                    event: record.event.clone(),
                    outgoing_event_id: record.outgoing_event_id,
                };
                (record.created_at.max(anchor), delivery)
            })
            .collect();
        if let Some(supplied) = supplied {
            let wanted = |event: &Event| {
                missing_future.contains(&event.name)
                    // Megazord stamps whole seconds: an event of the same second as the last
                    // one recorded may have come after it (that one is skipped as a repeat).
                    || unrecorded_future
                        .is_some_and(|from| event.created_at >= from.trunc_subsecs(0))
            };
            deliveries.extend(
                supplied
                    .iter()
                    .filter(|event| wanted(event))
                    .map(|event| (event.created_at.max(anchor), Delivery::from(event.clone()))),
            );
        }
        // Stable: records taken in at the same time keep their stored order.
        deliveries.sort_by_key(|(at, _)| *at);
        for (at, delivery) in deliveries {
            if run.phase.is_final() {
                break;
            }
            run.take_future(candidate, vec![delivery], at);
        }
        if !run.phase.is_final() {
            if unrecorded_future.is_none() || supplied.is_some() {
                run.finalise();
            } else {
                undecided = true;
            }
        }
    }

    let stored_outcome = stored_outcome(check);
    let candidate_outcome = if undecided {
        Outcome::undecided()
    } else {
        Outcome {
            phase: Some(run.phase),
            result: run.result.into(),
            next_command: command(&next_steps, run.result, run.next_step_id),
            note: None,
        }
    };
    let needs = undecided.then(needs);
    let verdict = if stored_outcome == candidate_outcome {
        Verdict::Unchanged {
            stored: stored_outcome,
        }
    } else {
        Verdict::Changed {
            parts_at: parts_at(check, &run, &stored_outcome, &candidate_outcome),
            stored: stored_outcome,
            candidate: candidate_outcome,
        }
    };
    Compared {
        verdict,
        needs,
        candidate: Some(run),
    }
}

fn not_comparable(missing: Vec<String>, phase: String, needs: Option<Needs>) -> Compared {
    let reason = if missing.is_empty() {
        phase
    } else {
        format!(
            "the candidate's {phase} rules depend on {}, which the check never recorded",
            missing.join(", ")
        )
    };
    Compared {
        verdict: Verdict::NotComparable { missing, reason },
        needs,
        candidate: None,
    }
}

/// How far the check's records reach: a check that subscribed and was decided by a future
/// record before its deadline (not `pollUntilEnd`) recorded up to that event; one that
/// never subscribed (decided in the past phase) recorded only its past; any other, all.
fn recorded(check: &StoredCheck, stored: &StoredVersion) -> Recorded {
    let anchor = check.windows.anchor;
    let Some(until) = check.windows.until else {
        return Recorded::Whole;
    };
    let last_future = check
        .records
        .iter()
        .filter(|record| record.phase == RecordPhase::Future)
        .max_by_key(|record| record.order);
    let subscribed = check.subscription_id.is_some() || last_future.is_some();
    if !subscribed {
        return Recorded::PastOnly;
    }
    match last_future {
        Some(record)
            if !stored.poll_until_end
                && check.phase == CheckPhase::Completed
                && record.result.is_decisive()
                && record.result == check.result
                // Taken in by the read at the deadline: the whole window was read.
                && record.created_at < until =>
        {
            Recorded::Until(record.event.created_at.max(anchor))
        }
        _ => Recorded::Whole,
    }
}

fn stored_outcome(check: &StoredCheck) -> Outcome {
    let next_steps = check.next_steps.unwrap_or(STAND_INS);
    let next_step_id = match check.next_steps {
        Some(_) => check.next_step_id,
        // The Node service's steps are unknown here: the command follows the result.
        None => next_steps.for_result(check.result),
    };
    Outcome {
        phase: Some(check.phase),
        result: check.result.into(),
        next_command: command(&next_steps, check.result, next_step_id),
        note: None,
    }
}

/// The command whose next step `next_step_id` is; the result's own first when two commands
/// share a step.
fn command(
    next_steps: &NextSteps,
    result: CheckResult,
    next_step_id: Option<i64>,
) -> Option<&'static str> {
    let id = next_step_id?;
    let own = match result {
        CheckResult::Pass => Some("pass"),
        CheckResult::Fail => Some("fail"),
        CheckResult::Unknown if next_steps.unknown.is_some() => Some("unknown"),
        CheckResult::Unknown => Some("fail"),
        CheckResult::Pending => None,
    };
    let step_of = |command: &str| match command {
        "pass" => Some(next_steps.pass),
        "fail" => Some(next_steps.fail),
        _ => next_steps.unknown,
    };
    own.into_iter()
        .chain(["pass", "fail", "unknown"])
        .find(|command| step_of(command) == Some(id))
}

fn parts_at(check: &StoredCheck, run: &Check, stored: &Outcome, candidate: &Outcome) -> PartsAt {
    let taken = run.history.records();
    let at_record =
        |record: &status_check_engine::Record, stored: String, candidate: String| PartsAt {
            record: Some(record.order),
            step: record.phase.as_str(),
            event_name: Some(record.event.name.clone()),
            event_id: (record.event.id > 0).then_some(record.event.id),
            event_created_at: Some(record.event.created_at),
            stored,
            candidate,
        };
    let mut records: Vec<&status_check_engine::Record> = check.records.iter().collect();
    records.sort_by_key(|record| record.order);
    for record in records {
        match taken.iter().find(|t| t.event.id == record.event.id) {
            Some(t) if t.result == record.result => continue,
            Some(t) => {
                return at_record(record, record.result.to_string(), t.result.to_string());
            }
            None => return at_record(record, record.result.to_string(), "not taken in".into()),
        }
    }
    let stored_ids = |id: i64| check.records.iter().any(|record| record.event.id == id);
    if let Some(extra) = taken.iter().find(|t| !stored_ids(t.event.id)) {
        return PartsAt {
            record: None,
            ..at_record(extra, "not recorded".into(), extra.result.to_string())
        };
    }
    PartsAt {
        record: None,
        step: if candidate.phase.is_none() {
            "END_OF_RECORDS"
        } else {
            "DEADLINE"
        },
        event_name: None,
        event_id: None,
        event_created_at: None,
        stored: stored.to_string(),
        candidate: candidate.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use status_check_engine::Record;
    use status_check_engine::lifecycle::Windows;

    use super::*;
    use crate::store::fixtures::stored_check;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn event(id: i64, time: &str) -> Event {
        Event {
            id,
            name: "CHARGING_STARTED".to_owned(),
            created_at: at(time),
            level: None,
            reference_id: None,
        }
    }

    /// A robot-is-charging v1 check created at 08:00:00.400 that passed on charging start #10,
    /// stamped 08:05:00 by Megazord (whole seconds), long before its deadline.
    fn passed_early() -> (StoredCheck, StoredVersion) {
        let anchor = at("2026-11-20T08:00:00.400Z");
        let check = StoredCheck {
            subscription_id: Some(9001),
            windows: Windows::from_effective(anchor, 3600, 600),
            next_steps: Some(NextSteps {
                pass: 124,
                fail: 125,
                unknown: None,
            }),
            notification_seq: 1,
            records: vec![Record {
                order: 1,
                phase: RecordPhase::Future,
                event: event(10, "2026-11-20T08:05:00Z"),
                outgoing_event_id: Some(77),
                result: CheckResult::Pass,
                created_at: at("2026-11-20T08:05:00.200Z"),
            }],
            updated_at: at("2026-11-20T08:05:00.200Z"),
            ..stored_check(anchor)
        };
        let stored = StoredVersion {
            version: 1,
            past: vec!["CHARGING_STARTED".to_owned(), "CHARGING_STOPPED".to_owned()],
            future: vec!["CHARGING_STARTED".to_owned()],
            poll_until_end: false,
        };
        (check, stored)
    }

    fn candidate(future_pass: &str) -> Template {
        candidate_depending_on("CHARGING_STARTED", future_pass)
    }

    fn candidate_depending_on(future_depends_on: &str, future_pass: &str) -> Template {
        let yaml = format!(
            "name: robot-is-charging\nversion: 2\ndescription: test\nisActive: true\n\
             pollUntilEnd: false\npoller: {{pastInterval: 3600, futureInterval: 600}}\n\
             resources:\n  pastEvents:\n    dependsOn: [CHARGING_STARTED, CHARGING_STOPPED]\n    \
             PASS: 'events.size() > 0 && events[events.size() - 1].name == \"CHARGING_STARTED\"'\n  \
             futureEvents:\n    dependsOn: [{future_depends_on}]\n    PASS: '{future_pass}'\n"
        );
        Template::from_yaml(&yaml, "candidate", &Limits::default()).unwrap()
    }

    /// A stored version whose dependencies cannot be read is named, with its problem.
    #[test]
    fn an_unreadable_stored_version_is_named_with_its_problem() {
        let (check, _) = passed_early();
        let same = candidate("future.exists(e, e.name == \"CHARGING_STARTED\")");
        let problem = "version 1: past_event_dependencies is not a JSON list";
        let compared = compare(&check, Err(problem), &same, Limits::default(), None);
        let Verdict::NotComparable { reason, .. } = compared.verdict else {
            panic!("{:?}", compared.verdict);
        };
        assert!(reason.ends_with(problem), "{reason}");
    }

    /// A check decided by a future event Megazord stamped with the anchor's own second (taken
    /// in by the backfill) went through its future phase: a future dependency it never
    /// recorded makes it not comparable, not unchanged.
    #[test]
    fn a_check_decided_in_its_anchors_second_went_through_its_future() {
        let (mut check, stored) = passed_early();
        check.records[0].event = event(10, "2026-11-20T08:00:00Z");
        check.records[0].created_at = at("2026-11-20T08:00:00.450Z");
        let with_stops = candidate_depending_on(
            "CHARGING_STARTED, CHARGING_STOPPED",
            "future.exists(e, e.name == \"CHARGING_STARTED\") && \
             !future.exists(e, e.name == \"CHARGING_STOPPED\")",
        );
        let compared = compare(&check, Ok(&stored), &with_stops, Limits::default(), None);
        let Verdict::NotComparable { missing, .. } = compared.verdict else {
            panic!("{:?}", compared.verdict);
        };
        assert_eq!(missing, ["CHARGING_STOPPED"]);
    }

    /// Megazord stamps whole seconds: a second charging start of the same second as the one the
    /// check ended on may have come after it, and the service would have taken it in.
    #[test]
    fn an_event_of_the_same_second_as_the_last_recorded_is_read_from_megazord() {
        let (check, stored) = passed_early();
        let two_starts = candidate("future.filter(e, e.name == \"CHARGING_STARTED\").size() >= 2");
        let compared = compare(&check, Ok(&stored), &two_starts, Limits::default(), None);
        assert!(compared.needs.is_some(), "undecided without Megazord");
        let supplied = [
            event(10, "2026-11-20T08:05:00Z"),
            event(11, "2026-11-20T08:05:00Z"),
        ];
        let compared = compare(
            &check,
            Ok(&stored),
            &two_starts,
            Limits::default(),
            Some(&supplied),
        );
        assert!(
            matches!(compared.verdict, Verdict::Unchanged { .. }),
            "{:?}",
            compared.verdict
        );
    }
}
