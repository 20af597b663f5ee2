//! The status-queue consumer (SPEC §3.4): each Megazord delivery re-evaluates its check's
//! future rules, in one transaction under the check's row lock; the message is deleted only
//! after that commit. Redelivery, duplicates and reordering change nothing (the engine skips
//! events already recorded, and rules see events sorted by time). In-flight work is bounded:
//! when every permit is taken the consumer stops receiving.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use futures_util::FutureExt as _;
use futures_util::future::join_all;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::Config;
use crate::deliveries::{
    Delivered, Deliveries, DeliveryError, DeliveryOutcome, UnknownDelivery, UnknownSubscription,
};
use crate::queue::{MAX_RECEIVE_BATCH, MAX_VISIBILITY, Queue, QueueMessage};
use crate::readiness::Readiness;
use crate::status_message::{self, StatusMessage};

use super::visibility::{Hiding, Waiting};

/// How the consumer behaves.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub queue_url: String,
    /// Which queue this is, in metrics and readiness: [`STATUS_QUEUE`] (the status queue
    /// that checks' subscriptions deliver to) or [`MONITORS_QUEUE`] (monitors' own queue,
    /// `MONITORS_QUEUE_SUFFIX`).
    pub queue_label: &'static str,
    /// Long-poll wait of one receive.
    pub wait: Duration,
    /// Invisibility of a received message; extended while it is worked on.
    pub visibility: Duration,
    /// Most messages in flight at once.
    pub concurrency: usize,
    /// Most deliveries applied in one transaction.
    pub batch: usize,
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
            queue_label: STATUS_QUEUE,
            wait: config.consumer_wait,
            visibility: config.consumer_visibility,
            concurrency: config.consumer_concurrency,
            batch: config.consumer_batch_size.max(1),
            unknown_grace: config.unknown_subscription_grace,
            retry_after: Duration::from_secs(5),
            malformed_visibility: Duration::from_secs(300),
        }
    }
}

/// The label of the status queue (`STATUS_QUEUE_ADDRESS`).
pub const STATUS_QUEUE: &str = "status";
/// The label of the monitors' queue (`${STATUS_QUEUE_ADDRESS}-${MONITORS_QUEUE_SUFFIX}`).
pub const MONITORS_QUEUE: &str = "monitors";

impl ConsumerConfig {
    /// The consumer of the monitors' own queue: the status queue's address with `-{suffix}`
    /// (where Megazord routes a subscription made with `"queue": suffix`), otherwise
    /// configured like the status queue's.
    pub fn monitors_queue(status_queue_url: &str, suffix: &str, config: &Config) -> Self {
        ConsumerConfig {
            queue_label: MONITORS_QUEUE,
            ..ConsumerConfig::from_config(format!("{status_queue_url}-{suffix}"), config)
        }
    }

    /// Batches worked on at once: one being written while the next is read and decided,
    /// more when the permits allow several full batches.
    fn batches_in_flight(&self) -> usize {
        (self.concurrency / self.batch.max(1)).max(2)
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
    /// Where each delivery goes (its check, or a monitor session).
    deliveries: Arc<Deliveries>,
    config: ConsumerConfig,
    permits: Arc<Semaphore>,
    /// Told whether each receive worked: receives failing for long make the replica unready.
    readiness: Arc<Readiness>,
    /// Keeps received messages invisible while they are worked on.
    hiding: Hiding,
}

/// The consumer; cheap to clone.
#[derive(Clone)]
pub struct Consumer(Arc<Inner>);

impl Consumer {
    pub fn new(
        queue: Arc<dyn Queue>,
        deliveries: Arc<Deliveries>,
        config: ConsumerConfig,
        readiness: Arc<Readiness>,
    ) -> Self {
        let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let hiding = Hiding {
            queue: queue.clone(),
            queue_url: config.queue_url.clone(),
            visibility: config.visibility,
        };
        Consumer(Arc::new(Inner {
            queue,
            deliveries,
            config,
            permits,
            readiness,
            hiding,
        }))
    }

    /// Which queue this consumes ([`STATUS_QUEUE`] or [`MONITORS_QUEUE`]).
    pub fn queue_label(&self) -> &'static str {
        self.0.config.queue_label
    }

