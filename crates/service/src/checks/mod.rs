//! The use cases: create a check and read one. They orchestrate the engine (decisions), the
//! store (one transaction per state change) and the upstreams; side effects outside the
//! database never happen inside a transaction.

pub mod adoption;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use status_check_engine::lifecycle::{Check, Effect, NextSteps, Transition, Windows};
use status_check_engine::rules::RuleFailure;
use status_check_engine::{Event, Limits};

use crate::clock::Clock;
use crate::store::{CheckKey, Created, DynStore, NewCheck, StoreError, StoredCheck, StoredWindows};
use crate::templates::{LoadedTemplate, TemplateRegistry};
use crate::upstream::{Megazord, MicroManagers, ScriptStep, UpstreamError};

/// What a robot asked for (SPEC §2.2), already validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRequest {
    pub robot_id: i64,
    pub step_id: i64,
    pub scheduled_id: i64,
    pub script_version_id: i64,
    pub planned_at: DateTime<Utc>,
}

/// Why a check could not be created or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("step {0} does not exist for this robot")]
    StepNotFound(i64),
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
    #[error("template {0} of a stored check cannot be loaded")]
    TemplateMissing(i64),
}

/// Whether create made a new check or found the robot's earlier one.
#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    Created(StoredCheck),
    Existing(StoredCheck),
}

/// The use cases with everything they need.
pub struct Checks {
    pub store: DynStore,
    pub templates: Arc<TemplateRegistry>,
    pub micro_managers: Arc<dyn MicroManagers>,
    pub megazord: Arc<dyn Megazord>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
}

impl Checks {
    /// SPEC §2.2: fetch the step, resolve the template, compute the windows, run the past
    /// evaluation, subscribe and backfill when a future window is open, persist. On any
    /// upstream failure nothing is persisted and a subscription made on the way is removed.
    pub async fn create(
        &self,
        request: CreateRequest,
        call_ref: &str,
    ) -> Result<CreateOutcome, CheckError> {
        let key = CheckKey {
            robot_id: request.robot_id,
            step_id: request.step_id,
            scheduled_id: request.scheduled_id,
            planned_at: request.planned_at,
        };
        if let Some(existing) = self.store.find_check(&key).await? {
            return Ok(CreateOutcome::Existing(existing));
        }

        let step = match self
            .micro_managers
            .script_step(request.robot_id, request.step_id, call_ref)
            .await
        {
            Err(UpstreamError::NotFound { .. }) => {
                return Err(CheckError::StepNotFound(request.step_id));
            }
            other => other?,
        };
        if request.script_version_id != step.script_version_id {
            return Err(CheckError::InvalidField {
                field: "scriptVersionId",
                message: format!(
                    "{} is not the script version of step {} ({})",
                    request.script_version_id, step.step_id, step.script_version_id
                ),
            });
        }
        let name = status_check_name(&step)?;
        let loaded = self.templates.active(&name).await?.ok_or_else(|| {
            CheckError::Unprocessable(format!(
                "step {} names the status check {name:?}, which has no active template",
                step.step_id
            ))
        })?;
        let template = &loaded.template;
        let next_steps = next_steps(&step)?;
        let anchor = self.clock.now();
        let windows = Windows::compute(
            step.past_interval,
            step.future_interval,
            &template.poller,
            anchor,
        )
        .map_err(|e| CheckError::Unprocessable(format!("step {}: {e}", step.step_id)))?;

        let mut past_events = Vec::new();
        if let (Some(rules), true) = (&template.past, windows.has_past) {
            let since = windows.since.unwrap_or(DateTime::UNIX_EPOCH);
            past_events = self
                .fetch_events(request.robot_id, &rules.depends_on, since, call_ref)
                .await?;
        }
        let mut check = Check::new(
            request.robot_id,
            request.planned_at,
            windows,
            next_steps,
            template,
            self.limits,
        );
        let started = check.start(template, past_events, anchor);
        report_rule_failures(&loaded, &started);

        let mut subscription_id = None;
        let mut unsubscribe_after_commit = false;
        if let Some(Effect::Subscribe { event_names, until }) = started
            .effects
            .iter()
            .find(|e| matches!(e, Effect::Subscribe { .. }))
        {
            let subscription = self
                .megazord
                .subscribe(request.robot_id, event_names, *until, call_ref)
                .await?;
            subscription_id = Some(subscription.id);
            // Megazord only fans out events created after the subscription exists: fetch
            // what happened since the anchor and merge it (SPEC §3.3).
            let backfill = match self
                .fetch_events(request.robot_id, event_names, anchor, call_ref)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    self.unsubscribe_quietly(request.robot_id, subscription.id, call_ref)
                        .await;
                    return Err(e);
                }
            };
            let merged = check.take_future(
                template,
                backfill.into_iter().map(Into::into).collect(),
                anchor,
            );
            report_rule_failures(&loaded, &merged);
            unsubscribe_after_commit = merged.effects.contains(&Effect::Unsubscribe);
        }

        let new = NewCheck {
            key,
            script_version_id: request.script_version_id,
            template_id: loaded.id,
            phase: check.phase,
            result: check.result,
            next_step_id: check.next_step_id,
            subscription_id,
            windows: stored_windows(&check.windows, &step, &template.poller),
            next_steps,
            records: check.history.records().to_vec(),
            now: anchor,
        };
        let created = match self.store.create_check(new).await {
            Ok(created) => created,
            Err(e) => {
                if let Some(id) = subscription_id {
                    self.unsubscribe_quietly(request.robot_id, id, call_ref)
                        .await;
                }
                return Err(e.into());
            }
        };
        match created {
            Created::New(stored) => {
                metrics::counter!(
                    "checks_created_total",
                    "template" => template.name.to_string(),
                    "result" => stored.result.as_str(),
                )
                .increment(1);
                if check.phase.is_final() {
                    metrics::counter!(
                        "checks_ended_total",
                        "template" => template.name.to_string(),
                        "phase" => stored.phase.as_str(),
                        "result" => stored.result.as_str(),
                    )
                    .increment(1);
                }
                if let (true, Some(id)) = (unsubscribe_after_commit, subscription_id) {
                    self.unsubscribe_quietly(request.robot_id, id, call_ref)
                        .await;
                }
                Ok(CreateOutcome::Created(stored))
            }
            Created::Existing(stored) => {
                // Lost a race with an identical request: ours must leave nothing behind.
                if let Some(id) = subscription_id {
                    self.unsubscribe_quietly(request.robot_id, id, call_ref)
                        .await;
                }
                Ok(CreateOutcome::Existing(stored))
            }
        }
    }

    /// SPEC §2.3: the check, when it belongs to this robot.
    pub async fn get(&self, robot_id: i64, id: i64) -> Result<Option<StoredCheck>, CheckError> {
        Ok(self
            .store
            .get_check(id)
            .await?
            .filter(|check| check.key.robot_id == robot_id))
    }

    /// Every event of `names` since `since`, one request per name.
    async fn fetch_events(
        &self,
        robot_id: i64,
        names: &[String],
        since: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<Vec<Event>, CheckError> {
        let mut events = Vec::new();
        for name in names {
            events.extend(
                self.megazord
                    .incomings(robot_id, name, since, call_ref)
                    .await?,
            );
        }
        Ok(events)
    }

    async fn unsubscribe_quietly(&self, robot_id: i64, subscription_id: i64, call_ref: &str) {
        if let Err(e) = self
            .megazord
            .unsubscribe(robot_id, subscription_id, call_ref)
            .await
        {
            tracing::error!(robot_id, subscription_id, error = %e, "could not remove a subscription");
        }
    }
}

