//! Megazord Events (SPEC §5.2, §5.3): robots' incoming events, subscriptions to them, and the
//! fan-out that turns an incoming event into one outgoing event per matching subscription and
//! puts its envelope on the status queue.
//!
//! The contract, under `/internal/v1/events/robots/{robotId}/`:
//! - `GET incomings?event_name=…&created_since=…` (unix seconds; both optional);
//! - `POST incomings` `{"eventName", "level"?, "referenceId"?, "providerName"?, "createdAt"?}`
//!   → 201 with the stored event and the ids of the outgoing events it fanned out to;
//! - `POST subscriptions` `{"eventNames", "until"}` → 201; `GET subscriptions`;
//!   `DELETE subscriptions/{id}` → 204, or 404 when unknown or already gone;
//! - `GET subscriptions/{id}/outgoings/{outgoingId}` — the link in each envelope.
//!
//! And `GET /sim/robots/{robotId}/messages`: what the service sent to that robot's queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::{Problem, rejection};
use crate::{Now, RobotMailbox, StatusSink};

/// What `from` says in every envelope.
pub const SENDER: &str = "megazord-events";

/// An event a robot (or a sensor of it) reported.
#[derive(Debug, Clone)]
struct Incoming {
    id: i64,
    robot_id: i64,
    event_name: String,
    level: i64,
    reference_id: Value,
    provider_name: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Subscription {
    id: i64,
    robot_id: i64,
    event_names: Vec<String>,
    until: DateTime<Utc>,
    deleted: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Outgoing {
    id: i64,
    subscription_id: i64,
    source: Incoming,
    created_at: DateTime<Utc>,
}

/// A new incoming event (the body of `POST …/incomings`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewIncoming {
    pub event_name: String,
    #[serde(default)]
    pub level: Option<i64>,
    /// A number, a string or null, as Megazord sends it.
    #[serde(default)]
    pub reference_id: Option<Value>,
    #[serde(default)]
    pub provider_name: Option<String>,
    /// When the event happened; now when absent.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
}

impl NewIncoming {
    pub fn named(event_name: &str) -> Self {
        NewIncoming {
            event_name: event_name.to_string(),
            ..NewIncoming::default()
        }
    }

    pub fn at(mut self, created_at: DateTime<Utc>) -> Self {
        self.created_at = Some(created_at);
        self
    }
}

/// What posting an incoming event did.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The stored event, as `GET …/incomings` lists it.
    pub incoming: Value,
    /// The outgoing events it fanned out to, one per matching active subscription.
    pub outgoing_ids: Vec<i64>,
    /// Envelopes the status queue did not take (with the reason); they are not retried.
    pub unsent: Vec<String>,
}

#[derive(Default)]
struct Data {
    incomings: BTreeMap<i64, Vec<Incoming>>,
    subscriptions: BTreeMap<i64, Subscription>,
    subscriptions_by_robot: BTreeMap<i64, Vec<i64>>,
    outgoings: BTreeMap<i64, Outgoing>,
    event_type_ids: BTreeMap<String, i64>,
    last_incoming: i64,
    last_subscription: i64,
    last_outgoing: i64,
    /// Unsubscribes are refused (503) until then: a fault for tests.
    refuse_unsubscribes_until: Option<DateTime<Utc>>,
    /// Subscribes and unsubscribes are carried out but answered only after the delay, until
    /// then: a fault for tests (a client that gives up first never learns what was done).
    slow_until: Option<(DateTime<Utc>, std::time::Duration)>,
}

/// Megazord's own rows in the shared schema. The real Megazord writes `event_subscription`,
/// `incoming_event` and `outgoing_event` before it answers or fans out; a test on the
/// production-shaped database needs them there too (the status-check tables point at them).
/// The dev stack, on SQLite, has none.
#[async_trait::async_trait]
pub trait MegazordRows: Send + Sync {
    async fn subscription(&self, id: i64, robot_id: i64);
    async fn incoming(&self, id: i64, robot_id: i64);
    async fn outgoing(&self, id: i64, source_event_id: i64, subscription_id: i64, robot_id: i64);
}

/// The Megazord Events simulator. Cheap to clone; clones share their data.
#[derive(Clone)]
pub struct MegazordSim {
    data: Arc<Mutex<Data>>,
    sink: Arc<dyn StatusSink>,
    mailbox: Option<Arc<dyn RobotMailbox>>,
    rows: Option<Arc<dyn MegazordRows>>,
    now: Now,
}

impl std::fmt::Debug for MegazordSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MegazordSim").finish_non_exhaustive()
    }
}

