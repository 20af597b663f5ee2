//! `POST /v1/status-check/check` and `GET /v1/status-check/check/{statusCheckId}`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Robot;
use super::problem::{
    ApiError, FieldError, JsonBodyProblems, Problem, RobotAuthProblems, canonical_id,
};
use super::request_id::RequestId;
use crate::checks::view::CheckDto;
use crate::checks::{CheckError, CreateOutcome, CreateRequest, TIMESTAMP_MAX, TIMESTAMP_MIN};
use crate::upstream::UpstreamError;

/// The body of `POST /v1/status-check/check`. Unknown fields are ignored.
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // Documents the body; parsing is by hand for field-level errors.
pub struct CreateCheckBody {
    /// The script step the robot is at; a positive integer.
    #[schema(minimum = 1, maximum = 9223372036854775807_i64, example = 103)]
    step_id: i64,
    #[schema(minimum = 1, maximum = 9223372036854775807_i64, example = 456)]
    scheduled_id: i64,
    #[schema(minimum = 1, maximum = 9223372036854775807_i64, example = 789)]
    script_version_id: i64,
    /// RFC 3339 with an upper-case `T` and an offset, in the years 1971 to 2037 (the
    /// production column is a MySQL TIMESTAMP).
    #[schema(format = DateTime, pattern = "^(19[7-9][1-9]|19[89]0|20[0-2][0-9]|203[0-7])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$", example = "2026-11-20T08:00:00Z")]
    planned_at: String,
}

/// A JSON object body: 415 for another content type, 413 over the size limit, 400 when it
/// is not a JSON object.
pub struct JsonObject(pub serde_json::Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let essence = content_type.split(';').next().unwrap_or("").trim();
        let is_json = essence.eq_ignore_ascii_case("application/json")
            || (essence.starts_with("application/") && essence.ends_with("+json"));
        if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(format!(
                        "the body is larger than {} bytes",
                        super::BODY_LIMIT
                    ))
                } else {
                    ApiError::bad_request("the body could not be read")
                }
            })?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(format!(
                "the body is not valid JSON: {e}"
            ))),
        }
    }
}

/// 2^63 as a float: the first value past the largest id.
const ID_BOUND: f64 = 9_223_372_036_854_775_808.0;

/// A JSON number that is an integer by JSON Schema (`2` and `2.0` alike), as an i64.
fn json_integer(n: &serde_json::Number) -> Option<i64> {
    if let Some(v) = n.as_i64() {
        return Some(v);
    }
    let f = n.as_f64()?;
    // In range and without a fraction: the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && (-ID_BOUND..ID_BOUND).contains(&f)).then_some(f as i64)
}

/// The form `plannedAt` must have, as published (the `pattern` of `CreateCheckBody`): RFC 3339
/// with an upper-case `T` and an offset (`Z` or ±hh:mm), in years whose every instant fits the
/// MySQL TIMESTAMP column whatever the offset. Checked by hand, digit by digit.
fn planned_at_shape(text: &str) -> bool {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>, min: u32, max: u32| -> bool {
        b.get(range.clone()).is_some_and(|digits| {
            digits.iter().all(u8::is_ascii_digit)
                && (min..=max).contains(
                    &digits
                        .iter()
                        .fold(0u32, |acc, d| acc * 10 + u32::from(d - b'0')),
                )
        })
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let head = num(0..4, 1971, 2037)
        && at(4, b'-')
        && num(5..7, 1, 12)
        && at(7, b'-')
        && num(8..10, 1, 31)
        && at(10, b'T')
        && num(11..13, 0, 23)
        && at(13, b':')
        && num(14..16, 0, 59)
        && at(16, b':')
        && num(17..19, 0, 59);
    if !head {
        return false;
    }
    let mut i = 19;
    if at(i, b'.') {
        let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return false;
        }
        i += 1 + digits;
    }
    match b.get(i) {
        Some(b'Z') => b.len() == i + 1,
        Some(b'+' | b'-') => {
            b.len() == i + 6
                && num(i + 1..i + 3, 0, 23)
                && at(i + 3, b':')
                && num(i + 4..i + 6, 0, 59)
        }
        _ => false,
    }
}

