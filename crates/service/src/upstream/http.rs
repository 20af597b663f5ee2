//! What the upstream HTTP clients share: building the `reqwest::Client` from an
//! [`UpstreamConfig`], URLs under a base, sending with `Call-Ref`, retrying idempotent calls with
//! backoff, classifying failures into [`UpstreamError`], and recording metrics.
//!
//! Failure classes of one call:
//! - connection errors (a connect timeout included) and 5xx answers are transient: idempotent
//!   calls retry them (`config.retries` times, exponential backoff with jitter), and once out
//!   of attempts they become [`UpstreamError::Unavailable`]; an attempt that connected but
//!   got no answer within the timeout is `Unavailable` at once (SPEC §2.2: timing out → 502
//!   after the timeout, not after several). The connect timeout is shorter than the attempt's
//!   (`Config::upstream`), so a connect that hangs ends as a connection error;
//! - every other answer (2xx, 404, other 4xx) ends the call and is handed, with its body, to the
//!   caller, which decides what it means ([`UpstreamError::NotFound`],
//!   [`UpstreamError::Invalid`], or success).
//!
//! Error reasons are short and never carry a URL or more than a short snippet of an upstream
//! body: they may end up in a problem document. The full error goes to the debug log.

use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use reqwest::header::HeaderValue;
use reqwest::{Client, Method, RequestBuilder, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{UpstreamConfig, UpstreamError};

/// The header that carries the request id to upstreams (SPEC §2.1).
pub const CALL_REF_HEADER: &str = "Call-Ref";

/// First backoff delay between attempts (jitter adds up to as much again).
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Largest backoff delay between attempts (before jitter).
const MAX_BACKOFF: Duration = Duration::from_millis(400);
/// The largest answer body read from an upstream (SPEC §13: upstream bodies size-capped). Far
/// above a history cap's worth of events (10,000 of about 250 bytes); a bigger answer is
/// refused as invalid, not read into memory.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How many characters of an unexpected upstream body a reason may quote.
const SNIPPET_CHARS: usize = 80;
/// How many characters of a parser message a reason may quote.
const PARSE_MESSAGE_CHARS: usize = 120;

/// The upstream client could not be built: a bad base URL or TLS set-up.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("{service}: invalid base URL {url:?}: {reason}")]
    BaseUrl {
        service: &'static str,
        url: String,
        reason: String,
    },
    #[error("{service}: cannot build the HTTP client: {source}")]
    Client {
        service: &'static str,
        #[source]
        source: reqwest::Error,
    },
}

/// A non-transient answer of an upstream: its status and its whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY_BYTES`]; `body` holds none of it.
    pub oversized: bool,
}

impl Answer {
    /// Parses a successful body as `T`; a body that does not parse is `Invalid`.
    pub fn json<T: DeserializeOwned>(&self, service: &'static str) -> Result<T, UpstreamError> {
        if self.oversized {
            return Err(UpstreamError::Invalid {
                service,
                reason: format!(
                    "{} body is larger than {MAX_BODY_BYTES} bytes",
                    self.status.as_u16()
                ),
            });
        }
        serde_json::from_slice(&self.body)
            .map_err(|e| malformed(service, &format!("{} body", self.status.as_u16()), e))
    }

    /// `Ok` for a 2xx answer, whose body the caller reads next; a 404 is `NotFound` and any
    /// other status [`unexpected`](Answer::unexpected).
    pub fn expect_success(&self, service: &'static str) -> Result<(), UpstreamError> {
        match self.status {
            status if status.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(UpstreamError::NotFound { service }),
            _ => Err(self.unexpected(service)),
        }
    }

    /// The `Invalid` error for an answer whose status the call does not expect, quoting at
    /// most a short snippet of the body.
    pub fn unexpected(&self, service: &'static str) -> UpstreamError {
        let text = String::from_utf8_lossy(&self.body);
        let snippet = truncate(text.trim(), SNIPPET_CHARS);
        let reason = if snippet.is_empty() {
            format!("unexpected status {}", self.status.as_u16())
        } else {
            format!("unexpected status {}: {snippet}", self.status.as_u16())
        };
        UpstreamError::Invalid { service, reason }
    }
}

/// The `Invalid` error for a part of a body (`what`) that does not parse; quotes at most the
/// start of the parser's message (which may quote the body).
pub fn malformed(
    service: &'static str,
    what: &str,
    error: impl std::fmt::Display,
) -> UpstreamError {
    UpstreamError::Invalid {
        service,
        reason: truncate(&format!("malformed {what}: {error}"), PARSE_MESSAGE_CHARS),
    }
}

