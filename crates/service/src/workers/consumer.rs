//! The status-queue consumer (SPEC §3.4): each Megazord delivery re-evaluates its check's
//! future rules, in one transaction under the check's row lock; the message is deleted only
//! after that commit. Redelivery, duplicates and reordering change nothing (the engine skips
//! events already recorded, and rules see events sorted by time). In-flight work is bounded:
//! when every permit is taken the consumer stops receiving.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::checks::{Checks, Delivered, DeliveryOutcome};
use crate::config::Config;
use crate::http::Readiness;
use crate::queue::{Queue, QueueMessage};
use crate::status_message::{self, StatusMessage};

/// How the consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue_url: String,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Invisibility of a received message; extended while it is worked on.
    pub visibility: Duration,
    /// Most messages in flight at once.
    pub concurrency: usize,
    /// How long after its event a delivery for an unknown subscription is kept for
    /// redelivery (the check may still be being created).
    pub unknown_grace: Duration,
    /// When a kept delivery comes back.
    pub retry_after: Duration,
    /// How long a malformed message is hidden before the queue hands it out again (and,
    /// after its redrive policy's count, moves it to the dead-letter queue).
    pub malformed_visibility: Duration,
}

impl ConsumerConfig {
    /// The configured consumer of `queue_url` (the defaults live with the keys, in
    /// `crate::config`); what is not configurable is fixed here.
    pub fn from_config(queue_url: impl Into<String>, config: &Config) -> Self {
        ConsumerConfig {
            queue_url: queue_url.into(),
            wait: config.consumer_wait,
            visibility: config.consumer_visibility,
            concurrency: config.consumer_concurrency,
            unknown_grace: config.unknown_subscription_grace,
            retry_after: Duration::from_secs(5),
            malformed_visibility: Duration::from_secs(300),
        }
    }
}

/// What became of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The check took the event in (and maybe ended).
    Applied,
    /// Nothing changed: a duplicate, or an event outside the window; deleted.
    NoChange,
    /// The check had already ended; deleted.
    Ended,
    /// No check has this subscription yet; kept for redelivery.
    UnknownKept,
    /// No check has this subscription and the grace period is over; deleted.
    UnknownDropped,
    /// Can never be processed; left for the redrive policy.
    Malformed,
    /// Failed for now (database, template); left for redelivery.
    Failed,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::NoChange => "no_change",
            Outcome::Ended => "ended",
            Outcome::UnknownKept => "unknown_subscription_kept",
            Outcome::UnknownDropped => "unknown_subscription_dropped",
            Outcome::Malformed => "malformed",
            Outcome::Failed => "failed",
        }
    }
}

struct Inner {
    queue: Arc<dyn Queue>,
    checks: Arc<Checks>,
    config: ConsumerConfig,
    permits: Arc<Semaphore>,
    /// Told whether each receive worked: receives failing for long make the replica unready.
    readiness: Arc<Readiness>,
}

/// The consumer; cheap to clone.
#[derive(Clone)]
pub struct Consumer(Arc<Inner>);

impl Consumer {
    pub fn new(
        queue: Arc<dyn Queue>,
        checks: Arc<Checks>,
        config: ConsumerConfig,
        readiness: Arc<Readiness>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        Consumer(Arc::new(Inner {
            queue,
            checks,
            config,
            permits,
            readiness,
        }))
    }

    /// Receives one batch (as many as there are free permits, at most 10) and processes it
    /// to the end. Returns what became of each message.
    pub async fn tick_once(&self) -> Vec<Outcome> {
        let inner = &self.0;
        let room = inner.permits.available_permits().clamp(1, 10);
        let messages = match inner
            .queue
            .receive(
                &inner.config.queue_url,
                room,
                inner.config.wait,
                inner.config.visibility,
            )
            .await
        {
            Ok(messages) => {
                inner.readiness.receive_done(true);
                messages
            }
            Err(e) => {
                inner.readiness.receive_done(false);
                tracing::warn!(error = %e, "status queue receive failed");
                metrics::counter!("queue_receive_errors_total").increment(1);
                return Vec::new();
            }
        };
        let handles: Vec<_> = messages
            .into_iter()
            .map(|message| {
                let consumer = self.clone();
                tokio::spawn(async move { consumer.handle(message).await })
            })
            .collect();
        let mut outcomes = Vec::with_capacity(handles.len());
        for handle in handles {
            outcomes.push(handle.await.unwrap_or(Outcome::Failed));
        }
        outcomes
    }

