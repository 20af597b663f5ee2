//! The queue behaviour suite, written once over `DynQueue` and run against both
//! implementations: `queue::memory::*` on the in-memory queue (paused tokio clock, so its
//! waits take no real time) and `queue::sqs::*` on SQS — in practice the moto emulator that
//! `scripts/test` starts and points `TEST_SQS_ENDPOINT` at. Each SQS test makes its own queues.
//!
//! Without `TEST_SQS_ENDPOINT` the SQS tests fail, unless `STATUS_CHECK_TESTS_WITHOUT_SQS=1`
//! (then they print a warning and pass).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sqs::config::{Credentials, Region, SharedCredentialsProvider};
use chrono::Utc;
use status_check::queue::{DynQueue, MemoryQueue, QueueError, SqsQueue};
use tokio::time::Instant;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// One backend, ready to hand out fresh queues.
struct Fixture {
    queue: DynQueue,
    sqs: Option<SqsQueue>,
}

impl Fixture {
    /// A new, empty queue of this backend; `name` only makes failures easier to read.
    async fn new_queue(&self, name: &str) -> String {
        let unique = format!("it-{name}-{}", uuid::Uuid::new_v4().simple());
        match &self.sqs {
            Some(sqs) => sqs.create_queue(&unique).await.expect("create SQS queue"),
            None => format!("memory://{unique}"),
        }
    }
}

fn memory_fixture() -> Fixture {
    Fixture {
        queue: Arc::new(MemoryQueue::new()),
        sqs: None,
    }
}

/// The SQS endpoint under test, `None` when SQS tests are switched off.
fn sqs_endpoint() -> Option<String> {
    if let Ok(endpoint) = std::env::var("TEST_SQS_ENDPOINT")
        && !endpoint.is_empty()
    {
        return Some(endpoint);
    }
    if std::env::var("STATUS_CHECK_TESTS_WITHOUT_SQS").is_ok_and(|v| v == "1") {
        eprintln!("warning: SQS test skipped (STATUS_CHECK_TESTS_WITHOUT_SQS=1)");
        return None;
    }
    panic!(
        "TEST_SQS_ENDPOINT is not set. Run the tests with scripts/test, which starts the moto SQS \
         emulator and sets it (or `source scripts/sqs-emulator && sqs_emulator_up` in your shell \
         first); set STATUS_CHECK_TESTS_WITHOUT_SQS=1 to skip the SQS tests."
    );
}

fn region() -> String {
    std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "us-east-1".into())
}

/// An SQS client for the emulator with dummy static credentials (the emulator accepts any),
/// so these tests don't depend on the machine's AWS setup.
async fn sqs_fixture() -> Option<Fixture> {
    let endpoint = sqs_endpoint()?;
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region()))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "tests",
        )))
        .build();
    let sqs = SqsQueue::from_sdk_config(&sdk, Some(&endpoint));
    Some(Fixture {
        queue: Arc::new(sqs.clone()),
        sqs: Some(sqs),
    })
}

/// Generates `memory::<case>` and `sqs::<case>` tests for each case of the suite.
macro_rules! suite {
    ($($case:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(start_paused = true)]
                async fn $case() {
                    super::$case(super::memory_fixture()).await;
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $case() {
                    if let Some(fixture) = super::sqs_fixture().await {
                        super::$case(fixture).await;
                    }
                }
            )*
        }
    };
}

suite!(
    send_then_receive_returns_body_and_attributes,
    an_empty_queue_returns_nothing_after_the_wait,
    a_waiting_receive_returns_a_message_sent_meanwhile,
    an_undeleted_message_is_redelivered_after_its_visibility_timeout,
    a_deleted_message_is_not_redelivered,
    extend_visibility_keeps_a_message_hidden_and_zero_releases_it,
    batches_hold_up_to_the_requested_number,
    queues_are_separate,
    bad_receipts_and_repeated_deletes,
    invalid_arguments_are_rejected_before_any_request,
);

