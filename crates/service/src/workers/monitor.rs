//! The monitor worker (SPEC §12): every scan interval, claims the monitors that are due —
//! a session to open, a window end passed, a session over — under a lease and lets the use
//! case act on them (`Monitors::act_on_due`). It only brings time; leases older than the stale
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
        let lease = self.owner.lease();
        match self.monitors.act_on_due(&lease).await {
            Ok(tick) => tick,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due monitors");
                DueTick {
                    failed: 1,
                    ..DueTick::default()
                }
            }
        }
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
                let tick = self.tick_once().await;
                if tick.claimed < self.monitors.settings().batch || tick.failed > 0 {
                    break;
                }
            }
        }
    }
}