impl MegazordSim {
    /// A simulator that puts envelopes into `sink`, with ids in the ranges of SPEC §5's
    /// examples (incomings from 5001, subscriptions from 991, outgoings from 70001).
    pub fn new(sink: Arc<dyn StatusSink>, now: Now) -> Self {
        let data = Data {
            last_incoming: 5000,
            last_subscription: 990,
            last_outgoing: 70000,
            ..Data::default()
        };
        MegazordSim {
            data: Arc::new(Mutex::new(data)),
            sink,
            mailbox: None,
            rows: None,
            now,
        }
    }

    /// Writes Megazord's rows through `rows` as it creates them.
    pub fn with_rows(mut self, rows: Arc<dyn MegazordRows>) -> Self {
        self.rows = Some(rows);
        self
    }

    /// Serves the robots' notifications at `GET /sim/robots/{robotId}/messages`.
    pub fn with_mailbox(mut self, mailbox: Arc<dyn RobotMailbox>) -> Self {
        self.mailbox = Some(mailbox);
        self
    }

    pub fn router(&self) -> Router {
        let robot = "/internal/v1/events/robots/{robot_id}";
        Router::new()
            .route(
                &format!("{robot}/incomings"),
                get(list_incomings).post(post_incoming),
            )
            .route(
                &format!("{robot}/subscriptions"),
                get(list_subscriptions).post(post_subscription),
            )
            .route(
                &format!("{robot}/subscriptions/{{subscription_id}}"),
                delete(delete_subscription),
            )
            .route(
                &format!("{robot}/subscriptions/{{subscription_id}}/outgoings/{{outgoing_id}}"),
                get(get_outgoing),
            )
            .route("/sim/robots/{robot_id}/messages", get(robot_messages))
            .with_state(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an incoming event and fans it out: one outgoing event per active subscription
    /// of the robot to its name, each envelope put on the status queue.
    pub async fn post_incoming(&self, robot_id: i64, new: NewIncoming) -> Posted {
        let now = (self.now)();
        let (incoming, envelopes) = {
            let mut data = self.lock();
            data.last_incoming += 1;
            let incoming = Incoming {
                id: data.last_incoming,
                robot_id,
                event_name: new.event_name,
                level: new.level.unwrap_or(1),
                reference_id: new.reference_id.unwrap_or(Value::Null),
                provider_name: new.provider_name.unwrap_or_else(|| "sim".to_string()),
                created_at: new.created_at.unwrap_or(now),
            };
            data.incomings
                .entry(robot_id)
                .or_default()
                .push(incoming.clone());
            let matching: Vec<i64> = data
                .subscriptions_by_robot
                .get(&robot_id)
                .into_iter()
                .flatten()
                .filter(|id| {
                    data.subscriptions.get(id).is_some_and(|s| {
                        s.is_active(now) && s.event_names.contains(&incoming.event_name)
                    })
                })
                .copied()
                .collect();
            let mut envelopes = Vec::with_capacity(matching.len());
            for subscription_id in matching {
                data.last_outgoing += 1;
                let outgoing = Outgoing {
                    id: data.last_outgoing,
                    subscription_id,
                    source: incoming.clone(),
                    created_at: now,
                };
                envelopes.push((outgoing.id, outgoing.envelope()));
                data.outgoings.insert(outgoing.id, outgoing);
            }
            (incoming, envelopes)
        };
        if let Some(rows) = &self.rows {
            rows.incoming(incoming.id, robot_id).await;
            for (id, envelope) in &envelopes {
                let subscription_id = envelope["payload"]["subscriptionId"].as_i64().unwrap_or(0);
                rows.outgoing(*id, incoming.id, subscription_id, robot_id)
                    .await;
            }
        }
        let mut outgoing_ids = Vec::with_capacity(envelopes.len());
        let mut unsent = Vec::new();
        for (id, envelope) in envelopes {
            outgoing_ids.push(id);
            if let Err(reason) = self.sink.publish(envelope.to_string()).await {
                tracing::warn!(outgoing = id, %reason, "status queue refused an envelope");
                unsent.push(reason);
            }
        }
        Posted {
            incoming: incoming.to_json(),
            outgoing_ids,
            unsent,
        }
    }

    /// The robot's incoming events named `event_name` (any when `None`) created at or after
    /// `created_since`, oldest first.
    pub fn incomings(
        &self,
        robot_id: i64,
        event_name: Option<&str>,
        created_since: Option<DateTime<Utc>>,
    ) -> Vec<Value> {
        let data = self.lock();
        let mut found: Vec<&Incoming> = data
            .incomings
            .get(&robot_id)
            .into_iter()
            .flatten()
            .filter(|e| event_name.is_none_or(|name| e.event_name == name))
            .filter(|e| created_since.is_none_or(|since| e.created_at >= since))
            .collect();
        found.sort_by_key(|e| (e.created_at, e.id));
        found.into_iter().map(Incoming::to_json).collect()
    }

    /// Creates a subscription of the robot to `event_names` until `until`.
    pub fn subscribe(
        &self,
        robot_id: i64,
        event_names: Vec<String>,
        until: DateTime<Utc>,
    ) -> Value {
        let now = (self.now)();
        let mut data = self.lock();
        data.last_subscription += 1;
        let subscription = Subscription {
            id: data.last_subscription,
            robot_id,
            event_names,
            until,
            deleted: false,
            created_at: now,
            updated_at: now,
        };
        for name in &subscription.event_names {
            let next = i64::try_from(data.event_type_ids.len()).unwrap_or(i64::MAX) + 1;
            data.event_type_ids.entry(name.clone()).or_insert(next);
        }
        let json = subscription.to_json(now, &data.event_type_ids);
        data.subscriptions_by_robot
            .entry(robot_id)
            .or_default()
            .push(subscription.id);
        data.subscriptions.insert(subscription.id, subscription);
        json
    }

    /// Ends a subscription; false when the robot has no such subscription or it was already
    /// deleted.
    pub fn unsubscribe(&self, robot_id: i64, subscription_id: i64) -> bool {
        let now = (self.now)();
        let mut data = self.lock();
        match data.subscriptions.get_mut(&subscription_id) {
            Some(s) if s.robot_id == robot_id && !s.deleted => {
                s.deleted = true;
                s.updated_at = now;
                true
            }
            _ => false,
        }
    }

    /// The robot's subscriptions, as `GET …/subscriptions` lists them.
    pub fn subscriptions(&self, robot_id: i64) -> Vec<Value> {
        let now = (self.now)();
        let data = self.lock();
        data.subscriptions_by_robot
            .get(&robot_id)
            .into_iter()
            .flatten()
            .filter_map(|id| data.subscriptions.get(id))
            .map(|s| s.to_json(now, &data.event_type_ids))
            .collect()
    }

    /// How many subscriptions (of any robot) are active now.
    /// Refuses every unsubscribe with 503 until `until` (a Megazord in trouble, for tests).
    pub fn refuse_unsubscribes_until(&self, until: DateTime<Utc>) {
        self.lock().refuse_unsubscribes_until = Some(until);
    }

    /// Until `until`, subscribes and unsubscribes are done at once but answered only after
    /// `delay` (a Megazord that commits and then stalls, for tests).
    pub fn answer_slowly_until(&self, until: DateTime<Utc>, delay: std::time::Duration) {
        self.lock().slow_until = Some((until, delay));
    }

    /// The delay of an answer now, when answers are slow.
    fn answer_delay(&self) -> Option<std::time::Duration> {
        let slow = self.lock().slow_until;
        slow.filter(|(until, _)| (self.now)() < *until)
            .map(|(_, delay)| delay)
    }

    /// Subscriptions never deleted, whatever their `until` — the real Megazord expires none
    /// (SPEC §5.2), so these are the ones that would still fan events out: a leak.
    pub fn undeleted_subscriptions(&self) -> Vec<i64> {
        self.lock()
            .subscriptions
            .values()
            .filter(|s| !s.deleted)
            .map(|s| s.id)
            .collect()
    }

    pub fn active_subscription_count(&self) -> usize {
        let now = (self.now)();
        let data = self.lock();
        data.subscriptions
            .values()
            .filter(|s| s.is_active(now))
            .count()
    }
}

impl Subscription {
    fn is_active(&self, now: DateTime<Utc>) -> bool {
        !self.deleted && self.until > now
    }

    fn to_json(&self, now: DateTime<Utc>, type_ids: &BTreeMap<String, i64>) -> Value {
        let details: Vec<Value> = self
            .event_names
            .iter()
            .map(|name| json!({"eventTypeId": type_ids.get(name), "eventName": name}))
            .collect();
        json!({
            "id": self.id, "robotId": self.robot_id, "subscriptionDetails": details,
            "isActive": self.is_active(now), "subscriptionType": "SERVICE_SUBSCRIPTION",
            "until": rfc3339(self.until),
            "createdAt": rfc3339(self.created_at), "updatedAt": rfc3339(self.updated_at),
        })
    }
}

impl Incoming {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "robotId": self.robot_id, "eventName": self.event_name,
            "level": self.level, "referenceId": self.reference_id,
            "providerName": self.provider_name, "createdAt": rfc3339(self.created_at),
        })
    }
}

