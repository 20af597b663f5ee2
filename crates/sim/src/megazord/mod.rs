//! Megazord Events (SPEC §5.2, §5.3), as the real service behaves: robots' incoming events,
//! subscriptions to them, and the fan-out that turns an incoming event into one outgoing event
//! per matching subscription and sends its envelope to the status queue (or the subscription's
//! suffixed queue).
//!
//! Like the real one it knows a fixed set of **event schemas** (each with a level) and of
//! **providers**, seeded by whoever builds it ([`MegazordSim::with_event_schemas`],
//! [`MegazordSim::with_providers`]): an unknown event name or provider is refused with 404.
//! Subscriptions expire never (`until` is accepted and forgotten), are deleted softly, and a
//! failed (or deliberately dropped) SQS send is logged and never retried.
//!
//! The contract, under `/internal/v1/events/robots/{robotId}/` (see [`routes`]):
//! - `GET incomings?event_name=…&created_since=…` (unix seconds; both optional);
//! - `POST incomings` `{"providerName", "eventName", "level"?, "referenceId"?}` → 201 with the
//!   stored event (and, a simulator extra, the ids of the outgoing events it fanned out to);
//! - `POST subscriptions` `{"eventNames", "until"?, "queue"?, "isTriggerSubscription"?}` → 201;
//!   `GET subscriptions`; `DELETE subscriptions/{id}` → 204, or 404 when unknown or already
//!   deleted;
//! - `GET subscriptions/{id}/outgoings/{outgoingId}` — the link in each envelope.
//!
//! And the simulator's own routes: `POST /sim/robots/{robotId}/incomings` (an event with a
//! `createdAt` of the test's choosing), `GET`/`POST /sim/event-schemas`, and
//! `GET /sim/robots/{robotId}/messages` (what the service sent to that robot's queue).

pub mod routes;
mod wire;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::Router;
use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::{Now, RobotMailbox, StatusSink};

/// What `from` says in every envelope.
pub const SENDER: &str = "megazord-events";

/// The provider the monitoring job service posts its alarms as (SPEC §5.2, §12).
pub const JOBS_PROVIDER: &str = "azi-3-status-jobs";

/// The provider of events a test or the dev stack makes happen on a robot (its sensors, its
/// charger, …) when it does not name one: the real providers of those are not in our sources,
/// so the simulator has its own, which every caller seeds.
pub const ROBOT_PROVIDER: &str = "robot";

/// The level of most of Megazord's event schemas (lower is more urgent).
pub const DEFAULT_LEVEL: i64 = 10;

/// Event schemas the real Megazord has (NOTES.md, from its public design notes), with levels.
pub const REAL_EVENT_SCHEMAS: &[(&str, i64)] = &[
    ("ACTIVITY", DEFAULT_LEVEL),
    ("DOOR_OPEN_TOO_LONG", DEFAULT_LEVEL),
    ("IN_BATHROOM", DEFAULT_LEVEL),
    ("IN_KITCHEN", DEFAULT_LEVEL),
    ("NO_TOILET_ACTIVITY_ALARM", DEFAULT_LEVEL),
    ("OUT_OF_BED", DEFAULT_LEVEL),
    ("SHORT_INACTIVITY", 5),
    ("TOILET_ACTIVITY", DEFAULT_LEVEL),
];

/// `subscriptionType` of a subscription whose deliveries go to SQS.
pub const SERVICE_SUBSCRIPTION: i64 = 1;
/// `subscriptionType` of a trigger subscription: its deliveries start robot scripts elsewhere
/// and never reach SQS.
pub const TRIGGER_SUBSCRIPTION: i64 = 2;

/// A known event: its type id (as `subscriptionDetails` show it) and its level.
#[derive(Debug, Clone, Copy)]
struct EventSchema {
    type_id: i64,
    level: i64,
}

/// An event a robot (or a sensor of it, or a service) reported.
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
    /// The suffix of the queue its deliveries go to; the plain status queue when `None`.
    queue: Option<String>,
    /// What the subscriber sent as `until`: kept only for tests to read, nothing expires by it.
    until: Option<DateTime<Utc>>,
    subscription_type: i64,
    active: bool,
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

