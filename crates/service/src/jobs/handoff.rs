//! Jobs committed in this process, handed to its runner in memory.
//!
//! A write that queues jobs while the runner has room stores each row already leased to the
//! runner (`lock_id`, `locked_until`), so no other replica claims it, and hands the rows over
//! once the transaction has committed: the runner performs them at once instead of claiming
//! them first — a claim is a write, which waits its turn behind the scheduler's and the
//! consumer's. Nothing is lost in between: the rows are in their table, and should this
//! process die before performing them, any replica claims them once the lease has run out.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::Notify;

use super::{Job, Lease};

pub struct Handoff<P> {
    lease: Lease,
    lease_for: TimeDelta,
    /// Most jobs waiting to be taken; while as many wait, writes store their rows unleased
    /// and the runner claims them as usual.
    capacity: usize,
    waiting: Mutex<Vec<Job<P>>>,
    ready: Notify,
}

impl<P> Handoff<P> {
    pub fn new(lease: Lease, lease_for: Duration, capacity: usize) -> Self {
        Handoff {
            lease,
            lease_for: TimeDelta::from_std(lease_for).unwrap_or(TimeDelta::MAX),
            capacity,
            waiting: Mutex::new(Vec::new()),
            ready: Notify::new(),
        }
    }

    /// The lease the handed rows are written under.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// Until when a row written `now` is leased to the runner; `None` while it has enough
    /// waiting.
    pub fn lease_until(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        (self.lock().len() < self.capacity).then(|| now + self.lease_for)
    }

    /// Hands committed rows to the runner.
    pub fn hand_over(&self, jobs: Vec<Job<P>>) {
        if jobs.is_empty() {
            return;
        }
        self.lock().extend(jobs);
        self.ready.notify_one();
    }

    /// Up to `limit` of the jobs handed over, oldest first.
    pub fn take(&self, limit: usize) -> Vec<Job<P>> {
        let mut waiting = self.lock();
        let take = waiting.len().min(limit);
        waiting.drain(..take).collect()
    }

    /// Returns once jobs were handed over since the last call (at once if they were).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Job<P>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