impl Outgoing {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id, "sourceEventId": self.source.id, "subscriptionId": self.subscription_id,
            "status": "CREATED", "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.created_at), "sourceEvent": self.source.to_json(),
        })
    }

    /// The status queue message (SPEC §5.3).
    fn envelope(&self) -> Value {
        let robot_id = self.source.robot_id;
        json!({
            "from": SENDER,
            "to": {"robotId": robot_id.to_string()},
            "link": {
                "link": format!("/internal/v1/events/robots/{robot_id}/subscriptions/{}/outgoings/{}",
                    self.subscription_id, self.id),
                "rel": "",
            },
            "payload": self.to_json(),
        })
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[derive(Debug, Deserialize)]
struct IncomingsQuery {
    event_name: Option<String>,
    /// Unix seconds.
    created_since: Option<i64>,
}

async fn list_incomings(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    query: Result<Query<IncomingsQuery>, QueryRejection>,
) -> Result<Json<Vec<Value>>, Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Query(query) = query.map_err(|e| rejection("created_since", e))?;
    let since =
        match query.created_since {
            None => None,
            Some(seconds) => Some(DateTime::from_timestamp(seconds, 0).ok_or_else(|| {
                Problem::bad_field("created_since", "created_since is out of range")
            })?),
        };
    Ok(Json(sim.incomings(
        robot_id,
        query.event_name.as_deref(),
        since,
    )))
}

