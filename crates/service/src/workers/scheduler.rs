//! The deadline scheduler (SPEC §3.5–3.6): claims checks whose future window has ended under
//! a lease, finalises each exactly once (every write fenced on the lease), unsubscribes, and
//! releases leases whose holder went quiet so another replica takes the work over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::TimeDelta;
use futures_util::{StreamExt as _, stream};
use status_check_engine::Limits;
use status_check_engine::lifecycle::{Effect, Transition};
use tokio_util::sync::CancellationToken;

use super::consumer::unsubscribe;
use super::{engine_check, renderer, update_from};
use crate::checks::adoption::Adoption;
use crate::clock::Clock;
use crate::store::{CheckUpdate, Claimed, DynStore, Fence, StoredCheck, UpdateOutcome};
use crate::templates::TemplateRegistry;
use crate::upstream::Megazord;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often `run` looks for due checks.
    pub scan_interval: Duration,
    /// Most checks claimed per tick.
    pub batch: usize,
    /// A lease older than this is presumed abandoned and released.
    pub stale_after: Duration,
    /// Claimed checks finalised at once (their unsubscribe calls overlap the database writes).
    pub concurrency: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scan_interval: Duration::from_millis(250),
            batch: 200,
            stale_after: Duration::from_secs(300),
            concurrency: 16,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerTick {
    pub released_stale: u64,
    /// Checks of the Node service adopted (SPEC §6.1).
    pub adopted: usize,
    pub claimed: usize,
    pub finalised: usize,
    /// Claimed checks that had already ended (their lease is released).
    pub already_ended: usize,
    /// Writes refused because the lease was lost meanwhile.
    pub fenced: usize,
    pub failed: usize,
}

pub struct Scheduler {
    store: DynStore,
    templates: Arc<TemplateRegistry>,
    megazord: Arc<dyn Megazord>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    config: SchedulerConfig,
    hostname: Arc<str>,
    /// This replica's name, the prefix of its leases.
    replica: String,
    adoption: Arc<Adoption>,
}

