//! Create a check (SPEC §2.2): fetch the step, resolve the template, compute the windows, run
//! the past evaluation, subscribe and backfill when a future window is open, persist.

use chrono::{DateTime, Utc};
use status_check_engine::Event;
use status_check_engine::lifecycle::{Check, Effect, NextSteps, Windows};

use super::{CheckError, Checks, CreateOutcome, CreateRequest, Effects};
use crate::store::{CheckKey, Created, NewCheck};
use crate::upstream::{ScriptStep, UpstreamError};

impl Checks {
    /// Fetch the step, resolve the template, compute the windows, run the past
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
        // One robot cannot open checks without end at one step: each would be another
        // subscription fanning every event out again (SPEC §13). Concurrent creates may pass
        // the count together; the cap bounds the work, it is not an exact quota.
        let open = self
            .store
            .open_checks_at_step(request.robot_id, request.step_id)
            .await?;
        if open >= self.open_checks_per_step {
            return Err(CheckError::TooManyOpen {
                step_id: request.step_id,
                open,
            });
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
        let mut effects = Effects::of(&started);

        let mut subscription_id = None;
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
                    self.remove_subscription(request.robot_id, subscription.id, call_ref)
                        .await;
                    return Err(e);
                }
            };
            let merged = check.take_future(
                template,
                backfill.into_iter().map(Into::into).collect(),
                anchor,
            );
            effects.add(&merged);
        }

        let new = NewCheck {
            key,
            script_version_id: request.script_version_id,
            template_id: loaded.id,
            phase: check.phase,
            result: check.result,
            next_step_id: check.next_step_id,
            subscription_id,
            windows: check.windows,
            deadline: check.deadline(),
            next_steps,
            records: check.history.records().to_vec(),
            remove_subscription: effects.unsubscribe && subscription_id.is_some(),
            now: anchor,
        };
        let created = match self.create_writes.write(&self.store, new).await {
            Ok(created) => created,
            Err(e) => {
                if let Some(id) = subscription_id {
                    self.remove_subscription(request.robot_id, id, call_ref)
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
                self.after_commit(&loaded, &effects, &stored);
                Ok(CreateOutcome::Created(stored))
            }
            Created::Existing(stored) => {
                // Lost a race with an identical request: ours must leave nothing behind.
                if let Some(id) = subscription_id {
                    self.remove_subscription(request.robot_id, id, call_ref)
                        .await;
                }
                Ok(CreateOutcome::Existing(stored))
            }
        }
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
            // More than the history holds ends the check anyway (the engine fails it at the
            // cap): the other names need not be read.
            if events.len() > self.limits.history_cap {
                break;
            }
        }
        Ok(events)
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
