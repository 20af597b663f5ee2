//! Posting the alarms window ends decided (SPEC §12 "Exactly once"): each action row is claimed
//! under a lease, posted to Megazord (`POST …/incomings` with its stable `referenceId`), and
//! marked sent only after Megazord accepted it; a failed post is retried with backoff (1 s,
//! doubling, up to 5 min) and dead-lettered after the configured attempts. A relay that dies
//! between the post and the mark posts it again after the lease: at least once, always with
//! the same reference id.

use std::time::Duration;

use chrono::TimeDelta;

use super::Monitors;
use crate::store::{DEAD_LETTER_AT, PendingAction, StoreError};
use crate::upstream::PostedEvent;

/// Actions posted per step.
const BATCH: usize = 50;
/// How long a claimed action is reserved for this relay.
const LEASE: Duration = Duration::from_secs(30);
const BASE_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Sent actions purged per step at most.
const PURGE_BATCH: usize = 500;

/// What one step of posting alarms did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AlarmTick {
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
}

impl Monitors {
    /// Posts up to a batch of due alarms under `lease`.
    pub async fn send_alarms(&self, lease: &str) -> Result<AlarmTick, StoreError> {
        let now = self.now();
        let lease_until = now + TimeDelta::from_std(LEASE).unwrap_or(TimeDelta::MAX);
        let claimed = self
            .store
            .claim_monitor_actions(now, lease, lease_until, BATCH)
            .await?;
        let mut tick = AlarmTick {
            claimed: claimed.len(),
            ..AlarmTick::default()
        };
        for action in &claimed {
            if self.post(action, lease).await? {
                tick.sent += 1;
            } else {
                tick.failed += 1;
            }
        }
        if let Ok(backlog) = self.store.monitor_action_backlog().await {
            metrics::gauge!("monitor_actions_backlog").set(backlog as f64);
        }
        Ok(tick)
    }

    /// Deletes a batch of alarms posted before the retention; how many.
    pub async fn purge_sent_alarms(&self) -> Result<u64, StoreError> {
        let retention = TimeDelta::from_std(self.settings.retention).unwrap_or(TimeDelta::MAX);
        self.store
            .purge_sent_monitor_actions(self.now() - retention, PURGE_BATCH)
            .await
    }

    /// Posts one alarm; whether Megazord took it.
    async fn post(&self, action: &PendingAction, lease: &str) -> Result<bool, StoreError> {
        let event = PostedEvent {
            provider_name: self.settings.provider_name.clone(),
            event_name: action.event_name.clone(),
            level: action.level,
            reference_id: action.reference_id.clone(),
        };
        let call_ref = uuid::Uuid::new_v4().to_string();
        match self
            .megazord
            .post_incoming(action.robot_id, &event, &call_ref)
            .await
        {
            Ok(event_id) => {
                metrics::counter!("monitor_actions_sent_total").increment(1);
                tracing::info!(
                    robot_id = action.robot_id,
                    rule_id = %action.rule_id,
                    session_date = %action.session_date,
                    window_number = action.window_number,
                    reference_id = %action.reference_id,
                    event_name = %action.event_name,
                    event_id,
                    "alarm posted to Megazord"
                );
                if !self
                    .store
                    .monitor_action_sent(action.id, lease, self.now())
                    .await?
                {
                    tracing::warn!(reference_id = %action.reference_id, "alarm posted after its lease ran out; it may be posted again (same reference id)");
                }
                Ok(true)
            }
            Err(e) => {
                metrics::counter!("monitor_actions_failed_total").increment(1);
                let attempts = action.attempts + 1;
                let next = if attempts >= self.settings.max_attempts {
                    tracing::error!(
                        robot_id = action.robot_id,
                        rule_id = %action.rule_id,
                        session_date = %action.session_date,
                        window_number = action.window_number,
                        reference_id = %action.reference_id,
                        attempts,
                        error = %e,
                        "could not post an alarm; dead-lettered after its last attempt"
                    );
                    metrics::counter!("monitor_actions_dead_lettered_total").increment(1);
                    DEAD_LETTER_AT
                } else {
                    let backoff = backoff(action.attempts);
                    tracing::warn!(
                        robot_id = action.robot_id,
                        rule_id = %action.rule_id,
                        session_date = %action.session_date,
                        window_number = action.window_number,
                        reference_id = %action.reference_id,
                        attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %e,
                        "could not post an alarm; will retry"
                    );
                    self.now() + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::MAX)
                };
                self.store
                    .monitor_action_failed(action.id, lease, next, &e.to_string())
                    .await?;
                Ok(false)
            }
        }
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
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