/// An upstream's base URL as a client can use it (the configuration checks each address
/// with this at start), or why not.
pub fn base_url(address: &str) -> Result<Url, String> {
    let base = Url::parse(address.trim()).map_err(|e| e.to_string())?;
    if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
        return Err("not an http(s) URL".to_owned());
    }
    if base.host_str().is_none_or(str::is_empty) {
        return Err("has no host".to_owned());
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err("must not have a query or fragment".to_owned());
    }
    Ok(base)
}

/// One upstream service reached over HTTP.
#[derive(Debug, Clone)]
pub struct UpstreamHttp {
    service: &'static str,
    client: Client,
    base: Url,
    retries: usize,
}

impl UpstreamHttp {
    /// Builds the client for `service` (the metrics/error label, e.g. `megazord`).
    pub fn new(service: &'static str, config: &UpstreamConfig) -> Result<Self, ClientBuildError> {
        let bad_url = |reason: &str| ClientBuildError::BaseUrl {
            service,
            url: config.base_url.clone(),
            reason: reason.to_owned(),
        };
        let base = base_url(&config.base_url).map_err(|reason| bad_url(&reason))?;
        let client = Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.effective_connect_timeout())
            .build()
            .map_err(|source| ClientBuildError::Client { service, source })?;
        Ok(UpstreamHttp {
            service,
            client,
            base,
            retries: config.retries,
        })
    }

    /// The base URL with `segments` appended as path segments (each percent-encoded), whether
    /// or not the base ends with `/`.
    pub fn url<I>(&self, segments: I) -> Url
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut url = self.base.clone();
        {
            // Cannot fail: `new` refused bases that cannot be a base.
            let mut path = url
                .path_segments_mut()
                .expect("an http(s) base URL has path segments");
            path.pop_if_empty();
            path.extend(segments);
        }
        url
    }

    /// [`call`](UpstreamHttp::call) with a bodiless request of `method` to `url`, retried
    /// when the method is idempotent (GET, DELETE).
    pub async fn request<T>(
        &self,
        operation: &'static str,
        call_ref: &str,
        method: Method,
        url: &Url,
        interpret: impl FnOnce(&Answer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        // GET, DELETE: retried on connection errors and 5xx (SPEC §5), not on a timeout: an
        // upstream that did not answer in UPSTREAM_TIMEOUT_MS is answered 502 after it, not
        // after (1 + retries) times it.
        let retries = if method.is_idempotent() {
            self.retries
        } else {
            0
        };
        let build = |client: &Client| client.request(method.clone(), url.clone());
        self.call(operation, retries, call_ref, build, interpret)
            .await
    }

    /// [`call`](UpstreamHttp::call) with a `POST` of `body` as JSON to `url`, which is not
    /// idempotent (one attempt only).
    pub async fn post_json<T>(
        &self,
        operation: &'static str,
        call_ref: &str,
        url: &Url,
        body: &(impl Serialize + Sync),
        interpret: impl FnOnce(&Answer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let build = |client: &Client| client.post(url.clone()).json(body);
        // One attempt only: a transient failure is at once `Unavailable`.
        self.call(operation, 0, call_ref, build, interpret).await
    }

    /// Runs one logical call `operation`: sends what `build` makes (a fresh request per
    /// attempt) with `Call-Ref`, retries transient failures up to `max_retries` times, then lets
    /// `interpret` turn the final answer into a result. Logs and records metrics.
    async fn call<T>(
        &self,
        operation: &'static str,
        max_retries: usize,
        call_ref: &str,
        build: impl Fn(&Client) -> RequestBuilder,
        interpret: impl FnOnce(&Answer) -> Result<T, UpstreamError>,
    ) -> Result<T, UpstreamError> {
        let service = self.service;
        let started = Instant::now();
        let call_ref_value = HeaderValue::from_str(call_ref).ok();
        if call_ref_value.is_none() {
            tracing::warn!(
                service,
                operation,
                "call ref is not a valid header value; sending none"
            );
        }

        let (client, build, call_ref_value) = (&self.client, &build, &call_ref_value);
        let attempt = || async move {
            let mut request = build(client);
            if let Some(value) = call_ref_value {
                request = request.header(CALL_REF_HEADER, value.clone());
            }
            send_once(request).await
        };
        let backoff = ExponentialBuilder::new()
            .with_min_delay(MIN_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_factor(2.0)
            .with_jitter()
            .with_max_times(max_retries);
        let sent = attempt
            .retry(backoff)
            .when(|failure: &Transient| !failure.timed_out)
            .notify(|failure: &Transient, delay| {
                tracing::warn!(
                    service,
                    operation,
                    call_ref,
                    error = %failure.detail,
                    retry_in_ms = delay.as_millis() as u64,
                    "upstream attempt failed; retrying"
                );
            })
            .await;

        let (status, result) = match sent {
            Ok(answer) => (Some(answer.status), interpret(&answer)),
            Err(failure) => (
                None,
                Err(UpstreamError::Unavailable {
                    service,
                    reason: failure.reason,
                }),
            ),
        };

        let elapsed = started.elapsed();
        let outcome = match (&result, status) {
            (Ok(_), Some(StatusCode::NOT_FOUND)) | (Err(UpstreamError::NotFound { .. }), _) => {
                "not_found"
            }
            (Ok(_), _) => "ok",
            (Err(_), _) => "error",
        };
        metrics::histogram!(
            "upstream_request_duration_seconds",
            "service" => service,
            "operation" => operation,
            "outcome" => outcome,
        )
        .record(elapsed.as_secs_f64());
        let error_kind = match &result {
            Err(UpstreamError::Unavailable { .. }) => Some("unavailable"),
            Err(UpstreamError::Invalid { .. }) => Some("invalid"),
            Ok(_) | Err(UpstreamError::NotFound { .. }) => None,
        };
        if let Some(kind) = error_kind {
            metrics::counter!(
                "upstream_errors_total",
                "service" => service,
                "operation" => operation,
                "kind" => kind,
            )
            .increment(1);
        }
        // A 404 is an answer (a step or subscription that is not there), not a failure.
        let failure = match &result {
            Ok(_) | Err(UpstreamError::NotFound { .. }) => None,
            Err(error) => Some(error.to_string()),
        };
        tracing::debug!(
            service,
            operation,
            call_ref,
            status = status.map(|s| s.as_u16()),
            outcome,
            elapsed_ms = elapsed.as_millis() as u64,
            error = failure,
            "upstream call"
        );
        result
    }
}

/// A failed attempt that may succeed when repeated.
#[derive(Debug)]
struct Transient {
    /// Short, for `UpstreamError::Unavailable`.
    reason: String,
    /// Full, for the logs.
    detail: String,
    /// Connected, but no answer within the timeout: not retried.
    timed_out: bool,
}

/// Sends one attempt and reads the whole body; transient failures are errors.
async fn send_once(request: RequestBuilder) -> Result<Answer, Transient> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    if status.is_server_error() {
        return Err(Transient {
            reason: format!("status {}", status.as_u16()),
            detail: format!("status {status}"),
            timed_out: false,
        });
    }
    let mut response = response;
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY_BYTES as u64)
    {
        return Ok(Answer {
            status,
            body: Vec::new(),
            oversized: true,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport_failure)? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Ok(Answer {
                status,
                body: Vec::new(),
                oversized: true,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Answer {
        status,
        body,
        oversized: false,
    })
}

fn transport_failure(error: reqwest::Error) -> Transient {
    let reason = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "failed reading the response"
    } else {
        "request failed"
    };
    Transient {
        reason: reason.to_owned(),
        detail: error_chain(&error),
        // A connect timeout is a connection error: retried, perhaps on another instance.
        timed_out: error.is_timeout() && !error.is_connect(),
    }
}

/// The error and its sources, for logs (reqwest's own message is often just "error sending
/// request").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// At most `max` characters of `text`, control characters replaced, `…` when cut.
fn truncate(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(base: &str) -> UpstreamHttp {
        UpstreamHttp::new("test", &UpstreamConfig::new(base)).unwrap()
    }

    #[test]
    fn url_joins_with_or_without_trailing_slash() {
        for base in ["http://h:1", "http://h:1/", "http://h:1/p", "http://h:1/p/"] {
            let url = http(base).url(["a", "b c", "1"]);
            let prefix = if base.contains("/p") { "/p" } else { "" };
            assert_eq!(url.path(), format!("{prefix}/a/b%20c/1"), "{base}");
        }
    }

    #[test]
    fn bad_base_urls_are_refused() {
        for base in ["", "not a url", "mailto:x@y", "ftp://h/", "http://h/?q=1"] {
            assert!(
                UpstreamHttp::new("test", &UpstreamConfig::new(base)).is_err(),
                "{base}"
            );
        }
    }

    #[test]
    fn truncate_cuts_and_cleans() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("a\nb", 5), "a b");
        assert_eq!(truncate("ééé", 2), "éé…");
    }

    #[test]
    fn unexpected_quotes_a_short_snippet_only() {
        let answer = Answer {
            status: StatusCode::BAD_REQUEST,
            body: "x".repeat(10_000).into_bytes(),
            oversized: false,
        };
        let UpstreamError::Invalid { reason, .. } = answer.unexpected("test") else {
            panic!("not invalid");
        };
        assert!(reason.starts_with("unexpected status 400: xxx"));
        assert!(reason.chars().count() < 120, "{reason}");
    }
}
