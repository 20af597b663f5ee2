//! Finalise a check at its deadline (SPEC §3.5–3.6), exactly once: every write is fenced on
//! the scheduler's lease. A claimed batch is finalised in one transaction (group commit),
//! after the checks still open read what Megazord may have failed to deliver
//! (`reconcile.rs`); that read is made once per claim, and a check decided again (it changed
//! meanwhile) is decided with the same events.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::future::join_all;
use status_check_engine::Event;
use status_check_engine::lifecycle::{Check, Delivery, Transition};

use super::reconcile::{Read, ReadEnd, ReadResult, read_all, read_for};
use super::{CheckError, Checks, Effects, timed_evaluation, update_of};
use crate::jobs::Lease;
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
    /// Claims up to `limit` open checks whose deadline has passed, leasing them to `lease`
    /// (disjoint from any other claimer's), oldest deadline first: the scheduler's claim
    /// before [`Checks::finalise_batch`].
    pub async fn claim_due(&self, lease: &Lease, limit: usize) -> Result<Vec<Claimed>, CheckError> {
        Ok(self.store.claim_due(self.clock.now(), lease, limit).await?)
    }

    /// Gives back the leases taken longer than `stale_after` ago (their holder is presumed
    /// dead), so another replica claims the work; how many.
    pub async fn release_stale_leases(&self, stale_after: Duration) -> Result<u64, CheckError> {
        let stale = TimeDelta::from_std(stale_after).unwrap_or(TimeDelta::MAX);
        let now = self.clock.now();
        Ok(self.store.release_stale_leases(now - stale, now).await?)
    }

    /// Finalises a check the scheduler claimed under `lease`: a decisive result completes it,
    /// `PENDING` fails it; releases the lease, notifies the robot, queues the unsubscribe.
    pub async fn finalise(&self, claimed: &Claimed, lease: &Lease) -> Finalised {
        self.finalise_batch(std::slice::from_ref(claimed), lease)
            .await
            .pop()
            .unwrap_or(Finalised::Failed)
    }

    /// Finalises one claimed check on its own (read again), taking in `missed` — what the
    /// batch's read at the deadline found — first; when the batch made no read (its checks
    /// could not be loaded together), this check makes its own, once.
    async fn finalise_alone(
        &self,
        claimed: &Claimed,
        lease: &Lease,
        now: DateTime<Utc>,
        missed: Option<&[Event]>,
    ) -> Finalised {
        let call_ref = uuid::Uuid::new_v4().to_string();
        let mut missed: Option<Vec<Event>> = missed.map(<[Event]>::to_vec);
        for _ in 0..STALE_ATTEMPTS {
            let stored = match self.store.get_check(claimed.check_id).await {
                Ok(stored) => stored,
                Err(e) => {
                    tracing::warn!(check_id = claimed.check_id, error = %e, "could not load a due check");
                    return Finalised::Failed;
                }
            };
            let Some(prepared) = self.prepare_finalisation(claimed, stored).await else {
                return Finalised::Failed;
            };
            let prepared = match missed {
                Some(_) => prepared,
                None => {
                    let mut alone = [Some(prepared)];
                    missed = self.read_missed(&alone, &call_ref).await.pop();
                    alone[0].take().expect("prepared above")
                }
            };
            let decided = self.decide_finalisation(prepared, missed.as_deref().unwrap_or_default());
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
    pub async fn finalise_batch(&self, claimed: &[Claimed], lease: &Lease) -> Vec<Finalised> {
        let call_ref = uuid::Uuid::new_v4().to_string();
        let mut outcomes = vec![Finalised::Failed; claimed.len()];
        // Every claimed check in one read; should it fail, each is finalised alone.
        let ids: Vec<i64> = claimed.iter().map(|item| item.check_id).collect();
        let stored = match self.store.get_checks(&ids).await {
            Ok(stored) => stored,
            Err(e) => {
                let now = self.clock.now();
                record_lateness(claimed, now);
                tracing::warn!(error = %e, checks = ids.len(), "could not load a batch of due checks; each is finalised alone");
                for (index, item) in claimed.iter().enumerate() {
                    outcomes[index] = self.finalise_alone(item, lease, now, None).await;
                }
                return outcomes;
            }
        };
        let prepared = join_all(
            claimed
                .iter()
                .zip(stored)
                .map(|(item, stored)| self.prepare_finalisation(item, stored)),
        )
        .await;
        let missed = self.read_missed(&prepared, &call_ref).await;
        // Lateness as decided: after the read, which is part of finalising.
        let now = self.clock.now();
        record_lateness(claimed, now);
        let mut pending = Vec::new();
        for (index, prepared) in prepared.into_iter().enumerate() {
            if let Some(prepared) = prepared {
                pending.push((index, self.decide_finalisation(prepared, &missed[index])));
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
            outcomes[index] = self
                .finalise_alone(&claimed[index], lease, now, Some(&missed[index]))
                .await;
        }
        outcomes
    }

    /// The read at the deadline (SPEC §3.5) for every prepared check that needs one, within
    /// the budget; the events each found, logged and counted. Empty for a check without a
    /// read, and for every check when the read is switched off.
    async fn read_missed(
        &self,
        prepared: &[Option<Box<Prepared>>],
        call_ref: &str,
    ) -> Vec<Vec<Event>> {
        let reads: Vec<Option<Read>> = prepared
            .iter()
            .map(|prepared| {
                prepared
                    .as_deref()
                    .filter(|_| self.reconcile.enabled)
                    .and_then(Prepared::read)
            })
            .collect();
        if reads.iter().all(Option::is_none) {
            return vec![Vec::new(); prepared.len()];
        }
        let started = std::time::Instant::now();
        let results = read_all(self.megazord.as_ref(), &reads, self.reconcile, call_ref).await;
        metrics::histogram!("deadline_reconcile_seconds").record(started.elapsed().as_secs_f64());
        results
            .into_iter()
            .zip(prepared)
            .map(|(result, prepared)| match (result, prepared) {
                (Some(result), Some(prepared)) => reported(&prepared.stored, result),
                _ => Vec::new(),
            })
            .collect()
    }

    /// A claimed check as read (`stored`) with its template, ready to be decided; `None` when
    /// it cannot be decided now (it stays leased until the lease goes stale).
    async fn prepare_finalisation(
        &self,
        claimed: &Claimed,
        stored: Option<StoredCheck>,
    ) -> Option<Box<Prepared>> {
        let id = claimed.check_id;
        let stored = stored?;
        let template = match self.template_of(&stored).await {
            Ok(template) => template,
            Err(e) => {
                tracing::error!(check_id = id, error = %e, "the check's template cannot be loaded; it stays leased until the lease goes stale");
                return None;
            }
        };
        let check = self.engine_check(&stored, &template)?;
        Some(Box::new(Prepared {
            stored,
            template,
            check,
        }))
    }

    /// Decides a prepared check's end, without writing: first what the read at the deadline
    /// found (`missed`; events already recorded, out of the window or created after
    /// `pollingUntil` are skipped), then the deadline. A check that ended meanwhile changes
    /// nothing: only the lease is given back.
    fn decide_finalisation(&self, prepared: Box<Prepared>, missed: &[Event]) -> Box<Decided> {
        let Prepared {
            stored,
            template,
            mut check,
        } = *prepared;
        let mut transition = Transition::default();
        if !missed.is_empty() {
            let deliveries = missed.iter().cloned().map(Delivery::from).collect();
            let now = self.clock.now();
            transition = timed_evaluation(&template.template, || {
                check.take_future(&template.template, deliveries, now)
            });
            if transition.appended > 0 {
                tracing::info!(
                    check_id = stored.id,
                    robot_id = stored.key.robot_id,
                    events = transition.appended,
                    "the read at the deadline found events never delivered"
                );
                metrics::counter!("deadline_missed_events_total")
                    .increment(transition.appended as u64);
            }
        }
        let ended = check.finalise();
        Box::new(Decided {
            stored,
            template,
            check,
            transition: joined(transition, ended),
        })
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

fn record_lateness(claimed: &[Claimed], now: DateTime<Utc>) {
    for item in claimed {
        let lateness = (now - item.deadline).max(TimeDelta::zero());
        metrics::histogram!("scheduler_lateness_seconds").record(lateness.as_seconds_f64());
    }
}

/// What one check's read at the deadline found, logged and counted by how it ended.
fn reported(stored: &StoredCheck, result: ReadResult) -> Vec<Event> {
    metrics::counter!("deadline_reconcile_total", "outcome" => result.end.as_str()).increment(1);
    match result.end {
        ReadEnd::Complete => {}
        ReadEnd::Failed => tracing::warn!(
            check_id = stored.id,
            robot_id = stored.key.robot_id,
            error = result.error.as_deref().unwrap_or_default(),
            "the read at the deadline failed; the check is decided from what it has"
        ),
        ReadEnd::TimedOut => tracing::warn!(
            check_id = stored.id,
            robot_id = stored.key.robot_id,
            "Megazord did not answer the read at the deadline within its budget; the check is \
             decided from what it has"
        ),
    }
    result.events
}

/// Two decisions on one check as one change: the records of both, the effects of either.
fn joined(mut first: Transition, second: Transition) -> Transition {
    first.appended += second.appended;
    first.new_records.extend(second.new_records);
    first.deadline = second.deadline;
    first.changed |= second.changed;
    for effect in second.effects {
        if !first.effects.contains(&effect) {
            first.effects.push(effect);
        }
    }
    first.rule_failures.extend(second.rule_failures);
    first.skipped.extend(second.skipped);
    first
}

/// A claimed check with what deciding it needs.
struct Prepared {
    stored: StoredCheck,
    template: LoadedTemplate,
    check: Check,
}

impl Prepared {
    /// The read at the deadline this check needs, if any (see [`read_for`]).
    fn read(&self) -> Option<Read> {
        read_for(&self.check, &self.template.template)
    }
}

/// A finalisation waiting for its batch's transaction.
struct Decided {
    stored: StoredCheck,
    template: LoadedTemplate,
    check: Check,
    transition: Transition,
}