async fn post_incoming(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<NewIncoming>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Json(new) = body.map_err(|e| rejection("body", e.body_text()))?;
    if new.event_name.trim().is_empty() {
        return Err(Problem::bad_field(
            "eventName",
            "eventName must not be empty",
        ));
    }
    if let Some(reference) = &new.reference_id
        && !(reference.is_null() || reference.is_string() || reference.is_number())
    {
        return Err(Problem::bad_field(
            "referenceId",
            "referenceId must be a number, a string or null",
        ));
    }
    let posted = sim.post_incoming(robot_id, new).await;
    if !posted.unsent.is_empty() {
        return Err(Problem::bad_gateway(format!(
            "event stored, but the status queue refused {} envelope(s): {}",
            posted.unsent.len(),
            posted.unsent.join("; ")
        )));
    }
    let mut body = posted.incoming;
    body["outgoingIds"] = json!(posted.outgoing_ids);
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeBody {
    event_names: Vec<String>,
    until: DateTime<Utc>,
}

async fn post_subscription(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<SubscribeBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Json(body) = body.map_err(|e| rejection("body", e.body_text()))?;
    if body.event_names.is_empty() || body.event_names.iter().any(|n| n.trim().is_empty()) {
        return Err(Problem::bad_field(
            "eventNames",
            "eventNames must list at least one non-empty event name",
        ));
    }
    let delay = sim.answer_delay();
    let subscription = sim.subscribe(robot_id, body.event_names, body.until);
    if let (Some(rows), Some(id)) = (&sim.rows, subscription["id"].as_i64()) {
        rows.subscription(id, robot_id).await;
    }
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok((StatusCode::CREATED, Json(subscription)))
}

async fn list_subscriptions(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Vec<Value>>, Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    Ok(Json(sim.subscriptions(robot_id)))
}

async fn delete_subscription(
    State(sim): State<MegazordSim>,
    path: Result<Path<(i64, i64)>, PathRejection>,
) -> Result<StatusCode, Problem> {
    let Path((robot_id, subscription_id)) = path.map_err(|e| rejection("path", e))?;
    let refused_until = sim.lock().refuse_unsubscribes_until;
    if refused_until.is_some_and(|until| (sim.now)() < until) {
        return Err(Problem::unavailable("unsubscribes are refused for now"));
    }
    let delay = sim.answer_delay();
    let removed = sim.unsubscribe(robot_id, subscription_id);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if removed {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Problem::not_found(format!(
            "robot {robot_id} has no subscription {subscription_id}"
        )))
    }
}

async fn get_outgoing(
    State(sim): State<MegazordSim>,
    path: Result<Path<(i64, i64, i64)>, PathRejection>,
) -> Result<Json<Value>, Problem> {
    let Path((robot_id, subscription_id, outgoing_id)) = path.map_err(|e| rejection("path", e))?;
    let data = sim.lock();
    data.outgoings
        .get(&outgoing_id)
        .filter(|o| o.subscription_id == subscription_id && o.source.robot_id == robot_id)
        .map(|o| Json(o.to_json()))
        .ok_or_else(|| Problem::not_found(format!("no outgoing event {outgoing_id}")))
}

async fn robot_messages(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
) -> Result<Json<Vec<Value>>, Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let mailbox = sim
        .mailbox
        .as_ref()
        .ok_or_else(|| Problem::not_found("this simulator has no robot mailbox"))?;
    mailbox
        .messages(robot_id)
        .await
        .map(Json)
        .map_err(Problem::bad_gateway)
}
