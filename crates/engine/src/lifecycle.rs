//! The check lifecycle as pure functions (SPEC §3.1–3.5).
//!
//! A [`Check`] holds everything a decision needs. Each decision — [`Check::start`],
//! [`Check::take_future`], [`Check::finalise`] — changes the check in place and returns a
//! [`Transition`]: the records it appended, the effects the service must carry out (subscribe,
//! unsubscribe, notify the robot), the rules that errored and the events it skipped.

use std::collections::HashSet;

use chrono::{DateTime, SubsecRound as _, TimeDelta, Utc};

use crate::history::History;
use crate::model::{CheckPhase, CheckResult, Event, Record, RecordPhase};
use crate::rules::{Evaluation, Limits, PhaseRules, RuleFailure, RuleVars};
use crate::template::{MAX_INTERVAL, PollerDefaults, Template};

/// The next step of each outcome, from the step's `multipleChoice` commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextSteps {
    pub pass: i64,
    pub fail: i64,
    /// Without an `unknown` command, `UNKNOWN` goes to `fail`.
    pub unknown: Option<i64>,
}

/// A step whose commands lack `pass` or `fail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the step has no '{0}' command among its next steps")]
pub struct MissingCommand(pub &'static str);

impl NextSteps {
    /// Picks the `pass`, `fail` and `unknown` commands out of `(command, next step id)` pairs.
    pub fn from_commands<'a>(
        commands: impl IntoIterator<Item = (&'a str, i64)>,
    ) -> Result<NextSteps, MissingCommand> {
        let (mut pass, mut fail, mut unknown) = (None, None, None);
        for (command, next) in commands {
            let slot = match command {
                "pass" => &mut pass,
                "fail" => &mut fail,
                "unknown" => &mut unknown,
                _ => continue,
            };
            slot.get_or_insert(next);
        }
        Ok(NextSteps {
            pass: pass.ok_or(MissingCommand("pass"))?,
            fail: fail.ok_or(MissingCommand("fail"))?,
            unknown,
        })
    }

    /// The next step for a decisive result; `None` for `PENDING`.
    pub fn for_result(&self, result: CheckResult) -> Option<i64> {
        match result {
            CheckResult::Pending => None,
            CheckResult::Pass => Some(self.pass),
            CheckResult::Fail => Some(self.fail),
            CheckResult::Unknown => Some(self.unknown.unwrap_or(self.fail)),
        }
    }
}

/// A step interval the service cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "pastInterval {0} is out of range: use -1 (unbounded), 0 (template default) or up to {MAX_INTERVAL} seconds"
    )]
    Past(i64),
    #[error(
        "futureInterval {0} is out of range: use 0 (template default) up to {MAX_INTERVAL} seconds"
    )]
    Future(i64),
}

/// A check's windows (SPEC §3.1), fixed when the check is created. The interval rule (0 →
/// the template's default) is applied once, by [`Windows::compute`]; what a check keeps are
/// the effective intervals, from which [`Windows::from_effective`] rebuilds the same windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// The server time the check was created at.
    pub anchor: DateTime<Utc>,
    /// The effective look-back in seconds: −1 unbounded, 0 none.
    pub past_seconds: i64,
    /// The effective look-ahead in seconds: 0 none.
    pub future_seconds: i64,
    /// Whether there is a past phase at all (`pastInterval` ≠ 0).
    pub has_past: bool,
    /// Start of the past window: `None` when unbounded (`-1`); the anchor when there is no
    /// past phase. Stored as the poller's `pollingSince`.
    pub since: Option<DateTime<Utc>>,
    /// End of the future window; `None` when there is no future phase. Stored as the poller's
    /// `pollingUntil`: the check's deadline.
    pub until: Option<DateTime<Utc>>,
}