/// A new incoming event, through the Rust API or `POST /sim/robots/{robotId}/incomings`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewIncoming {
    pub event_name: String,
    /// The schema's level when absent.
    #[serde(default)]
    pub level: Option<i64>,
    /// A number, a string or null, as Megazord sends it.
    #[serde(default)]
    pub reference_id: Option<Value>,
    /// [`ROBOT_PROVIDER`] when absent.
    #[serde(default)]
    pub provider_name: Option<String>,
    /// When the event happened; now when absent. Only tests may say: the real Megazord (and
    /// the simulator's public route) stamps every event with the time it stored it.
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

    /// Backdates the event (a test's or the dev demo's history).
    pub fn at(mut self, created_at: DateTime<Utc>) -> Self {
        self.created_at = Some(created_at);
        self
    }

    pub fn provider(mut self, provider_name: &str) -> Self {
        self.provider_name = Some(provider_name.to_string());
        self
    }
}

/// A new subscription (the body of `POST …/subscriptions`, once checked).
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    pub event_names: Vec<String>,
    /// The suffix of the queue its deliveries go to (`^[a-zA-Z0-9-]{1,128}$`).
    pub queue: Option<String>,
    /// Accepted and forgotten by Megazord (only [`MegazordSim::subscription_until`] reads it).
    pub until: Option<DateTime<Utc>>,
    pub is_trigger: bool,
}

impl NewSubscription {
    pub fn to(event_names: &[&str]) -> Self {
        NewSubscription {
            event_names: event_names.iter().map(|n| n.to_string()).collect(),
            ..NewSubscription::default()
        }
    }
}

