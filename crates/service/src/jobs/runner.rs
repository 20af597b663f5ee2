//! The one runner of every kind of job: claims a batch under a fresh lease (after taking what
//! this process handed over), has the kind's [`Handler`] perform it, marks the done jobs in
//! one fenced write, records the failed ones by the [`RetryPolicy`] in another, keeps the
//! backlog gauge, and purges done jobs after the retention.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use tokio_util::sync::CancellationToken;

use super::{Handoff, Job, JobFailure, JobKind, JobQueue, Lease, LeaseOwner, Next, RetryPolicy};
use crate::clock::Clock;

/// What a kind's jobs carry.
pub type Payload<H> = <<H as Handler>::Kind as JobKind>::Payload;

/// Performs the jobs of one kind; the runner does the rest.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    type Kind: JobKind;

    /// Performs one job: `Ok` when it is done, else why not (recorded, and retried by the
    /// policy).
    async fn perform_one(&self, job: &Job<Payload<Self>>) -> Result<(), String>;

    /// Performs a batch the runner holds under a lease, one outcome per job in order (`None`:
    /// not started, `start` had passed): one job after the other, unless the kind does better
    /// (robots' notifications in parallel).
    async fn perform(
        &self,
        jobs: &[Job<Payload<Self>>],
        start: &StartBefore,
    ) -> Vec<Option<Result<(), String>>> {
        let mut outcomes = Vec::with_capacity(jobs.len());
        for job in jobs {
            let outcome = match start.passed() {
                true => None,
                false => Some(self.perform_one(job).await),
            };
            outcomes.push(outcome);
        }
        outcomes
    }

    /// A job failed and what follows: the kind's log line and metrics (the runner records
    /// the failure).
    fn failed(&self, job: &Job<Payload<Self>>, error: &str, next: Next);
}

/// The time after which a batch starts no more jobs: half its lease. A job begun later could
/// outlast the lease, and another replica that claimed the rest of the batch meanwhile would
/// perform the same jobs at the same time (an alarm posted twice). A job not started stays
/// leased until the lease runs out, then any replica claims it.
pub struct StartBefore {
    clock: Arc<dyn Clock>,
    at: DateTime<Utc>,
}

impl StartBefore {
    pub fn passed(&self) -> bool {
        self.clock.now() >= self.at
    }
}

/// How a runner works through its queue.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Jobs claimed per step.
    pub batch: usize,
    /// How long a claimed job is reserved for this runner.
    pub lease_for: Duration,
    /// How often `run` looks for jobs when the last step found none.
    pub poll_interval: Duration,
    /// When a failed job is tried again, and when it is given up.
    pub retry: RetryPolicy,
    /// How long done jobs are kept, and the counter the purged ones are added to; `None`:
    /// never purged.
    pub purge: Option<(Duration, &'static str)>,
    /// The gauge the backlog is reported as, at most once a second.
    pub backlog_gauge: Option<&'static str>,
}

impl RunnerSettings {
    /// Done jobs kept, no backlog gauge.
    pub fn new(
        batch: usize,
        lease_for: Duration,
        poll_interval: Duration,
        retry: RetryPolicy,
    ) -> Self {
        RunnerSettings {
            batch,
            lease_for,
            poll_interval,
            retry,
            purge: None,
            backlog_gauge: None,
        }
    }

    /// Done jobs purged `retention` after they were done, counted on `counter`.
    pub fn purged_after(mut self, retention: Duration, counter: &'static str) -> Self {
        self.purge = Some((retention, counter));
        self
    }

    /// The backlog reported as `gauge`.
    pub fn with_backlog_gauge(mut self, gauge: &'static str) -> Self {
        self.backlog_gauge = Some(gauge);
        self
    }
}

/// How many done jobs one purge deletes at most.
const PURGE_BATCH: usize = 500;

/// Most handed-over jobs one step performs.
const HANDOFF_BATCH: usize = 2_000;