impl Scheduler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: DynStore,
        templates: Arc<TemplateRegistry>,
        megazord: Arc<dyn Megazord>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        config: SchedulerConfig,
        hostname: Arc<str>,
        adoption: Arc<Adoption>,
    ) -> Self {
        let replica = format!("{}-{}", hostname, uuid::Uuid::new_v4().simple());
        Scheduler {
            store,
            templates,
            megazord,
            clock,
            limits,
            config,
            hostname,
            replica,
            adoption,
        }
    }

    /// Releases stale leases, claims due checks under a fresh lease and finalises them.
    pub async fn tick_once(&self) -> SchedulerTick {
        let mut tick = SchedulerTick::default();
        let now = self.clock.now();
        let stale = TimeDelta::from_std(self.config.stale_after).unwrap_or(TimeDelta::MAX);
        match self.store.release_stale_leases(now - stale).await {
            Ok(released) => {
                tick.released_stale = released;
                if released > 0 {
                    tracing::warn!(released, "released stale scheduler leases");
                    metrics::counter!("scheduler_stale_leases_released_total").increment(released);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not release stale leases"),
        }
        // Checks the Node service left open get their own rows (and so their deadlines)
        // before the claim looks for due ones.
        match self.adoption.tick_once().await {
            Ok(adoption) => tick.adopted = adoption.adopted,
            Err(e) => tracing::warn!(error = %e, "could not adopt the Node service's checks"),
        }
        let lease = format!("{}-{}", self.replica, uuid::Uuid::new_v4().simple());
        let claimed = match self.store.claim_due(now, &lease, self.config.batch).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due checks");
                return tick;
            }
        };
        tick.claimed = claimed.len();
        metrics::counter!("scheduler_claimed_total").increment(claimed.len() as u64);
        let lease = lease.as_str();
        let mut finalised = stream::iter(claimed)
            .map(|item| async move { self.finalise(&item, lease).await })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(result) = finalised.next().await {
            match result {
                Finalised::Done => tick.finalised += 1,
                Finalised::AlreadyEnded => tick.already_ended += 1,
                Finalised::Fenced => tick.fenced += 1,
                Finalised::Failed => tick.failed += 1,
            }
        }
        tick
    }

    /// Ticks every scan interval until `shutdown`; right away again after a full batch, so a
    /// burst of deadlines is worked off at the database's pace, not one batch per interval.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.scan_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backlog = false;
        loop {
            if !backlog {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = shutdown.cancelled() => return,
                }
            } else if shutdown.is_cancelled() {
                return;
            }
            let tick = self.tick_once().await;
            backlog = tick.claimed >= self.config.batch && tick.failed == 0;
        }
    }

    async fn finalise(&self, item: &Claimed, lease: &str) -> Finalised {
        let now = self.clock.now();
        let lateness = (now - item.deadline).to_std().unwrap_or_default();
        metrics::histogram!("scheduler_lateness_seconds").record(lateness.as_secs_f64());
        let check = match self.store.get_check(item.check_id).await {
            Ok(Some(check)) => check,
            Ok(None) => return Finalised::Failed,
            Err(e) => {
                tracing::warn!(check_id = item.check_id, error = %e, "could not load a due check");
                return Finalised::Failed;
            }
        };
        let template = match self.templates.by_id(check.template_id).await {
            Ok(Some(template)) => template,
            other => {
                tracing::error!(
                    check_id = check.id,
                    template_id = check.template_id,
                    error = ?other.err(),
                    "the check's template cannot be loaded; it stays leased until the lease goes stale"
                );
                return Finalised::Failed;
            }
        };
        let last: Mutex<Option<Transition>> = Mutex::new(None);
        let decide = |stored: &StoredCheck| {
            let mut engine = engine_check(stored, &template, self.limits)?;
            let transition = engine.finalise();
            let update = if transition.changed {
                update_from(&engine, &transition, true)
            } else {
                // Ended meanwhile (a delivery decided it): only give the lease back.
                CheckUpdate {
                    phase: stored.phase,
                    result: stored.result,
                    next_step_id: stored.next_step_id,
                    new_records: Vec::new(),
                    release_lease: true,
                    notify: false,
                }
            };
            *last.lock().unwrap_or_else(|e| e.into_inner()) = Some(transition);
            Some(update)
        };
        let render = renderer(self.hostname.clone());
        let call_ref = uuid::Uuid::new_v4().to_string();
        let outcome = self
            .store
            .update_check(
                check.id,
                Fence::Lease(lease),
                &decide,
                &render,
                &call_ref,
                now,
            )
            .await;
        let transition = last.into_inner().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(UpdateOutcome::Updated(updated)) => {
                let Some(transition) = transition.filter(|t| t.changed) else {
                    return Finalised::AlreadyEnded;
                };
                tracing::info!(
                    check_id = updated.id,
                    robot_id = updated.key.robot_id,
                    phase = %updated.phase,
                    result = %updated.result,
                    lateness_ms = lateness.as_millis() as u64,
                    "check finalised at its deadline"
                );
                metrics::counter!(
                    "checks_ended_total",
                    "template" => template.template.name.to_string(),
                    "phase" => updated.phase.as_str(),
                    "result" => updated.result.as_str(),
                )
                .increment(1);
                metrics::counter!("scheduler_finalised_total").increment(1);
                if transition.effects.contains(&Effect::Unsubscribe)
                    && let Some(subscription_id) = updated.subscription_id
                {
                    unsubscribe(
                        &*self.megazord,
                        updated.key.robot_id,
                        subscription_id,
                        &call_ref,
                    )
                    .await;
                }
                Finalised::Done
            }
            Ok(UpdateOutcome::Unchanged(_)) => Finalised::AlreadyEnded,
            Ok(UpdateOutcome::Fenced) => {
                tracing::warn!(
                    check_id = check.id,
                    "lease lost before finalising; another replica has it"
                );
                metrics::counter!("scheduler_fenced_total").increment(1);
                Finalised::Fenced
            }
            Ok(UpdateOutcome::NotFound) => Finalised::Failed,
            Err(e) => {
                tracing::warn!(check_id = check.id, error = %e, "could not finalise; retried when the lease goes stale");
                Finalised::Failed
            }
        }
    }
}

enum Finalised {
    Done,
    AlreadyEnded,
    Fenced,
    Failed,
}
