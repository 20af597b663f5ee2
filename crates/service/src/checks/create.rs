//! Create a check (SPEC §2.2): fetch the step, resolve the template, compute the windows, run
//! the past evaluation, subscribe and backfill when a future window is open, persist.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use status_check_engine::Event;
use status_check_engine::lifecycle::{Check, Effect, NextSteps, Windows};

use super::{CheckError, Checks, CreateOutcome, CreateRequest, Effects, timed_evaluation};
use crate::store::{CheckKey, Created, NewCheck};
use crate::subscriptions::{self, SubscribeError};
use crate::upstream::{ScriptStep, StepRef, SubscriptionRequest, UpstreamError};
use tracing::Instrument as _;

impl Checks {
    /// Fetch the step, resolve the template, compute the windows, run the past
    /// evaluation, subscribe and backfill when a future window is open, persist. On any
    /// upstream failure nothing is persisted and a subscription made on the way is removed.
    ///
    /// The create runs to its end on its own task, whether or not its caller still waits (a
    /// request answered 503 at its timeout, a client that hung up): cut off after subscribing,
    /// it would leave a subscription nothing removes (SPEC §13). A caller gone before the end
    /// leaves the outcome to the robot's retry, which finds the check the create stored.
    pub async fn create(
        self: &Arc<Self>,
        request: CreateRequest,
        call_ref: &str,
    ) -> Result<CreateOutcome, CheckError> {
        let checks = Arc::clone(self);
        let call_ref = call_ref.to_owned();
        let create = async move { checks.create_to_the_end(request, &call_ref).await };
        match self.creates.spawn(create.in_current_span()).await {
            Ok(outcome) => outcome,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(CheckError::Interrupted(error.to_string())),
        }
    }

    /// Waits for the creates under way (a shutdown's drain).
    pub async fn creates_finished(&self) {
        self.creates.close();
        self.creates.wait().await;
    }