/// What one step did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct JobTick {
    /// Taken from this process's handoff.
    pub handed: usize,
    /// Claimed from the table.
    pub claimed: usize,
    pub done: usize,
    pub failed: usize,
    /// Not started: half the lease was spent (they come back when it runs out).
    pub not_started: usize,
    /// Of the failed, those dead-lettered.
    pub dead_lettered: usize,
    /// Done jobs purged after the retention.
    pub purged: u64,
}

pub struct Runner<H: Handler> {
    handler: H,
    queue: Arc<dyn JobQueue<H::Kind>>,
    clock: Arc<dyn Clock>,
    settings: RunnerSettings,
    owner: LeaseOwner,
    handoff: Option<Arc<Handoff<Payload<H>>>>,
    next_purge: Mutex<DateTime<Utc>>,
    /// The backlog's count reads every waiting row's index entry: too much for every step
    /// while a burst is being worked off.
    next_backlog: Mutex<DateTime<Utc>>,
}

impl<H: Handler> Runner<H> {
    pub fn new(
        handler: H,
        queue: Arc<dyn JobQueue<H::Kind>>,
        clock: Arc<dyn Clock>,
        settings: RunnerSettings,
        owner: LeaseOwner,
    ) -> Self {
        Runner {
            handler,
            queue,
            clock,
            settings,
            owner,
            handoff: None,
            next_purge: Mutex::new(DateTime::UNIX_EPOCH),
            next_backlog: Mutex::new(DateTime::UNIX_EPOCH),
        }
    }

    /// Performs the jobs this process's writes hand over too.
    pub fn with_handoff(mut self, handoff: Option<Arc<Handoff<Payload<H>>>>) -> Self {
        self.handoff = handoff;
        self
    }

    /// The handoff this runner takes from, if any.
    pub fn handoff(&self) -> Option<&Handoff<Payload<H>>> {
        self.handoff.as_deref()
    }

    /// One step: the handed-over jobs, then a claimed batch; the backlog gauge and a purge
    /// when they are due.
    pub async fn tick_once(&self) -> JobTick {
        let mut tick = JobTick::default();
        if let Some(handoff) = &self.handoff {
            let handed = handoff.take(HANDOFF_BATCH);
            tick.handed = handed.len();
            let start_before = self.half_lease_from(self.clock.now());
            self.perform(handed, handoff.lease(), start_before, &mut tick)
                .await;
        }
        let now = self.clock.now();
        let lease = self.owner.lease();
        let lease_until = now + delta(self.settings.lease_for);
        match self
            .queue
            .claim(now, &lease, lease_until, self.settings.batch)
            .await
        {
            Ok(jobs) => {
                tick.claimed = jobs.len();
                // Half the lease from its start, before the claim's write (which may have
                // been slow), not from now.
                let start_before = self.half_lease_from(now);
                self.perform(jobs, &lease, start_before, &mut tick).await;
            }
            Err(e) => tracing::warn!(kind = H::Kind::NAME, error = %e, "could not claim jobs"),
        }
        if let Some(gauge) = self.settings.backlog_gauge
            && due(&self.next_backlog, now, TimeDelta::seconds(1))
            && let Ok(backlog) = self.queue.backlog().await
        {
            metrics::gauge!(gauge).set(backlog as f64);
        }
        if let Some((retention, counter)) = self.settings.purge
            && due(&self.next_purge, now, TimeDelta::minutes(1))
        {
            match self.queue.purge(now - delta(retention), PURGE_BATCH).await {
                Ok(purged) => {
                    tick.purged = purged;
                    metrics::counter!(counter).increment(purged);
                }
                Err(e) => {
                    tracing::warn!(kind = H::Kind::NAME, error = %e, "could not purge done jobs")
                }
            }
        }
        tick
    }

    /// Half a lease on from `start`: when jobs of a lease begun then start no more.
    fn half_lease_from(&self, start: DateTime<Utc>) -> DateTime<Utc> {
        start + delta(self.settings.lease_for / 2)
    }