impl Windows {
    /// The windows for a step's intervals (seconds; 0 = the template's default).
    pub fn compute(
        past_interval: i64,
        future_interval: i64,
        defaults: &PollerDefaults,
        anchor: DateTime<Utc>,
    ) -> Result<Windows, WindowError> {
        if !(-1..=MAX_INTERVAL).contains(&past_interval) {
            return Err(WindowError::Past(past_interval));
        }
        if !(0..=MAX_INTERVAL).contains(&future_interval) {
            return Err(WindowError::Future(future_interval));
        }
        let or_default = |value: i64, default: i64| if value == 0 { default } else { value };
        Ok(Windows::from_effective(
            anchor,
            or_default(past_interval, defaults.past_interval),
            or_default(future_interval, defaults.future_interval),
        ))
    }

    /// The windows of effective intervals (as a check stores them: no defaults applied).
    /// Intervals too long for a time are as good as endless: no `since`, no `until`.
    pub fn from_effective(
        anchor: DateTime<Utc>,
        past_seconds: i64,
        future_seconds: i64,
    ) -> Windows {
        let offset = |seconds: i64| TimeDelta::try_seconds(seconds);
        Windows {
            anchor,
            past_seconds,
            future_seconds,
            has_past: past_seconds != 0,
            since: match past_seconds {
                -1 => None,
                seconds => offset(seconds.max(0)).and_then(|d| anchor.checked_sub_signed(d)),
            },
            until: (future_seconds > 0)
                .then(|| offset(future_seconds).and_then(|d| anchor.checked_add_signed(d)))
                .flatten(),
        }
    }

    /// `[since, anchor]`, when there is a past phase.
    pub fn in_past(&self, at: DateTime<Utc>) -> bool {
        self.has_past && at <= self.anchor && self.since.is_none_or(|since| at >= since)
    }

    /// `(anchor, until]`, at the granularity of Megazord's clock: it stamps events in whole
    /// seconds (`incoming_event.created_at` is a `TIMESTAMP`), so an event stamped with the
    /// whole second an anchor falls inside — or is, for an anchor on a whole second — may have
    /// happened after the anchor, and is in. (One that happened before it was taken in by the
    /// past fetch, made after the anchor; no event is recorded twice.)
    pub fn in_future(&self, at: DateTime<Utc>) -> bool {
        let after_anchor = at > self.anchor || at == self.anchor.trunc_subsecs(0);
        self.until.is_some_and(|until| after_anchor && at <= until)
    }
}

/// Why a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A decisive result without `pollUntilEnd`.
    Decided,
    /// The future window's end passed.
    Deadline,
    /// Nothing more could happen: no future window (or no future rules).
    NoFuture,
    /// Taking in another record would pass the history cap.
    HistoryCap,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Decided => "decided",
            EndReason::Deadline => "deadline",
            EndReason::NoFuture => "no future window",
            EndReason::HistoryCap => "history cap reached",
        }
    }
}

/// Something the service must do because of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Subscribe at Megazord to these events until `until`, then backfill (SPEC §3.3).
    Subscribe {
        event_names: Vec<String>,
        until: DateTime<Utc>,
    },
    /// Remove the check's subscription at Megazord.
    Unsubscribe,
    /// The phase, result or next step changed: tell the robot (after the create response).
    NotifyRobot,
}

/// An event a decision did not take in, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Already recorded for this check.
    Duplicate(i64),
    /// Created after `pollingUntil`.
    Late(i64),
    /// Outside the phase's window on the early side.
    OutOfWindow(i64),
    /// Not one of the phase's `dependsOn` events.
    NotDependedOn(i64),
    /// The check was not waiting for future events (ended, or not started).
    NotListening(i64),
}

impl Skip {
    /// The event skipped.
    pub fn event_id(&self) -> i64 {
        match *self {
            Skip::Duplicate(id)
            | Skip::Late(id)
            | Skip::OutOfWindow(id)
            | Skip::NotDependedOn(id)
            | Skip::NotListening(id) => id,
        }
    }
}

/// What one decision did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Records appended to the history by this decision (the last `appended` records).
    pub appended: usize,
    /// Those records, as they are to be stored.
    pub new_records: Vec<Record>,
    /// The check's pending deadline after the decision: the end of its future window while
    /// it waits for events, else none.
    pub deadline: Option<DateTime<Utc>>,
    /// Whether phase, result or next step changed.
    pub changed: bool,
    pub effects: Vec<Effect>,
    pub rule_failures: Vec<FailedRule>,
    pub skipped: Vec<Skip>,
}

