//! Exact cleanup (SPEC §13): the Megazord subscriptions queued for removal are removed,
//! retried with backoff until Megazord answers 204 or 404 — none may leak, since Megazord never
//! expires one. A subscription of an ended check that keeps delivering is queued too, and so
//! is one whose subscribe answer was lost; a subscription nothing here knows is never removed
//! (it may be another service's, on a queue shared by mistake).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{StreamExt as _, stream};

use super::Checks;
use crate::store::{StoreError, UnknownSubscription};

/// Removals worked on per step.
const BATCH: usize = 50;
/// Unsubscribes in flight at once. One: removals are not urgent (a delivery for an ended
/// check is dropped), and they share the machine and Megazord with the hot path — at 16 in
/// flight, a burst of 100,000 deadlines finalised 10% slower (docs/benchmarks.md).
const CONCURRENCY: usize = 1;
/// How long a claimed removal is reserved for this replica.
const LEASE: Duration = Duration::from_secs(30);
/// First retry delay, doubling per failed attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// What one step of the cleanup did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RemovalTick {
    pub claimed: usize,
    pub removed: usize,
    pub failed: usize,
}

impl Checks {
    /// One step: up to a batch of due removals, tried at Megazord [`CONCURRENCY`] at a time;
    /// those it took are marked done in one write (each a write of its own would wait its turn behind
    /// the scheduler's and the consumer's, one by one).
    pub async fn remove_subscriptions(&self, lease: &str) -> Result<RemovalTick, StoreError> {
        let now = self.clock.now();
        let lease_until = now + TimeDelta::from_std(LEASE).unwrap_or(TimeDelta::MAX);
        let claimed = self
            .store
            .claim_subscription_removals(now, lease, lease_until, BATCH)
            .await?;
        let mut tick = RemovalTick {
            claimed: claimed.len(),
            ..RemovalTick::default()
        };
        let mut attempts = stream::iter(claimed)
            .map(|removal| async move {
                let call_ref = uuid::Uuid::new_v4().to_string();
                let result = self
                    .megazord
                    .unsubscribe(removal.robot_id, removal.subscription_id, &call_ref)
                    .await;
                (removal, result)
            })
            .buffer_unordered(CONCURRENCY);
        let mut removed = Vec::new();
        let mut failed = Vec::new();
        while let Some((removal, result)) = attempts.next().await {
            match result {
                Ok(()) => {
                    metrics::counter!("subscriptions_removed_total", "reason" => reason(&removal.reason))
                        .increment(1);
                    removed.push(removal.subscription_id);
                }
                Err(e) => failed.push((removal, e)),
            }
        }
        drop(attempts);
        tick.removed = removed.len();
        tick.failed = failed.len();
        // Should this write fail, the leases run out and the removals are tried again:
        // Megazord answers 404, which is done.
        self.store
            .subscriptions_removed(&removed, self.clock.now())
            .await?;
        for (removal, e) in failed {
            let backoff = backoff(removal.attempts);
            tracing::warn!(
                robot_id = removal.robot_id,
                subscription_id = removal.subscription_id,
                attempts = removal.attempts + 1,
                retry_in_ms = backoff.as_millis() as u64,
                error = %e,
                "could not remove a subscription; will retry"
            );
            metrics::counter!("unsubscribe_failures_total").increment(1);
            let next = self.clock.now() + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::MAX);
            self.store
                .subscription_removal_failed(removal.id, lease, next, &e.to_string())
                .await?;
        }
        Ok(tick)
    }

    /// A delivery for a subscription no check or monitor session has kept coming past the
    /// grace period: removed only when it is this service's (a subscribe whose answer was
    /// lost, recorded within `grace` before the event); another service's is left alone.
    pub async fn unknown_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
        event_name: &str,
        event_created_at: DateTime<Utc>,
        grace: Duration,
    ) -> Result<UnknownSubscription, StoreError> {
        let grace = TimeDelta::from_std(grace).unwrap_or(TimeDelta::MAX);
        self.store
            .claim_unknown_subscription(
                robot_id,
                subscription_id,
                event_name,
                event_created_at,
                grace,
                self.clock.now(),
            )
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

/// `base · 2^attempts`, capped.
fn backoff(attempts: u32) -> Duration {
    BASE_BACKOFF
        .checked_mul(1u32 << attempts.min(20))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(16));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
