//! The use cases — every way a check changes: create one, read one, apply Megazord's
//! deliveries, finalise at the deadline, adopt the Node service's. Each orchestrates the
//! engine (decisions), the store (one transaction per state change) and the upstreams. A
//! decision is made on the check as read, outside any lock, and the store writes it only if
//! the check is still that (else it is read and decided again). What a committed change leaves
//! to do outside the database — reports and metrics — happens in one place,
//! [`Checks::after_commit`], never inside a transaction; an ended check's subscription removal
//! is queued in its transaction and left to the relay. Deliveries and finalisations come in
//! batches written in one transaction each (group commit); an item the batch cannot write is
//! retried alone. The workers only move messages and time to these.

pub mod adoption;
mod cleanup;
mod create;
mod create_writes;
mod deadline;
mod delivery;
mod notifications;
mod reconcile;
pub mod view;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use status_check_engine::lifecycle::{Check, CheckState, Effect, FailedRule, Skip, Transition};
use status_check_engine::rules::RuleFailure;
use status_check_engine::{Limits, Template};
use tokio_util::task::TaskTracker;

use self::adoption::{Adoption, AdoptionConfig};
pub use self::cleanup::SubscriptionRemover;
pub use self::deadline::Finalised;
pub use self::notifications::{NOTIFICATION_LEASE, NotifierConfig, RobotNotifier};
pub use self::reconcile::ReconcileSettings;
use crate::clock::Clock;
use crate::deps::Deps;
use crate::store::{
    BatchedUpdate, CheckUpdate, DynStore, Fence, Notifications, OutboxHandoff, StoreError,
    UpdateOutcome,
};
/// What the callers of these use cases see of a stored check (the API, the pages).
pub use crate::store::{
    CheckFilter, CheckSummary, Claimed, StoredCheck, TIMESTAMP_MAX, TIMESTAMP_MIN,
};
use crate::support::CheckView;
use crate::templates::{LoadedTemplate, TemplateRegistry};
use crate::upstream::{Megazord, MicroManagers, UpstreamError};

pub(crate) use self::create::next_steps;

/// What a robot asked for (SPEC §2.2), already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub robot_id: i64,
    pub step_id: i64,
    pub scheduled_id: i64,
    pub script_version_id: i64,
    pub planned_at: DateTime<Utc>,
}

/// Why a use case could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("step {0} does not exist for this robot")]
    StepNotFound(i64),
    /// The robot has as many open checks at this step as it may (SPEC §13).
    #[error("robot has {open} open checks at step {step_id}, the most it may have")]
    TooManyOpen { step_id: i64, open: u64 },
    #[error("{0}")]
    Unprocessable(String),
    /// A field of the request contradicts what the upstream says (→ 422 naming `field`).
    #[error("{field}: {message}")]
    InvalidField {
        /// The request body's name of the field, e.g. `scriptVersionId`.
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored check's template version is gone (or unreadable): it cannot be decided.
    #[error("template {0} of a stored check cannot be loaded")]
    TemplateMissing(i64),
    /// The process is stopping and the runtime cancelled the work.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

/// Whether create made a new check or found the robot's earlier one.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(StoredCheck),
    Existing(StoredCheck),
}

/// How the use cases behave.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    pub limits: Limits,
    /// Most open checks one robot may have at one step (`OPEN_CHECKS_PER_STEP`).
    pub open_checks_per_step: u64,
    /// Robots' notifications name this host as their sender.
    pub hostname: Arc<str>,
    /// The read at the deadline (SPEC §3.5).
    pub reconcile: ReconcileSettings,
}

/// The use cases with everything they need.
pub struct Checks {
    store: DynStore,
    templates: Arc<TemplateRegistry>,
    micro_managers: Arc<dyn MicroManagers>,
    megazord: Arc<dyn Megazord>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    open_checks_per_step: u64,
    /// Robots' notifications name this host as their sender.
    hostname: Arc<str>,
    /// The read at the deadline (SPEC §3.5).
    reconcile: ReconcileSettings,
    adoption: Adoption,
    /// Creates' writes, grouped into shared transactions.
    create_writes: create_writes::CreateWrites,
    /// This process's relay, which takes the notifications committed here in memory.
    handoff: Option<Arc<OutboxHandoff>>,
    /// The creates under way, each on its own task (`Checks::create`).
    creates: TaskTracker,
}

