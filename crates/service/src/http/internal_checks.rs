//! `GET /internal/v1/checks/{id}` (SPEC §15): any robot's check, with the notifications sent
//! to the robot — for people (support staff, the pages), not robots. Behind the internal API
//! token like the monitors' API.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::checks::check_id;
use super::monitors::Internal;
use super::problem::{ApiError, InternalAuthProblems};
use crate::checks::view::CheckDto;
use crate::support::NotificationDto;

/// A check (SPEC §2.4) with its notifications.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InternalCheckDto {
    #[serde(flatten)]
    pub check: CheckDto,
    /// The notifications the outbox still holds (sent ones are purged after the retention,
    /// default 7 days), by `notificationSeq`.
    pub notifications: Vec<NotificationDto>,
}

/// Any robot's check, with its notifications.
#[utoipa::path(
    get,
    path = "/internal/v1/checks/{id}",
    tag = "checks",
    params(("id" = i64, Path, description = "The check's id", minimum = 1)),
    responses(
        (status = 200, description = "The check", body = InternalCheckDto),
        (status = 400, description = "The id is not a positive integer", body = super::problem::Problem, content_type = "application/problem+json"),
        InternalAuthProblems,
        (status = 404, description = "No such check, or the internal API is disabled", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_internal_check(
    _: Internal,
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<InternalCheckDto>, ApiError> {
    let id = check_id(path, "id")?;
    tracing::Span::current().record("check_id", id);
    match state.checks.view(id).await? {
        Some(view) => Ok(Json(InternalCheckDto {
            check: CheckDto::from(&view.check),
            notifications: view.notifications,
        })),
        None => Err(ApiError::NotFound(format!("status check {id} not found"))),
    }
}