    /// Receives and processes until `shutdown`, then stops receiving and lets the messages in
    /// flight finish (a message not finished in time is simply redelivered later).
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let inner = self.0.clone();
        let tracker = TaskTracker::new();
        while !shutdown.is_cancelled() {
            // Backpressure: wait for a free permit before asking the queue for more.
            let first = tokio::select! {
                permit = inner.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let room = (inner.permits.available_permits() + 1).min(10);
            let received = tokio::select! {
                received = inner.queue.receive(
                    &inner.config.queue_url, room, inner.config.wait, inner.config.visibility) => received,
                () = shutdown.cancelled() => break,
            };
            let messages = match received {
                Ok(messages) => {
                    inner.readiness.receive_done(true);
                    messages
                }
                Err(e) => {
                    inner.readiness.receive_done(false);
                    tracing::warn!(error = %e, "status queue receive failed");
                    metrics::counter!("queue_receive_errors_total").increment(1);
                    drop(first);
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {},
                        () = shutdown.cancelled() => break,
                    }
                    continue;
                }
            };
            let mut first = Some(first);
            for message in messages {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => match inner.permits.clone().acquire_owned().await {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                };
                let consumer = self.clone();
                tracker.spawn(async move {
                    consumer.handle(message).await;
                    drop(permit);
                });
            }
        }
        tracker.close();
        if tokio::time::timeout(drain, tracker.wait()).await.is_err() {
            tracing::warn!("consumer drain timed out; unfinished messages will be redelivered");
        }
    }

    /// Processes one message, keeping it invisible while it is worked on.
    async fn handle(&self, message: QueueMessage) -> Outcome {
        let inner = &self.0;
        metrics::counter!("queue_messages_received_total").increment(1);
        metrics::gauge!("queue_messages_in_flight").increment(1.0);
        let heartbeat = self.keep_invisible(&message);
        let outcome = self.process(&message).await;
        heartbeat.cancel();
        let queue_url = &inner.config.queue_url;
        let settled = match outcome {
            Outcome::Applied | Outcome::NoChange | Outcome::Ended | Outcome::UnknownDropped => {
                inner.queue.delete(queue_url, &message.receipt).await
            }
            Outcome::UnknownKept => {
                inner
                    .queue
                    .extend_visibility(queue_url, &message.receipt, inner.config.retry_after)
                    .await
            }
            Outcome::Malformed => {
                inner
                    .queue
                    .extend_visibility(
                        queue_url,
                        &message.receipt,
                        inner.config.malformed_visibility,
                    )
                    .await
            }
            Outcome::Failed => Ok(()),
        };
        if let Err(e) = settled {
            tracing::warn!(message_id = %message.id, error = %e, "could not settle a status message; it will be redelivered");
        }
        metrics::counter!("queue_messages_processed_total", "outcome" => outcome.label())
            .increment(1);
        metrics::gauge!("queue_messages_in_flight").decrement(1.0);
        outcome
    }

    /// Extends the message's invisibility at half its timeout until cancelled.
    fn keep_invisible(&self, message: &QueueMessage) -> CancellationToken {
        let token = CancellationToken::new();
        let inner = self.0.clone();
        let receipt = message.receipt.clone();
        let stop = token.clone();
        tokio::spawn(async move {
            let every = inner.config.visibility / 2;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => {
                        let _ = inner
                            .queue
                            .extend_visibility(&inner.config.queue_url, &receipt, inner.config.visibility)
                            .await;
                    }
                }
            }
        });
        token
    }

    async fn process(&self, message: &QueueMessage) -> Outcome {
        let inner = &self.0;
        let parsed = match status_message::parse(&message.body) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::error!(
                    message_id = %message.id,
                    body = %status_message::truncate(&message.body, 256),
                    error = %e,
                    "malformed status message; left for the dead-letter queue"
                );
                metrics::counter!("queue_messages_malformed_total").increment(1);
                return Outcome::Malformed;
            }
        };
        let call_ref = message
            .attributes
            .get("callRef")
            .or_else(|| message.attributes.get("Call-Ref"))
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let span = tracing::info_span!(
            "delivery",
            message_id = %message.id,
            request_id = %call_ref,
            robot_id = parsed.robot_id,
            subscription_id = parsed.subscription_id,
        );
        let delivered = Delivered {
            robot_id: parsed.robot_id,
            subscription_id: parsed.subscription_id,
            delivery: parsed.delivery(),
        };
        let applied = inner
            .checks
            .apply_delivery(&delivered, &call_ref)
            .instrument(span)
            .await;
        match applied {
            Ok(DeliveryOutcome::Applied) => Outcome::Applied,
            Ok(DeliveryOutcome::NoChange) => Outcome::NoChange,
            Ok(DeliveryOutcome::Ended) => Outcome::Ended,
            Ok(DeliveryOutcome::UnknownSubscription) => self.unknown_subscription(&parsed).await,
            Ok(DeliveryOutcome::NotAdopted) => Outcome::Failed,
            Err(e) => {
                tracing::warn!(error = %e, "could not apply a delivery; left for redelivery");
                Outcome::Failed
            }
        }
    }

    /// A delivery no check owns: kept for the grace period (its check may still be being
    /// created), then deleted — and its subscription queued for removal, since it would keep
    /// fanning events out to this service's queue for ever.
    async fn unknown_subscription(&self, parsed: &StatusMessage) -> Outcome {
        let inner = &self.0;
        let grace = TimeDelta::from_std(inner.config.unknown_grace).unwrap_or(TimeDelta::MAX);
        if inner.checks.clock().now() < parsed.event.created_at + grace {
            metrics::counter!("queue_unknown_subscription_total", "action" => "kept").increment(1);
            return Outcome::UnknownKept;
        }
        if let Err(e) = inner
            .checks
            .subscription_unowned(parsed.robot_id, parsed.subscription_id)
            .await
        {
            tracing::warn!(error = %e, "could not queue an unowned subscription's removal; delivery left for redelivery");
            return Outcome::Failed;
        }
        tracing::warn!(
            event_id = parsed.event.id,
            "delivery for an unknown subscription after the grace period; deleted, and the \
             subscription queued for removal"
        );
        metrics::counter!("queue_unknown_subscription_total", "action" => "dropped").increment(1);
        Outcome::UnknownDropped
    }
}
