//! AWS SQS (or an SQS emulator at a custom endpoint) through `aws-sdk-sqs`.
//!
//! The SDK sets no timeouts by default, so a stalled connection could hang a call forever.
//! Every call here has a connect timeout, a per-attempt timeout and an overall operation
//! timeout (which covers the SDK's retries); `receive` gets its own, derived from its
//! long-poll wait so a quiet queue never trips them.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::config::Region;
use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use chrono::{DateTime, Utc};

use super::{
    OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange, ceil_secs,
};

/// Time to establish a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One attempt of a call other than `receive`.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A call other than `receive`, retries included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// One `receive` attempt may take its long-poll wait plus this.
pub const RECEIVE_ATTEMPT_MARGIN: Duration = Duration::from_secs(5);
/// A `receive`, retries included, may take its long-poll wait plus this.
pub const RECEIVE_OPERATION_MARGIN: Duration = Duration::from_secs(15);

/// Longest error reason kept from the SDK's error chain.
const MAX_REASON: usize = 300;

/// SQS queues, addressed by queue URL.
#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    endpoint: Option<String>,
}

impl fmt::Debug for SqsQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsQueue")
            .field(
                "region",
                &self.client.config().region().map(|r| r.as_ref().to_owned()),
            )
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

fn timeouts(attempt: Duration, operation: Duration) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

impl SqsQueue {
    /// A client for `region` with the default AWS credential chain (environment, profile,
    /// web identity, container and instance metadata). `endpoint` replaces the SQS endpoint,
    /// e.g. `http://127.0.0.1:5000` for a local emulator (`AWS_ENDPOINT`).
    pub async fn new(region: impl Into<String>, endpoint: Option<String>) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.into()))
            .load()
            .await;
        Self::from_sdk_config(&sdk, endpoint.as_deref())
    }

    /// A client from an already loaded SDK configuration (its region and credentials), with
    /// this module's timeouts and an optional custom endpoint.
    pub fn from_sdk_config(sdk: &SdkConfig, endpoint: Option<&str>) -> Self {
        let mut builder = aws_sdk_sqs::config::Builder::from(sdk)
            .timeout_config(timeouts(ATTEMPT_TIMEOUT, OPERATION_TIMEOUT));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        SqsQueue {
            client: Client::from_conf(builder.build()),
            endpoint: endpoint.map(str::to_owned),
        }
    }

    /// The underlying SDK client, for what the [`Queue`] trait does not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Creates a standard queue (or finds the existing one of that name with the same
    /// attributes) and returns its URL. For tests and the local development stack; production
    /// queues are provisioned outside the service.
    pub async fn create_queue(&self, name: &str) -> Result<String, QueueError> {
        let out = self
            .client
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| map_error("CreateQueue", e))?;
        out.queue_url.ok_or_else(|| {
            QueueError::Unavailable("CreateQueue: no queue URL in the response".into())
        })
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        let wait_secs = ceil_secs(request.wait());
        let polled = Duration::from_secs(u64::try_from(wait_secs).unwrap_or(0));
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::try_from(request.max()).unwrap_or(1))
            .wait_time_seconds(wait_secs)
            .visibility_timeout(ceil_secs(request.visibility()))
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().timeout_config(timeouts(
                    polled + RECEIVE_ATTEMPT_MARGIN,
                    polled + RECEIVE_OPERATION_MARGIN,
                )),
            )
            .send()
            .await
            .map_err(|e| map_error("ReceiveMessage", e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(convert)
            .collect())
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| map_error("DeleteMessage", e))?;
        Ok(())
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        self.client
            .change_message_visibility()
            .queue_url(queue_url)
            .receipt_handle(change.receipt())
            .visibility_timeout(ceil_secs(change.visibility()))
            .send()
            .await
            .map_err(|e| map_error("ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(message.body());
        for (name, value) in message.attributes() {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| QueueError::Rejected(format!("message attribute {name:?}: {e}")))?;
            request = request.message_attributes(name, value);
        }
        let out = request
            .send()
            .await
            .map_err(|e| map_error("SendMessage", e))?;
        // SQS always returns the id; a missing one is not worth failing a sent message for.
        Ok(out.message_id.unwrap_or_default())
    }
}

fn convert(message: Message) -> Option<QueueMessage> {
    let Some(receipt) = message.receipt_handle else {
        tracing::warn!(message_id = ?message.message_id, "SQS message without a receipt handle skipped");
        return None;
    };
    let system = message.attributes.unwrap_or_default();
    let receive_count = system
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let sent_at = system
        .get(&MessageSystemAttributeName::SentTimestamp)
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::<Utc>::from_timestamp_millis);
    let attributes = message
        .message_attributes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, value)| Some((name, value.string_value?)))
        .collect();
    Some(QueueMessage {
        id: message.message_id.unwrap_or_default(),
        receipt,
        body: message.body.unwrap_or_default(),
        attributes,
        receive_count,
        sent_at,
    })
}

/// Sorts an SDK error into the three kinds callers act on.
fn map_error<E>(op: &str, err: SdkError<E, aws_sdk_sqs::config::http::HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let code = err.code().unwrap_or("unknown");
            let reason = truncate(format!(
                "{op}: {code} ({status}): {}",
                err.message().unwrap_or("no message")
            ));
            let message = err.message().unwrap_or_default();
            if code.ends_with("ReceiptHandleIsInvalid")
                || code.ends_with("MessageNotInflight")
                || (code.ends_with("InvalidParameterValue") && message.contains("ReceiptHandle"))
            {
                QueueError::ReceiptInvalid(reason)
            } else if status >= 500
                || status == 429
                || code.contains("Throttl")
                || code.ends_with("ServiceUnavailable")
                || code.ends_with("InternalError")
                || code.ends_with("InternalFailure")
                || code.starts_with("KmsThrottled")
            {
                QueueError::Unavailable(reason)
            } else {
                QueueError::Rejected(reason)
            }
        }
        SdkError::TimeoutError(_) => QueueError::Unavailable(format!("{op}: timed out")),
        SdkError::ConstructionFailure(_) => {
            QueueError::Rejected(truncate(format!("{op}: {}", DisplayErrorContext(&err))))
        }
        _ => QueueError::Unavailable(truncate(format!("{op}: {}", DisplayErrorContext(&err)))),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn reasons_are_truncated_on_char_boundaries() {
        assert_eq!(truncate("short".into()), "short");
        let long = "é".repeat(MAX_REASON);
        let t = truncate(long);
        assert!(t.len() <= MAX_REASON + '…'.len_utf8());
        assert!(t.ends_with('…'));
    }

    #[tokio::test]
    async fn unreachable_endpoint_is_unavailable() {
        // A closed local port: connection refused, retried, then reported as transient.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let sdk = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::SharedCredentialsProvider::new(
                aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "test"),
            ))
            .build();
        let q = SqsQueue::from_sdk_config(&sdk, Some(&format!("http://127.0.0.1:{port}")));
        let url = format!("http://127.0.0.1:{port}/000000000000/q");
        let err = q.send(&url, "x", &BTreeMap::new()).await.unwrap_err();
        assert!(err.is_transient(), "{err}");
        // Arguments are checked before any request.
        let err = q
            .receive(&url, 0, Duration::ZERO, Duration::ZERO)
            .await
            .unwrap_err();
        assert!(matches!(err, QueueError::Rejected(_)), "{err}");
        assert!(format!("{q:?}").contains("us-east-1"));
    }
}