/// A rule that errored in one of the decision's evaluations (it counted as false), with the
/// phase it belongs to: a template may have a `PASS` rule in each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRule {
    pub phase: RecordPhase,
    pub rule: RuleFailure,
}

/// An event for the future phase, from the backfill or a queue delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub event: Event,
    /// Megazord's outgoing event id, for queue deliveries.
    pub outgoing_event_id: Option<i64>,
}

impl From<Event> for Delivery {
    fn from(event: Event) -> Self {
        Delivery {
            event,
            outgoing_event_id: None,
        }
    }
}

/// What a stored check is, for [`Check::restore`] and [`Check::snapshot`]: everything a
/// decision needs besides the template and the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    pub robot_id: i64,
    pub planned_at: DateTime<Utc>,
    pub windows: Windows,
    pub next_steps: NextSteps,
    pub phase: CheckPhase,
    pub result: CheckResult,
    pub next_step_id: Option<i64>,
    pub records: Vec<Record>,
}

/// A status check as the lifecycle sees it.
#[derive(Debug, Clone)]
pub struct Check {
    pub robot_id: i64,
    pub planned_at: DateTime<Utc>,
    pub windows: Windows,
    pub next_steps: NextSteps,
    pub poll_until_end: bool,
    pub phase: CheckPhase,
    pub result: CheckResult,
    pub next_step_id: Option<i64>,
    pub history: History,
    pub end_reason: Option<EndReason>,
    pub limits: Limits,
}

impl Check {
    /// A new check in `CREATED`.
    pub fn new(
        robot_id: i64,
        planned_at: DateTime<Utc>,
        windows: Windows,
        next_steps: NextSteps,
        template: &Template,
        limits: Limits,
    ) -> Check {
        Check {
            robot_id,
            planned_at,
            windows,
            next_steps,
            poll_until_end: template.poll_until_end,
            phase: CheckPhase::Created,
            result: CheckResult::Pending,
            next_step_id: None,
            history: History::default(),
            end_reason: None,
            limits,
        }
    }

    /// A stored check, to decide on: the template supplies `pollUntilEnd`.
    pub fn restore(state: CheckState, template: &Template, limits: Limits) -> Check {
        Check {
            robot_id: state.robot_id,
            planned_at: state.planned_at,
            windows: state.windows,
            next_steps: state.next_steps,
            poll_until_end: template.poll_until_end,
            phase: state.phase,
            result: state.result,
            next_step_id: state.next_step_id,
            history: History::from_records(state.records),
            end_reason: None,
            limits,
        }
    }

    /// What to store of the check.
    pub fn snapshot(&self) -> CheckState {
        CheckState {
            robot_id: self.robot_id,
            planned_at: self.planned_at,
            windows: self.windows,
            next_steps: self.next_steps,
            phase: self.phase,
            result: self.result,
            next_step_id: self.next_step_id,
            records: self.history.records().to_vec(),
        }
    }

