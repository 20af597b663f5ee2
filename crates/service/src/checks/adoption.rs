//! Adopting the checks the Node service left open (SPEC §6.1): what this service needs and
//! the production rows lack — the next steps of each outcome — is read once from
//! Micro-Managers and stored, with the window from the poller row, in this service's own
//! `status_check_ext` row. From then on the check is finalised at its poller's `until` and
//! takes deliveries like any other.
//!
//! Adoption runs as a pass over the open checks without such a row, in id order and in
//! batches (driven by the scheduler role): over the whole table once at start-up, then once a
//! minute over the rows added since; and on demand when a delivery arrives for one.
//! Micro-Managers unreachable defers it (the pass resumes there later): the check waits, it is
//! never failed early.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::next_steps;
use crate::clock::Clock;
use crate::deps::Deps;
use crate::store::{Adopted, DynStore, Provenance, StoreError, StoredCheck};
use crate::telemetry::ReportedOnce;
use crate::upstream::{MicroManagers, StepRef, UpstreamError};

/// How the adoption pass behaves.
#[derive(Debug, Clone)]
pub struct AdoptionConfig {
    /// Checks adopted per step of the pass.
    pub batch: usize,
    /// How long after a finished pass the next one starts (a Node replica may still be
    /// writing checks while both run).
    pub interval: Duration,
    /// How long after Micro-Managers failed the pass is tried again.
    pub retry_after: Duration,
}

impl Default for AdoptionConfig {
    fn default() -> Self {
        AdoptionConfig {
            batch: 100,
            interval: Duration::from_secs(60),
            retry_after: Duration::from_secs(15),
        }
    }
}

/// What adopting one check came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdoptOutcome {
    /// Its row is written (by this call, or it was there already).
    Adopted,
    /// It had ended meanwhile: nothing to adopt.
    Ended,
    /// Micro-Managers could not be asked now: try again later.
    Deferred(String),
    /// Micro-Managers answered, but nothing usable for this check's step (another 4xx, a
    /// body of the wrong shape): this check is tried again later, the pass goes on past it.
    DeferredAlone(String),
    /// Micro-Managers says the step does not exist or has no `pass`/`fail` next step: this
    /// service cannot decide the check. Reported, left to the Node service's rows.
    Unadoptable(String),
}

/// What one step of the pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AdoptionTick {
    /// Whether a step ran at all (the pass is not waiting for its next start).
    pub ran: bool,
    pub adopted: usize,
    pub deferred: usize,
    pub unadoptable: usize,
}

impl AdoptionTick {
    fn count(&mut self, outcome: &AdoptOutcome) {
        match outcome {
            AdoptOutcome::Adopted => self.adopted += 1,
            AdoptOutcome::Ended => {}
            AdoptOutcome::Unadoptable(_) => self.unadoptable += 1,
            AdoptOutcome::Deferred(_) | AdoptOutcome::DeferredAlone(_) => self.deferred += 1,
        }
    }
}

struct Pass {
    /// The pass continues after this check id.
    after: i64,
    /// The newest check id when the previous pass ended: the pass after this one starts
    /// there, so that a finished pass does not read this service's own checks again every
    /// minute. (Not at once: a Node row with a lower id may still have been committing.)
    newest_at_last_end: i64,
    /// When the next step may run.
    next_at: DateTime<Utc>,
    /// Checks whose step Micro-Managers answered with nothing usable: asked for again, apart
    /// from the pass, from `retry_at` on (the pass goes on past them).
    retry: BTreeSet<i64>,
    retry_at: DateTime<Utc>,
    /// Where the next retry starts in `retry` (round the set, `batch` at a time): checks that
    /// stay unusable at its start must not keep the others from being asked.
    retry_from: i64,
}

pub struct Adoption {
    store: DynStore,
    micro_managers: Arc<dyn MicroManagers>,
    clock: Arc<dyn Clock>,
    config: AdoptionConfig,
    pass: Mutex<Pass>,
    /// Checks already reported as unadoptable by this process.
    reported: ReportedOnce,
}

