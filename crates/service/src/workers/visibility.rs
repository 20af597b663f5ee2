//! Keeping received status messages invisible while they are still being worked on (SPEC
//! §3.4): from the receive, while a message waits for a batch slot, and while its batch runs —
//! so no other replica receives it meanwhile, and no receive counts it towards the queue's
//! `maxReceiveCount` before its verdict.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// Extends the invisibility of `receipts`, each to `visibility` from now; a failure is
    /// left to the next beat (the message may come back once: the outcome is the same).
    async fn extend(&self, receipts: &[String]) {
        for receipt in receipts {
            let _ = self
                .queue
                .extend_visibility(&self.queue_url, receipt, self.visibility)
                .await;
        }
    }

    /// Keeps the messages of one batch invisible at half their timeout until the guard is
    /// dropped — when the batch settles them, or when its task ends another way (a panic).
    pub(super) fn keep_batch_invisible(&self, receipts: Vec<String>) -> DropGuard {
        let token = CancellationToken::new();
        let stop = token.clone();
        let hiding = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(hiding.visibility / 2) => hiding.extend(&receipts).await,
                }
            }
        });
        token.drop_guard()
    }
}

/// The received messages waiting for a batch slot (by receipt). While every slot is busy — a
/// batch applied one delivery at a time after its transaction failed, a slow confirming read
/// — they may wait longer than their visibility.
#[derive(Clone, Default)]
pub(super) struct Waiting(Arc<Mutex<HashSet<String>>>);

impl Waiting {
    pub(super) fn add(&self, receipt: &str) {
        self.lock().insert(receipt.to_owned());
    }

    /// The message's batch starts: its own heartbeat takes over.
    pub(super) fn remove(&self, receipt: &str) {
        self.lock().remove(receipt);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Extends every waiting message's invisibility a third of its timeout after the last
    /// (so one that waited still has more than half of it left when its batch starts, whose
    /// first beat comes after half), until `stop`.
    pub(super) async fn keep_invisible(self, hiding: Hiding, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(hiding.visibility / 3) => {}
            }
            let receipts: Vec<String> = self.lock().iter().cloned().collect();
            hiding.extend(&receipts).await;
        }
    }
}