/// Why Megazord refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the field and what is wrong with it.
    Invalid { field: &'static str, detail: String },
    /// 404: the field names an event schema or a provider Megazord does not know.
    Unknown { field: &'static str, detail: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Invalid { field, detail } => write!(f, "400 {field}: {detail}"),
            Refusal::Unknown { field, detail } => write!(f, "404 {field}: {detail}"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What posting an incoming event did.
#[derive(Debug, Clone)]
pub struct Posted {
    /// The stored event, as `GET …/incomings` lists it.
    pub incoming: Value,
    /// The outgoing events it fanned out to, one per matching active subscription.
    pub outgoing_ids: Vec<i64>,
    /// Outgoing events whose envelope never reached a queue (the send failed or was dropped);
    /// like the real Megazord, the simulator logs them and never retries.
    pub lost: Vec<i64>,
}

/// Deliveries to drop on purpose: a fault for tests (an SQS send that failed).
#[derive(Debug, Default)]
struct Drops {
    next: usize,
    until: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct Data {
    schemas: BTreeMap<String, EventSchema>,
    providers: BTreeSet<String>,
    incomings: BTreeMap<i64, Vec<Incoming>>,
    subscriptions: BTreeMap<i64, Subscription>,
    subscriptions_by_robot: BTreeMap<i64, Vec<i64>>,
    outgoings: BTreeMap<i64, Outgoing>,
    last_incoming: i64,
    last_subscription: i64,
    last_outgoing: i64,
    drops: Drops,
    /// Unsubscribes are refused (503) until then: a fault for tests.
    refuse_unsubscribes_until: Option<DateTime<Utc>>,
    /// Subscribes and unsubscribes are carried out but answered only after the delay, until
    /// then: a fault for tests (a client that gives up first never learns what was done).
    slow_until: Option<(DateTime<Utc>, std::time::Duration)>,
    /// `POST …/incomings` is refused (503) until then: a fault for tests.
    refuse_posts_until: Option<DateTime<Utc>>,
    posts_slow_until: Option<(DateTime<Utc>, std::time::Duration)>,
}

impl Data {
    fn add_schema(&mut self, name: String, level: i64) {
        let next = i64::try_from(self.schemas.len()).unwrap_or(i64::MAX) + 1;
        self.schemas
            .entry(name)
            .and_modify(|s| s.level = level)
            .or_insert(EventSchema {
                type_id: next,
                level,
            });
    }

    fn schema(&self, field: &'static str, name: &str) -> Result<EventSchema, Refusal> {
        self.schemas
            .get(name)
            .copied()
            .ok_or_else(|| Refusal::Unknown {
                field,
                detail: format!("no event schema named {name:?}"),
            })
    }

    /// Whether this delivery is one to drop (and counts it if so).
    fn drop_delivery(&mut self, now: DateTime<Utc>) -> bool {
        if self.drops.next > 0 {
            self.drops.next -= 1;
            return true;
        }
        self.drops.until.is_some_and(|until| now < until)
    }
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
    /// A simulator that sends envelopes to `sink`, with ids in the ranges of SPEC §5's
    /// examples (incomings from 5001, subscriptions from 991, outgoings from 70001). It knows
    /// no event schema and no provider until seeded.
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

    /// Knows these event schemas (name, level) too.
    pub fn with_event_schemas<S: Into<String>>(
        self,
        schemas: impl IntoIterator<Item = (S, i64)>,
    ) -> Self {
        self.add_event_schemas(schemas);
        self
    }

    /// Learns event schemas (name, level); a known name gets the new level and keeps its id.
    pub fn add_event_schemas<S: Into<String>>(&self, schemas: impl IntoIterator<Item = (S, i64)>) {
        let mut data = self.lock();
        for (name, level) in schemas {
            data.add_schema(name.into(), level);
        }
    }

    /// The known event schemas (name, level), by name.
    pub fn known_events(&self) -> Vec<(String, i64)> {
        self.lock()
            .schemas
            .iter()
            .map(|(name, schema)| (name.clone(), schema.level))
            .collect()
    }

    /// Accepts events from these providers too.
    pub fn with_providers<S: Into<String>>(self, providers: impl IntoIterator<Item = S>) -> Self {
        self.lock()
            .providers
            .extend(providers.into_iter().map(Into::into));
        self
    }

    /// The known providers, sorted.
    pub fn known_providers(&self) -> Vec<String> {
        self.lock().providers.iter().cloned().collect()
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
        routes::router(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores an incoming event and fans it out: one outgoing event per active subscription
    /// of the robot to its name; each service subscription's envelope is sent to its queue,
    /// once (a failed or dropped send is logged, never retried).
    pub async fn post_incoming(&self, robot_id: i64, new: NewIncoming) -> Result<Posted, Refusal> {
        if new.event_name.trim().is_empty() {
            return Err(Refusal::Invalid {
                field: "eventName",
                detail: "eventName must not be empty".into(),
            });
        }
        let provider = new
            .provider_name
            .unwrap_or_else(|| ROBOT_PROVIDER.to_string());
        let now = (self.now)();
        let (incoming, deliveries) = {
            let mut data = self.lock();
            if !data.providers.contains(&provider) {
                return Err(Refusal::Unknown {
                    field: "providerName",
                    detail: format!("no event provider named {provider:?}"),
                });
            }
            let schema = data.schema("eventName", &new.event_name)?;
            data.last_incoming += 1;
            let incoming = Incoming {
                id: data.last_incoming,
                robot_id,
                event_name: new.event_name,
                level: new.level.unwrap_or(schema.level),
                reference_id: new.reference_id.unwrap_or(Value::Null),
                provider_name: provider,
                // `incoming_event.created_at` is a `TIMESTAMP`: whole seconds.
                created_at: new.created_at.unwrap_or(now.trunc_subsecs(0)),
            };
            data.incomings
                .entry(robot_id)
                .or_default()
                .push(incoming.clone());
            let matching: Vec<Subscription> = data
                .subscriptions_by_robot
                .get(&robot_id)
                .into_iter()
                .flatten()
                .filter_map(|id| data.subscriptions.get(id))
                .filter(|s| s.active && s.event_names.contains(&incoming.event_name))
                .cloned()
                .collect();
            let mut deliveries = Vec::with_capacity(matching.len());
            for subscription in matching {
                data.last_outgoing += 1;
                let outgoing = Outgoing {
                    id: data.last_outgoing,
                    subscription_id: subscription.id,
                    source: incoming.clone(),
                    created_at: now,
                };
                let send = (subscription.subscription_type == SERVICE_SUBSCRIPTION)
                    .then(|| (subscription.queue.clone(), outgoing.envelope()));
                let dropped = send.is_some() && data.drop_delivery(now);
                deliveries.push((outgoing.id, subscription.id, send, dropped));
                data.outgoings.insert(outgoing.id, outgoing);
            }
            (incoming, deliveries)
        };
        if let Some(rows) = &self.rows {
            rows.incoming(incoming.id, robot_id).await;
            for (id, subscription_id, _, _) in &deliveries {
                rows.outgoing(*id, incoming.id, *subscription_id, robot_id)
                    .await;
            }
        }
        let mut outgoing_ids = Vec::with_capacity(deliveries.len());
        let mut lost = Vec::new();
        for (id, subscription_id, send, dropped) in deliveries {
            outgoing_ids.push(id);
            // A trigger subscription's delivery goes to the trigger service, not to SQS.
            let Some((queue, envelope)) = send else {
                continue;
            };
            let result = if dropped {
                Err("dropped on purpose (a fault of the simulator)".to_string())
            } else {
                self.sink.send(queue.as_deref(), envelope.to_string()).await
            };
            if let Err(reason) = result {
                tracing::error!(
                    outgoing = id,
                    subscription = subscription_id,
                    queue = queue.as_deref().unwrap_or("(status queue)"),
                    %reason,
                    "the envelope was not sent; it is not retried"
                );
                lost.push(id);
            }
        }
        Ok(Posted {
            incoming: incoming.to_json(),
            outgoing_ids,
            lost,
        })
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

    /// Creates a subscription of the robot; refused when a name is repeated (400), or is no
    /// known event schema (404), or the queue suffix is not `^[a-zA-Z0-9-]{1,128}$` (400).
    pub fn subscribe(&self, robot_id: i64, new: NewSubscription) -> Result<Value, Refusal> {
        let invalid = |field, detail: String| Refusal::Invalid { field, detail };
        if new.event_names.is_empty() || new.event_names.iter().any(|n| n.trim().is_empty()) {
            return Err(invalid(
                "eventNames",
                "eventNames must list at least one non-empty event name".into(),
            ));
        }
        let mut seen = BTreeSet::new();
        if let Some(repeated) = new.event_names.iter().find(|n| !seen.insert(*n)) {
            return Err(invalid(
                "eventNames",
                format!("eventNames must be unique; {repeated:?} is repeated"),
            ));
        }
        if let Some(queue) = &new.queue
            && !valid_queue_suffix(queue)
        {
            return Err(invalid(
                "queue",
                format!("queue {queue:?} must be 1 to 128 letters, digits or hyphens"),
            ));
        }
        let now = (self.now)();
        let mut data = self.lock();
        for name in &new.event_names {
            data.schema("eventNames", name)?;
        }
        data.last_subscription += 1;
        let subscription = Subscription {
            id: data.last_subscription,
            robot_id,
            event_names: new.event_names,
            queue: new.queue,
            until: new.until,
            subscription_type: if new.is_trigger {
                TRIGGER_SUBSCRIPTION
            } else {
                SERVICE_SUBSCRIPTION
            },
            active: true,
            created_at: now,
            updated_at: now,
        };
        let json = subscription.to_json(&data.schemas);
        data.subscriptions_by_robot
            .entry(robot_id)
            .or_default()
            .push(subscription.id);
        data.subscriptions.insert(subscription.id, subscription);
        Ok(json)
    }

    /// Ends a subscription softly (it stays listed, inactive); false when the robot has no
    /// such subscription or it was already deleted.
    pub fn unsubscribe(&self, robot_id: i64, subscription_id: i64) -> bool {
        let now = (self.now)();
        let mut data = self.lock();
        match data.subscriptions.get_mut(&subscription_id) {
            Some(s) if s.robot_id == robot_id && s.active => {
                s.active = false;
                s.updated_at = now;
                true
            }
            _ => false,
        }
    }

    /// The robot's subscriptions, deleted ones too, as `GET …/subscriptions` lists them.
    pub fn subscriptions(&self, robot_id: i64) -> Vec<Value> {
        let data = self.lock();
        data.subscriptions_by_robot
            .get(&robot_id)
            .into_iter()
            .flatten()
            .filter_map(|id| data.subscriptions.get(id))
            .map(|s| s.to_json(&data.schemas))
            .collect()
    }

    /// The queue suffix a subscription was created with (it is not in any answer).
    pub fn subscription_queue(&self, subscription_id: i64) -> Option<String> {
        self.lock()
            .subscriptions
            .get(&subscription_id)
            .and_then(|s| s.queue.clone())
    }

    /// The `until` a subscription was created with: Megazord ignores it (nothing expires), but
    /// a test may check what its subscriber sent.
    pub fn subscription_until(&self, subscription_id: i64) -> Option<DateTime<Utc>> {
        self.lock()
            .subscriptions
            .get(&subscription_id)
            .and_then(|s| s.until)
    }

    /// Refuses every unsubscribe with 503 until `until` (a Megazord in trouble, for tests).
    pub fn refuse_unsubscribes_until(&self, until: DateTime<Utc>) {
        self.lock().refuse_unsubscribes_until = Some(until);
    }

    /// Until `until`, subscribes and unsubscribes are done at once but answered only after
    /// `delay` (a Megazord that commits and then stalls, for tests).
    pub fn answer_slowly_until(&self, until: DateTime<Utc>, delay: std::time::Duration) {
        self.lock().slow_until = Some((until, delay));
    }

    /// The delay of a subscribe's or unsubscribe's answer now, when answers are slow.
    fn answer_delay(&self) -> Option<std::time::Duration> {
        let slow = self.lock().slow_until;
        self.delay_now(slow)
    }

    /// `slow`'s delay while its time has not passed.
    fn delay_now(
        &self,
        slow: Option<(DateTime<Utc>, std::time::Duration)>,
    ) -> Option<std::time::Duration> {
        slow.filter(|(until, _)| (self.now)() < *until)
            .map(|(_, delay)| delay)
    }

    /// Until `until`, every `POST …/incomings` is stored at once but answered only after
    /// `delay` (a Megazord that commits and then stalls: the poster's answer is lost).
    pub fn answer_posts_slowly_until(&self, until: DateTime<Utc>, delay: std::time::Duration) {
        self.lock().posts_slow_until = Some((until, delay));
    }

    /// The delay of a post's answer now, when posts are answered slowly.
    fn post_answer_delay(&self) -> Option<std::time::Duration> {
        let slow = self.lock().posts_slow_until;
        self.delay_now(slow)
    }

    /// Refuses every `POST …/incomings` with 503 until `until` (nothing is stored).
    pub fn refuse_posts_until(&self, until: DateTime<Utc>) {
        self.lock().refuse_posts_until = Some(until);
    }

    /// The next `n` SQS sends fail (a fault for tests): the events and their outgoing events
    /// are stored and listed, but those envelopes never reach a queue and are never retried.
    pub fn drop_next_deliveries(&self, n: usize) {
        self.lock().drops.next = n;
    }

    /// Every SQS send before `until` fails, as [`MegazordSim::drop_next_deliveries`].
    pub fn drop_deliveries_until(&self, until: DateTime<Utc>) {
        self.lock().drops.until = Some(until);
    }

    /// Subscriptions never deleted: the real Megazord expires none (SPEC §5.2), so these are
    /// the ones still fanning events out — once their owner is done with them, a leak.
    pub fn undeleted_subscriptions(&self) -> Vec<i64> {
        self.lock()
            .subscriptions
            .values()
            .filter(|s| s.active)
            .map(|s| s.id)
            .collect()
    }

    /// How many subscriptions (of any robot) are active, i.e. not deleted.
    pub fn active_subscription_count(&self) -> usize {
        self.undeleted_subscriptions().len()
    }
}

/// `^[a-zA-Z0-9-]{1,128}$`.
fn valid_queue_suffix(queue: &str) -> bool {
    (1..=128).contains(&queue.len())
        && queue
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}
