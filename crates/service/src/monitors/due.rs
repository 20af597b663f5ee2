//! The monitor worker's entry points (SPEC §12): claim the due monitors, act on each (the
//! acting itself: windows.rs), let go of those a stopping worker does not reach.

use chrono::{DateTime, TimeDelta, Utc};

use super::Monitors;
use super::windows::Acted;
use crate::jobs::Lease;
use crate::store::{StoreError, StoredMonitor};

/// What one step of the monitor worker did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DueTick {
    pub claimed: usize,
    /// Sessions opened (subscribed, window 1 open).
    pub opened: usize,
    /// Open windows whose ends were decided.
    pub decided: usize,
    /// Monitors not due yet after all (before their session, a window reset meanwhile),
    /// disabled meanwhile, or let go unreached (a stopping worker, half the stale window
    /// spent): their lease released.
    pub waiting: usize,
    /// The lease was lost (taken over, or the monitor deleted) before the write.
    pub fenced: usize,
    pub failed: usize,
}

impl Monitors {
    /// Claims the monitors that are due, under `lease`, for [`Monitors::act_on`]; with the
    /// instant after which none of them is to be started any more: half the stale window on,
    /// when another replica could take the rest over while one begun later is still opening.
    pub async fn claim_due(
        &self,
        lease: &Lease,
    ) -> Result<(Vec<StoredMonitor>, DateTime<Utc>), StoreError> {
        let now = self.now();
        let stale = TimeDelta::from_std(self.settings.stale_after).unwrap_or(TimeDelta::MAX);
        let claimed = self
            .store
            .claim_due_monitors(now, lease, now - stale, self.settings.batch)
            .await?;
        Ok((claimed, now + stale / 2))
    }

    /// Acts on one claimed monitor; what it came to is added to `tick`.
    pub async fn act_on(&self, monitor: StoredMonitor, lease: &Lease, tick: &mut DueTick) {
        match self.act(monitor, lease).await {
            Acted::Opened => tick.opened += 1,
            Acted::Decided => tick.decided += 1,
            Acted::Waiting => tick.waiting += 1,
            Acted::Fenced => tick.fenced += 1,
            Acted::Failed => tick.failed += 1,
        }
    }

    /// Frees claimed monitors left alone (the replica is stopping, or half the stale window
    /// passed), due as they were: another replica takes them at once, not after the window.
    pub async fn let_go(&self, monitors: &[StoredMonitor], lease: &Lease) {
        for monitor in monitors {
            if let Err(e) = self.wait(monitor, lease, monitor.state.due_at).await {
                tracing::warn!(monitor_id = monitor.id, error = %e, "could not release a monitor's lease");
            }
        }
    }
}
