//! The deadline scheduler (SPEC §3.5–3.6): claims checks whose future window has ended under
//! a lease, finalises each exactly once (every write fenced on the lease), unsubscribes, and
//! releases leases whose holder went quiet so another replica takes the work over.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures_util::{StreamExt as _, stream};
use tokio_util::sync::CancellationToken;

use crate::checks::{Checks, Finalised};
use crate::config::Config;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often `run` looks for due checks.
    pub scan_interval: Duration,
    /// Most checks claimed per tick.
    pub batch: usize,
    /// A lease older than this is presumed abandoned and released.
    pub stale_after: Duration,
    /// Claimed checks finalised at once (their unsubscribe calls overlap the database writes).
    pub concurrency: usize,
}

impl SchedulerConfig {
    /// The configured scheduler (the defaults live with the keys, in `crate::config`).
    pub fn from_config(config: &Config) -> Self {
        SchedulerConfig {
            scan_interval: config.scheduler_scan_interval,
            batch: config.scheduler_batch,
            stale_after: config.scheduler_stale_lock,
            concurrency: config.scheduler_concurrency,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SchedulerTick {
    pub released_stale: u64,
    /// Checks of the Node service adopted (SPEC §6.1).
    pub adopted: usize,
    pub claimed: usize,
    pub finalised: usize,
    /// Claimed checks that had already ended (their lease is released).
    pub already_ended: usize,
    /// Writes refused because the lease was lost meanwhile.
    pub fenced: usize,
    pub failed: usize,
}

pub struct Scheduler {
    checks: Arc<Checks>,
    config: SchedulerConfig,
    /// This replica's name, the prefix of its leases.
    replica: String,
}

impl Scheduler {
    pub fn new(checks: Arc<Checks>, config: SchedulerConfig, hostname: &str) -> Self {
        let replica = format!("{}-{}", hostname, uuid::Uuid::new_v4().simple());
        Scheduler {
            checks,
            config,
            replica,
        }
    }

    /// Releases stale leases, claims due checks under a fresh lease and finalises them.
    pub async fn tick_once(&self) -> SchedulerTick {
        let mut tick = SchedulerTick::default();
        let store = self.checks.store();
        let now = self.checks.clock().now();
        let stale = TimeDelta::from_std(self.config.stale_after).unwrap_or(TimeDelta::MAX);
        match store.release_stale_leases(now - stale).await {
            Ok(released) => {
                tick.released_stale = released;
                if released > 0 {
                    tracing::warn!(released, "released stale scheduler leases");
                    metrics::counter!("scheduler_stale_leases_released_total").increment(released);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not release stale leases"),
        }
        // Checks the Node service left open get their own rows (and so their deadlines)
        // before the claim looks for due ones.
        match self.checks.adoption().tick_once().await {
            Ok(adoption) => tick.adopted = adoption.adopted,
            Err(e) => tracing::warn!(error = %e, "could not adopt the Node service's checks"),
        }
        let lease = format!("{}-{}", self.replica, uuid::Uuid::new_v4().simple());
        let claimed = match store.claim_due(now, &lease, self.config.batch).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due checks");
                return tick;
            }
        };
        tick.claimed = claimed.len();
        metrics::counter!("scheduler_claimed_total").increment(claimed.len() as u64);
        let lease = lease.as_str();
        let mut finalised = stream::iter(claimed)
            .map(|item| async move { self.checks.finalise(&item, lease).await })
            .buffer_unordered(self.config.concurrency.max(1));
        while let Some(result) = finalised.next().await {
            match result {
                Finalised::Done => tick.finalised += 1,
                Finalised::AlreadyEnded => tick.already_ended += 1,
                Finalised::Fenced => tick.fenced += 1,
                Finalised::Failed => tick.failed += 1,
            }
        }
        tick
    }

    /// Ticks every scan interval until `shutdown`; right away again after a full batch, so a
    /// burst of deadlines is worked off at the database's pace, not one batch per interval.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.scan_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut backlog = false;
        loop {
            if !backlog {
                tokio::select! {
                    _ = interval.tick() => {}
                    () = shutdown.cancelled() => return,
                }
            } else if shutdown.is_cancelled() {
                return;
            }
            let tick = self.tick_once().await;
            backlog = tick.claimed >= self.config.batch && tick.failed == 0;
        }
    }
}
