//! Finalise a check at its deadline (SPEC §3.5–3.6), exactly once: every write is fenced on
//! the scheduler's lease. A claimed batch is finalised in one transaction (group commit).

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use status_check_engine::lifecycle::{Check, Transition};

use super::{Checks, Effects, update_of};
use crate::store::{BatchedUpdate, Claimed, Fence, StoredCheck, UpdateOutcome};
use crate::templates::LoadedTemplate;

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
    /// `PENDING` fails it; releases the lease, notifies the robot, queues the unsubscribe.
    pub async fn finalise(&self, claimed: &Claimed, lease: &str) -> Finalised {
        let now = self.clock.now();
        record_lateness(claimed, now);
        self.finalise_alone(claimed, lease, now).await
    }

    async fn finalise_alone(
        &self,
        claimed: &Claimed,
        lease: &str,
        now: DateTime<Utc>,
    ) -> Finalised {
        let call_ref = uuid::Uuid::new_v4().to_string();
        for _ in 0..STALE_ATTEMPTS {
            let stored = match self.store.get_check(claimed.check_id).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(check_id = claimed.check_id, error = %e, "could not load a due check");
                    return Finalised::Failed;
                }
            };
            let Some(decided) = self.decide_finalisation(claimed, stored).await else {
                return Finalised::Failed;
            };
            let outcome = self
                .write(
                    &decided.stored,
                    Fence::Lease(lease),
                    &decided.check,
                    &decided.transition,
                    true,
                    &call_ref,
                )
                .await;
            match outcome {
                Ok(UpdateOutcome::Stale) => continue,
                Ok(outcome) => return self.finalised(claimed, &decided, outcome, now),
                Err(e) => {
                    tracing::warn!(check_id = claimed.check_id, error = %e, "could not finalise; retried when the lease goes stale");
                    return Finalised::Failed;
                }
            }
        }
        Finalised::Failed
    }

    /// Finalises a batch the scheduler claimed under `lease` in one transaction, each check
    /// fenced on the lease; one outcome per check, in order. A check that changed since it
    /// was read, and every check of a batch whose transaction failed, is finalised alone.
    pub async fn finalise_batch(&self, claimed: &[Claimed], lease: &str) -> Vec<Finalised> {
        let now = self.clock.now();
        for item in claimed {
            record_lateness(item, now);
        }
        let call_ref = uuid::Uuid::new_v4().to_string();
        let mut outcomes = vec![Finalised::Failed; claimed.len()];
        // Every claimed check in one read; should it fail, each is finalised alone.
        let ids: Vec<i64> = claimed.iter().map(|item| item.check_id).collect();
        let stored = match self.store.get_checks(&ids).await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(error = %e, checks = ids.len(), "could not load a batch of due checks; each is finalised alone");
                for (index, item) in claimed.iter().enumerate() {
                    outcomes[index] = self.finalise_alone(item, lease, now).await;
                }
                return outcomes;
            }
        };
        let decided = join_all(
            claimed
                .iter()
                .zip(stored)
                .map(|(item, stored)| self.decide_finalisation(item, stored)),
        )
        .await;
        let mut pending = Vec::new();
        for (index, decision) in decided.into_iter().enumerate() {
            if let Some(decision) = decision {
                pending.push((index, decision));
            }
        }
        let items: Vec<BatchedUpdate<'_>> = pending
            .iter()
            .map(|(_, decided)| BatchedUpdate {
                current: &decided.stored,
                fence: Fence::Lease(lease),
                update: update_of(&decided.check, &decided.transition, true),
                call_ref: &call_ref,
            })
            .collect();
        let mut alone = Vec::new();
        match self.write_batch(&items).await {
            Ok(written) => {
                for ((index, decided), outcome) in pending.iter().zip(written) {
                    if outcome == UpdateOutcome::Stale {
                        alone.push(*index);
                    } else {
                        outcomes[*index] = self.finalised(&claimed[*index], decided, outcome, now);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, checks = items.len(), "a batch of finalisations could not be written; each is finalised alone");
                metrics::counter!("scheduler_batches_split_total").increment(1);
                alone.extend(pending.iter().map(|(index, _)| *index));
            }
        }
        for index in alone {
            outcomes[index] = self.finalise_alone(&claimed[index], lease, now).await;
        }
        outcomes
    }

    /// Decides a claimed check's end on the check as read (`stored`), without writing; `None`
    /// when it cannot be decided now (it stays leased until the lease goes stale).
    async fn decide_finalisation(
        &self,
        claimed: &Claimed,
        stored: Option<StoredCheck>,
    ) -> Option<Box<Decided>> {
        let id = claimed.check_id;
        let stored = stored?;
        let template = match self.template_of(&stored).await {
            Ok(template) => template,
            Err(e) => {
                tracing::error!(check_id = id, error = %e, "the check's template cannot be loaded; it stays leased until the lease goes stale");
                return None;
            }
        };
        let mut check = self.engine_check(&stored, &template)?;
        // A check that ended meanwhile changes nothing: only the lease is given back.
        let transition = check.finalise();
        Some(Box::new(Decided {
            stored,
            template,
            check,
            transition,
        }))
    }

    /// Reports what writing a finalisation did (not `Stale`: that is decided again).
    fn finalised(
        &self,
        claimed: &Claimed,
        decided: &Decided,
        outcome: UpdateOutcome,
        now: DateTime<Utc>,
    ) -> Finalised {
        let updated = match outcome {
            UpdateOutcome::Updated(updated) => updated,
            UpdateOutcome::Fenced => {
                tracing::warn!(
                    check_id = claimed.check_id,
                    "lease lost before finalising; another replica has it"
                );
                metrics::counter!("scheduler_fenced_total").increment(1);
                return Finalised::Fenced;
            }
            UpdateOutcome::Stale | UpdateOutcome::NotFound => return Finalised::Failed,
        };
        if !decided.transition.changed {
            return Finalised::AlreadyEnded;
        }
        let lateness = (now - claimed.deadline).max(TimeDelta::zero());
        tracing::info!(
            check_id = updated.id,
            robot_id = updated.key.robot_id,
            phase = %updated.phase,
            result = %updated.result,
            lateness_ms = lateness.num_milliseconds(),
            "check finalised at its deadline"
        );
        metrics::counter!("scheduler_finalised_total").increment(1);
        self.after_commit(
            &decided.template,
            &Effects::of(&decided.transition),
            &updated,
        );
        Finalised::Done
    }
}

fn record_lateness(claimed: &Claimed, now: DateTime<Utc>) {
    let lateness = (now - claimed.deadline).max(TimeDelta::zero());
    metrics::histogram!("scheduler_lateness_seconds").record(lateness.as_seconds_f64());
}

/// A finalisation waiting for its batch's transaction.
struct Decided {
    stored: StoredCheck,
    template: LoadedTemplate,
    check: Check,
    transition: Transition,
}
