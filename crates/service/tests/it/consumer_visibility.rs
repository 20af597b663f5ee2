//! Received status messages stay invisible while they are still being worked on (SPEC §3.4) —
//! also while they wait for a batch slot: with every slot busy for longer than the visibility
//! timeout, no other receive (another replica's) gets a waiting message. Real SQS (the
//! emulator) and a running consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use status_check::queue::VisibilityChange;
use status_check::queue::{OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest};
use tokio_util::sync::CancellationToken;

use crate::harness::{Backend, Queues, spawn_stack_with, sqs_queues};
use crate::lifecycle::{at, delivery};

/// The queue, but a delete holds its batch's slot for `hold` after it is done: every slot
/// stays busy while later messages wait. Counts what the consumer received and deleted.
struct SlowSettle {
    queue: Arc<dyn Queue>,
    hold: Duration,
    received: AtomicUsize,
    deleted: AtomicUsize,
}

#[async_trait]
impl Queue for SlowSettle {
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let received = self.queue.receive_checked(queue_url, request).await?;
        self.received.fetch_add(received.len(), Ordering::SeqCst);
        Ok(received)
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        self.queue.delete(queue_url, receipt).await?;
        self.deleted.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.hold).await;
        Ok(())
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        self.queue
            .extend_visibility_checked(queue_url, change)
            .await
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        self.queue.send_checked(queue_url, message).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_waiting_for_a_batch_slot_is_not_received_by_another_replica() {
    let Some(sqs) = sqs_queues().await else {
        return;
    };
    let slow = Arc::new(SlowSettle {
        queue: sqs.queue.clone(),
        hold: Duration::from_secs(4),
        received: AtomicUsize::new(0),
        deleted: AtomicUsize::new(0),
    });
    let queues = Queues {
        queue: slow.clone(),
        ..sqs.clone()
    };
    // Two batch slots of two messages (5 permits ÷ 2, at least 2): the fifth message waits
    // for a slot while the first four's settling holds both for 4 s — four times its 1 s
    // visibility.
    let (app, workers) = spawn_stack_with(
        Backend::Sqlite,
        None,
        &queues,
        &[
            ("CONSUMER_VISIBILITY_SECS", "1"),
            ("CONSUMER_CONCURRENCY", "5"),
            ("CONSUMER_BATCH_SIZE", "2"),
        ],
    )
    .await;
    // Deliveries for a subscription nothing here knows, long past their grace: each is
    // deleted as soon as it is looked at.
    for n in 0..5 {
        let body = delivery(
            5151,
            89000 + n,
            7800 + n,
            "CHARGING_STARTED",
            "2026-11-20T07:00:00Z",
        );
        app.megazord_stored(&body).await;
        sqs.queue
            .send(&sqs.status_url, &body, &BTreeMap::new())
            .await
            .unwrap();
    }
    app.clock.set(at("2026-11-20T08:05:00Z"));
    let stop = CancellationToken::new();
    let consumer = workers.consumer.clone().expect("a consumer");
    let running = tokio::spawn(consumer.run(stop.clone(), Duration::from_secs(15)));

    // All five received, the first four deleted: the fifth waits for a slot.
    let deadline = Instant::now() + Duration::from_secs(10);
    while slow.received.load(Ordering::SeqCst) < 5 || slow.deleted.load(Ordering::SeqCst) < 4 {
        assert!(
            Instant::now() < deadline,
            "the consumer never took all five"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        slow.deleted.load(Ordering::SeqCst),
        4,
        "the fifth was not waiting"
    );
    // Another replica's receive, long-polling while the fifth message waits for its slot.
    let others = sqs
        .queue
        .receive(
            &sqs.status_url,
            10,
            Duration::from_secs(3),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    let bodies: Vec<&str> = others.iter().map(|m| m.body.as_str()).collect();
    assert!(bodies.is_empty(), "received by another replica: {bodies:?}");

    // Each message was looked at and deleted: once the consumer has drained, none comes back
    // (one merely hidden would, within its 1 s).
    stop.cancel();
    running.await.unwrap();
    let left = sqs
        .queue
        .receive(
            &sqs.status_url,
            10,
            Duration::from_secs(2),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "{} left on the queue", left.len());
}
