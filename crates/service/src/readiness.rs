//! Readiness (`/health/ready`): what the parts that start after the HTTP server report. The
//! workers write it, the HTTP layer reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Readiness flags of the parts that start after the HTTP server.
#[derive(Debug, Default)]
pub struct Readiness {
    templates_loaded: AtomicBool,
    /// The queue consumers this replica runs, by queue label (`status`, `monitors`).
    consumers: Mutex<BTreeMap<&'static str, ConsumerState>>,
    /// How long receives may fail before the replica is not ready.
    receive_failure_grace: Mutex<Duration>,
    /// Why this replica's clock makes it not ready (`clock::SkewGuard`), if it does.
    clock_skew: Mutex<Option<String>>,
}

#[derive(Debug, Default)]
struct ConsumerState {
    running: bool,
    /// Since when every receive has failed (`None`: the last one worked).
    receive_failing_since: Option<Instant>,
}

impl Readiness {
    pub fn set_templates_loaded(&self) {
        self.templates_loaded.store(true, Ordering::SeqCst);
    }

    /// This replica runs a consumer of the queue labelled `queue`: not ready until it runs.
    pub fn expect_consumer(&self, queue: &'static str) {
        self.consumers().entry(queue).or_default();
    }

    pub fn set_consumer_running(&self, queue: &'static str, running: bool) {
        self.consumers().entry(queue).or_default().running = running;
    }

    /// How long a queue's receives may keep failing before the replica reports not ready.
    pub fn set_receive_failure_grace(&self, grace: Duration) {
        *self
            .receive_failure_grace
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = grace;
    }

    /// A receive from the queue labelled `queue` worked, or failed.
    pub fn receive_done(&self, queue: &'static str, worked: bool) {
        let mut consumers = self.consumers();
        let state = consumers.entry(queue).or_default();
        match (worked, state.receive_failing_since) {
            (true, _) => state.receive_failing_since = None,
            (false, None) => state.receive_failing_since = Some(Instant::now()),
            (false, Some(_)) => {}
        }
    }

    /// The clock is beyond `CLOCK_SKEW_MAX` (`reason` names the clock and the skew), or not.
    pub fn set_clock_skew(&self, reason: Option<String>) {
        *self.clock_skew.lock().unwrap_or_else(|e| e.into_inner()) = reason;
    }

    /// The names of what is not ready.
    pub fn failing(&self) -> Vec<String> {
        let mut failing = Vec::new();
        if !self.templates_loaded.load(Ordering::SeqCst) {
            failing.push("templates".to_owned());
        }
        let grace = *self
            .receive_failure_grace
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (queue, state) in self.consumers().iter() {
            // The plain status queue keeps the names operators already alert on.
            let (consumer, receives) = match *queue {
                "status" => (
                    "queue consumer".to_owned(),
                    "status queue receives failing".to_owned(),
                ),
                other => (
                    format!("{other} queue consumer"),
                    format!("{other} queue receives failing"),
                ),
            };
            if !state.running {
                failing.push(consumer);
            }
            if state
                .receive_failing_since
                .is_some_and(|since| since.elapsed() >= grace)
            {
                failing.push(receives);
            }
        }
        if let Some(reason) = self
            .clock_skew
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            failing.push(reason);
        }
        failing
    }

    fn consumers(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, ConsumerState>> {
        self.consumers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_queue_consumer_is_reported_by_its_queue() {
        let readiness = Readiness::default();
        readiness.set_templates_loaded();
        assert!(readiness.failing().is_empty(), "no consumer expected");
        readiness.expect_consumer("status");
        readiness.expect_consumer("monitors");
        assert_eq!(
            readiness.failing(),
            ["monitors queue consumer", "queue consumer"]
        );
        readiness.set_consumer_running("status", true);
        readiness.set_consumer_running("monitors", true);
        assert!(readiness.failing().is_empty());
        readiness.receive_done("monitors", false);
        assert_eq!(readiness.failing(), ["monitors queue receives failing"]);
        readiness.receive_done("monitors", true);
        assert!(readiness.failing().is_empty());
    }

    #[test]
    fn receives_may_fail_for_the_grace_period() {
        let readiness = Readiness::default();
        readiness.set_templates_loaded();
        readiness.set_receive_failure_grace(Duration::from_secs(60));
        readiness.expect_consumer("status");
        readiness.set_consumer_running("status", true);
        readiness.receive_done("status", false);
        assert!(readiness.failing().is_empty(), "within the grace period");
    }
}
