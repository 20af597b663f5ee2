//! Apply Megazord's deliveries (SPEC §3.4): each re-evaluates its check's future rules and is
//! written under the check's row lock — a batch of them in one transaction (group commit).
//! Redelivery, duplicates and reordering change nothing: the engine skips events already
//! recorded, rules see events sorted by time, and deliveries that end a check are confirmed
//! by a read of Megazord first (an earlier event delivered in a later batch).

use futures_util::future::join_all;
use status_check_engine::CheckPhase;
use status_check_engine::lifecycle::{Check, Delivery, Transition};

use super::adoption::AdoptOutcome;
use super::reconcile::{ReadEnd, read_all, read_for};
use super::{CheckError, Checks, Effects, timed_evaluation, update_of};
use crate::deliveries::{Delivered, DeliveryOutcome, by_subscription};
use crate::store::{BatchedUpdate, Fence, Provenance, StoreError, StoredCheck, UpdateOutcome};
use crate::templates::LoadedTemplate;

/// How often a delivery is decided again when its check changed meanwhile (another delivery
/// or the deadline committed first) before it is left for redelivery.
const STALE_ATTEMPTS: usize = 8;

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
                    AdoptOutcome::Deferred(_)
                    | AdoptOutcome::DeferredAlone(_)
                    | AdoptOutcome::Unadoptable(_) => {
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
            let delivery = vec![delivered.delivery.clone()];
            let now = self.clock.now();
            let mut transition = timed_evaluation(&template.template, || {
                check.take_future(&template.template, delivery.clone(), now)
            });
            let confirming = Confirming {
                stored: &stored,
                template: &template,
                deliveries: delivery,
                check: &mut check,
                transition: &mut transition,
            };
            self.confirm(vec![confirming], call_ref).await;
            let effects = delivery_effects(&transition, &[delivered.delivery.event.id]);
            if transition.appended == 0 && !transition.changed {
                self.after_commit(&template, &effects, &stored);
                return Ok(DeliveryOutcome::NoChange);
            }
            match self
                .write(&stored, Fence::None, &check, &transition, false, call_ref)
                .await?
            {
                UpdateOutcome::Updated(updated) => {
                    self.after_commit(&template, &effects, &updated);
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

    /// Applies a batch of deliveries, each with its request id, writing every check they
    /// change in one transaction (group commit); one outcome per delivery, in order. The
    /// deliveries of one subscription are decided together, in order (duplicates among them
    /// are recognised like redeliveries). A check that changed meanwhile, one of the Node
    /// service's still to be adopted, and every item of a batch whose transaction failed are
    /// applied alone: one poison delivery cannot fail its batch-mates. A delivery no check
    /// owns is `UnknownSubscription` (`crate::deliveries` asks the monitors next).
    pub async fn apply_deliveries(
        &self,
        batch: &[(Delivered, String)],
    ) -> Vec<Result<DeliveryOutcome, CheckError>> {
        let mut outcomes: Vec<Option<Result<DeliveryOutcome, CheckError>>> =
            batch.iter().map(|_| None).collect();
        let groups = by_subscription(batch);
        // Every group's check in one read; should it fail, each delivery is tried alone (and
        // its failure reported there).
        let keys: Vec<(i64, i64)> = groups
            .iter()
            .map(|group| {
                let first = &batch[group[0]].0;
                (first.robot_id, first.subscription_id)
            })
            .collect();
        let decisions = match self.store.find_by_subscriptions(&keys).await {
            Ok(checks) => {
                join_all(
                    groups
                        .iter()
                        .zip(checks)
                        .map(|(group, stored)| self.decide_group(batch, group, stored)),
                )
                .await
            }
            Err(_) => groups.iter().map(|_| Ok(GroupDecision::Alone)).collect(),
        };
        let mut alone = Vec::new();
        let mut pending = Vec::new();
        for (group, decision) in groups.into_iter().zip(decisions) {
            match decision {
                Ok(GroupDecision::Settled(outcome)) => {
                    for &index in &group {
                        outcomes[index] = Some(Ok(outcome));
                    }
                }
                // A decision that failed is tried again alone (and reported there).
                Ok(GroupDecision::Alone) | Err(_) => alone.extend(group),
                Ok(GroupDecision::Write(decided)) => pending.push((group, decided)),
            }
        }
        if !pending.is_empty() {
            self.confirm_pending(batch, &mut pending).await;
            let items: Vec<BatchedUpdate<'_>> = pending
                .iter()
                .map(|(group, decided)| BatchedUpdate {
                    current: &decided.stored,
                    fence: Fence::None,
                    update: update_of(&decided.check, &decided.transition, false),
                    call_ref: &batch[group[0]].1,
                })
                .collect();
            match self.write_batch(&items).await {
                Ok(written) => {
                    for ((group, decided), outcome) in pending.iter().zip(written) {
                        match outcome {
                            UpdateOutcome::Updated(updated) => {
                                self.after_commit(&decided.template, &decided.effects, &updated);
                                for (index, outcome) in applied(batch, group, &decided.transition) {
                                    outcomes[index] = Some(Ok(outcome));
                                }
                            }
                            UpdateOutcome::Stale => alone.extend(group.iter().copied()),
                            UpdateOutcome::Fenced => {
                                for &index in group {
                                    outcomes[index] = Some(Ok(DeliveryOutcome::NoChange));
                                }
                            }
                            UpdateOutcome::NotFound => {
                                for &index in group {
                                    outcomes[index] =
                                        Some(Ok(DeliveryOutcome::UnknownSubscription));
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, deliveries = batch.len(), "a batch of deliveries could not be written; each is applied alone");
                    metrics::counter!("queue_batches_split_total").increment(1);
                    alone.extend(pending.iter().flat_map(|(group, _)| group.iter().copied()));
                }
            }
        }
        // In the order of their events, as the batch would have taken them in (a check's
        // deliveries decided one by one must not depend on the order they came in).
        alone.sort_unstable_by_key(|&index| {
            let event = &batch[index].0.delivery.event;
            (event.created_at, event.id, index)
        });
        for index in alone {
            let (delivered, call_ref) = &batch[index];
            outcomes[index] = Some(self.apply_delivery(delivered, call_ref).await);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every delivery of the batch has an outcome"))
            .collect()
    }

    /// Decides the deliveries of one subscription (`group`: indices into `batch`, in order)
    /// on its check as read (`stored`), without writing.
    async fn decide_group(
        &self,
        batch: &[(Delivered, String)],
        group: &[usize],
        stored: Option<StoredCheck>,
    ) -> Result<GroupDecision, CheckError> {
        let Some(stored) = stored else {
            return Ok(GroupDecision::Settled(DeliveryOutcome::UnknownSubscription));
        };
        if stored.phase.is_final() {
            metrics::counter!("queue_deliveries_for_ended_checks_total")
                .increment(group.len() as u64);
            return Ok(GroupDecision::Settled(DeliveryOutcome::Ended));
        }
        if stored.provenance == Provenance::NodeOnly {
            return Ok(GroupDecision::Alone);
        }
        let template = self.template_of(&stored).await?;
        let Some(mut check) = self.engine_check(&stored, &template) else {
            return Ok(GroupDecision::Settled(DeliveryOutcome::NotAdopted));
        };
        let deliveries = group
            .iter()
            .map(|&index| batch[index].0.delivery.clone())
            .collect();
        let now = self.clock.now();
        let transition = timed_evaluation(&template.template, || {
            check.take_future(&template.template, deliveries, now)
        });
        let effects = delivery_effects(&transition, &delivered_ids(batch, group));
        if transition.appended == 0 && !transition.changed {
            self.after_commit(&template, &effects, &stored);
            return Ok(GroupDecision::Settled(DeliveryOutcome::NoChange));
        }
        Ok(GroupDecision::Write(Box::new(Decided {
            stored,
            template,
            check,
            transition,
            effects,
        })))
    }
}

impl Checks {
    /// Confirms the decided groups of a batch that end their check (see [`Checks::confirm`]),
    /// with one read for all of them, and redoes their effects.
    async fn confirm_pending(
        &self,
        batch: &[(Delivered, String)],
        pending: &mut [(Vec<usize>, Box<Decided>)],
    ) {
        let confirming: Vec<Confirming<'_>> = pending
            .iter_mut()
            .map(|(group, decided)| {
                let Decided {
                    stored,
                    template,
                    check,
                    transition,
                    ..
                } = decided.as_mut();
                Confirming {
                    stored,
                    template,
                    deliveries: group
                        .iter()
                        .map(|&index| batch[index].0.delivery.clone())
                        .collect(),
                    check,
                    transition,
                }
            })
            .collect();
        self.confirm(confirming, &batch[0].1).await;
        for (group, decided) in pending.iter_mut() {
            decided.effects = delivery_effects(&decided.transition, &delivered_ids(batch, group));
        }
    }

    /// Confirms decisions deliveries made that end their check (SPEC §3.4: reordering never
    /// changes the outcome). A check ends at its first decisive event, and Megazord may
    /// deliver an earlier event after a later one — in a later batch, or redelivered after a
    /// failure. So before such a decision is written, the check's future events are read from
    /// Megazord as at the deadline — the same `DEADLINE_RECONCILE*` switch, and one bounded
    /// read for all of a batch's (at most `DEADLINE_RECONCILE_CONCURRENCY` calls in flight,
    /// all within `DEADLINE_RECONCILE_BUDGET_MS`); a check is read once either way — and the
    /// deliveries are decided again with them, in time order. Unread (Megazord failing, the
    /// budget spent), a decision stands on what was delivered. A check whose future rules
    /// decide alike in any order (one `exists` over the events testing each alone, as
    /// robot-is-charging's) is not read: an earlier event would end it the same.
    async fn confirm(&self, items: Vec<Confirming<'_>>, call_ref: &str) {
        if !self.reconcile.enabled {
            return;
        }
        let mut reads = Vec::new();
        let mut waiting = Vec::new();
        for item in items {
            let template = &item.template.template;
            if item.check.phase != CheckPhase::Completed
                || template.future_decides_alike_in_any_order()
            {
                continue;
            }
            let Some(before) = self.engine_check(item.stored, item.template) else {
                continue;
            };
            if let Some(read) = read_for(&before, &item.template.template) {
                reads.push(Some(read));
                waiting.push((item, before));
            }
        }
        if reads.is_empty() {
            return;
        }
        let results = read_all(self.megazord.as_ref(), &reads, self.reconcile, call_ref).await;
        for ((item, mut again), result) in waiting.into_iter().zip(results) {
            let Some(result) = result else { continue };
            metrics::counter!("decision_reads_total", "end" => result.end.as_str()).increment(1);
            if result.end != ReadEnd::Complete {
                tracing::warn!(
                    check_id = item.stored.id,
                    end = result.end.as_str(),
                    error = result.error.as_deref().unwrap_or("the budget ran out"),
                    "the confirming read of Megazord did not complete; decided with what came back"
                );
            }
            let mut all = item.deliveries;
            // The delivered events come back in the read too: taken once, as delivered.
            let delivered: Vec<i64> = all.iter().map(|d| d.event.id).collect();
            all.extend(
                result
                    .events
                    .into_iter()
                    .filter(|event| !delivered.contains(&event.id))
                    .map(Delivery::from),
            );
            let now = self.clock.now();
            let transition = timed_evaluation(&item.template.template, || {
                again.take_future(&item.template.template, all, now)
            });
            if again.result != item.check.result || again.phase != item.check.phase {
                tracing::info!(
                    check_id = item.stored.id,
                    robot_id = item.stored.key.robot_id,
                    delivered = %item.check.result,
                    decided = %again.result,
                    "an earlier event Megazord had not delivered yet changed the decision"
                );
                metrics::counter!("decisions_changed_by_read_total").increment(1);
            }
            *item.check = again;
            *item.transition = transition;
        }
    }
}

/// A decision deliveries made, to be confirmed if it ends its check.
struct Confirming<'a> {
    stored: &'a StoredCheck,
    template: &'a LoadedTemplate,
    deliveries: Vec<Delivery>,
    check: &'a mut Check,
    transition: &'a mut Transition,
}

/// The event ids a group delivered.
fn delivered_ids(batch: &[(Delivered, String)], group: &[usize]) -> Vec<i64> {
    group
        .iter()
        .map(|&index| batch[index].0.delivery.event.id)
        .collect()
}

/// A decision's effects, its skips only those of the events delivered (not of what a
/// confirming read brought back).
fn delivery_effects(transition: &Transition, delivered: &[i64]) -> Effects {
    let mut effects = Effects::of(transition);
    effects.skipped = transition
        .skipped
        .iter()
        .filter(|skip| delivered.contains(&skip.event_id()))
        .cloned()
        .collect();
    effects
}

/// What deciding one subscription's deliveries of a batch came to.
enum GroupDecision {
    /// Nothing to write; every delivery of the group ends so.
    Settled(DeliveryOutcome),
    /// To be applied one by one (`apply_delivery`).
    Alone,
    Write(Box<Decided>),
}

/// A decision waiting for its batch's transaction.
struct Decided {
    stored: StoredCheck,
    template: LoadedTemplate,
    check: Check,
    transition: Transition,
    effects: Effects,
}

/// Each delivery of a written group: `Applied` when its event is one the transition recorded
/// (the first delivery of it), else `NoChange` (a duplicate, or skipped).
fn applied(
    batch: &[(Delivered, String)],
    group: &[usize],
    transition: &Transition,
) -> Vec<(usize, DeliveryOutcome)> {
    let mut recorded: Vec<i64> = transition
        .new_records
        .iter()
        .map(|record| record.event.id)
        .collect();
    group
        .iter()
        .map(|&index| {
            let event_id = batch[index].0.delivery.event.id;
            match recorded.iter().position(|&id| id == event_id) {
                Some(position) => {
                    recorded.swap_remove(position);
                    (index, DeliveryOutcome::Applied)
                }
                None => (index, DeliveryOutcome::NoChange),
            }
        })
        .collect()
}