    async fn create_to_the_end(
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
            .script_step(
                StepRef {
                    robot_id: request.robot_id,
                    step_id: request.step_id,
                },
                call_ref,
            )
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
        let Some(loaded) = self.templates.active(&name).await? else {
            let unrunnable = self.templates.unrunnable_active(&name).await?;
            let why = match unrunnable.as_slice() {
                [] => "which has no active template".to_owned(),
                [newest, ..] => format!(
                    "whose active version {newest} cannot run here (its rules are not CEL \
                     this service runs, e.g. the Node service's EJS: ship a version of it)"
                ),
            };
            return Err(CheckError::Unprocessable(format!(
                "step {} names the status check {name:?}, {why}",
                step.step_id
            )));
        };
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
        let started = timed_evaluation(template, || check.start(template, past_events, anchor));
        let mut effects = Effects::of(&started);

        let mut subscription_id = None;
        let mut subscribe_intent = None;
        if let Some(Effect::Subscribe { event_names, until }) = started
            .effects
            .iter()
            .find(|e| matches!(e, Effect::Subscribe { .. }))
        {
            let subscription = self
                .subscribe(request.robot_id, event_names, *until, anchor, call_ref)
                .await?;
            subscription_id = Some(subscription.id);
            subscribe_intent = Some(subscription.intent);
            // Megazord only fans out events created after the subscription exists: fetch
            // what happened since the anchor and merge it (SPEC §3.3).
            let backfill = match self
                .fetch_events(request.robot_id, event_names, anchor, call_ref)
                .await
            {
                Ok(events) => events,
                Err(e) => {
                    self.abandon_subscription(request.robot_id, subscription, call_ref)
                        .await;
                    return Err(e);
                }
            };
            let backfill = backfill.into_iter().map(Into::into).collect();
            let merged =
                timed_evaluation(template, || check.take_future(template, backfill, anchor));
            effects.add(&merged);
        }

        let new = NewCheck {
            key: key.clone(),
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
            subscribe_intent,
            now: anchor,
        };
        let created = match self.create_writes.write(&self.store, new).await {
            Ok(created) => created,
            Err(e) => match (subscription_id, subscribe_intent) {
                (Some(id), Some(intent)) => {
                    let subscribed = subscriptions::Subscribed { id, intent };
                    self.after_failed_write(&key, subscribed, e, call_ref)
                        .await?
                }
                _ => return Err(e.into()),
            },
        };
        let created = match created {
            // A grouped write whose COMMIT's answer was lost is written again alone and finds
            // the check it saved: ours, by its subscription.
            Created::Existing(stored)
                if subscription_id.is_some() && stored.subscription_id == subscription_id =>
            {
                Created::New(stored)
            }
            created => created,
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

    /// Subscribes the robot to `event_names` on the status queue (checks never use a queue
    /// suffix, as the Node service does not). Megazord not knowing an event is the template's
    /// fault, not an outage: 422 naming the events, which the robot cannot fix by retrying.
    async fn subscribe(
        &self,
        robot_id: i64,
        event_names: &[String],
        until: DateTime<Utc>,
        now: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<subscriptions::Subscribed, CheckError> {
        let request = SubscriptionRequest {
            event_names,
            until,
            queue: None,
        };
        match subscriptions::subscribe(
            &self.store,
            self.megazord.as_ref(),
            robot_id,
            request,
            now,
            call_ref,
        )
        .await
        {
            Ok(subscribed) => Ok(subscribed),
            Err(SubscribeError::Store(e)) => Err(e.into()),
            Err(SubscribeError::Upstream(UpstreamError::NotFound { .. })) => {
                let names = subscriptions::unique_names(event_names).join(", ");
                tracing::warn!(robot_id, event_names = %names, "Megazord refused a subscription: it knows no event schema of (one of) these names");
                metrics::counter!("subscriptions_refused_total", "reason" => "unknown_event")
                    .increment(1);
                Err(CheckError::Unprocessable(format!(
                    "Megazord knows no event named {names} (the template's future events): \
                     the check cannot subscribe to them"
                )))
            }
            Err(SubscribeError::Upstream(e)) => Err(e.into()),
        }
    }

    /// The write of a check with a subscription failed. Refused, it left nothing: the
    /// subscription is removed. But a connection lost (or the bound hit) while its COMMIT was
    /// in flight may have saved the check: it is read back by its request key first, and the
    /// subscription of a stored check is kept. Unreadable too, the subscription is removed as
    /// before: Megazord never expires one (SPEC §5.2), so kept by mistake it would leak for
    /// ever, while a stored check that lost it is still decided at its deadline, by its read.
    async fn after_failed_write(
        &self,
        key: &CheckKey,
        subscribed: subscriptions::Subscribed,
        error: crate::store::StoreError,
        call_ref: &str,
    ) -> Result<Created, CheckError> {
        if !error.is_unavailable() {
            self.abandon_subscription(key.robot_id, subscribed, call_ref)
                .await;
            return Err(error.into());
        }
        match self.store.find_check(key).await {
            Ok(Some(stored)) => {
                tracing::info!(check_id = stored.id, error = %error, "a create's write was answered with an error, and a check of its request is stored");
                Ok(Created::Existing(stored))
            }
            Ok(None) => {
                self.abandon_subscription(key.robot_id, subscribed, call_ref)
                    .await;
                Err(error.into())
            }
            Err(reread) => {
                tracing::warn!(subscription_id = subscribed.id, error = %error, reread = %reread, "a create's write may have landed, and cannot be read back; its subscription is removed");
                self.abandon_subscription(key.robot_id, subscribed, call_ref)
                    .await;
                Err(error.into())
            }
        }
    }

    /// Removes a subscription made for a create that failed afterwards (or queues its
    /// removal), and forgets its subscribe's record: its answer came.
    async fn abandon_subscription(
        &self,
        robot_id: i64,
        subscribed: subscriptions::Subscribed,
        call_ref: &str,
    ) {
        self.remove_subscription(robot_id, subscribed.id, call_ref)
            .await;
        if let Err(e) = self.store.forget_subscribe_intent(subscribed.intent).await {
            // Harmless: the record is purged after the grace period.
            tracing::warn!(subscription_id = subscribed.id, error = %e, "could not forget a subscribe's record");
        }
    }

    /// Every event of `names` since `since`, one request per name. All names are read even
    /// when one answers more than the history cap: Megazord's answer is wider than the window
    /// (whole seconds, no upper bound), so only the engine, which counts what the window
    /// admits, can tell that the check is over its cap.
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