/// Logs and counts the rules that errored during a decision.
pub fn report_rule_failures(loaded: &LoadedTemplate, transition: &Transition) {
    for RuleFailure { outcome, error } in &transition.rule_failures {
        tracing::warn!(
            template = %loaded.template.name,
            version = loaded.template.version,
            rule = %outcome,
            error = %error,
            "rule failed while running; counted as false"
        );
        metrics::counter!(
            "rule_errors_total",
            "template" => loaded.template.name.to_string(),
            "rule" => outcome.as_str(),
        )
        .increment(1);
    }
}

fn status_check_name(step: &ScriptStep) -> Result<String, CheckError> {
    if step.node_type != "statusCheck" {
        return Err(CheckError::Unprocessable(format!(
            "step {} is a {:?} node, not a statusCheck node",
            step.step_id, step.node_type
        )));
    }
    step.status_check_name
        .clone()
        .filter(|name| !name.is_empty())
        .ok_or_else(|| {
            CheckError::Unprocessable(format!(
                "step {} names no status check template",
                step.step_id
            ))
        })
}

/// The `pass`, `fail` (and `unknown`) next steps of a step's commands.
pub(crate) fn next_steps(step: &ScriptStep) -> Result<NextSteps, CheckError> {
    let commands = step.next.iter().flat_map(|next| {
        std::iter::once(next.command.as_str())
            .chain(next.commands.iter().map(String::as_str))
            .map(move |command| (command, next.next_step_id))
    });
    NextSteps::from_commands(commands)
        .map_err(|e| CheckError::Unprocessable(format!("step {}: {e}", step.step_id)))
}

/// The effective intervals, so the windows can be rebuilt exactly from the stored row.
fn stored_windows(
    windows: &Windows,
    step: &ScriptStep,
    defaults: &status_check_engine::template::PollerDefaults,
) -> StoredWindows {
    let effective = |value: i64, default: i64| if value == 0 { default } else { value };
    StoredWindows {
        anchor: windows.anchor,
        past_seconds: effective(step.past_interval, defaults.past_interval),
        future_seconds: effective(step.future_interval, defaults.future_interval),
    }
}
