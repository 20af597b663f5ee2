//! Exact cleanup (SPEC §13): the Megazord subscriptions queued for removal are removed,
//! retried with backoff until Megazord answers 204 or 404 — none may leak, since Megazord never
//! expires one. A subscription of an ended check that keeps delivering is queued too, and so
//! is one whose subscribe answer was lost; a subscription nothing here knows is never removed
//! (it may be another service's, on a queue shared by mistake).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::TimeDelta;

use super::Checks;
use crate::jobs::{Handler, Job, LeaseOwner, Next, RetryPolicy, Runner, RunnerSettings};
use crate::store::{
    Removals, StoreError, SubscriptionRemoval, UnknownDelivery, UnknownSubscription,
};
use crate::upstream::Megazord;

/// Removals worked on per step, one at a time: removals are not urgent (a delivery for an
/// ended check is dropped), and they share the machine and Megazord with the hot path — at 16
/// in flight, a burst of 100,000 deadlines finalised 10% slower (docs/benchmarks.md).
const BATCH: usize = 50;
/// How long a claimed removal is reserved for this replica.
const LEASE: Duration = Duration::from_secs(30);
/// Retried until done: a subscription left at Megazord is never expired.
const RETRY: RetryPolicy = RetryPolicy::doubling();

/// Removes the subscriptions queued for removal at Megazord (204 and 404 are both done).
pub struct SubscriptionRemover {
    megazord: Arc<dyn Megazord>,
}

#[async_trait]
impl Handler for SubscriptionRemover {
    type Kind = Removals;

    async fn perform_one(&self, job: &Job<SubscriptionRemoval>) -> Result<(), String> {
        let removal = &job.payload;
        let call_ref = uuid::Uuid::new_v4().to_string();
        self.megazord
            .unsubscribe(removal.robot_id, removal.subscription_id, &call_ref)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("subscriptions_removed_total", "reason" => reason(&removal.reason))
            .increment(1);
        Ok(())
    }

    fn failed(&self, job: &Job<SubscriptionRemoval>, error: &str, next: Next) {
        let removal = &job.payload;
        let retry_in_ms = match next {
            Next::RetryIn(wait) => wait.as_millis() as u64,
            // Not with `RETRY`, which tries a removal until Megazord takes it.
            Next::DeadLetter => u64::MAX,
        };
        tracing::warn!(
            robot_id = removal.robot_id,
            subscription_id = removal.subscription_id,
            attempts = job.attempts + 1,
            retry_in_ms,
            error,
            "could not remove a subscription; will retry"
        );
        metrics::counter!("unsubscribe_failures_total").increment(1);
    }
}

impl Checks {
    /// The runner that removes the queued subscriptions, claiming as `owner`.
    pub fn removal_runner(
        &self,
        owner: LeaseOwner,
        poll_interval: Duration,
    ) -> Runner<SubscriptionRemover> {
        Runner::new(
            SubscriptionRemover {
                megazord: self.megazord.clone(),
            },
            self.store.clone(),
            self.clock.clone(),
            RunnerSettings::new(BATCH, LEASE, poll_interval, RETRY),
            owner,
        )
    }

    /// A delivery for a subscription no check or monitor session has kept coming past the
    /// grace period: removed only when it is this service's (a subscribe whose answer was
    /// lost, recorded within `grace` before the event); another service's is left alone.
    pub async fn unknown_subscription(
        &self,
        delivery: UnknownDelivery<'_>,
        grace: Duration,
    ) -> Result<UnknownSubscription, StoreError> {
        let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
        self.store
            .claim_unknown_subscription(delivery, grace, self.clock.now())
            .await
    }

    /// A delivery for an ended check's subscription (this service's or the Node service's)
    /// kept coming past the grace period: queued for removal (once; asking again changes
    /// nothing).
    pub async fn ended_subscription_delivering(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<(), StoreError> {
        self.store
            .queue_subscription_removal(robot_id, subscription_id, "ended", self.clock.now())
            .await
    }

    /// Deletes a batch of subscribe records too old for any delivery to match
    /// (`claim_unknown_subscription`): kept [`INTENT_RETENTION_GRACES`] grace periods, and at
    /// least an hour, so that a delivery kept through a consumer outage still finds its record.
    pub async fn purge_subscribe_intents(&self, grace: Duration) -> Result<u64, StoreError> {
        let keep = grace
            .saturating_mul(INTENT_RETENTION_GRACES)
            .max(Duration::from_secs(3600));
        let before = self.clock.now() - TimeDelta::from_std(keep).unwrap_or(TimeDelta::MAX);
        self.store
            .purge_subscribe_intents(before, INTENT_PURGE_BATCH)
            .await
    }
}

/// How many grace periods a subscribe's record is kept.
const INTENT_RETENTION_GRACES: u32 = 4;
/// Records purged per step at most.
const INTENT_PURGE_BATCH: usize = 5_000;

/// A metric label from the fixed set of reasons.
fn reason(reason: &str) -> &'static str {
    match reason {
        "ended" => "ended",
        "create_failed" => "create_failed",
        "unowned" => "unowned",
        "lost_answer" => "lost_answer",
        "monitor_session_ended" => "monitor_session_ended",
        "monitor_changed" => "monitor_changed",
        "monitor_disabled" => "monitor_disabled",
        "monitor_deleted" => "monitor_deleted",
        "monitor_open_failed" => "monitor_open_failed",
        _ => "other",
    }
}
