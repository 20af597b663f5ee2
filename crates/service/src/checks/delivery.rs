//! Apply Megazord's deliveries (SPEC §3.4): each re-evaluates its check's future rules and is
//! written in one transaction under the check's row lock. Redelivery, duplicates and
//! reordering change nothing (the engine skips events already recorded, and rules see events
//! sorted by time).

use status_check_engine::lifecycle::Delivery;

use super::adoption::AdoptOutcome;
use super::{CheckError, Checks, Effects};
use crate::store::{Fence, Provenance, StoreError, UpdateOutcome};

/// How often a delivery is decided again when its check changed meanwhile (another delivery
/// or the deadline committed first) before it is left for redelivery.
const STALE_ATTEMPTS: usize = 8;

/// One delivery from the status queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub robot_id: i64,
    pub subscription_id: i64,
    pub delivery: Delivery,
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The check took the event in (and maybe ended).
    Applied,
    /// Nothing changed: a duplicate, or an event outside the window.
    NoChange,
    /// The check had already ended.
    Ended,
    /// No check has this subscription (yet, or any more).
    UnknownSubscription,
    /// The check is the Node service's and cannot be adopted now (Micro-Managers down, or
    /// its step gone): the delivery waits.
    NotAdopted,
}

impl Checks {
    /// Applies one delivery to the check of its subscription, written only after the check
    /// is decided on as it is stored (one read of it, in the common case).
    pub async fn apply_delivery(
        &self,
        delivered: &Delivered,
        call_ref: &str,
    ) -> Result<DeliveryOutcome, CheckError> {
        for _ in 0..STALE_ATTEMPTS {
            let Some(mut stored) = self
                .store
                .find_by_subscription(delivered.robot_id, delivered.subscription_id)
                .await?
            else {
                return Ok(DeliveryOutcome::UnknownSubscription);
            };
            if stored.phase.is_final() {
                metrics::counter!("queue_deliveries_for_ended_checks_total").increment(1);
                return Ok(DeliveryOutcome::Ended);
            }
            if stored.provenance == Provenance::NodeOnly {
                // Deciding it needs its next steps (SPEC §6.1).
                match self.adoption.adopt(&stored).await? {
                    AdoptOutcome::Adopted => {}
                    AdoptOutcome::Ended => return Ok(DeliveryOutcome::Ended),
                    AdoptOutcome::Deferred(_) | AdoptOutcome::Unadoptable(_) => {
                        return Ok(DeliveryOutcome::NotAdopted);
                    }
                }
                let Some(adopted) = self.store.get_check(stored.id).await? else {
                    return Ok(DeliveryOutcome::UnknownSubscription);
                };
                stored = adopted;
            }
            let template = self.template_of(&stored).await?;
            let Some(mut check) = self.engine_check(&stored, &template) else {
                return Ok(DeliveryOutcome::NotAdopted);
            };
            let transition = check.take_future(
                &template.template,
                vec![delivered.delivery.clone()],
                self.clock.now(),
            );
            let mut effects = Effects::of(&transition);
            effects.skipped = transition.skipped.clone();
            if transition.appended == 0 && !transition.changed {
                self.after_commit(&template, effects, &stored, call_ref)
                    .await;
                return Ok(DeliveryOutcome::NoChange);
            }
            match self
                .write(&stored, Fence::None, &check, &transition, false, call_ref)
                .await?
            {
                UpdateOutcome::Updated(updated) => {
                    self.after_commit(&template, effects, &updated, call_ref)
                        .await;
                    return Ok(DeliveryOutcome::Applied);
                }
                UpdateOutcome::Stale => continue,
                UpdateOutcome::Fenced => return Ok(DeliveryOutcome::NoChange),
                UpdateOutcome::NotFound => return Ok(DeliveryOutcome::UnknownSubscription),
            }
        }
        Err(CheckError::Store(StoreError::Conflict(format!(
            "the check of subscription {} changed {STALE_ATTEMPTS} times while a delivery \
             was decided",
            delivered.subscription_id
        ))))
    }

    /// Applies a batch of deliveries, each with its request id; one outcome per delivery, in
    /// order. (Each is its own transaction today; group commit writes a batch in one.)
    pub async fn apply_deliveries(
        &self,
        batch: &[(Delivered, String)],
    ) -> Vec<Result<DeliveryOutcome, CheckError>> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for (delivered, call_ref) in batch {
            outcomes.push(self.apply_delivery(delivered, call_ref).await);
        }
        outcomes
    }
}
