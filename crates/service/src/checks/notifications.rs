//! Robot notifications (SPEC §3.7): the outbox rows written with each state change are jobs
//! (`jobs::Runner`), sent to `${ROBOT_QUEUE_ADDRESS}${robotId}` with the `callRef` attribute
//! and marked done only after SQS accepted them; a failed send is retried with exponential
//! backoff and dead-lettered after the configured attempts. A relay that dies mid-send
//! leaves a row that is sent again after its lease runs out — at least once, with the same
//! `notificationSeq`, so robots drop the duplicate. The notifications committed in this
//! process come to its runner in memory, already leased to it (`jobs::Handoff`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt as _, stream};

use super::Checks;
use crate::jobs::{
    Handler, Job, LeaseOwner, Next, RetryPolicy, Runner, RunnerSettings, StartBefore,
};
use crate::queue::Queue;
use crate::store::{NotificationJobs, OutboxMessage};

/// How long a claimed (or handed-over) notification is reserved for its relay.
pub const NOTIFICATION_LEASE: Duration = Duration::from_secs(30);

/// How the notifications are sent.
#[derive(Debug, Clone)]
pub struct NotifierConfig {
    /// `ROBOT_QUEUE_ADDRESS`: the robot id is appended.
    pub robot_queue_prefix: String,
    /// Robots sent to at once; one robot's notifications go one after the other, in order.
    pub concurrency: usize,
    /// Attempts after which a notification that could not be sent is dead-lettered.
    pub max_attempts: u32,
    /// How long sent notifications are kept before they are purged.
    pub retention: Duration,
    pub poll_interval: Duration,
}

/// Sends robot notifications to the robots' own queues.
pub struct RobotNotifier {
    queue: Arc<dyn Queue>,
    robot_queue_prefix: String,
    concurrency: usize,
}

#[async_trait]
impl Handler for RobotNotifier {
    type Kind = NotificationJobs;

    async fn perform_one(&self, job: &Job<OutboxMessage>) -> Result<(), String> {
        self.send(&job.payload).await
    }

    /// Robots in parallel (each send is an SQS round trip), each robot's notifications in the
    /// order of their checks and sequence numbers.
    async fn perform(
        &self,
        jobs: &[Job<OutboxMessage>],
        start: &StartBefore,
    ) -> Vec<Option<Result<(), String>>> {
        let mut by_robot: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        for (index, job) in jobs.iter().enumerate() {
            by_robot
                .entry(job.payload.robot_id)
                .or_default()
                .push(index);
        }
        let mut outcomes: Vec<Option<Result<(), String>>> = vec![None; jobs.len()];
        let mut robots = stream::iter(by_robot.into_values())
            .map(|mut indexes| async move {
                indexes.sort_by_key(|&i| (jobs[i].payload.check_id, jobs[i].payload.seq));
                let mut sent = Vec::with_capacity(indexes.len());
                for index in indexes {
                    if start.passed() {
                        break;
                    }
                    sent.push((index, self.perform_one(&jobs[index]).await));
                }
                sent
            })
            .buffer_unordered(self.concurrency.max(1));
        while let Some(sent) = robots.next().await {
            for (index, outcome) in sent {
                outcomes[index] = Some(outcome);
            }
        }
        outcomes
    }

    fn failed(&self, job: &Job<OutboxMessage>, error: &str, next: Next) {
        let row = &job.payload;
        let attempts = job.attempts + 1;
        metrics::counter!("outbox_send_failures_total").increment(1);
        match next {
            // It will not go: the row stays, with its error, for an operator.
            Next::DeadLetter => {
                tracing::error!(
                    check_id = row.check_id,
                    robot_id = row.robot_id,
                    seq = row.seq,
                    attempts,
                    error,
                    "could not notify the robot; dead-lettered after its last attempt"
                );
                metrics::counter!("outbox_dead_lettered_total").increment(1);
            }
            Next::RetryIn(wait) => tracing::warn!(
                check_id = row.check_id,
                robot_id = row.robot_id,
                seq = row.seq,
                attempts,
                retry_in_ms = wait.as_millis() as u64,
                error,
                "could not notify the robot; will retry"
            ),
        }
    }
}

impl RobotNotifier {
    async fn send(&self, row: &OutboxMessage) -> Result<(), String> {
        let url = format!("{}{}", self.robot_queue_prefix, row.robot_id);
        let attributes = BTreeMap::from([("callRef".to_owned(), row.call_ref.clone())]);
        self.queue
            .send(&url, &row.payload, &attributes)
            .await
            .map_err(|e| e.to_string())?;
        metrics::counter!("outbox_sent_total").increment(1);
        tracing::debug!(check_id = row.check_id, seq = row.seq, "robot notified");
        Ok(())
    }
}

impl Checks {
    /// The runner that sends the robot notifications to `queue`, claiming as `owner`.
    pub fn notification_runner(
        &self,
        queue: Arc<dyn Queue>,
        config: NotifierConfig,
        owner: LeaseOwner,
    ) -> Runner<RobotNotifier> {
        Runner::new(
            RobotNotifier {
                queue,
                robot_queue_prefix: config.robot_queue_prefix,
                concurrency: config.concurrency,
            },
            self.store.clone(),
            self.clock.clone(),
            RunnerSettings::new(
                // A claim (and its mark) per 250 rows: at 50 the relay sent ≈ 5,000/s and fell
                // 17 s behind a burst of 100,000 deadlines; at 250, 8 s (docs/benchmarks.md).
                250,
                NOTIFICATION_LEASE,
                config.poll_interval,
                RetryPolicy::doubling().dead_letter_after(config.max_attempts),
            )
            .purged_after(config.retention, "outbox_purged_total")
            .with_backlog_gauge("outbox_backlog"),
            owner,
        )
    }
}
