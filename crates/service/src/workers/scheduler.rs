//! The deadline scheduler (SPEC §3.5–3.6): claims checks whose future window has ended under
//! a lease, finalises each exactly once (every write fenced on the lease; a claimed batch in
//! one transaction), and releases leases whose holder went quiet so another replica takes the
//! work over. Unsubscribes are queued with the finalisation and left to the relay.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio_util::sync::CancellationToken;

use crate::checks::{Checks, Finalised};
use crate::jobs::LeaseOwner;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often `run` looks for due checks.
    pub scan_interval: Duration,
    /// Most checks claimed per tick.
    pub batch: usize,
    /// A lease older than this is presumed abandoned and released.
    pub stale_after: Duration,
    /// Claims finalised at once while there is a backlog (one reads while another writes).
    pub concurrency: usize,
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
    /// Who this replica's claims are leased to.
    owner: LeaseOwner,
}

impl Scheduler {
    pub fn new(checks: Arc<Checks>, config: SchedulerConfig, hostname: &str) -> Self {
        let owner = LeaseOwner::new("scheduler", hostname);
        Scheduler {
            checks,
            config,
            owner,
        }
    }

    /// Releases stale leases, adopts the Node service's checks, then claims due checks under
    /// a fresh lease and finalises them.
    pub async fn tick_once(&self) -> SchedulerTick {
        let mut tick = self.upkeep().await;
        let finalised = self.finalise_due().await;
        tick.claimed = finalised.claimed;
        tick.finalised = finalised.finalised;
        tick.already_ended = finalised.already_ended;
        tick.fenced = finalised.fenced;
        tick.failed = finalised.failed;
        tick
    }

    /// What a scan does before it claims: stale leases released, the Node service's checks
    /// adopted (they get their own rows, and so their deadlines, before the claim).
    async fn upkeep(&self) -> SchedulerTick {
        let mut tick = SchedulerTick::default();
        match self
            .checks
            .release_stale_leases(self.config.stale_after)
            .await
        {
            Ok(released) => {
                tick.released_stale = released;
                if released > 0 {
                    tracing::warn!(released, "released stale scheduler leases");
                    metrics::counter!("scheduler_stale_leases_released_total").increment(released);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not release stale leases"),
        }
        match self.checks.adoption().tick_once().await {
            Ok(adoption) => tick.adopted = adoption.adopted,
            Err(e) => tracing::warn!(error = %e, "could not adopt the Node service's checks"),
        }
        tick
    }

    /// Claims up to a batch of due checks under a fresh lease and finalises them in one
    /// transaction.
    async fn finalise_due(&self) -> SchedulerTick {
        let mut tick = SchedulerTick::default();
        let lease = self.owner.lease();
        let claimed = match self.checks.claim_due(&lease, self.config.batch).await {
            Ok(claimed) => claimed,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim due checks");
                tick.failed = 1;
                return tick;
            }
        };
        tick.claimed = claimed.len();
        if claimed.is_empty() {
            return tick;
        }
        metrics::counter!("scheduler_claimed_total").increment(claimed.len() as u64);
        for outcome in self.checks.finalise_batch(&claimed, &lease).await {
            match outcome {
                Finalised::Done => tick.finalised += 1,
                Finalised::AlreadyEnded => tick.already_ended += 1,
                Finalised::Fenced => tick.fenced += 1,
                Finalised::Failed => tick.failed += 1,
            }
        }
        tick
    }

    /// Every scan interval until `shutdown`: upkeep, then claims and finalisations — while a
    /// claim comes back full, up to `concurrency` of them in flight (claims are disjoint), so
    /// a burst of deadlines is worked off at the database's pace, one batch reading while
    /// another writes.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(self.config.scan_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let in_flight = self.config.concurrency.max(1);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            self.upkeep().await;
            // No new claim once stopping: what is claimed late could be cut off by the
            // drain's end and wait out its lease.
            if shutdown.is_cancelled() {
                return;
            }
            let mut units = FuturesUnordered::new();
            units.push(self.finalise_due());
            while let Some(tick) = units.next().await {
                let backlog = tick.claimed >= self.config.batch && tick.failed == 0;
                while backlog && units.len() < in_flight && !shutdown.is_cancelled() {
                    units.push(self.finalise_due());
                }
            }
        }
    }
}