impl Checks {
    /// The use cases over `deps` (its queue is the workers'), with `templates`.
    pub fn new(deps: &Deps, templates: Arc<TemplateRegistry>, settings: CheckSettings) -> Self {
        Checks {
            store: deps.store.clone(),
            templates,
            micro_managers: deps.micro_managers.clone(),
            megazord: deps.megazord.clone(),
            clock: deps.clock.clone(),
            limits: settings.limits,
            open_checks_per_step: settings.open_checks_per_step,
            hostname: settings.hostname,
            reconcile: settings.reconcile,
            adoption: Adoption::new(deps, AdoptionConfig::default()),
            create_writes: create_writes::CreateWrites::default(),
            handoff: None,
            creates: TaskTracker::new(),
        }
    }

    /// Notifications committed here go to this process's relay in memory (`OutboxHandoff`),
    /// when it runs one.
    pub fn with_handoff(mut self, handoff: Option<Arc<OutboxHandoff>>) -> Self {
        self.handoff = handoff;
        self
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Adopting the checks the Node service left open (SPEC §6.1).
    pub fn adoption(&self) -> &Adoption {
        &self.adoption
    }

    /// SPEC §2.3: the check, when it belongs to this robot.
    pub async fn get(&self, robot_id: i64, id: i64) -> Result<Option<StoredCheck>, CheckError> {
        Ok(self
            .store
            .get_check(id)
            .await?
            .filter(|check| check.key.robot_id == robot_id))
    }

    /// Any robot's check with its notifications (the internal API, the support pages);
    /// `None` when there is no such check.
    pub async fn view(&self, id: i64) -> Result<Option<CheckView>, CheckError> {
        Ok(crate::support::load_check(&self.store, id).await?)
    }

    /// The checks `filter` selects, newest first, at most `limit` (the support pages).
    pub async fn list(
        &self,
        filter: &CheckFilter,
        limit: usize,
    ) -> Result<Vec<CheckSummary>, CheckError> {
        Ok(self.store.list_checks(filter, limit).await?)
    }

    /// Whether the database answers (`/health/ready`).
    pub async fn ping(&self) -> Result<(), CheckError> {
        Ok(self.store.ping().await?)
    }

    /// The template a stored check is decided with (SPEC §6.1 for the Node service's).
    async fn template_of(&self, check: &StoredCheck) -> Result<LoadedTemplate, CheckError> {
        self.templates
            .by_id(check.template_id)
            .await?
            .ok_or(CheckError::TemplateMissing(check.template_id))
    }

    /// The engine's view of a stored check; `None` for a check of the Node service not yet
    /// adopted (its next steps are unknown, so nothing may decide it).
    fn engine_check(&self, stored: &StoredCheck, template: &LoadedTemplate) -> Option<Check> {
        let state = CheckState {
            robot_id: stored.key.robot_id,
            planned_at: stored.key.planned_at,
            windows: stored.windows,
            next_steps: stored.next_steps?,
            phase: stored.phase,
            result: stored.result,
            next_step_id: stored.next_step_id,
            records: stored.records.clone(),
        };
        Some(Check::restore(state, &template.template, self.limits))
    }

    /// Writes what a decision on `current` changed, with a notification when the robot
    /// sees a change.
    async fn write(
        &self,
        current: &StoredCheck,
        fence: Fence<'_>,
        check: &Check,
        transition: &Transition,
        release_lease: bool,
        call_ref: &str,
    ) -> Result<UpdateOutcome, StoreError> {
        let update = update_of(check, transition, release_lease);
        let render = self.renderer();
        self.store
            .update_check(
                BatchedUpdate {
                    current,
                    fence,
                    update,
                    call_ref,
                },
                &self.notifications(&render),
                self.clock.now(),
            )
            .await
    }

    /// Writes a batch of decisions in one transaction (group commit); one outcome each.
    async fn write_batch(
        &self,
        batch: &[BatchedUpdate<'_>],
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        let render = self.renderer();
        self.store
            .update_checks(batch, &self.notifications(&render), self.clock.now())
            .await
    }

    /// How writes queue notifications: rendered by `render`, handed to this process's relay
    /// when it runs one.
    fn notifications<'a>(
        &'a self,
        render: &'a (dyn Fn(&StoredCheck, i64) -> String + Send + Sync),
    ) -> Notifications<'a> {
        Notifications {
            render,
            handoff: self.handoff.as_deref(),
        }
    }

    /// How a robot's notification is rendered inside the write (it needs the new sequence
    /// number).
    fn renderer(&self) -> impl Fn(&StoredCheck, i64) -> String + Send + Sync + use<> {
        let hostname = self.hostname.clone();
        move |check: &StoredCheck, seq: i64| crate::notify::render(check, seq, &hostname)
    }