    /// Receives once (as many as there are free permits, at most 10) and processes what came
    /// as one batch, to the end. Returns what became of each message.
    pub async fn tick_once(&self) -> Vec<Outcome> {
        let inner = &self.0;
        let room = inner
            .permits
            .available_permits()
            .min(inner.config.batch)
            .clamp(1, MAX_RECEIVE_BATCH);
        match self.receive(room).await {
            Some(messages) => self.handle_batch(messages).await,
            None => Vec::new(),
        }
    }

    /// One receive; `None` when it failed (logged, counted, and told to readiness).
    async fn receive(&self, max: usize) -> Option<Vec<QueueMessage>> {
        let inner = &self.0;
        let received = inner
            .queue
            .receive(
                &inner.config.queue_url,
                max,
                inner.config.wait,
                inner.config.visibility,
            )
            .await;
        let queue = inner.config.queue_label;
        inner.readiness.receive_done(queue, received.is_ok());
        match received {
            Ok(messages) => Some(messages),
            Err(e) => {
                tracing::warn!(queue, error = %e, "queue receive failed");
                metrics::counter!("queue_receive_errors_total", "queue" => queue).increment(1);
                None
            }
        }
    }

    /// Receives and processes until `shutdown`, then stops receiving and lets the messages in
    /// flight finish (a message not finished in time is simply redelivered later).
    ///
    /// Group commit: received messages wait in a channel; whenever one of the few batch slots
    /// is free, everything waiting (up to the batch size) becomes one batch, written in one
    /// transaction. Under load batches fill up; when the queue is quiet a message is applied
    /// at once, alone. A message waiting for a slot is kept invisible meanwhile.
    pub async fn run(self, shutdown: CancellationToken, drain: Duration) {
        let inner = self.0.clone();
        let tracker = TaskTracker::new();
        let (to_batcher, mut arrived) =
            mpsc::unbounded_channel::<(QueueMessage, OwnedSemaphorePermit)>();
        let waiting = Waiting::default();
        let keeper_stop = CancellationToken::new();
        let keeper = tokio::spawn(
            waiting
                .clone()
                .keep_invisible(inner.hiding.clone(), keeper_stop.clone()),
        );
        let batcher = {
            let consumer = self.clone();
            let tracker = tracker.clone();
            let waiting = waiting.clone();
            let slots = Arc::new(Semaphore::new(inner.config.batches_in_flight()));
            tokio::spawn(async move {
                while let Some(first) = arrived.recv().await {
                    let Ok(slot) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let mut batch = vec![first];
                    while batch.len() < consumer.0.config.batch {
                        match arrived.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    for (message, _) in &batch {
                        waiting.remove(&message.receipt).await;
                    }
                    let consumer = consumer.clone();
                    tracker.spawn(async move {
                        let (messages, permits): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                        let count = messages.len();
                        // A batch that panics (a bug, or a poison message) leaves its messages
                        // for redelivery (then the dead-letter queue); said and counted here,
                        // the consumer goes on with the next.
                        let handled = AssertUnwindSafe(consumer.handle_batch(messages))
                            .catch_unwind()
                            .await;
                        if handled.is_err() {
                            tracing::error!(
                                count,
                                "a batch of deliveries panicked; its messages will be redelivered"
                            );
                            metrics::counter!("worker_failures_total", "worker" => "consumer_batch")
                                .increment(1);
                        }
                        drop((permits, slot));
                    });
                }
            })
        };
        'receiving: while !shutdown.is_cancelled() {
            // Backpressure: wait for a free permit before asking the queue for more.
            let first = tokio::select! {
                permit = inner.permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = shutdown.cancelled() => break,
            };
            let room = (inner.permits.available_permits() + 1).min(MAX_RECEIVE_BATCH);
            let received = tokio::select! {
                received = self.receive(room) => received,
                () = shutdown.cancelled() => break,
            };
            let Some(messages) = received else {
                drop(first);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {},
                    () = shutdown.cancelled() => break,
                }
                continue;
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
                waiting.add(&message.receipt).await;
                if to_batcher.send((message, permit)).is_err() {
                    // The batcher is gone (it cannot end otherwise): stop, so that the
                    // supervisor sees a consumer that stopped working.
                    tracing::error!("the consumer's batcher stopped; the consumer stops");
                    break 'receiving;
                }
            }
        }
        drop(to_batcher);
        let drained = tokio::time::timeout(drain, async {
            batcher.await.ok();
            tracker.close();
            tracker.wait().await;
        })
        .await;
        if drained.is_err() {
            tracing::warn!("consumer drain timed out; unfinished messages will be redelivered");
        }
        keeper_stop.cancel();
        keeper.await.ok();
    }

    /// Processes a batch of messages — their deliveries applied in one transaction — keeping
    /// them invisible while they are worked on, and settles each.
    async fn handle_batch(&self, messages: Vec<QueueMessage>) -> Vec<Outcome> {
        let inner = &self.0;
        let count = messages.len() as u64;
        let queue = inner.config.queue_label;
        metrics::counter!("queue_messages_received_total", "queue" => queue).increment(count);
        metrics::gauge!("queue_messages_in_flight", "queue" => queue).increment(count as f64);
        let heartbeat = inner
            .hiding
            .keep_batch_invisible(messages.iter().map(|m| m.receipt.clone()).collect());
        let parsed: Vec<Result<Parsed, Outcome>> = messages.iter().map(parse).collect();
        let deliveries: Vec<(Delivered, String)> = parsed
            .iter()
            .filter_map(|parsed| parsed.as_ref().ok())
            .map(|parsed| (parsed.delivered.clone(), parsed.call_ref.clone()))
            .collect();
        let span = tracing::info_span!("deliveries", count = deliveries.len());
        let mut applied = inner
            .deliveries
            .apply(&deliveries)
            .instrument(span)
            .await
            .into_iter();
        let mut outcomes = Vec::with_capacity(messages.len());
        for (message, parsed) in messages.iter().zip(&parsed) {
            let outcome = match parsed {
                Err(outcome) => *outcome,
                Ok(parsed) => {
                    let applied = applied.next().expect("one outcome per delivery");
                    self.outcome_of(message, parsed, applied).await
                }
            };
            outcomes.push(outcome);
        }
        heartbeat.stop().await;
        join_all(
            messages
                .iter()
                .zip(&outcomes)
                .map(|(message, outcome)| self.settle(message, *outcome)),
        )
        .await;
        for outcome in &outcomes {
            metrics::counter!(
                "queue_messages_processed_total",
                "queue" => queue,
                "outcome" => outcome.label()
            )
            .increment(1);
        }
        metrics::gauge!("queue_messages_in_flight", "queue" => queue).decrement(count as f64);
        outcomes
    }

    /// Deletes the message, or hides it for a while, as its outcome says.
    async fn settle(&self, message: &QueueMessage, outcome: Outcome) {
        let inner = &self.0;
        let queue_url = &inner.config.queue_url;
        let settled = match outcome {
            Outcome::Applied | Outcome::NoChange | Outcome::Ended | Outcome::UnknownDropped => {
                inner.queue.delete(queue_url, &message.receipt).await
            }
            // Back soon the first time (its check's create may be committing); after that,
            // once the grace period is over: every receive counts towards the queue's
            // `maxReceiveCount`, and a message moved to the dead-letter queue before its
            // verdict would never be logged, counted, or have its subscription recognised.
            Outcome::UnknownKept => {
                let hide = if message.receive_count <= 1 {
                    inner.config.retry_after
                } else {
                    inner.config.unknown_grace.max(inner.config.retry_after)
                };
                inner
                    .queue
                    .extend_visibility(queue_url, &message.receipt, hide.min(MAX_VISIBILITY))
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
    }

    /// What applying a delivery came to, as the message's outcome.
    async fn outcome_of(
        &self,
        message: &QueueMessage,
        parsed: &Parsed,
        applied: Result<DeliveryOutcome, DeliveryError>,
    ) -> Outcome {
        match applied {
            Ok(DeliveryOutcome::Applied) => Outcome::Applied,
            Ok(DeliveryOutcome::NoChange) => Outcome::NoChange,
            Ok(DeliveryOutcome::Ended) => self.ended(&parsed.message).await,
            Ok(DeliveryOutcome::UnknownSubscription) => {
                self.unknown_subscription(&parsed.message).await
            }
            Ok(DeliveryOutcome::NotAdopted) => Outcome::Failed,
            Err(e) => {
                tracing::warn!(
                    message_id = %message.id,
                    request_id = %parsed.call_ref,
                    robot_id = parsed.message.robot_id,
                    subscription_id = parsed.message.subscription_id,
                    error = %e,
                    "could not apply a delivery; left for redelivery"
                );
                Outcome::Failed
            }
        }
    }

    /// Whether the grace period after the delivery's event is over.
    fn past_grace(&self, parsed: &StatusMessage) -> bool {
        let grace = TimeDelta::from_std(self.0.config.unknown_grace).unwrap_or(TimeDelta::MAX);
        self.0.deliveries.clock().now() >= parsed.event.created_at + grace
    }

    /// A delivery for an ended check: deleted. One that still comes past the grace period
    /// means the subscription was never removed (the Node service's, say): queued for removal.
    async fn ended(&self, parsed: &StatusMessage) -> Outcome {
        if self.past_grace(parsed)
            && let Err(e) = self
                .0
                .deliveries
                .ended_subscription_delivering(parsed.robot_id, parsed.subscription_id)
                .await
        {
            tracing::warn!(subscription_id = parsed.subscription_id, error = %e, "could not queue an ended check's subscription for removal; delivery left for redelivery");
            return Outcome::Failed;
        }
        Outcome::Ended
    }

    /// A delivery no check or monitor session owns: kept for the grace period (its check may
    /// still be being created), then deleted. Its subscription is removed only when it is
    /// this service's (a subscribe whose answer was lost); one nothing here knows may be
    /// another service's, on a queue shared by mistake, and is never removed (SPEC §13).
    async fn unknown_subscription(&self, parsed: &StatusMessage) -> Outcome {
        let inner = &self.0;
        if !self.past_grace(parsed) {
            metrics::counter!("queue_unknown_subscription_total", "action" => "kept").increment(1);
            return Outcome::UnknownKept;
        }
        let verdict = inner
            .deliveries
            .unknown_subscription(
                UnknownDelivery {
                    robot_id: parsed.robot_id,
                    subscription_id: parsed.subscription_id,
                    event_name: &parsed.event.name,
                    event_created_at: parsed.event.created_at,
                },
                inner.config.unknown_grace,
            )
            .await;
        let (action, note) = match verdict {
            Err(e) => {
                tracing::warn!(subscription_id = parsed.subscription_id, error = %e, "could not look up an unknown subscription; delivery left for redelivery");
                return Outcome::Failed;
            }
            Ok(UnknownSubscription::LostAnswer { intent }) => (
                "removed_lost_answer",
                format!(
                    "a subscribe of this service whose answer was lost (record {intent}); \
                     deleted, and the subscription queued for removal"
                ),
            ),
            Ok(UnknownSubscription::AlreadyRemoved) => (
                "dropped_removal_queued",
                "its removal is queued already; deleted".to_owned(),
            ),
            Ok(UnknownSubscription::Foreign) => (
                "dropped_foreign",
                "nothing here knows it, after the grace period; deleted, the subscription left \
                 alone (it may be another service's: is the queue shared?)"
                    .to_owned(),
            ),
        };
        tracing::warn!(
            robot_id = parsed.robot_id,
            subscription_id = parsed.subscription_id,
            event_id = parsed.event.id,
            event_name = %parsed.event.name,
            queue = inner.config.queue_label,
            action,
            "delivery for an unknown subscription: {note}"
        );
        metrics::counter!("queue_unknown_subscription_total", "action" => action).increment(1);
        Outcome::UnknownDropped
    }
}

/// A well-formed status message.
struct Parsed {
    message: StatusMessage,
    delivered: Delivered,
    /// The request id it came with (or a new one).
    call_ref: String,
}

/// The message's delivery, or `Malformed` (logged and counted).
fn parse(message: &QueueMessage) -> Result<Parsed, Outcome> {
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
            return Err(Outcome::Malformed);
        }
    };
    let call_ref = message
        .attributes
        .get("callRef")
        .or_else(|| message.attributes.get("Call-Ref"))
        .cloned()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    Ok(Parsed {
        delivered: Delivered {
            robot_id: parsed.robot_id,
            subscription_id: parsed.subscription_id,
            delivery: parsed.delivery(),
        },
        message: parsed,
        call_ref,
    })
}
