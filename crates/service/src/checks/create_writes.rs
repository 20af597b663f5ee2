//! Creates' writes, grouped (SPEC §10): a create hands its new check over and waits; whoever
//! finds the writer free writes everything waiting — up to a bound — in one transaction
//! (group commit). Alone, a create is written at once; under load, creates that arrive
//! together share a commit. A batch the database refuses is written again check by check, so
//! one create's failure is its own.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::store::{Created, DynStore, NewCheck, StoreError};

/// Most creates written in one transaction.
const MAX_BATCH: usize = 64;

type Waiting = (NewCheck, oneshot::Sender<Result<Created, StoreError>>);

/// The queue of creates waiting to be written, and the one writer.
#[derive(Default)]
pub(super) struct CreateWrites {
    waiting: Mutex<Vec<Waiting>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl CreateWrites {
    /// Writes `check` — with whatever other creates are waiting — and returns what the store
    /// made of it.
    pub(super) async fn write(
        &self,
        store: &DynStore,
        check: NewCheck,
    ) -> Result<Created, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.waiting
            .lock()
            .expect("the create queue is never poisoned")
            .push((check, reply));
        let writer = self.writer.clone().lock_owned().await;
        let batch: Vec<Waiting> = {
            let mut waiting = self
                .waiting
                .lock()
                .expect("the create queue is never poisoned");
            let take = waiting.len().min(MAX_BATCH);
            waiting.drain(..take).collect()
        };
        if !batch.is_empty() {
            let store = store.clone();
            // Spawned, so that a request that goes away (its client left, its timeout hit)
            // does not take its batch-mates' write with it.
            let _ = tokio::spawn(async move {
                let _writer = writer;
                write_batch(&store, batch).await;
            })
            .await;
        }
        // Ours was in this batch or in an earlier writer's; a later one takes it otherwise
        // (every waiting create's owner queues for the writer).
        answer.await.unwrap_or_else(|_| {
            Err(StoreError::Conflict(
                "the grouped write of this create was abandoned".to_owned(),
            ))
        })
    }
}

async fn write_batch(store: &DynStore, batch: Vec<Waiting>) {
    metrics::histogram!("create_batch_size").record(batch.len() as f64);
    if batch.len() == 1 {
        let (check, reply) = batch.into_iter().next().expect("one create");
        let _ = reply.send(store.create_check(check).await);
        return;
    }
    let (checks, replies): (Vec<NewCheck>, Vec<_>) = batch.into_iter().unzip();
    match store.create_checks(&checks).await {
        Ok(created) => {
            for (reply, created) in replies.into_iter().zip(created) {
                let _ = reply.send(Ok(created));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, creates = checks.len(), "a batch of creates could not be written; each is written alone");
            metrics::counter!("create_batches_split_total").increment(1);
            for (check, reply) in checks.into_iter().zip(replies) {
                let _ = reply.send(store.create_check(check).await);
            }
        }
    }
}
