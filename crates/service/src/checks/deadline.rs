//! Finalise a check at its deadline (SPEC §3.5–3.6), exactly once: every write is fenced on
//! the scheduler's lease.

use chrono::TimeDelta;

use super::{Checks, Effects};
use crate::store::{Claimed, Fence, UpdateOutcome};

/// How often a finalisation is decided again when its check changed meanwhile.
const STALE_ATTEMPTS: usize = 8;

/// What finalising a claimed check came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finalised {
    /// Ended now.
    Done,
    /// It had ended already (a delivery decided it); the lease is given back.
    AlreadyEnded,
    /// The lease was lost meanwhile (another replica has the check): nothing written.
    Fenced,
    /// Failed for now; the check stays leased until the lease goes stale.
    Failed,
}

impl Checks {
    /// Finalises a check the scheduler claimed under `lease`: a decisive result completes it,
    /// `PENDING` fails it; releases the lease, notifies the robot, unsubscribes.
    pub async fn finalise(&self, claimed: &Claimed, lease: &str) -> Finalised {
        let now = self.clock.now();
        let lateness = (now - claimed.deadline).max(TimeDelta::zero());
        metrics::histogram!("scheduler_lateness_seconds").record(lateness.as_seconds_f64());
        let call_ref = uuid::Uuid::new_v4().to_string();
        let id = claimed.check_id;
        for _ in 0..STALE_ATTEMPTS {
            let stored = match self.store.get_check(id).await {
                Ok(Some(stored)) => stored,
                Ok(None) => return Finalised::Failed,
                Err(e) => {
                    tracing::warn!(check_id = id, error = %e, "could not load a due check");
                    return Finalised::Failed;
                }
            };
            let template = match self.template_of(&stored).await {
                Ok(template) => template,
                Err(e) => {
                    tracing::error!(check_id = id, error = %e, "the check's template cannot be loaded; it stays leased until the lease goes stale");
                    return Finalised::Failed;
                }
            };
            let Some(mut check) = self.engine_check(&stored, &template) else {
                return Finalised::Failed;
            };
            // A check that ended meanwhile changes nothing: only the lease is given back.
            let transition = check.finalise();
            let outcome = self
                .write(
                    &stored,
                    Fence::Lease(lease),
                    &check,
                    &transition,
                    true,
                    &call_ref,
                )
                .await;
            match outcome {
                Ok(UpdateOutcome::Updated(updated)) => {
                    if !transition.changed {
                        return Finalised::AlreadyEnded;
                    }
                    tracing::info!(
                        check_id = id,
                        robot_id = updated.key.robot_id,
                        phase = %updated.phase,
                        result = %updated.result,
                        lateness_ms = lateness.num_milliseconds(),
                        "check finalised at its deadline"
                    );
                    metrics::counter!("scheduler_finalised_total").increment(1);
                    self.after_commit(&template, Effects::of(&transition), &updated, &call_ref)
                        .await;
                    return Finalised::Done;
                }
                Ok(UpdateOutcome::Stale) => continue,
                Ok(UpdateOutcome::Fenced) => {
                    tracing::warn!(
                        check_id = id,
                        "lease lost before finalising; another replica has it"
                    );
                    metrics::counter!("scheduler_fenced_total").increment(1);
                    return Finalised::Fenced;
                }
                Ok(UpdateOutcome::NotFound) => return Finalised::Failed,
                Err(e) => {
                    tracing::warn!(check_id = id, error = %e, "could not finalise; retried when the lease goes stale");
                    return Finalised::Failed;
                }
            }
        }
        Finalised::Failed
    }
}
