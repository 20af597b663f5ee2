//! The queues the service talks to: the status queue (Megazord → us, §3.4) and the robots'
//! queues (us → robots, §3.7), behind one narrow trait with two implementations:
//!
//! - [`SqsQueue`]: AWS SQS (or an emulator at a custom endpoint), with explicit timeouts;
//! - [`MemoryQueue`]: in-process, for `status-check dev`, simulators, tests and benchmarks.
//!
//! The trait checks every call's arguments once, before an implementation sees them (the SQS
//! limits, see [`MAX_RECEIVE_BATCH`], [`MAX_WAIT`], [`MAX_VISIBILITY`], [`MAX_ATTRIBUTES`]), so
//! code that works on the memory queue does not get `Rejected` by SQS for a malformed request.
//! One behaviour suite (`tests/it/queue.rs`) runs against both.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub mod memory;
pub mod sqs;

pub use memory::MemoryQueue;
pub use sqs::SqsQueue;

/// Most messages one `receive` may return (the SQS limit).
pub const MAX_RECEIVE_BATCH: usize = 10;
/// Longest long-poll wait (the SQS limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// Longest visibility timeout (the SQS limit: 12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Most message attributes on one message (the SQS limit).
pub const MAX_ATTRIBUTES: usize = 10;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    /// The queue's id of the message (stable across redeliveries).
    pub id: String,
    /// The handle to delete the message or change its visibility; new on every receive.
    pub receipt: String,
    pub body: String,
    /// String (and number) message attributes; binary attributes are left out.
    pub attributes: BTreeMap<String, String>,
    /// How many times the message has been received, this time included (1 on first delivery).
    pub receive_count: u32,
    /// When the queue accepted the message, if it says.
    pub sent_at: Option<DateTime<Utc>>,
}

/// Why a queue call failed. The reason is short and safe to log (no credentials, no bodies).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// Transient: network, timeout, throttling, a 5xx. Try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// Permanent for this request: no such queue, access denied, invalid arguments.
    #[error("queue request rejected: {0}")]
    Rejected(String),
    /// The receipt is malformed, or its message is no longer in flight under it (it was
    /// deleted, or its visibility ran out). The message may be delivered again.
    #[error("invalid receipt: {0}")]
    ReceiptInvalid(String),
}

impl QueueError {
    /// Whether the same call may succeed if retried later.
    pub fn is_transient(&self) -> bool {
        matches!(self, QueueError::Unavailable(_))
    }
}

/// What one `receive` asks for, within the SQS limits (the only way to make one is
/// [`ReceiveRequest::new`], which checks them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveRequest {
    max: usize,
    wait: Duration,
    visibility: Duration,
}

impl ReceiveRequest {
    /// Up to `max` (1..=[`MAX_RECEIVE_BATCH`]) messages, waiting up to `wait` (≤ [`MAX_WAIT`]),
    /// invisible to others for `visibility` (≤ [`MAX_VISIBILITY`]); `Rejected` otherwise.
    pub fn new(max: usize, wait: Duration, visibility: Duration) -> Result<Self, QueueError> {
        if !(1..=MAX_RECEIVE_BATCH).contains(&max) {
            return Err(QueueError::Rejected(format!(
                "max messages must be 1..={MAX_RECEIVE_BATCH}, got {max}"
            )));
        }
        if wait > MAX_WAIT {
            return Err(QueueError::Rejected(format!(
                "wait must be at most {}s, got {wait:?}",
                MAX_WAIT.as_secs()
            )));
        }
        check_visibility(visibility)?;
        Ok(ReceiveRequest {
            max,
            wait,
            visibility,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn wait(&self) -> Duration {
        self.wait
    }

    pub fn visibility(&self) -> Duration {
        self.visibility
    }
}

/// A change of a received message's invisibility (the only way to make one is
/// [`VisibilityChange::new`], which checks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VisibilityChange<'a> {
    receipt: &'a str,
    visibility: Duration,
}

impl<'a> VisibilityChange<'a> {
    /// The message received with `receipt` invisible for `visibility` from now
    /// (≤ [`MAX_VISIBILITY`]); `Rejected` otherwise.
    pub fn new(receipt: &'a str, visibility: Duration) -> Result<Self, QueueError> {
        check_visibility(visibility)?;
        Ok(VisibilityChange {
            receipt,
            visibility,
        })
    }

    pub fn receipt(&self) -> &'a str {
        self.receipt
    }

    pub fn visibility(&self) -> Duration {
        self.visibility
    }
}

/// A message to send: a body and string attributes SQS accepts (the only way to make one is
/// [`OutgoingMessage::new`], which checks them; the size limit is left to the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutgoingMessage<'a> {
    body: &'a str,
    attributes: &'a BTreeMap<String, String>,
}

