//! Keeping received status messages invisible while they are still being worked on (SPEC
//! §3.4): from the receive, while a message waits for a batch slot, and while its batch runs —
//! so no other replica receives it meanwhile, and no receive counts it towards the queue's
//! `maxReceiveCount` before its verdict. No extension lands after a message was settled: it
//! would undo the settling's own hiding (a malformed message's 5 min, a kept one's grace).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::queue::Queue;

/// What the heartbeats need: the queue, and how long a message stays hidden.
#[derive(Clone)]
pub(super) struct Hiding {
    pub queue: Arc<dyn Queue>,
    pub queue_url: String,
    /// The visibility a receive and each extension give.
    pub visibility: Duration,
}

impl Hiding {
    /// Extends the invisibility of `receipts`, each to `visibility` from now, all at once; a
    /// failure is left to the next beat (the message may come back once: the outcome is the
    /// same).
    async fn extend<'a>(&self, receipts: impl IntoIterator<Item = &'a String>) {
        join_all(receipts.into_iter().map(|receipt| {
            self.queue
                .extend_visibility(&self.queue_url, receipt, self.visibility)
        }))
        .await;
    }

    /// Keeps the messages of one batch invisible at half their timeout until stopped — when
    /// the batch settles them — or dropped (its task ended another way, a panic).
    pub(super) fn keep_batch_invisible(&self, receipts: Vec<String>) -> BatchHeartbeat {
        let token = CancellationToken::new();
        let stop = token.clone();
        let hiding = self.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(hiding.visibility / 2) => {}
                }
                // Not cut off midway by a stop: `stop` waits for it to end.
                hiding.extend(&receipts).await;
            }
        });
        BatchHeartbeat {
            guard: Some(token.drop_guard()),
            task,
        }
    }
}

/// The heartbeat of one batch.
pub(super) struct BatchHeartbeat {
    guard: Option<DropGuard>,
    task: JoinHandle<()>,
}

impl BatchHeartbeat {
    /// Stops beating and waits for a beat under way, so that none lands after the batch's
    /// messages are settled.
    pub(super) async fn stop(mut self) {
        drop(self.guard.take());
        let _ = (&mut self.task).await;
    }
}

/// The received messages waiting for a batch slot (by receipt). While every slot is busy — a
/// batch applied one delivery at a time after its transaction failed, a slow confirming read
/// — they may wait longer than their visibility.
#[derive(Clone, Default)]
pub(super) struct Waiting(Arc<Mutex<HashSet<String>>>);

impl Waiting {
    pub(super) async fn add(&self, receipt: &str) {
        self.0.lock().await.insert(receipt.to_owned());
    }

    /// The message's batch starts: its own heartbeat takes over. Waits for a beat under way
    /// (one round of extensions), so that none lands after the batch settles the message.
    pub(super) async fn remove(&self, receipt: &str) {
        self.0.lock().await.remove(receipt);
    }

    /// Extends every waiting message's invisibility a third of its timeout after the last
    /// (so one that waited has more than half of it left when its batch starts, whose first
    /// beat comes after half), until `stop`.
    pub(super) async fn keep_invisible(self, hiding: Hiding, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(hiding.visibility / 3) => {}
            }
            let waiting = self.0.lock().await;
            hiding.extend(waiting.iter()).await;
        }
    }
}