async fn send_then_receive_returns_body_and_attributes(f: Fixture) {
    let url = f.new_queue("roundtrip").await;
    let body = r#"{"to":{"robotId":"42"},"payload":{"note":"ünïcödé 😀"}}"#;
    let sent_attrs = attrs(&[("callRef", "ref-1"), ("kind", "statusCheck")]);
    let before = Utc::now();
    let id = f.queue.send(&url, body, &sent_attrs).await.unwrap();
    assert!(!id.is_empty());

    let got = f.queue.receive(&url, 10, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert_eq!(m.id, id);
    assert_eq!(m.body, body);
    assert_eq!(m.attributes, sent_attrs);
    assert_eq!(m.receive_count, 1);
    assert!(!m.receipt.is_empty());
    let sent_at = m.sent_at.expect("sent_at");
    let skew = chrono::TimeDelta::seconds(60);
    assert!(
        sent_at >= before - skew && sent_at <= Utc::now() + skew,
        "{sent_at}"
    );

    // Without attributes there are none.
    f.queue.send(&url, "plain", &BTreeMap::new()).await.unwrap();
    let got = f.queue.receive(&url, 10, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "plain");
    assert!(got[0].attributes.is_empty());
}

async fn an_empty_queue_returns_nothing_after_the_wait(f: Fixture) {
    let url = f.new_queue("empty").await;
    let started = Instant::now();
    let got = f.queue.receive(&url, 10, secs(1), secs(30)).await.unwrap();
    assert!(got.is_empty());
    assert!(
        started.elapsed() >= secs(1),
        "returned after {:?}",
        started.elapsed()
    );
    // A zero wait returns at once.
    assert!(
        f.queue
            .receive(&url, 1, Duration::ZERO, secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_waiting_receive_returns_a_message_sent_meanwhile(f: Fixture) {
    let url = f.new_queue("longpoll").await;
    let receiver = {
        let (queue, url) = (f.queue.clone(), url.clone());
        tokio::spawn(async move { queue.receive(&url, 1, secs(10), secs(30)).await })
    };
    // Time for the receive to be waiting — and it must still be: the queue is empty.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!receiver.is_finished(), "the receive did not wait");
    let sent = std::time::Instant::now();
    f.queue.send(&url, "late", &BTreeMap::new()).await.unwrap();
    let got = receiver.await.unwrap().unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "answered at the send, not at the end of its 10 s wait: {:?}",
        sent.elapsed()
    );
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "late");
}

async fn an_undeleted_message_is_redelivered_after_its_visibility_timeout(f: Fixture) {
    let url = f.new_queue("redeliver").await;
    let id = f.queue.send(&url, "again", &BTreeMap::new()).await.unwrap();
    let first = f.queue.receive(&url, 1, secs(1), secs(2)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    // In flight: invisible to others.
    assert!(
        f.queue
            .receive(&url, 1, Duration::ZERO, secs(30))
            .await
            .unwrap()
            .is_empty()
    );

    // Back once the 2 s visibility has run out (the long poll waits for it).
    let second = f.queue.receive(&url, 1, secs(6), secs(30)).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].id, id);
    assert_eq!(second[0].body, "again");
    assert_eq!(second[0].receive_count, 2);
    assert_ne!(
        second[0].receipt, first[0].receipt,
        "a new receipt per receive"
    );

    f.queue.delete(&url, &second[0].receipt).await.unwrap();
    assert!(
        f.queue
            .receive(&url, 1, secs(2), secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_deleted_message_is_not_redelivered(f: Fixture) {
    let url = f.new_queue("deleted").await;
    f.queue.send(&url, "once", &BTreeMap::new()).await.unwrap();
    let got = f.queue.receive(&url, 1, secs(1), secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    f.queue.delete(&url, &got[0].receipt).await.unwrap();
    // Well past the 1 s visibility timeout.
    assert!(
        f.queue
            .receive(&url, 1, secs(3), secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn extend_visibility_keeps_a_message_hidden_and_zero_releases_it(f: Fixture) {
    let url = f.new_queue("extend").await;
    f.queue
        .send(&url, "slow work", &BTreeMap::new())
        .await
        .unwrap();
    let got = f.queue.receive(&url, 1, secs(1), secs(1)).await.unwrap();
    assert_eq!(got.len(), 1);
    f.queue
        .extend_visibility(&url, &got[0].receipt, secs(60))
        .await
        .unwrap();
    // Still hidden well past the original 1 s.
    assert!(
        f.queue
            .receive(&url, 1, secs(3), secs(30))
            .await
            .unwrap()
            .is_empty()
    );

    // Visibility 0 hands it back at once (e.g. on shutdown).
    f.queue
        .extend_visibility(&url, &got[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = f.queue.receive(&url, 1, secs(2), secs(30)).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    f.queue.delete(&url, &again[0].receipt).await.unwrap();
}

async fn batches_hold_up_to_the_requested_number(f: Fixture) {
    let url = f.new_queue("batch").await;
    let sent: BTreeSet<String> = (0..12).map(|i| format!("m{i:02}")).collect();
    for body in &sent {
        f.queue.send(&url, body, &BTreeMap::new()).await.unwrap();
    }
    let small = f.queue.receive(&url, 3, secs(1), secs(60)).await.unwrap();
    assert!((1..=3).contains(&small.len()), "{}", small.len());
    let mut received: Vec<String> = small.into_iter().map(|m| m.body).collect();
    // SQS may return fewer than asked even when more are waiting; poll until all arrived.
    let deadline = Instant::now() + secs(30);
    while received.len() < sent.len() && Instant::now() < deadline {
        let batch = f.queue.receive(&url, 10, secs(1), secs(60)).await.unwrap();
        assert!(batch.len() <= 10);
        received.extend(batch.into_iter().map(|m| m.body));
    }
    let unique: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        received.len(),
        "no message twice while in flight: {received:?}"
    );
    assert_eq!(unique, sent);
}

async fn queues_are_separate(f: Fixture) {
    let a = f.new_queue("sep-a").await;
    let b = f.new_queue("sep-b").await;
    f.queue.send(&a, "for a", &BTreeMap::new()).await.unwrap();
    assert!(
        f.queue
            .receive(&b, 10, Duration::ZERO, secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let got = f.queue.receive(&a, 10, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "for a");
}

async fn bad_receipts_and_repeated_deletes(f: Fixture) {
    let url = f.new_queue("receipts").await;
    for err in [
        f.queue.delete(&url, "not-a-receipt").await.unwrap_err(),
        f.queue
            .extend_visibility(&url, "not-a-receipt", secs(5))
            .await
            .unwrap_err(),
    ] {
        assert!(matches!(err, QueueError::ReceiptInvalid(_)), "{err:?}");
        assert!(!err.is_transient());
    }
    f.queue.send(&url, "x", &BTreeMap::new()).await.unwrap();
    let got = f.queue.receive(&url, 1, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    f.queue.delete(&url, &got[0].receipt).await.unwrap();
    // Deleting twice (e.g. a retried delete) is fine.
    f.queue.delete(&url, &got[0].receipt).await.unwrap();
}

async fn invalid_arguments_are_rejected_before_any_request(f: Fixture) {
    let url = f.new_queue("invalid").await;
    let q = &f.queue;
    fn rejected<T>(r: Result<T, QueueError>) -> bool {
        matches!(r, Err(QueueError::Rejected(_)))
    }
    assert!(rejected(q.receive(&url, 0, secs(1), secs(1)).await));
    assert!(rejected(q.receive(&url, 11, secs(1), secs(1)).await));
    assert!(rejected(q.receive(&url, 1, secs(21), secs(1)).await));
    assert!(rejected(q.send(&url, "", &BTreeMap::new()).await));
    assert!(rejected(
        q.send(&url, "x", &attrs(&[("callRef", "")])).await
    ));
    let eleven: BTreeMap<String, String> = (0..11).map(|i| (format!("a{i}"), "v".into())).collect();
    assert!(rejected(q.send(&url, "x", &eleven).await));
    // Ten attributes are fine.
    let ten: BTreeMap<String, String> = (0..10).map(|i| (format!("a{i}"), "v".into())).collect();
    q.send(&url, "x", &ten).await.unwrap();
    let got = q.receive(&url, 1, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].attributes, ten);
}

/// The production constructor: region from its argument, credentials from the default chain
/// (`scripts/sqs-emulator` exports dummy ones), custom endpoint.
#[tokio::test]
async fn sqs_new_uses_the_default_credential_chain_and_the_endpoint() {
    let Some(endpoint) = sqs_endpoint() else {
        return;
    };
    assert!(
        std::env::var("AWS_ACCESS_KEY_ID").is_ok(),
        "needs AWS credentials in the environment (scripts/sqs-emulator exports dummy ones)"
    );
    let sqs = SqsQueue::new(region(), Some(endpoint)).await;
    let url = sqs
        .create_queue(&format!("it-new-{}", uuid::Uuid::new_v4().simple()))
        .await
        .unwrap();
    let q: DynQueue = Arc::new(sqs);
    q.send(&url, "hello", &attrs(&[("callRef", "c")]))
        .await
        .unwrap();
    let got = q.receive(&url, 1, secs(1), secs(30)).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "hello");
}

/// A queue that does not exist is a permanent error, not a transient one.
#[tokio::test]
async fn sqs_unknown_queue_is_rejected() {
    let Some(f) = sqs_fixture().await else { return };
    let endpoint = sqs_endpoint().unwrap();
    let url = format!(
        "{endpoint}/000000000000/it-missing-{}",
        uuid::Uuid::new_v4().simple()
    );
    let err = f.queue.send(&url, "x", &BTreeMap::new()).await.unwrap_err();
    assert!(matches!(err, QueueError::Rejected(_)), "{err:?}");
    let err = f
        .queue
        .receive(&url, 1, Duration::ZERO, secs(1))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Rejected(_)), "{err:?}");
}