    /// Has the handler perform jobs held under `lease`, starting none at or after
    /// `start_before` (half the lease), then records the outcomes: the done ones in one write,
    /// the failed ones in another. A job left unmarked (the lease ran out, or the write
    /// failed) is performed again later — at least once. For handed-over jobs, whose leases
    /// began when they were written, half the lease is counted from their taking
    /// (notifications only: a robot drops a repeated `notificationSeq`).
    async fn perform(
        &self,
        jobs: Vec<Job<Payload<H>>>,
        lease: &Lease,
        start_before: DateTime<Utc>,
        tick: &mut JobTick,
    ) {
        if jobs.is_empty() {
            return;
        }
        let start = StartBefore {
            clock: self.clock.clone(),
            at: start_before,
        };
        let outcomes = self.handler.perform(&jobs, &start).await;
        debug_assert_eq!(outcomes.len(), jobs.len(), "one outcome per job");
        let now = self.clock.now();
        let mut done = Vec::new();
        let mut failures = Vec::new();
        let mut not_started = 0;
        for (job, outcome) in jobs.iter().zip(outcomes) {
            match outcome {
                None => not_started += 1,
                Some(Ok(())) => done.push(job.id),
                Some(Err(error)) => {
                    let next = self.settings.retry.after_failure(job.attempts);
                    self.handler.failed(job, &error, next);
                    let retry_at = match next {
                        Next::RetryIn(wait) => Some(now + delta(wait)),
                        Next::DeadLetter => {
                            tick.dead_lettered += 1;
                            None
                        }
                    };
                    failures.push(JobFailure {
                        id: job.id,
                        retry_at,
                        error,
                    });
                }
            }
        }
        tick.done += done.len();
        tick.failed += failures.len();
        tick.not_started += not_started;
        if not_started > 0 {
            tracing::warn!(
                kind = H::Kind::NAME,
                not_started,
                "half the lease spent: the rest of the batch is left for when it runs out"
            );
        }
        if !done.is_empty() {
            match self.queue.complete(&done, lease, now).await {
                Ok(marked) if marked.len() == done.len() => {}
                Ok(marked) => tracing::warn!(
                    kind = H::Kind::NAME,
                    unmarked = done.len() - marked.len(),
                    "jobs done after their lease ran out; they may be performed again"
                ),
                Err(e) => tracing::warn!(
                    kind = H::Kind::NAME,
                    count = done.len(),
                    error = %e,
                    "jobs done but not marked; they will be performed again"
                ),
            }
        }
        if !failures.is_empty()
            && let Err(e) = self.queue.fail(&failures, lease).await
        {
            tracing::warn!(kind = H::Kind::NAME, error = %e, "could not record failed jobs; retried when their lease runs out");
        }
    }

    /// Steps until `shutdown`: right away again while there is work and nothing failed,
    /// else after the poll interval — or as soon as jobs are handed over. What was handed
    /// over and not performed yet is performed before returning (it would otherwise wait
    /// out its lease in another replica), as far as half a lease allows.
    pub async fn run(self, shutdown: CancellationToken) {
        loop {
            let tick = self.tick_once().await;
            if tick.handed + tick.claimed > 0 && tick.failed == 0 {
                if shutdown.is_cancelled() {
                    break;
                }
                continue;
            }
            let handed = async {
                match &self.handoff {
                    Some(handoff) => handoff.ready().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(self.settings.poll_interval) => {}
                () = handed => {}
                () = shutdown.cancelled() => break,
            }
        }
        if let Some(handoff) = &self.handoff {
            let mut tick = JobTick::default();
            let start_before = self.half_lease_from(self.clock.now());
            self.perform(
                handoff.take(usize::MAX),
                handoff.lease(),
                start_before,
                &mut tick,
            )
            .await;
        }
    }
}

fn delta(duration: Duration) -> TimeDelta {
    TimeDelta::from_std(duration).unwrap_or(TimeDelta::MAX)
}

/// Whether `now` has reached the time in `next`, which then moves `every` on.
pub(crate) fn due(next: &Mutex<DateTime<Utc>>, now: DateTime<Utc>, every: TimeDelta) -> bool {
    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
    let due = now >= *next;
    if due {
        *next = now + every;
    }
    due
}
