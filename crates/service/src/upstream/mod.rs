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

/// How to reach one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://micro-managers:8080` (no trailing slash needed).
    pub base_url: String,
    /// Whole-request timeout of one attempt (SPEC §2.2 default: 5 s).
    pub timeout: Duration,
    /// Connect timeout of one attempt.
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

/// A Megazord subscription (SPEC §5.2), reduced to what a check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: i64,
}

#[async_trait]
pub trait MicroManagers: Send + Sync + 'static {
    /// `GET /internal/v5/scripts/robots/{robotId}/scripts/steps/{stepId}`.
    async fn script_step(
        &self,
        robot_id: i64,
        step_id: i64,
        call_ref: &str,
    ) -> Result<ScriptStep, UpstreamError>;
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

    /// `POST …/subscriptions` with `{"eventNames", "until"}`. Not retried: it is not
    /// idempotent.
    async fn subscribe(
        &self,
        robot_id: i64,
        event_names: &[String],
        until: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<Subscription, UpstreamError>;

    /// `DELETE …/subscriptions/{id}`; a 404 (already gone) is success.
    async fn unsubscribe(
        &self,
        robot_id: i64,
        subscription_id: i64,
        call_ref: &str,
    ) -> Result<(), UpstreamError>;
}