    /// What a committed change leaves to do outside the database: the rules that failed and
    /// the events skipped are reported, an ended check counted.
    fn after_commit(&self, template: &LoadedTemplate, effects: &Effects, check: &StoredCheck) {
        for FailedRule {
            phase,
            rule: RuleFailure { outcome, error },
        } in &effects.rule_failures
        {
            tracing::warn!(
                template = %template.template.name,
                version = template.template.version,
                template_id = template.id,
                phase = phase.as_str(),
                rule = %outcome,
                check_id = check.id,
                robot_id = check.key.robot_id,
                error = %error,
                "rule failed while running; counted as false"
            );
            metrics::counter!(
                "rule_errors_total",
                "template" => template.template.name.to_string(),
                "phase" => phase.as_str(),
                "rule" => outcome.as_str(),
            )
            .increment(1);
        }
        for skip in &effects.skipped {
            let reason = match skip {
                Skip::Duplicate(_) => "duplicate",
                Skip::Late(_) => "late",
                Skip::OutOfWindow(_) => "out_of_window",
                Skip::NotDependedOn(_) => "not_depended_on",
                Skip::NotListening(_) => "not_listening",
            };
            metrics::counter!("queue_deliveries_skipped_total", "reason" => reason).increment(1);
        }
        if effects.changed && check.phase.is_final() {
            metrics::counter!(
                "checks_ended_total",
                "template" => template.template.name.to_string(),
                "phase" => check.phase.as_str(),
                "result" => check.result.as_str(),
            )
            .increment(1);
        }
        // An ended check's subscription removal was queued in its transaction: the relay
        // removes it (retried until Megazord answers), off the hot path.
    }

    /// Removes a subscription at Megazord now; whether it worked. A failure is logged and
    /// counted and left to a queued removal (SPEC §13: Megazord never expires a
    /// subscription, so none may leak).
    async fn try_remove_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
        call_ref: &str,
    ) -> bool {
        match self
            .megazord
            .unsubscribe(robot_id, subscription_id, call_ref)
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(robot_id, subscription_id, error = %e, "could not unsubscribe; retried later");
                metrics::counter!("unsubscribe_failures_total").increment(1);
                false
            }
        }
    }

    /// Removes a subscription no committed check holds (a create that failed or lost a race
    /// after subscribing): now, or — when Megazord fails — queued for the relay to retry.
    async fn remove_subscription(&self, robot_id: i64, subscription_id: i64, call_ref: &str) {
        if self
            .try_remove_subscription(robot_id, subscription_id, call_ref)
            .await
        {
            return;
        }
        if let Err(e) = self
            .store
            .queue_subscription_removal(
                robot_id,
                subscription_id,
                "create_failed",
                self.clock.now(),
            )
            .await
        {
            tracing::error!(robot_id, subscription_id, error = %e, "a subscription could not be removed nor queued for removal; it leaks");
            metrics::counter!("subscriptions_leaked_total").increment(1);
        }
    }
}

/// The store's update for what a decision on `check` did.
/// Runs `evaluate` — an engine step that evaluates `template`'s rules — and records how long
/// it took (SPEC §9: evaluation latency by template).
pub(crate) fn timed_evaluation<T>(template: &Template, evaluate: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let result = evaluate();
    metrics::histogram!("rule_evaluation_seconds", "template" => template.name.to_string())
        .record(started.elapsed().as_secs_f64());
    result
}

fn update_of(check: &Check, transition: &Transition, release_lease: bool) -> CheckUpdate {
    CheckUpdate {
        phase: check.phase,
        result: check.result,
        next_step_id: check.next_step_id,
        new_records: transition.new_records.clone(),
        deadline: transition.deadline,
        release_lease,
        notify: transition.effects.contains(&Effect::NotifyRobot),
        remove_subscription: transition.effects.contains(&Effect::Unsubscribe),
    }
}

/// What the decisions of one change leave for [`Checks::after_commit`].
#[derive(Debug, Default)]
struct Effects {
    rule_failures: Vec<FailedRule>,
    /// Events not taken in (reported for deliveries only).
    skipped: Vec<Skip>,
    /// A decision changed the check's phase, result or next step (counted when it ended).
    changed: bool,
    /// A decision asked to remove the check's subscription (create queues it with the check).
    unsubscribe: bool,
}

impl Effects {
    fn of(transition: &Transition) -> Self {
        let mut effects = Effects::default();
        effects.add(transition);
        effects
    }

    fn add(&mut self, transition: &Transition) {
        self.rule_failures
            .extend(transition.rule_failures.iter().cloned());
        self.changed |= transition.changed;
        self.unsubscribe |= transition.effects.contains(&Effect::Unsubscribe);
    }
}
