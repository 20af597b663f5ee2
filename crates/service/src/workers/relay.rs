//! The relay role: works off what changes committed for later — robot notifications (SPEC
//! §3.7), subscription removals (SPEC §13) and the monitors' alarms (SPEC §12) — each kind a
//! `jobs::Runner` of its own loop (a slow Megazord must not hold robots' notifications back),
//! and once a minute purges the subscribe records and monitor window history past their
//! retention.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use crate::checks::{
    Checks, NOTIFICATION_LEASE, NotifierConfig, RobotNotifier, SubscriptionRemover,
};
use crate::clock::Clock;
use crate::config::Config;
use crate::jobs::{JobTick, LeaseOwner, Runner, due};
use crate::monitors::{AlarmPoster, Monitors};
use crate::queue::Queue;
use crate::store::OutboxHandoff;

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `ROBOT_QUEUE_ADDRESS`: the robot id is appended. `None` (a monitoring-only replica):
    /// this relay sends no notifications, only removes subscriptions and posts alarms.
    pub robot_queue_prefix: Option<String>,
    /// How often a runner looks for jobs when its last step found none.
    pub poll_interval: Duration,
    /// Robots sent to at once.
    pub concurrency: usize,
    /// Attempts after which a notification that could not be sent is dead-lettered.
    pub max_attempts: u32,
    /// How long sent notifications are kept before they are purged.
    pub retention: Duration,
    /// `UNKNOWN_SUBSCRIPTION_GRACE_SECS`: subscribe records are kept a few of these.
    pub unknown_grace: Duration,
}

impl RelayConfig {
    /// The configured relay to `robot_queue_prefix`.
    pub fn from_config(robot_queue_prefix: Option<String>, config: &Config) -> Self {
        RelayConfig {
            robot_queue_prefix,
            poll_interval: config.relay_poll_interval,
            concurrency: config.relay_concurrency,
            max_attempts: config.outbox_max_attempts,
            retention: config.outbox_retention,
            unknown_grace: config.unknown_subscription_grace,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayTick {
    /// Robot notifications sent (or tried) this step: taken from this process's handoff
    /// (`handed`) or claimed from the outbox table.
    pub notifications: JobTick,
    /// Megazord subscriptions removed (or tried) this step.
    pub removals: JobTick,
    /// Monitors' alarms posted to Megazord (or tried) this step.
    pub alarms: JobTick,
    /// Sent notifications, posted alarms, subscribe records and monitors' window history
    /// purged after their retention.
    pub purged: u64,
}

/// Most notifications waiting in the handoff; beyond, writes leave theirs to be claimed.
pub const HANDOFF_CAPACITY: usize = 20_000;

pub struct Relay {
    notifications: Option<Runner<RobotNotifier>>,
    removals: Runner<SubscriptionRemover>,
    alarms: Runner<AlarmPoster>,
    purges: Purges,
}

impl Relay {
    pub fn new(
        checks: Arc<Checks>,
        monitors: Arc<Monitors>,
        queue: Arc<dyn Queue>,
        config: RelayConfig,
        hostname: &str,
    ) -> Self {
        let owner = LeaseOwner::new("relay", hostname);
        let notifications = config.robot_queue_prefix.clone().map(|prefix| {
            checks.notification_runner(
                queue,
                NotifierConfig {
                    robot_queue_prefix: prefix,
                    concurrency: config.concurrency,
                    max_attempts: config.max_attempts,
                    retention: config.retention,
                    poll_interval: config.poll_interval,
                },
                owner.clone(),
            )
        });
        Relay {
            notifications,
            removals: checks.removal_runner(owner.clone(), config.poll_interval),
            alarms: monitors.alarm_runner(owner, config.poll_interval),
            purges: Purges {
                clock: checks.clock().clone(),
                checks,
                monitors,
                unknown_grace: config.unknown_grace,
                poll_interval: config.poll_interval,
                next: Mutex::new(DateTime::UNIX_EPOCH),
            },
        }
    }

    /// A handoff for this process's `Checks` (`Checks::with_handoff`) and relay
    /// (`with_handoff`): rows written leased to the relay for its lease time, at most
    /// [`HANDOFF_CAPACITY`] waiting.
    pub fn handoff_for(hostname: &str) -> Arc<OutboxHandoff> {
        Arc::new(OutboxHandoff::new(
            LeaseOwner::new("relay", hostname).standing_lease("handoff"),
            NOTIFICATION_LEASE,
            HANDOFF_CAPACITY,
        ))
    }

    /// Sends the notifications handed over by `handoff` too, if any.
    pub fn with_handoff(mut self, handoff: Option<Arc<OutboxHandoff>>) -> Self {
        self.notifications = self
            .notifications
            .map(|runner| runner.with_handoff(handoff));
        self
    }

    /// The handoff the notification runner takes from, if any.
    pub fn handoff(&self) -> Option<&OutboxHandoff> {
        self.notifications.as_ref().and_then(Runner::handoff)
    }

    /// One step of each runner, and the purges when due (once a minute).
    pub async fn tick_once(&self) -> RelayTick {
        let notified = match &self.notifications {
            Some(runner) => runner.tick_once().await,
            None => JobTick::default(),
        };
        let removals = self.removals.tick_once().await;
        let alarms = self.alarms.tick_once().await;
        RelayTick {
            purged: notified.purged
                + removals.purged
                + alarms.purged
                + self.purges.tick_once().await,
            notifications: notified,
            removals,
            alarms,
        }
    }

    /// Runs every runner in its own loop, and the purges, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let notify = async {
            if let Some(runner) = self.notifications {
                runner.run(shutdown.clone()).await;
            }
        };
        tokio::join!(
            notify,
            self.removals.run(shutdown.clone()),
            self.alarms.run(shutdown.clone()),
            self.purges.run(&shutdown),
        );
    }
}

/// What outlives its use only for a while: subscribe records and monitors' window history.
struct Purges {
    checks: Arc<Checks>,
    monitors: Arc<Monitors>,
    clock: Arc<dyn Clock>,
    unknown_grace: Duration,
    poll_interval: Duration,
    /// When the next purge is due.
    next: Mutex<DateTime<Utc>>,
}

impl Purges {
    /// Purges a batch of each when due (once a minute); how many rows.
    async fn tick_once(&self) -> u64 {
        if !due(&self.next, self.clock.now(), TimeDelta::minutes(1)) {
            return 0;
        }
        let mut purged = 0;
        match self
            .checks
            .purge_subscribe_intents(self.unknown_grace)
            .await
        {
            Ok(count) => purged += count,
            Err(e) => tracing::warn!(error = %e, "could not purge subscribe records"),
        }
        match self.monitors.purge_window_history().await {
            Ok(count) => purged += count,
            Err(e) => tracing::warn!(error = %e, "could not purge monitor history"),
        }
        purged
    }

    async fn run(&self, shutdown: &CancellationToken) {
        loop {
            self.tick_once().await;
            tokio::select! {
                () = tokio::time::sleep(self.poll_interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }
}