impl Adoption {
    pub fn new(deps: &Deps, config: AdoptionConfig) -> Self {
        Adoption {
            store: deps.store.clone(),
            micro_managers: deps.micro_managers.clone(),
            clock: deps.clock.clone(),
            config,
            pass: Mutex::new(Pass {
                after: 0,
                newest_at_last_end: 0,
                next_at: DateTime::UNIX_EPOCH,
                retry: BTreeSet::new(),
                retry_at: DateTime::UNIX_EPOCH,
                retry_from: 0,
            }),
            reported: ReportedOnce::default(),
        }
    }

    /// One step of the pass: up to `batch` open checks of the Node service adopted, in id
    /// order. A batch that was not full ends the pass; the next starts after `interval`.
    /// Micro-Managers failing stops the pass where it is, to go on after `retry_after`. Its
    /// answer failing for one check only is passed over: the pass goes on, and that check is
    /// asked for again every `retry_after` until it is adopted (or found gone or ended).
    pub async fn tick_once(&self) -> Result<AdoptionTick, StoreError> {
        let now = self.clock.now();
        let mut tick = AdoptionTick::default();
        let retry = {
            let pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
            match now >= pass.retry_at {
                true => (pass.retry.range(pass.retry_from..))
                    .chain(pass.retry.range(..pass.retry_from))
                    .take(self.config.batch)
                    .copied()
                    .collect(),
                false => Vec::new(),
            }
        };
        if !retry.is_empty() {
            tick.ran = true;
            self.retry_deferred(&retry, now, &mut tick).await?;
        }
        let after = {
            let pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
            if now < pass.next_at {
                return Ok(tick);
            }
            pass.after
        };
        tick.ran = true;
        let ids = self
            .store
            .unadopted_checks(after, self.config.batch)
            .await?;
        let mut reached = after;
        let mut next_at = None;
        let mut deferred_alone = Vec::new();
        for &id in &ids {
            let outcome = self.adopt_by_id(id).await?;
            tick.count(&outcome);
            match outcome {
                AdoptOutcome::Deferred(_) => {
                    next_at = Some(now + delta(self.config.retry_after));
                    break;
                }
                AdoptOutcome::DeferredAlone(_) => deferred_alone.push(id),
                _ => {}
            }
            reached = id;
        }
        let ended = next_at.is_none() && ids.len() < self.config.batch;
        let newest = if ended {
            self.store.newest_check_id().await?
        } else {
            0
        };
        let mut pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        if !deferred_alone.is_empty() {
            if pass.retry.is_empty() {
                pass.retry_at = now + delta(self.config.retry_after);
            }
            pass.retry.extend(deferred_alone);
        }
        match next_at {
            Some(next_at) => {
                pass.after = reached;
                pass.next_at = next_at;
            }
            None if ended => {
                // The pass reached the end. The next one, after `interval`, looks only at rows
                // added since (a Node replica still running during the switch): going over the
                // whole table again — or over every check this service made since the last
                // Node one — every minute would cost a production database a scan for nothing.
                // What could not be adopted for good was reported.
                pass.after = reached.max(pass.newest_at_last_end);
                pass.newest_at_last_end = newest;
                pass.next_at = now + delta(self.config.interval);
            }
            None => pass.after = reached,
        }
        Ok(tick)
    }

    /// Asks again for the checks deferred alone (`ids`, of `Pass::retry`): those adopted,
    /// found gone, ended or unadoptable leave the set; the rest are asked for again after
    /// `retry_after`. Micro-Managers failing stops the retries where they are.
    async fn retry_deferred(
        &self,
        ids: &[i64],
        now: DateTime<Utc>,
        tick: &mut AdoptionTick,
    ) -> Result<(), StoreError> {
        let mut settled = Vec::new();
        let mut tried = None;
        for &id in ids {
            tried = Some(id);
            let outcome = self.adopt_by_id(id).await?;
            tick.count(&outcome);
            match outcome {
                AdoptOutcome::DeferredAlone(_) => {}
                AdoptOutcome::Deferred(_) => break,
                _ => settled.push(id),
            }
        }
        let mut pass = self.pass.lock().unwrap_or_else(|e| e.into_inner());
        for id in settled {
            pass.retry.remove(&id);
        }
        pass.retry_from = tried.map_or(0, |id| id + 1);
        pass.retry_at = now + delta(self.config.retry_after);
        Ok(())
    }