    /// The deadline at which [`Check::finalise`] is due, while the check waits for events.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        match self.phase {
            CheckPhase::Future => self.windows.until,
            _ => None,
        }
    }

    /// Fills in what every transition reports about the check after the decision.
    fn conclude(&self, mut transition: Transition) -> Transition {
        let records = self.history.records();
        transition.new_records = records[records.len() - transition.appended..].to_vec();
        transition.deadline = self.deadline();
        transition
    }

    fn vars(&self, now: DateTime<Utc>) -> RuleVars {
        RuleVars {
            now,
            since: self.windows.since,
            until: self.windows.until,
            planned_at: self.planned_at,
            robot_id: self.robot_id,
        }
    }

    /// The past evaluation, then the decision to end or to wait for future events.
    ///
    /// `events` are whatever Megazord returned for the past dependencies; those outside the
    /// past window or not depended on are skipped. Does not ask to notify the robot: the
    /// create response carries the state.
    pub fn start(
        &mut self,
        template: &Template,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> Transition {
        let transition = self.start_inner(template, events, now);
        self.conclude(transition)
    }

    fn start_inner(
        &mut self,
        template: &Template,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> Transition {
        let mut transition = Transition::default();
        if self.phase != CheckPhase::Created {
            transition
                .skipped
                .extend(events.iter().map(|e| Skip::NotListening(e.id)));
            return transition;
        }
        transition.changed = true;
        self.phase = CheckPhase::Past;
        let past_rules = template.past.as_ref().filter(|_| self.windows.has_past);
        match past_rules {
            Some(rules) => {
                // Ids already taken, for the duplicate test: linear in the events, however many.
                let mut taken_ids = HashSet::new();
                let mut taken = Vec::new();
                for event in sorted(events) {
                    match self.admit(rules, &event, RecordPhase::Past, &taken_ids) {
                        Some(skip) => transition.skipped.push(skip),
                        None => {
                            taken_ids.insert(event.id);
                            taken.push(event);
                        }
                    }
                }
                if taken.len() > self.limits.history_cap {
                    self.end(CheckPhase::Failed, CheckResult::Fail, EndReason::HistoryCap);
                    return transition;
                }
                for event in taken {
                    self.push(RecordPhase::Past, event.into(), now);
                    transition.appended += 1;
                }
                let vars = self.vars(now);
                let evaluation = rules.evaluate(&self.history.past_input(&vars));
                let appended = transition.appended;
                self.apply(evaluation, appended, RecordPhase::Past, &mut transition);
            }
            // No past rules: nothing depends on them. Rules but no past phase (a step's
            // `pastInterval` 0): the window is empty.
            None => transition
                .skipped
                .extend(events.iter().map(|e| match template.past {
                    Some(_) => Skip::OutOfWindow(e.id),
                    None => Skip::NotDependedOn(e.id),
                })),
        }

        let future = template.future.as_ref().zip(self.windows.until);
        if self.result.is_decisive() && !self.poll_until_end {
            self.end(CheckPhase::Completed, self.result, EndReason::Decided);
        } else if let Some((rules, until)) = future {
            self.phase = CheckPhase::Future;
            transition.effects.push(Effect::Subscribe {
                event_names: rules.depends_on.clone(),
                until,
            });
        } else {
            self.end_now(EndReason::NoFuture);
        }
        transition
    }

    /// Takes in future events — the backfill after subscribing, or one queue delivery — in
    /// (event time, id) order, evaluating the future rules after each. Duplicates, events
    /// outside the future window and events nobody depends on are skipped; events for a
    /// check that is not in `FUTURE` change nothing.
    pub fn take_future(
        &mut self,
        template: &Template,
        deliveries: Vec<Delivery>,
        now: DateTime<Utc>,
    ) -> Transition {
        let transition = self.take_future_inner(template, deliveries, now);
        self.conclude(transition)
    }

    fn take_future_inner(
        &mut self,
        template: &Template,
        deliveries: Vec<Delivery>,
        now: DateTime<Utc>,
    ) -> Transition {
        let mut transition = Transition::default();
        let before = self.observable();
        let mut deliveries = deliveries;
        deliveries.sort_by_key(|d| (d.event.created_at, d.event.id));
        for delivery in deliveries {
            let id = delivery.event.id;
            let rules = match template.future.as_ref() {
                Some(rules) if self.phase == CheckPhase::Future => rules,
                _ => {
                    transition.skipped.push(Skip::NotListening(id));
                    continue;
                }
            };
            if let Some(skip) =
                self.admit(rules, &delivery.event, RecordPhase::Future, &HashSet::new())
            {
                transition.skipped.push(skip);
                continue;
            }
            if self.history.len() >= self.limits.history_cap {
                self.end(CheckPhase::Failed, CheckResult::Fail, EndReason::HistoryCap);
                transition.skipped.push(Skip::NotListening(id));
                continue;
            }
            self.push(RecordPhase::Future, delivery, now);
            transition.appended += 1;
            if !rules.has_rules() {
                // Nothing to evaluate with: the record keeps the current result.
                self.history.set_last_results(1, self.result);
                continue;
            }
            let vars = self.vars(now);
            let evaluation = rules.evaluate(&self.history.full_input(&vars));
            self.apply(evaluation, 1, RecordPhase::Future, &mut transition);
            if self.result.is_decisive() && !self.poll_until_end {
                self.end(CheckPhase::Completed, self.result, EndReason::Decided);
            }
        }
        self.close(before, &mut transition);
        transition
    }

    /// The deadline passed: a decisive result completes the check, `PENDING` fails it.
    /// Does nothing to a check that already ended.
    pub fn finalise(&mut self) -> Transition {
        let mut transition = Transition::default();
        if !self.phase.is_final() {
            let before = self.observable();
            self.end_now(EndReason::Deadline);
            self.close(before, &mut transition);
        }
        self.conclude(transition)
    }

    /// Why `event` may not join the phase, if it may not.
    fn admit(
        &self,
        rules: &PhaseRules,
        event: &Event,
        phase: RecordPhase,
        batch: &HashSet<i64>,
    ) -> Option<Skip> {
        let id = event.id;
        if self.history.contains(id) || batch.contains(&id) {
            return Some(Skip::Duplicate(id));
        }
        if !rules.depends_on.contains(&event.name) {
            return Some(Skip::NotDependedOn(id));
        }
        let in_window = match phase {
            RecordPhase::Past => self.windows.in_past(event.created_at),
            RecordPhase::Future => self.windows.in_future(event.created_at),
        };
        match (in_window, phase, self.windows.until) {
            (true, _, _) => None,
            (false, RecordPhase::Future, Some(until)) if event.created_at > until => {
                Some(Skip::Late(id))
            }
            _ => Some(Skip::OutOfWindow(id)),
        }
    }

    fn push(&mut self, phase: RecordPhase, delivery: Delivery, now: DateTime<Utc>) {
        let record = Record {
            order: self.history.next_order(),
            phase,
            event: delivery.event,
            outgoing_event_id: delivery.outgoing_event_id,
            result: CheckResult::Pending,
            created_at: now,
        };
        self.history.push(record);
    }

    /// Stores an evaluation's result on the records it took in and as the current result.
    fn apply(
        &mut self,
        evaluation: Evaluation,
        records: usize,
        phase: RecordPhase,
        transition: &mut Transition,
    ) {
        self.history.set_last_results(records, evaluation.result);
        self.result = evaluation.result;
        transition.rule_failures.extend(
            evaluation
                .errors
                .into_iter()
                .map(|rule| FailedRule { phase, rule }),
        );
    }

    /// Ends the check with what it has: decisive → `COMPLETED`, else `FAILED` with `FAIL`.
    fn end_now(&mut self, reason: EndReason) {
        if self.result.is_decisive() {
            self.end(CheckPhase::Completed, self.result, reason);
        } else {
            self.end(CheckPhase::Failed, CheckResult::Fail, reason);
        }
    }

    fn end(&mut self, phase: CheckPhase, result: CheckResult, reason: EndReason) {
        self.phase = phase;
        self.result = result;
        self.next_step_id = self.next_steps.for_result(result);
        self.end_reason = Some(reason);
    }

    fn observable(&self) -> (CheckPhase, CheckResult, Option<i64>) {
        (self.phase, self.result, self.next_step_id)
    }

    /// Adds the effects that follow from the change since `before`.
    fn close(&self, before: (CheckPhase, CheckResult, Option<i64>), transition: &mut Transition) {
        transition.changed = before != self.observable();
        if self.phase.is_final() && before.0 == CheckPhase::Future {
            transition.effects.push(Effect::Unsubscribe);
        }
        if transition.changed {
            transition.effects.push(Effect::NotifyRobot);
        }
    }
}

fn sorted(mut events: Vec<Event>) -> Vec<Event> {
    events.sort_by_key(|e| (e.created_at, e.id));
    events
}