/// Validates the create body, listing every invalid field.
fn parse_create(
    robot_id: i64,
    body: &serde_json::Map<String, Value>,
) -> Result<CreateRequest, ApiError> {
    let mut errors = Vec::new();
    let mut id = |field: &str| -> i64 {
        let message = match body.get(field) {
            None | Some(Value::Null) => "is required",
            Some(Value::Number(n)) => match json_integer(n) {
                Some(v) if v > 0 => return v,
                _ if n.as_u64().is_some_and(|u| u > i64::MAX as u64)
                    || n.as_f64().is_some_and(|f| f >= ID_BOUND) =>
                {
                    "must be at most 9223372036854775807"
                }
                _ => "must be a positive integer",
            },
            Some(_) => "must be a positive integer",
        };
        errors.push(FieldError {
            field: field.to_owned(),
            message: message.to_owned(),
        });
        0
    };
    let step_id = id("stepId");
    let scheduled_id = id("scheduledId");
    let script_version_id = id("scriptVersionId");
    let planned_at = match body.get("plannedAt") {
        Some(Value::String(text)) => match DateTime::parse_from_rfc3339(text) {
            Ok(at)
                if planned_at_shape(text)
                    && (TIMESTAMP_MIN..=TIMESTAMP_MAX).contains(&at.with_timezone(&Utc)) =>
            {
                Some(at.with_timezone(&Utc))
            }
            Ok(_) => {
                // The production column is a MySQL TIMESTAMP; the published schema names the
                // years that fit whatever the offset, and the exact form (planned_at_shape).
                errors.push(FieldError {
                    field: "plannedAt".to_owned(),
                    message: "must be YYYY-MM-DDThh:mm:ss[.f](Z|±hh:mm) in the years 1971 to \
                              2037 (the production column is a MySQL TIMESTAMP)"
                        .to_owned(),
                });
                None
            }
            Err(_) => {
                errors.push(FieldError {
                    field: "plannedAt".to_owned(),
                    message: "must be an RFC 3339 timestamp with an offset".to_owned(),
                });
                None
            }
        },
        None | Some(Value::Null) => {
            errors.push(FieldError {
                field: "plannedAt".to_owned(),
                message: "is required".to_owned(),
            });
            None
        }
        Some(_) => {
            errors.push(FieldError {
                field: "plannedAt".to_owned(),
                message: "must be an RFC 3339 timestamp string".to_owned(),
            });
            None
        }
    };
    match (planned_at, errors.is_empty()) {
        (Some(planned_at), true) => Ok(CreateRequest {
            robot_id,
            step_id,
            scheduled_id,
            script_version_id,
            planned_at,
        }),
        _ => Err(ApiError::BadRequest {
            detail: "the request body is invalid".to_owned(),
            errors,
        }),
    }
}

impl From<CheckError> for ApiError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::StepNotFound(_) => ApiError::NotFound(error.to_string()),
            CheckError::TooManyOpen { .. } => ApiError::TooManyRequests(error.to_string()),
            CheckError::Unprocessable(detail) => ApiError::Unprocessable(detail),
            CheckError::InvalidField { field, message } => ApiError::UnprocessableFields {
                detail: format!("{field} does not match the step"),
                errors: vec![FieldError {
                    field: field.to_owned(),
                    message,
                }],
            },
            CheckError::Upstream(e) => {
                tracing::warn!(error = %e, "upstream failure");
                let service = match e {
                    UpstreamError::NotFound { service }
                    | UpstreamError::Unavailable { service, .. }
                    | UpstreamError::Invalid { service, .. } => service,
                };
                ApiError::BadGateway(format!(
                    "{service} could not be reached or answered unexpectedly; nothing was saved"
                ))
            }
            CheckError::Store(e) => database_error(e.is_unavailable(), e.into()),
            CheckError::TemplateMissing(_) => ApiError::Internal(error.into()),
            CheckError::Interrupted(_) => ApiError::Unavailable(error.to_string()),
        }
    }
}

