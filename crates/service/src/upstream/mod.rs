//! Upstream services (SPEC §5): Micro-Managers (script steps) and Megazord Events (events and
//! subscriptions). One adapter module each, holding the HTTP client and the JSON shapes; the
//! rest of the service sees only these traits, so tests can put in stubs or the simulators.

pub mod http;
pub mod megazord;
pub mod micro_managers;
pub mod step_cache;

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use status_check_engine::Event;

/// Reads an event's time as Megazord writes it: RFC 3339, whose year has four digits. chrono
/// also reads a signed year of up to six, which no Megazord `TIMESTAMP` holds and which
/// overflows what is added to an event's time (a grace period, a monitor's window): such a
/// time is refused as the wrong shape.
pub(crate) fn event_time<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<DateTime<Utc>, D::Error> {
    use chrono::Datelike;
    let at = <DateTime<Utc> as serde::Deserialize>::deserialize(deserializer)?;
    if (1..=9999).contains(&at.year()) {
        Ok(at)
    } else {
        Err(serde::de::Error::custom(format!(
            "{at} is not a time Megazord writes (a year of four digits)"
        )))
    }
}

/// How to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://micro-managers:8080` (no trailing slash needed).
    pub base_url: String,
    /// Whole-request timeout of one attempt (SPEC §2.2 default: 5 s).
    pub timeout: Duration,
    /// Connect timeout of one attempt, at most ([`UpstreamConfig::effective_connect_timeout`]).
    pub connect_timeout: Duration,
    /// Retries after the first attempt, for idempotent calls on connection errors and 5xx.
    pub retries: usize,
}

impl UpstreamConfig {
    pub fn new(base_url: impl Into<String>) -> Self {
        UpstreamConfig {
            base_url: base_url.into(),
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retries: 2,
        }
    }

    /// The connect timeout an attempt runs with: at most half the attempt's. A connect slower
    /// than that is a connection error (retried), not an attempt timed out (502 at once): the
    /// connect must give up first, whatever the configuration.
    pub fn effective_connect_timeout(&self) -> Duration {
        self.connect_timeout.min(self.timeout / 2)
    }
}

/// Why an upstream call failed, as the API needs to tell it apart.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The thing asked for does not exist (HTTP 404).
    #[error("{service}: not found")]
    NotFound { service: &'static str },
    /// Unreachable, timed out, or answered 5xx (after retries): the API answers 502.
    #[error("{service} unavailable: {reason}")]
    Unavailable {
        service: &'static str,
        reason: String,
    },
    /// Answered something this service cannot use (other 4xx, a body of the wrong shape):
    /// also a 502 to the client, since the fault is upstream.
    #[error("{service} answered unexpectedly: {reason}")]
    Invalid {
        service: &'static str,
        reason: String,
    },
}

/// One `multipleChoice` entry of a step's `next`: a command and the step it leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextCommand {
    /// `primaryCommand` (e.g. `pass`, `fail`, `unknown`).
    pub command: String,
    /// Every command of the entry (`commands`), which includes the primary one.
    pub commands: Vec<String>,
    pub next_step_id: i64,
}

/// A step of a robot's script, as Micro-Managers addresses it (and the step cache keys it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StepRef {
    pub robot_id: i64,
    pub step_id: i64,
}

/// A script step as Micro-Managers describes it (SPEC §5.1), reduced to what a check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptStep {
    pub step_id: i64,
    pub script_version_id: i64,
    /// `step.stepType`, e.g. `statusCheck`.
    pub step_type: String,
    /// `node.type`, e.g. `statusCheck`.
    pub node_type: String,
    /// `node.statusCheckName`: the template's name.
    pub status_check_name: Option<String>,
    /// `node.pastInterval` in seconds (0 → template default, −1 → unbounded).
    pub past_interval: i64,
    /// `node.futureInterval` in seconds (0 → template default).
    pub future_interval: i64,
    /// `next.type`, e.g. `multipleChoice`.
    pub next_type: String,
    pub next: Vec<NextCommand>,
}

/// An event this service posts to a robot at Megazord: a monitor's alarm (SPEC §5.2, §12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostedEvent {
    /// A provider Megazord knows (it refuses others): the monitoring job service's,
    /// `azi-3-status-jobs`, unless configured otherwise (`ALARM_PROVIDER_NAME`).
    pub provider_name: String,
    pub event_name: String,
    /// `None`: sent without a level, so Megazord's event schema decides (lower is more
    /// urgent: a level nobody chose is never sent).
    pub level: Option<u8>,
    /// The same on every retry, so a repeated post is recognisable.
    pub reference_id: String,
}

/// What to subscribe to (SPEC §5.2 `POST …/subscriptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriptionRequest<'a> {
    /// Unique: Megazord refuses a repeated name (400) and an unknown one (404).
    pub event_names: &'a [String],
    /// Sent as the body's `until`; Megazord stores it for nothing (it never expires a
    /// subscription), so every subscription must be deleted.
    pub until: DateTime<Utc>,
    /// The queue suffix: deliveries go to `${STATUS_QUEUE_ADDRESS}-${queue}`. `None`: the
    /// status queue itself.
    pub queue: Option<&'a str>,
}

/// A Megazord subscription (SPEC §5.2), reduced to what a check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
}

#[async_trait]
pub trait MicroManagers: Send + Sync + 'static {
    /// `GET /internal/v5/scripts/robots/{robotId}/scripts/steps/{stepId}`.
    async fn script_step(&self, step: StepRef, call_ref: &str)
    -> Result<ScriptStep, UpstreamError>;
}

/// An upstream this replica was not configured for (its roles never call it): every call
/// fails as unavailable, naming the key.
#[derive(Debug, Clone, Copy)]
pub struct NotConfigured(pub &'static str);

#[async_trait]
impl MicroManagers for NotConfigured {
    async fn script_step(&self, _: StepRef, _call_ref: &str) -> Result<ScriptStep, UpstreamError> {
        Err(UpstreamError::Unavailable {
            service: "micro-managers",
            reason: format!("{} is not set on this replica", self.0),
        })
    }
}

#[async_trait]
pub trait Megazord: Send + Sync + 'static {
    /// `GET …/incomings?event_name=…&created_since=…` (unix seconds), as engine events.
    async fn incomings(
        &self,
        robot_id: i64,
        event_name: &str,
        created_since: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<Vec<Event>, UpstreamError>;

    /// `POST …/subscriptions` with `{"eventNames", "until", "queue"?}`. Not retried: it is
    /// not idempotent. `NotFound`: Megazord knows no event schema for (one of) the names.
    async fn subscribe(
        &self,
        robot_id: i64,
        request: SubscriptionRequest<'_>,
        call_ref: &str,
    ) -> Result<Subscription, UpstreamError>;

    /// `DELETE …/subscriptions/{id}`; a 404 (already gone) is success.
    async fn unsubscribe(
        &self,
        robot_id: i64,
        subscription_id: i64,
        call_ref: &str,
    ) -> Result<(), UpstreamError>;

    /// `POST …/incomings` with `{"providerName", "eventName", "level"?, "referenceId"}` → 201; the stored event's id. Not retried here (not idempotent): the
    /// monitors' actions outbox retries it.
    async fn post_incoming(
        &self,
        robot_id: i64,
        event: &PostedEvent,
        call_ref: &str,
    ) -> Result<i64, UpstreamError>;
}
