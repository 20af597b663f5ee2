//! An in-process queue service with SQS's delivery semantics, for `status-check dev`, the
//! simulators, tests and benchmarks.
//!
//! - Queues are keyed by URL and created on first use.
//! - `receive` long-polls without spinning: it sleeps on a [`Notify`] that `send` and
//!   visibility changes wake, and on a timer for the earliest in-flight message's expiry.
//! - Order is FIFO by send order among visible messages; a redelivered message keeps its place.
//! - A received, undeleted message becomes visible again when its visibility timeout runs
//!   out; every receive increments its receive count and issues a new receipt.
//! - Receipts: only the latest receipt of a message acts on it. `delete` with an older one
//!   (the message was received again since) is **ignored**: it succeeds and leaves the message
//!   (SQS documents that such a delete "might not" delete it; never deleting makes code that
//!   relies on it fail here first). `delete` of an already deleted message succeeds.
//!   `extend_visibility` with an older receipt, on a deleted message, or after the visibility
//!   ran out fails with [`QueueError::ReceiptInvalid`], like SQS. A receipt that is not one of
//!   ours is `ReceiptInvalid` for both.
//! - All waiting and visibility uses tokio time ([`tokio::time::Instant`]), so tests may pause
//!   and advance it; `sent_at` comes from the injected [`Clock`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange};
use crate::clock::{Clock, SystemClock};

/// In-memory queues. Share it as `Arc<MemoryQueue>` (which also coerces to
/// [`DynQueue`](super::DynQueue)) to keep the inspection methods at hand.
pub struct MemoryQueue {
    queues: Mutex<HashMap<String, Arc<Shared>>>,
    /// Message sequence numbers, unique across all queues of this instance.
    next_seq: AtomicU64,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues = lock(&self.queues);
        f.debug_struct("MemoryQueue")
            .field("queues", &queues.len())
            .finish_non_exhaustive()
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Default)]
struct State {
    /// Every message not yet deleted, by sequence number (send order).
    messages: BTreeMap<u64, Stored>,
    /// Visible messages, in send order.
    ready: BTreeSet<u64>,
    /// Invisible (received) messages by the time they become visible again.
    in_flight: BTreeSet<(Instant, u64)>,
}

struct Stored {
    id: String,
    body: String,
    attributes: BTreeMap<String, String>,
    sent_at: DateTime<Utc>,
    receive_count: u32,
    /// `Some` while in flight.
    invisible_until: Option<Instant>,
}

impl Stored {
    fn message(&self, seq: u64) -> QueueMessage {
        QueueMessage {
            id: self.id.clone(),
            receipt: if self.receive_count == 0 {
                String::new()
            } else {
                receipt(seq, self.receive_count)
            },
            body: self.body.clone(),
            attributes: self.attributes.clone(),
            receive_count: self.receive_count,
            sent_at: Some(self.sent_at),
        }
    }
}

impl State {
    /// Makes every message whose visibility ran out by `now` visible again.
    fn promote(&mut self, now: Instant) {
        while let Some(&(until, seq)) = self.in_flight.first()
            && until <= now
        {
            self.in_flight.pop_first();
            if let Some(stored) = self.messages.get_mut(&seq) {
                stored.invisible_until = None;
                self.ready.insert(seq);
            }
        }
    }

    fn take(&mut self, max: usize, now: Instant, visibility: Duration) -> Vec<QueueMessage> {
        let until = now + visibility;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(seq) = self.ready.pop_first() else {
                break;
            };
            let Some(stored) = self.messages.get_mut(&seq) else {
                continue;
            };
            stored.receive_count = stored.receive_count.saturating_add(1);
            stored.invisible_until = Some(until);
            self.in_flight.insert((until, seq));
            out.push(stored.message(seq));
        }
        out
    }
}

fn receipt(seq: u64, receive_count: u32) -> String {
    format!("mq-{seq}-{receive_count}")
}