/// A database failure under a use case, as the API answers it: 503 when the database is
/// unavailable (the use case's error says so), else 500.
pub(super) fn database_error(unavailable: bool, error: anyhow::Error) -> ApiError {
    if unavailable {
        tracing::error!(error = %error, "database unavailable");
        return ApiError::Unavailable("the database is unavailable; try again".to_owned());
    }
    ApiError::Internal(error)
}

/// The check id in the path (its parameter named `field`), checked.
pub(super) fn check_id(
    path: Result<Path<String>, PathRejection>,
    field: &str,
) -> Result<i64, ApiError> {
    path.ok()
        .and_then(|Path(id)| canonical_id(&id))
        .ok_or_else(|| ApiError::BadRequest {
            detail: "the status check id is invalid".to_owned(),
            errors: vec![FieldError::not_an_id(field)],
        })
}

/// The headers of a robot's request, as Kong sets them (SPEC §2.1), and its request id: read by
/// the `Robot` and `RequestId` extractors, declared here once for the OpenAPI document.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[expect(
    dead_code,
    reason = "the OpenAPI document's only: the extractors read the headers"
)]
struct RobotHeaders {
    /// Set by Kong
    #[param(rename = "x-consumer-id")]
    consumer_id: String,
    /// Set by Kong; must be the robot consumer
    #[param(rename = "x-consumer-username")]
    consumer_username: String,
    /// Set by Kong; the robot id (published with its bound as a security scheme: `complete`)
    #[param(rename = "x-authenticated-userid")]
    authenticated_userid: i64,
    /// Set by Kong; `robot` when present
    #[param(rename = "x-authenticated-scope")]
    authenticated_scope: Option<String>,
    /// Request id, propagated upstream
    #[param(rename = "Call-Ref")]
    call_ref: Option<String>,
}