impl<'a> OutgoingMessage<'a> {
    /// `Rejected` for an empty body, more than [`MAX_ATTRIBUTES`] attributes, an attribute
    /// name SQS refuses, an empty attribute value, or a character SQS does not allow.
    pub fn new(
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> Result<Self, QueueError> {
        check_send(body, attributes)?;
        Ok(OutgoingMessage { body, attributes })
    }

    pub fn body(&self) -> &'a str {
        self.body
    }

    pub fn attributes(&self) -> &'a BTreeMap<String, String> {
        self.attributes
    }
}

/// A queue service holding many queues, addressed by URL.
///
/// Callers use `receive`, `delete`, `extend_visibility` and `send`; the first, third and
/// fourth check their arguments here and pass them on to the `*_checked` methods, which are
/// what an implementation provides (and does not check again).
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Up to `max` (1..=[`MAX_RECEIVE_BATCH`]) messages, waiting up to `wait`
    /// (≤ [`MAX_WAIT`]) for the first one (long poll); returns empty when none came in time.
    /// Received messages are invisible to other receivers for `visibility`
    /// (≤ [`MAX_VISIBILITY`]) unless deleted or changed first. SQS counts both durations in
    /// whole seconds, rounded up.
    async fn receive(
        &self,
        queue_url: &str,
        max: usize,
        wait: Duration,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let request = ReceiveRequest::new(max, wait, visibility)?;
        self.receive_checked(queue_url, request).await
    }

    /// Deletes a received message. Deleting an already deleted message is not an error. A
    /// receipt from an earlier delivery of a message that was delivered again succeeds but may
    /// leave the message in the queue (as SQS documents; the memory queue always leaves it).
    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError>;

    /// Sets a received message's remaining invisibility to `visibility` from now (extends or
    /// shortens it; zero makes it visible again at once).
    async fn extend_visibility(
        &self,
        queue_url: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        let change = VisibilityChange::new(receipt, visibility)?;
        self.extend_visibility_checked(queue_url, change).await
    }

    /// Sends a message with string attributes; returns the new message's id.
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<String, QueueError> {
        let message = OutgoingMessage::new(body, attributes)?;
        self.send_checked(queue_url, message).await
    }

    /// [`Queue::receive`] of a checked request.
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError>;

    /// [`Queue::extend_visibility`] of a checked change.
    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError>;

    /// [`Queue::send`] of a checked message.
    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError>;
}

/// A shared queue handle.
pub type DynQueue = Arc<dyn Queue>;

fn check_visibility(visibility: Duration) -> Result<(), QueueError> {
    if visibility > MAX_VISIBILITY {
        return Err(QueueError::Rejected(format!(
            "visibility must be at most {}s, got {visibility:?}",
            MAX_VISIBILITY.as_secs()
        )));
    }
    Ok(())
}

