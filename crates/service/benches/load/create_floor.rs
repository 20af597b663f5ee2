//! The floor under a create on this machine: a create's HTTP round trips and its grouped
//! writes, with nothing of the service between them. A bare axum handler takes the POST,
//! makes the four upstream calls a create of robot-is-charging makes (the step is cached) —
//! `GET incomings` for its two past names, the subscribe, `GET incomings` for the backfill —
//! to bare handlers over local HTTP, with the store's writes between them: the subscribe's
//! record in its own transaction before the subscribe, then the create's three rows and that
//! record's deletion through the raw grouped writer, and answers 201. The same load client drives it. What the service adds on top (routing,
//! Kong headers, validation, templates, rules, the request-key and open-checks reads, logs and
//! metrics) is the difference between the two.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::raw::RawCreates;
use crate::writes::{RawCheck, subscribe_intent_write};

/// The robot-is-charging template's event names (templates/robot-is-charging.v1.yaml).
const PAST_NAMES: [&str; 2] = ["CHARGING_STARTED", "CHARGING_STOPPED"];
pub(super) const FUTURE_NAMES: [&str; 1] = ["CHARGING_STARTED"];
/// Its default look-back, seconds.
const PAST_SECONDS: i64 = 3600;

/// The floor's two servers; both stop when this is dropped.
pub(super) struct Floor {
    pub(super) addr: SocketAddr,
    tasks: [JoinHandle<()>; 2],
}

impl Drop for Floor {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct FloorState {
    client: reqwest::Client,
    upstream: Arc<str>,
    creates: RawCreates,
    template_id: i64,
    next_id: Arc<AtomicI64>,
}

/// Starts the floor: its upstream stand-in and its create handler, writing through `creates`.
pub(super) async fn spawn_floor(creates: RawCreates, template_id: i64) -> anyhow::Result<Floor> {
    let (upstream, upstream_task) = serve(upstream_router()).await?;
    // As the service builds its upstream clients (upstream/http.rs): timeouts, the rest default.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .connect_timeout(Duration::from_secs(5))
        .build()?;
    let state = FloorState {
        client,
        upstream: format!("http://{upstream}").into(),
        creates,
        template_id,
        next_id: Arc::new(AtomicI64::new(1)),
    };
    let router = axum::Router::new()
        .route("/v1/status-check/check", axum::routing::post(create))
        .with_state(state);
    let (addr, task) = serve(router).await?;
    Ok(Floor {
        addr,
        tasks: [upstream_task, task],
    })
}

async fn serve(router: axum::Router) -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((addr, task))
}

/// Megazord's two routes a create calls, answering as the simulator does for a robot without
/// events: no incomings, and a new subscription.
fn upstream_router() -> axum::Router {
    let next_subscription = Arc::new(AtomicI64::new(1));
    axum::Router::new()
        .route(
            "/internal/v1/events/robots/{robot}/incomings",
            axum::routing::get(|| async { Json(json!([])) }),
        )
        .route(
            "/internal/v1/events/robots/{robot}/subscriptions",
            axum::routing::post(
                move |Path(robot): Path<i64>, Json(body): Json<Value>| async move {
                    let id = next_subscription.fetch_add(1, Ordering::Relaxed);
                    let details: Vec<Value> = body["eventNames"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|name| json!({"eventTypeId": 1, "eventName": name}))
                        .collect();
                    (
                        StatusCode::CREATED,
                        Json(json!({
                            "id": id, "robotId": robot, "subscriptionDetails": details,
                            "isActive": true, "subscriptionType": 1,
                            "createdAt": "2026-11-20T08:00:00.000Z",
                            "updatedAt": "2026-11-20T08:00:00.000Z",
                        })),
                    )
                },
            ),
        )
}

/// One create: the four upstream calls in the service's order, the subscribe's record before
/// the subscribe, the grouped write, the answer.
async fn create(
    State(state): State<FloorState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<Value>), (StatusCode, String)> {
    let failed = |e: String| (StatusCode::BAD_GATEWAY, e);
    let robot: i64 = headers
        .get("x-authenticated-userid")
        .and_then(|value| value.to_str().ok()?.parse().ok())
        .ok_or((StatusCode::UNAUTHORIZED, "no robot".to_owned()))?;
    let scheduled = body["scheduledId"]
        .as_i64()
        .ok_or((StatusCode::BAD_REQUEST, "no scheduledId".to_owned()))?;
    let now = chrono::Utc::now().timestamp();
    for name in PAST_NAMES {
        state
            .incomings(robot, name, now - PAST_SECONDS)
            .await
            .map_err(failed)?;
    }
    let unavailable = |e: String| (StatusCode::SERVICE_UNAVAILABLE, e);
    let intent = state
        .creates
        .record_subscribe_intent(subscribe_intent_write(
            robot,
            &FUTURE_NAMES,
            chrono::Utc::now(),
        ))
        .await
        .map_err(unavailable)?;
    let subscription = state.subscribe(robot).await.map_err(failed)?;
    for name in FUTURE_NAMES {
        state.incomings(robot, name, now).await.map_err(failed)?;
    }
    let check = RawCheck {
        subscribe_intent: Some(intent),
        ..RawCheck::create(robot, scheduled, state.template_id, subscription)
    };
    state.creates.write(check).await.map_err(unavailable)?;
    let id = state.next_id.fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": id, "robotId": robot, "statusCheck": "robot-is-charging", "templateVersion": 1,
            "stepId": body["stepId"], "scheduledId": scheduled,
            "scriptVersionId": body["scriptVersionId"], "plannedAt": body["plannedAt"],
            "phase": "FUTURE", "result": "PENDING", "nextStepId": null,
            "pollingSince": "2026-11-20T07:00:00.000Z", "pollingUntil": "2026-11-20T08:10:00.000Z",
            "subscriptionId": subscription, "history": [],
            "createdAt": "2026-11-20T08:00:00.000Z", "updatedAt": "2026-11-20T08:00:00.000Z",
        })),
    ))
}

impl FloorState {
    async fn incomings(&self, robot: i64, name: &str, since: i64) -> Result<Vec<Value>, String> {
        // The names are plain upper-case words: nothing to escape.
        let url = format!(
            "{}/internal/v1/events/robots/{robot}/incomings?event_name={name}&created_since={since}",
            self.upstream
        );
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET incomings: {e}"))?;
        response
            .json()
            .await
            .map_err(|e| format!("GET incomings body: {e}"))
    }

    async fn subscribe(&self, robot: i64) -> Result<i64, String> {
        let url = format!(
            "{}/internal/v1/events/robots/{robot}/subscriptions",
            self.upstream
        );
        let response = self
            .client
            .post(url)
            .json(&json!({"eventNames": FUTURE_NAMES, "until": "2026-11-20T08:10:00.000Z"}))
            .send()
            .await
            .map_err(|e| format!("POST subscriptions: {e}"))?;
        let created: Value = response
            .json()
            .await
            .map_err(|e| format!("POST subscriptions body: {e}"))?;
        created["id"]
            .as_i64()
            .ok_or_else(|| "the subscription has no id".to_owned())
    }
}
