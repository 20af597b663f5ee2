//! Posting the alarms window ends decided (SPEC §12 "Exactly once"): each action row is a job
//! (`jobs::Runner`), posted to Megazord (`POST …/incomings` with its stable `referenceId`) and
//! marked done only after Megazord accepted it; a failed post is retried with backoff (1 s,
//! doubling, up to 5 min) until Megazord accepts it — never given up. A relay that dies
//! between the post and the mark posts it again after the lease: at least once, always with
//! the same reference id.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tracing::Level;

use super::Monitors;
use crate::jobs::{Handler, Job, LeaseOwner, Next, RetryPolicy, Runner, RunnerSettings};
use crate::store::{Alarms, PendingAction};
use crate::upstream::{Megazord, PostedEvent};

/// Actions posted per step.
const BATCH: usize = 50;
/// How long a claimed action is reserved for this relay.
const LEASE: Duration = Duration::from_secs(30);
/// Retried until Megazord accepts it (SPEC §12): an alarm is never given up.
const RETRY: RetryPolicy = RetryPolicy::doubling();

/// A log line about an alarm, with the fields that name it — its monitor, session, window and
/// reference id — on the event itself, as every monitor line has them (docs/monitors.md).
macro_rules! alarm_event {
    ($level:expr, $action:expr, $($event:tt)+) => {
        tracing::event!(
            $level,
            robot_id = $action.robot_id,
            rule_id = %$action.rule_id,
            session_date = %$action.action.session_date,
            window_number = $action.action.window_number,
            reference_id = %$action.action.alarm.reference_id,
            $($event)+
        )
    };
}

/// Posts alarms to Megazord as the configured provider.
pub struct AlarmPoster {
    megazord: Arc<dyn Megazord>,
    provider_name: String,
}

#[async_trait]
impl Handler for AlarmPoster {
    type Kind = Alarms;

    async fn perform_one(&self, job: &Job<PendingAction>) -> Result<(), String> {
        self.post(&job.payload).await
    }

    fn failed(&self, job: &Job<PendingAction>, error: &str, next: Next) {
        let retry_in_ms = match next {
            Next::RetryIn(wait) => wait.as_millis() as u64,
            // Not with `RETRY`, which tries an alarm until Megazord takes it.
            Next::DeadLetter => u64::MAX,
        };
        metrics::counter!("monitor_actions_failed_total").increment(1);
        alarm_event!(
            Level::WARN,
            job.payload,
            attempts = job.attempts + 1,
            retry_in_ms,
            error,
            "could not post an alarm; will retry"
        );
    }
}

impl AlarmPoster {
    /// Posts one alarm — unless Megazord holds it already: Megazord keeps no key on
    /// `referenceId`, and an attempt whose answer was lost (a timeout, a relay that died
    /// between the post and its mark) may have been stored; posting again would start the
    /// robot's script twice. So the robot's incomings of the alarm since its window's end are
    /// read first, and one carrying its reference id settles it — with this action's level,
    /// when it sets one: a window's actions share the reference id, and those of one event
    /// name differ by their level (identical ones are posted once, `Monitor::alarms`).
    async fn post(&self, pending: &PendingAction) -> Result<(), String> {
        let alarm = &pending.action.alarm;
        let call_ref = uuid::Uuid::new_v4().to_string();
        let stored = self
            .megazord
            .incomings(
                pending.robot_id,
                &alarm.event_name,
                pending.action.window_end,
                &call_ref,
            )
            .await
            .map_err(|e| e.to_string())?;
        let ours = |event: &&status_check_engine::Event| {
            event.reference_id.as_deref() == Some(alarm.reference_id.as_str())
                && alarm
                    .level
                    .is_none_or(|level| event.level == Some(i64::from(level)))
        };
        if let Some(found) = stored.iter().find(ours) {
            alarm_event!(
                Level::WARN,
                pending,
                event_id = found.id,
                "alarm found at Megazord already (an earlier attempt's answer was lost): not \
                 posted again"
            );
            metrics::counter!("monitor_actions_found_posted_total").increment(1);
            return Ok(());
        }
        let event = PostedEvent {
            provider_name: self.provider_name.clone(),
            event_name: alarm.event_name.clone(),
            level: alarm.level,
            reference_id: alarm.reference_id.clone(),
        };
        let event_id = self
            .megazord
            .post_incoming(pending.robot_id, &event, &call_ref)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("monitor_actions_sent_total").increment(1);
        alarm_event!(
            Level::INFO,
            pending,
            event_name = %alarm.event_name,
            event_id,
            "alarm posted to Megazord"
        );
        Ok(())
    }
}

impl Monitors {
    /// The runner that posts the alarms, claiming as `owner`; posted alarms are purged after
    /// the retention.
    pub fn alarm_runner(&self, owner: LeaseOwner, poll_interval: Duration) -> Runner<AlarmPoster> {
        Runner::new(
            AlarmPoster {
                megazord: self.megazord.clone(),
                provider_name: self.settings.provider_name.clone(),
            },
            self.store.clone(),
            self.clock.clone(),
            RunnerSettings::new(BATCH, LEASE, poll_interval, RETRY)
                .purged_after(self.settings.retention, "monitor_actions_purged_total")
                .with_backlog_gauge("monitor_actions_backlog"),
            owner,
        )
    }
}
