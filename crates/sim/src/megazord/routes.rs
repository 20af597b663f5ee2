//! The HTTP side of [`MegazordSim`]: the contract's routes and the simulator's `/sim` ones.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DEFAULT_LEVEL, MegazordSim, NewIncoming, NewSubscription, Refusal};
use crate::problem::{Problem, rejection};

pub(super) fn router(sim: MegazordSim) -> Router {
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
        .route("/sim/robots/{robot_id}/incomings", post(post_backdated))
        .route(
            "/sim/event-schemas",
            get(list_event_schemas).post(post_event_schema),
        )
        .route("/sim/robots/{robot_id}/messages", get(robot_messages))
        .with_state(sim)
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Problem {
        match refusal {
            Refusal::Invalid { field, detail } => Problem::bad_field(field, detail),
            Refusal::Unknown { field, detail } => Problem::unknown_field(field, detail),
        }
    }
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

/// The body of the contract's `POST …/incomings`: Megazord stamps the event itself, so a
/// `createdAt` is refused rather than silently ignored (a caller relying on it is wrong).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PostIncomingBody {
    #[serde(default)]
    provider_name: Option<String>,
    event_name: String,
    #[serde(default)]
    level: Option<i64>,
    #[serde(default)]
    reference_id: Option<Value>,
    #[serde(default)]
    created_at: Option<Value>,
}

async fn post_incoming(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<PostIncomingBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Json(body) = body.map_err(|e| rejection("body", e.body_text()))?;
    if body.created_at.is_some() {
        return Err(Problem::bad_field(
            "createdAt",
            "Megazord sets createdAt itself; to backdate an event in a test, \
             POST /sim/robots/{robotId}/incomings",
        ));
    }
    let Some(provider_name) = body.provider_name else {
        return Err(Problem::bad_field(
            "providerName",
            "providerName is required",
        ));
    };
    let new = NewIncoming {
        event_name: body.event_name,
        level: body.level,
        reference_id: body.reference_id,
        provider_name: Some(provider_name),
        created_at: None,
    };
    store_incoming(&sim, robot_id, new).await
}

/// The simulator's own `POST /sim/robots/{robotId}/incomings`: a test's event, with the
/// `createdAt` it chooses and [`super::ROBOT_PROVIDER`] unless it names a provider.
async fn post_backdated(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<NewIncoming>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Json(new) = body.map_err(|e| rejection("body", e.body_text()))?;
    store_incoming(&sim, robot_id, new).await
}

async fn store_incoming(
    sim: &MegazordSim,
    robot_id: i64,
    new: NewIncoming,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let refused_until = sim.lock().refuse_posts_until;
    if refused_until.is_some_and(|until| (sim.now)() < until) {
        return Err(Problem::unavailable("events are refused for now"));
    }
    if let Some(reference) = &new.reference_id
        && !(reference.is_null() || reference.is_string() || reference.is_number())
    {
        return Err(Problem::bad_field(
            "referenceId",
            "referenceId must be a number, a string or null",
        ));
    }
    // A lost delivery does not fail the request: the event is stored, as in the real one.
    let delay = sim.post_answer_delay();
    let posted = sim.post_incoming(robot_id, new).await?;
    let mut body = posted.incoming;
    body["outgoingIds"] = json!(posted.outgoing_ids);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscribeBody {
    event_names: Vec<String>,
    /// Accepted (a date) and forgotten, like the real one: nothing expires a subscription.
    #[serde(default)]
    until: Option<DateTime<Utc>>,
    #[serde(default)]
    queue: Option<String>,
    #[serde(default)]
    is_trigger_subscription: Option<bool>,
}

async fn post_subscription(
    State(sim): State<MegazordSim>,
    path: Result<Path<i64>, PathRejection>,
    body: Result<Json<SubscribeBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Path(robot_id) = path.map_err(|e| rejection("robotId", e))?;
    let Json(body) = body.map_err(|e| rejection("body", e.body_text()))?;
    let delay = sim.answer_delay();
    let subscription = sim.subscribe(
        robot_id,
        NewSubscription {
            event_names: body.event_names,
            queue: body.queue,
            until: body.until,
            is_trigger: body.is_trigger_subscription.unwrap_or(false),
        },
    )?;
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
            "robot {robot_id} has no active subscription {subscription_id}"
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

async fn list_event_schemas(State(sim): State<MegazordSim>) -> Json<Vec<Value>> {
    Json(
        sim.known_events()
            .into_iter()
            .map(|(name, level)| json!({"eventName": name, "level": level}))
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EventSchemaBody {
    event_name: String,
    #[serde(default)]
    level: Option<i64>,
}

/// `POST /sim/event-schemas` `{"eventName", "level"?}`: teaches the simulator an event (for a
/// template made by hand in the dev stack); the level is 10 unless given.
async fn post_event_schema(
    State(sim): State<MegazordSim>,
    body: Result<Json<EventSchemaBody>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Json(body) = body.map_err(|e| rejection("body", e.body_text()))?;
    let name = body.event_name;
    if name.trim().is_empty() || name.chars().any(char::is_whitespace) || name.len() > 128 {
        return Err(Problem::bad_field(
            "eventName",
            "eventName must be 1 to 128 characters without spaces",
        ));
    }
    let level = body.level.unwrap_or(DEFAULT_LEVEL);
    sim.add_event_schemas([(name.clone(), level)]);
    Ok((
        StatusCode::CREATED,
        Json(json!({"eventName": name, "level": level})),
    ))
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
