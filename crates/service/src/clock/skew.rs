//! The skew gauge and guard (SPEC §3.6): every few seconds this replica reads the database's
//! clock, corrects its [`DatabaseClock`] and exports how far its own clock is off
//! (`clock_skew_seconds`); beyond `CLOCK_SKEW_MAX` it reports not ready and logs a warning.
//! The work stays correct either way — it runs on the database's time — but a host whose
//! clock is that wrong has other problems (TLS, logs, its neighbours) the operator must see.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{ClockEstimate, DatabaseClock, estimate};
use crate::readiness::Readiness;
use crate::store::{DynStore, StoreError};

/// Round trips per measurement: the fastest decides ([`estimate`]).
const SAMPLES: usize = 5;

/// How the guard measures and what it tolerates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SkewSettings {
    /// Past this skew (either way) the replica is not ready (`CLOCK_SKEW_MAX`).
    pub max: Duration,
    /// How often the database's clock is read (`CLOCK_SKEW_INTERVAL_MS`).
    pub interval: Duration,
}

/// Measures this replica's clock against the database's.
pub struct SkewGuard {
    store: DynStore,
    clock: Arc<DatabaseClock>,
    settings: SkewSettings,
    readiness: Option<Arc<Readiness>>,
    /// Why the clock makes this replica not ready (`None`: within `CLOCK_SKEW_MAX`).
    beyond: Mutex<Option<String>>,
    /// The reading of start-up, until it is reported.
    first: Option<ClockEstimate>,
}

impl SkewGuard {
    /// Reads the database's clock once; `None` when the database's clock is this process's
    /// own (SQLite), so there is nothing to measure. Reports nothing yet: see
    /// [`SkewGuard::reporting_to`].
    pub async fn start(
        store: DynStore,
        settings: SkewSettings,
    ) -> Result<Option<SkewGuard>, StoreError> {
        let samples = store.read_database_clock(SAMPLES).await?;
        let Some(first) = estimate(&samples) else {
            return Ok(None);
        };
        Ok(Some(SkewGuard {
            store,
            clock: Arc::new(DatabaseClock::new(&first)),
            settings,
            readiness: None,
            beyond: Mutex::new(None),
            first: Some(first),
        }))
    }

    /// The database's clock, for everything that takes a "now".
    pub fn clock(&self) -> Arc<DatabaseClock> {
        self.clock.clone()
    }

    /// Reports to `readiness` and the metrics from now on (the app's metrics recorder exists
    /// by then), starting with the reading taken at start-up.
    pub fn reporting_to(mut self, readiness: Arc<Readiness>) -> SkewGuard {
        self.readiness = Some(readiness);
        if let Some(first) = self.first.take() {
            self.report(&first);
        }
        self
    }

    /// One measurement: the clock corrected (unless counting on from the last reading is more
    /// precise, [`DatabaseClock::correct`]), the gauge set, the guard decided. A failed read
    /// keeps the last estimate (the clock counts on from it); the next interval tries again.
    pub async fn tick_once(&self) -> Option<ClockEstimate> {
        let samples = match self.store.read_database_clock(SAMPLES).await {
            Ok(samples) => samples,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the database's clock; counting on from the last reading");
                return None;
            }
        };
        let estimate = estimate(&samples)?;
        if !self.clock.correct(&estimate) {
            tracing::debug!(
                uncertainty_ms = estimate.uncertainty.as_millis(),
                "a reading of the database's clock was less precise than counting on; the clock keeps the last"
            );
        }
        // The skew is reported from every reading: its precision is far inside the guard's.
        self.report(&estimate);
        Some(estimate)
    }

    /// Measures every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut every = tokio::time::interval(self.settings.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate; start-up measured already.
        every.tick().await;
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = shutdown.cancelled() => return,
            }
            self.tick_once().await;
        }
    }

    fn report(&self, estimate: &ClockEstimate) {
        let skew = estimate.skew.as_seconds_f64();
        metrics::gauge!("clock_skew_seconds").set(skew);
        metrics::gauge!("clock_skew_uncertainty_seconds").set(estimate.uncertainty.as_secs_f64());
        let beyond = estimate.skew.abs().to_std().unwrap_or(Duration::MAX) > self.settings.max;
        let reason = beyond.then(|| reason(skew, self.settings.max));
        let mut last = self.beyond.lock().unwrap_or_else(|e| e.into_inner());
        match (last.is_some(), &reason) {
            (false, Some(reason)) => tracing::warn!(
                skew_seconds = skew,
                max_seconds = self.settings.max.as_secs_f64(),
                "{reason}: not ready until it is right again (the work runs on the database's time meanwhile)"
            ),
            (true, None) => {
                tracing::info!(skew_seconds = skew, "this replica's clock is right again")
            }
            _ => {}
        }
        last.clone_from(&reason);
        drop(last);
        if let Some(readiness) = &self.readiness {
            readiness.set_clock_skew(reason);
        }
    }
}

/// What `/health/ready` says about a clock `skew` seconds off (positive: ahead).
fn reason(skew: f64, max: Duration) -> String {
    let way = if skew > 0.0 { "ahead of" } else { "behind" };
    format!(
        "clock: {:.1} s {way} the database's (CLOCK_SKEW_MAX {} s)",
        skew.abs(),
        max.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_reason_names_the_clock_the_skew_and_the_way() {
        let max = std::time::Duration::from_secs(5);
        assert_eq!(
            super::reason(30.04, max),
            "clock: 30.0 s ahead of the database's (CLOCK_SKEW_MAX 5 s)"
        );
        assert_eq!(
            super::reason(-7.26, max),
            "clock: 7.3 s behind the database's (CLOCK_SKEW_MAX 5 s)"
        );
    }
}
