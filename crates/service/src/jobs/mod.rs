//! Work done after a commit (robot notifications, subscription removals, monitor alarms):
//! rows written with the change that asks for them, then claimed under a [`Lease`], performed,
//! and marked done or failed — retried by one [`RetryPolicy`], dead-lettered after its last
//! attempt, purged after a retention. One [`Runner`] does that for every kind; each kind is a
//! [`Handler`] that only performs a claimed batch. Where to add a new kind: docs/architecture.md
//! "Where to add background work".
//!
//! The leased-queue statements (claim, done, failed, backlog, purge) are written once, over a
//! table descriptor, in `store/jobs.rs`, behind the [`JobQueue`] port.

mod handoff;
mod lease;
mod retry;
mod runner;

pub use handoff::Handoff;
pub use lease::{Lease, LeaseError, LeaseOwner};
pub use retry::{Next, RetryPolicy};
pub(crate) use runner::due;
pub use runner::{Handler, JobTick, Runner, RunnerSettings, StartBefore};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::StoreError;

/// A kind of job: what one row of its table carries besides the queue's own columns.
pub trait JobKind: Send + Sync + 'static {
    type Payload: std::fmt::Debug + Clone + Send + Sync + 'static;
    /// A short name for logs and metric labels (`notification`, `removal`, `alarm`).
    const NAME: &'static str;
}

/// One claimed (or handed-over) job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job<P> {
    /// The row's id in its table.
    pub id: i64,
    /// Failed attempts so far.
    pub attempts: u32,
    pub payload: P,
}

/// A failed attempt to record: when to try again, or never (dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    pub id: i64,
    /// `None`: dead-lettered — no claim takes it again; the row stays, with its error, for
    /// an operator.
    pub retry_at: Option<DateTime<Utc>>,
    pub error: String,
}

/// The leased queue of one kind (the port the store implements once for every kind, every
/// operation bounded by the store's operation timeout).
#[async_trait]
pub trait JobQueue<K: JobKind>: Send + Sync {
    /// Claims up to `limit` jobs that are due (`next_attempt_at <= now`), not done and not
    /// leased (or whose lease ran out before `now`), leasing them to `lease` until
    /// `lease_until`. Oldest due first; concurrent claimers get disjoint sets.
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job<K::Payload>>, StoreError>;

    /// Marks done the jobs `lease` still holds, in one transaction (fenced: a job whose lease
    /// ran out and was claimed again is not touched); returns those ids.
    async fn complete(
        &self,
        ids: &[i64],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError>;

    /// Records failed attempts (attempts + 1, the error cut to its column, the retry time)
    /// and frees their lease, for the jobs `lease` still holds, in one transaction; how many.
    async fn fail(&self, failures: &[JobFailure], lease: &Lease) -> Result<u64, StoreError>;

    /// Jobs not done that some attempt will still take (dead-lettered ones aside).
    async fn backlog(&self) -> Result<i64, StoreError>;

    /// Deletes up to `limit` jobs done before `done_before`; how many.
    async fn purge(&self, done_before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}
