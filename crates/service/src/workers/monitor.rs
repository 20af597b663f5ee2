//! The monitor worker (SPEC §12): every scan interval, claims the monitors that are due —
//! a session to open, a window end passed, a session over — under a lease and lets the use
//! case act on each (`Monitors::act_on`). It only brings time; leases older than the stale
//! window are taken over, so a replica that dies loses no window end.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::jobs::LeaseOwner;
use crate::monitors::{DueTick, Monitors};

#[derive(Debug, Clone)]
pub struct MonitorWorkerConfig {
    /// How often `run` looks for due monitors (`MONITOR_SCAN_INTERVAL_MS`).
    pub scan_interval: Duration,
}

pub struct MonitorWorker {
    monitors: Arc<Monitors>,
    config: MonitorWorkerConfig,
    /// Who this replica's claims are leased to.
    owner: LeaseOwner,
}

impl MonitorWorker {
    pub fn new(monitors: Arc<Monitors>, config: MonitorWorkerConfig, hostname: &str) -> Self {
        MonitorWorker {
            monitors,
            config,
            owner: LeaseOwner::new("monitor", hostname),
        }
    }

    /// Claims the due monitors under a fresh lease and acts on them.
    pub async fn tick_once(&self) -> DueTick {
        self.tick(&CancellationToken::new()).await
    }

    /// [`tick_once`](Self::tick_once), acting on no more claimed monitors once `shutdown`
    /// fires or half the stale window has passed: those are let go, for another replica to
    /// take at once (one session's opening can take a slow Megazord's two calls; a batch of
    /// them would outlast the drain, or the lease — and another replica would open the same
    /// sessions meanwhile).
    async fn tick(&self, shutdown: &CancellationToken) -> DueTick {
        let lease = self.owner.lease();
        let (claimed, start_before) = match self.monitors.claim_due(&lease).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due monitors");
                return DueTick {
                    failed: 1,
                    ..DueTick::default()
                };
            }
        };
        let mut tick = DueTick {
            claimed: claimed.len(),
            ..DueTick::default()
        };
        let mut claimed = claimed.into_iter();
        while !shutdown.is_cancelled() && self.monitors.now() < start_before {
            let Some(monitor) = claimed.next() else { break };
            self.monitors.act_on(monitor, &lease, &mut tick).await;
        }
        let unreached: Vec<_> = claimed.collect();
        if !unreached.is_empty() {
            self.monitors.let_go(&unreached, &lease).await;
            tick.waiting += unreached.len();
        }
        tick
    }

    /// Every scan interval until `shutdown`; at once again while a claim comes back full.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.scan_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                () = shutdown.cancelled() => return,
            }
            while !shutdown.is_cancelled() {
                let tick = self.tick(&shutdown).await;
                if tick.claimed < self.monitors.settings().batch || tick.failed > 0 {
                    break;
                }
            }
        }
    }
}