/// Start a status check.
#[utoipa::path(
    post,
    path = "/v1/status-check/check",
    tag = "checks",
    request_body(content = CreateCheckBody, content_type = "application/json"),
    params(
        RobotHeaders,
    ),
    responses(
        (status = 201, description = "The check was created", body = CheckDto),
        (status = 200, description = "The same request was made before: the existing check", body = CheckDto),
        (status = 400, description = "Invalid body", body = Problem, content_type = "application/problem+json"),
        RobotAuthProblems,
        (status = 404, description = "Step unknown at Micro-Managers", body = Problem, content_type = "application/problem+json"),
        JsonBodyProblems,
        (status = 422, description = "Not a statusCheck step, no active template, no pass/fail next step, or a scriptVersionId that is not the step's (listed in `errors`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "The robot has OPEN_CHECKS_PER_STEP open checks at this step already", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "An upstream failed; nothing was saved", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_check(
    State(state): State<AppState>,
    robot: Robot,
    RequestId(call_ref): RequestId,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    let request = parse_create(robot.id, &body)?;
    let (status, check) = match state.checks.create(request, &call_ref).await? {
        CreateOutcome::Created(check) => (StatusCode::CREATED, check),
        CreateOutcome::Existing(check) => (StatusCode::OK, check),
    };
    tracing::Span::current().record("check_id", check.id);
    Ok((status, Json(CheckDto::from(&check))).into_response())
}

/// Read a status check.
#[utoipa::path(
    get,
    path = "/v1/status-check/check/{statusCheckId}",
    tag = "checks",
    params(
        ("statusCheckId" = i64, Path, description = "The check's id", minimum = 1),
        RobotHeaders,
    ),
    responses(
        (status = 200, description = "The check", body = CheckDto),
        (status = 400, description = "The id is not a positive integer", body = Problem, content_type = "application/problem+json"),
        RobotAuthProblems,
        (status = 404, description = "No such check for this robot", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_check(
    State(state): State<AppState>,
    robot: Robot,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<CheckDto>, ApiError> {
    let id = check_id(path, "statusCheckId")?;
    tracing::Span::current().record("check_id", id);
    match state.checks.get(robot.id, id).await? {
        Some(check) => Ok(Json(CheckDto::from(&check))),
        None => Err(ApiError::NotFound(format!("status check {id} not found"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `json` (an object) as robot 42's create body.
    fn parse(json: Value) -> Result<CreateRequest, ApiError> {
        let Value::Object(body) = json else {
            unreachable!("a create body is an object")
        };
        parse_create(42, &body)
    }

    #[test]
    fn a_valid_body_parses() {
        let request = parse(serde_json::json!({
            "stepId": 1, "scheduledId": 2, "scriptVersionId": 3,
            "plannedAt": "2026-11-20T09:00:00+01:00", "extra": true
        }))
        .unwrap();
        assert_eq!(request.step_id, 1);
        assert_eq!(request.planned_at.to_rfc3339(), "2026-11-20T08:00:00+00:00");
    }

    #[test]
    fn an_integer_written_as_a_float_is_that_integer() {
        let request = parse(serde_json::json!({
            "stepId": 1.0, "scheduledId": 2.0, "scriptVersionId": 3e0,
            "plannedAt": "2026-11-20T08:00:00Z"
        }))
        .unwrap();
        assert_eq!(
            (
                request.step_id,
                request.scheduled_id,
                request.script_version_id
            ),
            (1, 2, 3)
        );
        for bad in [
            serde_json::json!(2.5),
            serde_json::json!(0.0),
            serde_json::json!(-1.0),
            serde_json::json!(1e300),
        ] {
            let result = parse(serde_json::json!({
                "stepId": bad, "scheduledId": 2, "scriptVersionId": 3,
                "plannedAt": "2026-11-20T08:00:00Z"
            }));
            assert!(matches!(result, Err(ApiError::BadRequest { .. })), "{bad}");
        }
    }

    #[test]
    fn planned_at_has_the_published_form() {
        for good in [
            "2026-11-20T08:00:00Z",
            "1971-01-01T00:00:00+23:59",
            "2037-12-31T23:59:59.123456789-23:59",
            "2000-02-29T12:00:00.5+01:00",
        ] {
            assert!(planned_at_shape(good), "{good}");
        }
        for bad in [
            "2026-11-20t08:00:00Z",
            "2026-11-20T08:00:00z",
            "2026-11-20 08:00:00Z",
            "1970-06-01T00:00:00Z",
            "2038-01-01T00:00:00Z",
            "2026-13-20T08:00:00Z",
            "2026-11-20T08:00:00",
            "2026-11-20T08:00:00.Z",
            "2026-11-20T08:00:00.1234567890Z",
            "2026-11-20T08:00:00+01:00 ",
            "2026-11-20T08:00:00+0100",
            "2026-11-20T24:00:00Z",
        ] {
            assert!(!planned_at_shape(bad), "{bad}");
        }
    }

    #[test]
    fn every_invalid_field_is_listed() {
        let Err(ApiError::BadRequest { errors, .. }) = parse(serde_json::json!({
            "stepId": 0, "scheduledId": "2", "scriptVersionId": 9223372036854775808u64,
            "plannedAt": "2026-11-20T08:00:00"
        })) else {
            panic!("expected a bad request");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["stepId", "scheduledId", "scriptVersionId", "plannedAt"]
        );
        assert_eq!(errors[0].message, "must be a positive integer");
        assert!(errors[2].message.contains("at most"));
        let Err(ApiError::BadRequest { errors, .. }) = parse(serde_json::json!({
            "stepId": 1, "scheduledId": 2, "scriptVersionId": 3,
            "plannedAt": "2040-01-01T00:00:00Z"
        })) else {
            panic!("expected a bad request");
        };
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field, "plannedAt");
        assert!(errors[0].message.contains("2037"));
    }
}