    /// Reads a check and adopts it. A row this service cannot read (a phase no version of
    /// either service writes) is reported and passed over: it must not hold up every check
    /// after it.
    async fn adopt_by_id(&self, id: i64) -> Result<AdoptOutcome, StoreError> {
        let outcome = match self.store.get_check(id).await {
            Ok(Some(check)) => self.adopt(&check).await,
            Ok(None) => Ok(AdoptOutcome::Ended),
            Err(e) => Err(e),
        };
        match outcome {
            Err(StoreError::Corrupt(reason)) => Ok(self.unreadable(id, reason)),
            outcome => outcome,
        }
    }

    /// Adopts one check of the Node service: its next steps from Micro-Managers, then its
    /// own row. A check that has its row already is left alone.
    pub async fn adopt(&self, check: &StoredCheck) -> Result<AdoptOutcome, StoreError> {
        if check.provenance != Provenance::NodeOnly {
            return Ok(AdoptOutcome::Adopted);
        }
        if check.phase.is_final() {
            return Ok(AdoptOutcome::Ended);
        }
        let call_ref = uuid::Uuid::new_v4().to_string();
        let step = match self
            .micro_managers
            .script_step(
                StepRef {
                    robot_id: check.key.robot_id,
                    step_id: check.key.step_id,
                },
                &call_ref,
            )
            .await
        {
            Ok(step) => step,
            Err(UpstreamError::NotFound { .. }) => {
                let reason = format!("step {} does not exist", check.key.step_id);
                return Ok(self.unadoptable(check, reason));
            }
            Err(e @ UpstreamError::Invalid { .. }) => {
                tracing::warn!(check_id = check.id, step_id = check.key.step_id, error = %e, "adoption deferred: Micro-Managers answered nothing usable for this check's step");
                metrics::counter!("checks_adoption_deferred_total").increment(1);
                return Ok(AdoptOutcome::DeferredAlone(e.to_string()));
            }
            Err(e) => {
                tracing::warn!(check_id = check.id, error = %e, "adoption deferred: Micro-Managers unavailable");
                metrics::counter!("checks_adoption_deferred_total").increment(1);
                return Ok(AdoptOutcome::Deferred(e.to_string()));
            }
        };
        let next_steps = match next_steps(&step) {
            Ok(next_steps) => next_steps,
            Err(e) => return Ok(self.unadoptable(check, e.to_string())),
        };
        match self
            .store
            .adopt_check(check.id, next_steps, self.clock.now())
            .await?
        {
            Adopted::Now { deadline } => {
                tracing::info!(
                    check_id = check.id,
                    robot_id = check.key.robot_id,
                    phase = %check.phase,
                    %deadline,
                    "adopted a check of the Node service"
                );
                metrics::counter!("checks_adopted_total").increment(1);
                Ok(AdoptOutcome::Adopted)
            }
            Adopted::NotNeeded => Ok(AdoptOutcome::Adopted),
            Adopted::NotFound => Ok(AdoptOutcome::Ended),
        }
    }

    /// Where the next step of the pass starts: after this check id.
    pub fn resumes_after(&self) -> i64 {
        self.pass.lock().unwrap_or_else(|e| e.into_inner()).after
    }

    fn unreadable(&self, id: i64, reason: String) -> AdoptOutcome {
        if self.reported.first(id) {
            tracing::error!(check_id = id, reason = %reason, "cannot read a check of the Node service; it is passed over and stays open");
            metrics::counter!("checks_adoption_failed_total").increment(1);
        }
        AdoptOutcome::Unadoptable(reason)
    }

    fn unadoptable(&self, check: &StoredCheck, reason: String) -> AdoptOutcome {
        if self.reported.first(check.id) {
            tracing::error!(
                check_id = check.id,
                robot_id = check.key.robot_id,
                step_id = check.key.step_id,
                reason = %reason,
                "cannot adopt a check of the Node service: its next steps are unknown; it stays open"
            );
            metrics::counter!("checks_adoption_failed_total").increment(1);
        }
        AdoptOutcome::Unadoptable(reason)
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}
