//! Megazord Events client (SPEC §5.2): a robot's incoming events, subscriptions to them, and
//! the events this service posts (monitors' alarms).

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};
use status_check_engine::Event;

use super::http::{ClientBuildError, UpstreamHttp};
use super::{
    Megazord, PostedEvent, Subscription, SubscriptionRequest, UpstreamConfig, UpstreamError,
};

/// The service label in errors, logs and metrics.
pub const SERVICE: &str = "megazord";

/// [`Megazord`] over HTTP.
#[derive(Debug, Clone)]
pub struct HttpMegazord {
    http: UpstreamHttp,
}

impl HttpMegazord {
    pub fn new(config: &UpstreamConfig) -> Result<Self, ClientBuildError> {
        Ok(HttpMegazord {
            http: UpstreamHttp::new(SERVICE, config)?,
        })
    }

    /// `…/internal/v1/events/robots/{robotId}/{tail…}`.
    fn robot_url(&self, robot_id: i64, tail: &[&str]) -> reqwest::Url {
        let robot = robot_id.to_string();
        let head = ["internal", "v1", "events", "robots", robot.as_str()];
        self.http.url(head.iter().chain(tail))
    }
}

#[async_trait]
impl Megazord for HttpMegazord {
    async fn incomings(
        &self,
        robot_id: i64,
        event_name: &str,
        created_since: DateTime<Utc>,
        call_ref: &str,
    ) -> Result<Vec<Event>, UpstreamError> {
        let mut url = self.robot_url(robot_id, &["incomings"]);
        // `timestamp()` is the floor of the instant in whole seconds.
        url.query_pairs_mut()
            .append_pair("event_name", event_name)
            .append_pair("created_since", &created_since.timestamp().to_string());
        self.http
            .request("incomings", call_ref, Method::GET, &url, |answer| {
                answer.expect_success(SERVICE)?;
                let incomings: Vec<IncomingDto> = answer.json(SERVICE)?;
                Ok(incomings.into_iter().map(IncomingDto::into_event).collect())
            })
            .await
    }

    async fn subscribe(
        &self,
        robot_id: i64,
        request: SubscriptionRequest<'_>,
        call_ref: &str,
    ) -> Result<Subscription, UpstreamError> {
        let url = self.robot_url(robot_id, &["subscriptions"]);
        let body = SubscribeBody {
            event_names: request.event_names,
            until: request.until.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            queue: request.queue,
        };
        self.http
            .post_json("subscribe", call_ref, &url, &body, |answer| {
                answer.expect_success(SERVICE)?;
                let created: SubscriptionDto = answer.json(SERVICE)?;
                Ok(Subscription { id: created.id })
            })
            .await
    }

    async fn unsubscribe(
        &self,
        robot_id: i64,
        subscription_id: i64,
        call_ref: &str,
    ) -> Result<(), UpstreamError> {
        let id = subscription_id.to_string();
        let url = self.robot_url(robot_id, &["subscriptions", id.as_str()]);
        self.http
            .request("unsubscribe", call_ref, Method::DELETE, &url, |answer| {
                match answer.status {
                    // 404: already gone, which is what was asked for.
                    status if status.is_success() || status == StatusCode::NOT_FOUND => Ok(()),
                    _ => Err(answer.unexpected(SERVICE)),
                }
            })
            .await
    }

    async fn post_incoming(
        &self,
        robot_id: i64,
        event: &PostedEvent,
        call_ref: &str,
    ) -> Result<i64, UpstreamError> {
        let url = self.robot_url(robot_id, &["incomings"]);
        let body = PostIncomingBody {
            provider_name: &event.provider_name,
            event_name: &event.event_name,
            level: event.level,
            reference_id: &event.reference_id,
        };
        self.http
            .post_json("post_incoming", call_ref, &url, &body, |answer| {
                answer.expect_success(SERVICE)?;
                Ok(answer.json::<PostedDto>(SERVICE)?.id)
            })
            .await
    }
}

/// The `providerName` alarms are posted as unless configured otherwise: the monitoring job
/// service's, which Megazord knows (it refuses an unknown provider).
pub const DEFAULT_PROVIDER_NAME: &str = "azi-3-status-jobs";

/// The body of `POST …/incomings`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PostIncomingBody<'a> {
    provider_name: &'a str,
    event_name: &'a str,
    /// Left out when `None`: Megazord then uses the event schema's level.
    #[serde(skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
    reference_id: &'a str,
}

/// The answer to `POST …/incomings`; only the id matters here.
#[derive(Debug, Deserialize)]
struct PostedDto {
    id: i64,
}

/// The body of `POST …/subscriptions`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeBody<'a> {
    event_names: &'a [String],
    /// RFC 3339, UTC (`Z`).
    until: String,
    /// Left out for the status queue itself (as the Node status-check service does).
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<&'a str>,
}

/// The answer to `POST …/subscriptions`; only the id matters here.
#[derive(Debug, Deserialize)]
struct SubscriptionDto {
    id: i64,
}

/// One entry of `GET …/incomings`. Unknown fields (`robotId`, `providerName`, …) are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingDto {
    id: i64,
    event_name: String,
    #[serde(deserialize_with = "super::event_time")]
    created_at: DateTime<Utc>,
    #[serde(default)]
    level: Option<i64>,
    #[serde(default)]
    reference_id: Option<ReferenceId>,
}

/// Megazord sends reference ids as numbers or as strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ReferenceId {
    Text(String),
    Number(serde_json::Number),
}

impl IncomingDto {
    fn into_event(self) -> Event {
        Event {
            id: self.id,
            name: self.event_name,
            created_at: self.created_at,
            level: self.level,
            reference_id: self.reference_id.map(|reference| match reference {
                ReferenceId::Text(text) => text,
                ReferenceId::Number(number) => number.to_string(),
            }),
        }
    }
}