fn parse_receipt(receipt: &str) -> Result<(u64, u32), QueueError> {
    receipt
        .strip_prefix("mq-")
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(seq, count)| Some((seq.parse().ok()?, count.parse().ok()?)))
        .ok_or_else(|| QueueError::ReceiptInvalid("not a receipt of this queue".into()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// Stamps `sent_at` from `clock` (e.g. a test's manual clock).
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        MemoryQueue {
            queues: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(1),
            clock,
        }
    }

    fn queue(&self, url: &str) -> Arc<Shared> {
        let mut queues = lock(&self.queues);
        if let Some(q) = queues.get(url) {
            return q.clone();
        }
        let q = Arc::new(Shared::default());
        queues.insert(url.to_owned(), q.clone());
        q
    }

    fn existing(&self, url: &str) -> Option<Arc<Shared>> {
        lock(&self.queues).get(url).cloned()
    }

    /// Every message of the queue not yet deleted (visible and in flight), in send order,
    /// without receiving them. `receipt` is the latest receipt ("" if never received).
    pub fn messages(&self, queue_url: &str) -> Vec<QueueMessage> {
        let Some(q) = self.existing(queue_url) else {
            return Vec::new();
        };
        let state = lock(&q.state);
        state
            .messages
            .iter()
            .map(|(seq, stored)| stored.message(*seq))
            .collect()
    }

    /// How many messages of the queue are not yet deleted (visible and in flight).
    pub fn len(&self, queue_url: &str) -> usize {
        self.existing(queue_url)
            .map_or(0, |q| lock(&q.state).messages.len())
    }

    /// Whether the queue holds no undeleted message.
    pub fn is_empty(&self, queue_url: &str) -> bool {
        self.len(queue_url) == 0
    }

    /// The URLs of the queues used so far, sorted.
    pub fn queue_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = lock(&self.queues).keys().cloned().collect();
        urls.sort();
        urls
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let q = self.queue(queue_url);
        let deadline = Instant::now() + request.wait();
        loop {
            // Registered before looking, so a send between the look and the wait still wakes us.
            let notified = q.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_visible = {
                let mut state = lock(&q.state);
                let now = Instant::now();
                state.promote(now);
                let taken = state.take(request.max(), now, request.visibility());
                if !taken.is_empty() {
                    return Ok(taken);
                }
                state.in_flight.first().map(|(until, _)| *until)
            };
            if Instant::now() >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |until| until.min(deadline));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        let (seq, count) = parse_receipt(receipt)?;
        let Some(q) = self.existing(queue_url) else {
            return Ok(());
        };
        let mut state = lock(&q.state);
        let Some(stored) = state.messages.get(&seq) else {
            return Ok(());
        };
        if stored.receive_count != count {
            // An older receipt: the message was received again since. Ignored (see module doc).
            return Ok(());
        }
        let until = stored.invisible_until;
        state.messages.remove(&seq);
        state.ready.remove(&seq);
        if let Some(until) = until {
            state.in_flight.remove(&(until, seq));
        }
        Ok(())
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        let (receipt, visibility) = (change.receipt(), change.visibility());
        let (seq, count) = parse_receipt(receipt)?;
        let gone = || QueueError::ReceiptInvalid("message was deleted".into());
        let q = self.existing(queue_url).ok_or_else(gone)?;
        {
            let mut state = lock(&q.state);
            let now = Instant::now();
            state.promote(now);
            let stored = state.messages.get_mut(&seq).ok_or_else(gone)?;
            if stored.receive_count != count {
                return Err(QueueError::ReceiptInvalid(
                    "stale receipt: the message was received again".into(),
                ));
            }
            let Some(old) = stored.invisible_until else {
                return Err(QueueError::ReceiptInvalid(
                    "message is not in flight (its visibility timeout ran out)".into(),
                ));
            };
            let until = now + visibility;
            stored.invisible_until = Some(until);
            state.in_flight.remove(&(old, seq));
            state.in_flight.insert((until, seq));
            state.promote(now);
        }
        // Waiting receivers recompute their wake-up time (it may now be earlier).
        q.notify.notify_waiters();
        Ok(())
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        let q = self.queue(queue_url);
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let id = uuid::Uuid::new_v4().to_string();
        {
            let mut state = lock(&q.state);
            state.messages.insert(
                seq,
                Stored {
                    id: id.clone(),
                    body: message.body().to_owned(),
                    attributes: message.attributes().clone(),
                    sent_at: self.clock.now(),
                    receive_count: 0,
                    invisible_until: None,
                },
            );
            state.ready.insert(seq);
        }
        q.notify.notify_waiters();
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "memory://status";

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_receive_is_woken_by_a_send() {
        let q = Arc::new(MemoryQueue::new());
        let receiver = {
            let q = q.clone();
            tokio::spawn(async move { q.receive(URL, 1, secs(20), secs(30)).await })
        };
        tokio::time::sleep(secs(5)).await;
        let started = Instant::now();
        q.send(URL, "hello", &BTreeMap::new()).await.unwrap();
        let got = receiver.await.unwrap().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "hello");
        assert_eq!(
            Instant::now(),
            started,
            "woken by the send, not by the timer"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_receivers_each_get_different_messages() {
        let q = Arc::new(MemoryQueue::new());
        let receivers: Vec<_> = (0..8)
            .map(|_| {
                let q = q.clone();
                tokio::spawn(async move { q.receive(URL, 1, secs(10), secs(60)).await })
            })
            .collect();
        for i in 0..8 {
            q.send(URL, &format!("m{i}"), &BTreeMap::new())
                .await
                .unwrap();
        }
        let mut bodies = BTreeSet::new();
        for r in receivers {
            let got = r.await.unwrap().unwrap();
            assert_eq!(got.len(), 1);
            assert!(
                bodies.insert(got[0].body.clone()),
                "delivered twice: {}",
                got[0].body
            );
        }
        assert_eq!(bodies.len(), 8);
        assert_eq!(q.len(URL), 8, "received, not deleted");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_receive_gets_a_message_whose_visibility_runs_out() {
        let q = MemoryQueue::new();
        q.send(URL, "m", &BTreeMap::new()).await.unwrap();
        let first = q.receive(URL, 1, secs(0), secs(7)).await.unwrap();
        let start = Instant::now();
        let again = q.receive(URL, 1, secs(20), secs(7)).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].id, first[0].id);
        assert_eq!(again[0].receive_count, 2);
        assert_eq!(Instant::now() - start, secs(7));
    }

    #[tokio::test(start_paused = true)]
    async fn stale_receipts() {
        let q = MemoryQueue::new();
        q.send(URL, "m", &BTreeMap::new()).await.unwrap();
        let first = q.receive(URL, 1, secs(0), secs(1)).await.unwrap().remove(0);
        // Visibility ran out: the receipt can no longer extend it (it would still delete it
        // until someone receives the message again: it is still the latest receipt).
        tokio::time::advance(secs(2)).await;
        assert!(matches!(
            q.extend_visibility(URL, &first.receipt, secs(5)).await,
            Err(QueueError::ReceiptInvalid(_))
        ));
        let second = q
            .receive(URL, 1, secs(0), secs(30))
            .await
            .unwrap()
            .remove(0);
        assert_ne!(second.receipt, first.receipt);
        // Received again: the old receipt is ignored by delete and refused by extend.
        q.delete(URL, &first.receipt).await.unwrap();
        assert_eq!(q.len(URL), 1);
        assert!(matches!(
            q.extend_visibility(URL, &first.receipt, secs(5)).await,
            Err(QueueError::ReceiptInvalid(_))
        ));
        q.delete(URL, &second.receipt).await.unwrap();
        assert!(q.is_empty(URL));
        // Deleting again is fine; extending a deleted message is not; garbage is invalid.
        q.delete(URL, &second.receipt).await.unwrap();
        assert!(matches!(
            q.extend_visibility(URL, &second.receipt, secs(5)).await,
            Err(QueueError::ReceiptInvalid(_))
        ));
        assert!(matches!(
            q.delete(URL, "nope").await,
            Err(QueueError::ReceiptInvalid(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn inspection_and_isolation() {
        let clock = Arc::new(crate::clock::ManualClock::new(
            "2026-11-20T08:00:00Z".parse().unwrap(),
        ));
        let q = MemoryQueue::with_clock(clock.clone());
        let attrs: BTreeMap<String, String> = [("callRef".to_string(), "c1".to_string())].into();
        q.send("memory://a", "one", &attrs).await.unwrap();
        q.send("memory://a", "two", &BTreeMap::new()).await.unwrap();
        q.send("memory://b", "three", &BTreeMap::new())
            .await
            .unwrap();
        q.receive("memory://a", 1, secs(0), secs(30)).await.unwrap();
        let a = q.messages("memory://a");
        assert_eq!(
            a.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            ["one", "two"]
        );
        assert_eq!(a[0].receive_count, 1);
        assert!(!a[0].receipt.is_empty());
        assert_eq!(a[0].attributes, attrs);
        assert_eq!(a[0].sent_at, Some(clock.now()));
        assert_eq!(a[1].receipt, "");
        assert_eq!(
            (
                q.len("memory://a"),
                q.len("memory://b"),
                q.len("memory://c")
            ),
            (2, 1, 0)
        );
        assert_eq!(q.queue_urls(), ["memory://a", "memory://b"]);
        // A receipt is only good on its own queue.
        let b = q
            .receive("memory://b", 1, secs(0), secs(30))
            .await
            .unwrap()
            .remove(0);
        q.delete("memory://a", &b.receipt).await.unwrap();
        assert_eq!(q.len("memory://a"), 2);
    }
}
