//! Operational endpoints (SPEC §2.5): no Kong headers.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// A health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable`.
    pub status: &'static str,
    /// What is not ready, when something is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failing: Vec<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Up", body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok",
        failing: Vec::new(),
    })
}

/// The process is up: `/health/live` where the monitoring job service answered its probes,
/// so `status-check job` drops into that deployment with its probes as they are.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "Up (as `/health/live`)", body = Health)))]
pub async fn health() -> Json<Health> {
    live().await
}

/// The database answers, the templates are loaded and every worker this replica runs is up.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Not ready", body = Health),
    ))]
pub async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let mut failing = Vec::new();
    if let Err(e) = state.checks.ping().await {
        tracing::warn!(error = %e, "readiness: database unreachable");
        failing.push("database".to_owned());
    }
    failing.extend(state.readiness.failing());
    let status = if failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = Health {
        status: if failing.is_empty() {
            "ok"
        } else {
            "unavailable"
        },
        failing,
    };
    (status, Json(body))
}

/// Prometheus metrics, text format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