/// SQS's rules for bodies and attribute names and values (see [`OutgoingMessage::new`]).
fn check_send(body: &str, attributes: &BTreeMap<String, String>) -> Result<(), QueueError> {
    if body.is_empty() {
        return Err(QueueError::Rejected("message body is empty".into()));
    }
    if let Some(c) = body.chars().find(|c| !sqs_allowed_char(*c)) {
        return Err(QueueError::Rejected(format!(
            "message body contains a character SQS does not allow (U+{:04X})",
            u32::from(c)
        )));
    }
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(QueueError::Rejected(format!(
            "at most {MAX_ATTRIBUTES} message attributes, got {}",
            attributes.len()
        )));
    }
    for (name, value) in attributes {
        check_attribute_name(name)?;
        if value.is_empty() {
            return Err(QueueError::Rejected(format!(
                "message attribute {name:?} has an empty value"
            )));
        }
        if let Some(c) = value.chars().find(|c| !sqs_allowed_char(*c)) {
            return Err(QueueError::Rejected(format!(
                "message attribute {name:?} contains a character SQS does not allow (U+{:04X})",
                u32::from(c)
            )));
        }
    }
    Ok(())
}

fn check_attribute_name(name: &str) -> Result<(), QueueError> {
    let lower = name.to_ascii_lowercase();
    let valid = !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if valid {
        Ok(())
    } else {
        Err(QueueError::Rejected(format!(
            "invalid message attribute name {name:?} (1–256 of A-Z a-z 0-9 _ - ., no leading, \
             trailing or double '.', no AWS./Amazon. prefix)"
        )))
    }
}

/// The characters SQS accepts in bodies and attribute values (XML 1.0's, as SQS documents).
fn sqs_allowed_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Whole seconds, rounded up (SQS takes integer seconds; never shorten a wait or a lease).
pub(crate) fn ceil_secs(d: Duration) -> i32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_arguments_are_checked() {
        let s = Duration::from_secs;
        assert!(ReceiveRequest::new(1, s(0), s(0)).is_ok());
        assert!(ReceiveRequest::new(10, MAX_WAIT, MAX_VISIBILITY).is_ok());
        assert!(matches!(
            ReceiveRequest::new(0, s(1), s(1)),
            Err(QueueError::Rejected(_))
        ));
        assert!(matches!(
            ReceiveRequest::new(11, s(1), s(1)),
            Err(QueueError::Rejected(_))
        ));
        assert!(matches!(
            ReceiveRequest::new(1, s(21), s(1)),
            Err(QueueError::Rejected(_))
        ));
        assert!(matches!(
            ReceiveRequest::new(1, s(1), MAX_VISIBILITY + s(1)),
            Err(QueueError::Rejected(_))
        ));
    }

    #[test]
    fn visibility_changes_are_checked() {
        let change = VisibilityChange::new("r", MAX_VISIBILITY).unwrap();
        assert_eq!(
            (change.receipt(), change.visibility()),
            ("r", MAX_VISIBILITY)
        );
        assert!(VisibilityChange::new("r", Duration::ZERO).is_ok());
        assert!(matches!(
            VisibilityChange::new("r", MAX_VISIBILITY + Duration::from_millis(1)),
            Err(QueueError::Rejected(_))
        ));
    }

    #[test]
    fn send_arguments_are_checked() {
        let attrs = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(check_send("{}", &attrs(&[("callRef", "abc"), ("a-b_c.d", "x")])).is_ok());
        assert!(check_send("tab\tnewline\n😀", &BTreeMap::new()).is_ok());
        for (body, a) in [
            ("", attrs(&[])),
            ("nul\u{0}", attrs(&[])),
            ("x", attrs(&[("callRef", "")])),
            ("x", attrs(&[("AWS.trace", "v")])),
            ("x", attrs(&[("amazon.x", "v")])),
            ("x", attrs(&[("a..b", "v")])),
            ("x", attrs(&[(".a", "v")])),
            ("x", attrs(&[("a b", "v")])),
            ("x", attrs(&[("", "v")])),
            ("x", attrs(&[("v", "bad\u{1}")])),
        ] {
            assert!(
                matches!(check_send(body, &a), Err(QueueError::Rejected(_))),
                "{body:?} {a:?}"
            );
        }
        let eleven: BTreeMap<String, String> = (0..11)
            .map(|i| (format!("a{i}"), "v".to_string()))
            .collect();
        assert!(check_send("x", &eleven).is_err());
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(u64::MAX)), i32::MAX);
    }
}
