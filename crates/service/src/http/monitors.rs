//! The internal API of monitors (SPEC §12), for operators and other services, not robots:
//! `PUT`/`GET`/`DELETE /internal/v1/monitors/{robotId}/{ruleId}` and `GET
//! /internal/v1/monitors`. Enabled by `INTERNAL_API_TOKEN` (unset: 404); every request says
//! `Authorization: Bearer <token>` (else 401).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use status_check_engine::monitor::{MonitorDefinition, RuleId};
use utoipa::IntoParams;
use utoipa::ToSchema;

use super::AppState;
use super::auth::TokenLogin;
use super::checks::{JsonObject, database_error};
use super::monitor_history::{
    HistoryQuery, MonitorView, SessionHistoryDto, history_date, required_history_date,
};
use super::problem::{
    ApiError, Challenged, FieldError, InternalAuthProblems, JsonBodyProblems, MonitorPathProblems,
    Problem, canonical_id,
};
use crate::monitors::{MonitorError, MonitorPut, NEVER, StoredMonitor};

impl From<MonitorError> for ApiError {
    fn from(error: MonitorError) -> Self {
        match error {
            // Read, but refused for what it says (a field missing or out of range, a body that
            // contradicts its path): 422, each field named. 400 is for a body that cannot be read.
            MonitorError::Invalid(errors) => ApiError::UnprocessableFields {
                detail: "the monitor is refused".to_owned(),
                errors: errors
                    .into_iter()
                    .map(|e| FieldError {
                        field: e.field,
                        message: e.message,
                    })
                    .collect(),
            },
            MonitorError::Store(e) => database_error(e.is_unavailable(), e.into()),
        }
    }
}

/// A caller that presented the internal API token.
pub struct Internal;

/// The bearer token only; a 401 carries the bearer challenge (RFC 6750).
const API_LOGIN: TokenLogin = TokenLogin {
    basic: false,
    challenge: "Bearer realm=\"status-check internal\"",
    no_header: "send one Authorization: Bearer <INTERNAL_API_TOKEN> header",
    other: "the bearer token is not the internal API token",
};

impl FromRequestParts<AppState> for Internal {
    type Rejection = Challenged;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Challenged> {
        API_LOGIN.admit(parts, state).map(|()| Internal)
    }
}

/// A monitor's body for `PUT` (SPEC §12; docs/monitors.md). `robotId` and `ruleId` may be
/// left out: the path names the monitor (when given, they must agree with it).
#[derive(Debug, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[allow(dead_code)] // Documents the body; it is read as a `MonitorDefinition`, field by field.
pub struct MonitorBody {
    #[schema(minimum = 1, maximum = 9223372036854775807_i64, example = 42)]
    robot_id: Option<i64>,
    #[schema(pattern = "^[a-z0-9-]{1,64}$", example = "no-toilet")]
    rule_id: Option<String>,
    /// The event name watched: no spaces.
    #[schema(example = "TOILET_ACTIVITY", min_length = 1, max_length = 128)]
    event_type: String,
    /// The window length, e.g. `2h`, `90m`, `4s`, `1h30m`; 1 s to 24 h.
    #[schema(example = "2h")]
    window: String,
    /// IANA name; default `UTC`.
    #[schema(example = "Europe/Amsterdam")]
    timezone: Option<String>,
    daily: DailyBody,
    #[schema(min_items = 1)]
    actions: Vec<ActionBody>,
    /// Default true.
    enabled: Option<bool>,
}

/// Local times `HH:MM`; `end` may be `24:00`; `start < end`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DailyBody {
    #[schema(pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]$", example = "08:00")]
    start: String,
    #[schema(pattern = "^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$", example = "22:00")]
    end: String,
}

/// `{type: alarm, eventName, level?}`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionBody {
    /// `alarm`, in any case.
    #[serde(rename = "type")]
    #[schema(example = "alarm", pattern = "^[Aa][Ll][Aa][Rr][Mm]$")]
    kind: String,
    /// The event name posted: no spaces.
    #[schema(example = "NO_TOILET_ACTIVITY_ALARM", min_length = 1, max_length = 128)]
    event_name: String,
    /// 0 to 255; left out, the alarm is posted without a level (Megazord's event schema
    /// decides).
    #[schema(minimum = 0, maximum = 255)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    level: Option<u8>,
}

/// A monitor with its current session and window (all `null` when no session is open).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorDto {
    robot_id: i64,
    rule_id: String,
    event_type: String,
    /// Canonical: `1h30m`.
    window: String,
    timezone: String,
    daily: DailyBody,
    actions: Vec<ActionBody>,
    enabled: bool,
    /// Who wrote it last: `file` (synced at start) or `api`.
    source: String,
    /// 1 when created, + 1 at every change.
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// The open session's local date, `YYYY-MM-DD`.
    #[schema(example = "2026-11-20")]
    session_date: Option<String>,
    session_end: Option<DateTime<Utc>>,
    /// The open window: alarms sent in this session + 1.
    window_number: Option<u32>,
    window_start: Option<DateTime<Utc>>,
    window_end: Option<DateTime<Utc>>,
    alarms_sent: Option<u32>,
    /// The open session's Megazord subscription.
    subscription_id: Option<i64>,
    /// When the monitor worker acts next (2 s after a window's end, once events of its last
    /// moment are readable at Megazord; the next session's start); `null` for a disabled
    /// monitor.
    next_due_at: Option<DateTime<Utc>>,
    /// Why the monitor cannot open its session (e.g. Megazord knows no event of the name it
    /// watches); `null` when nothing is wrong.
    problem: Option<String>,
}

/// `GET /internal/v1/monitors`.
#[derive(Debug, Serialize, ToSchema)]
pub struct MonitorList {
    /// By robot, then rule.
    monitors: Vec<MonitorDto>,
}

impl From<&StoredMonitor> for MonitorDto {
    fn from(stored: &StoredMonitor) -> Self {
        let definition = stored.monitor.definition();
        let daily = definition.daily.unwrap_or_default();
        let window = stored.state.window;
        MonitorDto {
            robot_id: stored.monitor.robot_id(),
            rule_id: stored.monitor.rule_id().to_string(),
            event_type: stored.monitor.event_type().to_owned(),
            window: stored.monitor.window().to_string(),
            timezone: stored.monitor.timezone().to_string(),
            daily: DailyBody {
                start: daily.start.unwrap_or_default(),
                end: daily.end.unwrap_or_default(),
            },
            actions: definition
                .actions
                .unwrap_or_default()
                .into_iter()
                .map(|action| ActionBody {
                    kind: action.kind.unwrap_or_default(),
                    event_name: action.event_name.unwrap_or_default(),
                    level: action.level.and_then(|l| u8::try_from(l).ok()),
                })
                .collect(),
            enabled: stored.monitor.enabled(),
            source: stored.source.as_str().to_owned(),
            version: stored.version,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            session_date: window.map(|w| w.session_date.format("%Y-%m-%d").to_string()),
            session_end: window.map(|w| w.session_end),
            window_number: window.map(|w| w.window_number),
            window_start: window.map(|w| w.window_start),
            window_end: window.map(|w| w.window_end),
            alarms_sent: window.map(|w| w.alarms_sent()),
            subscription_id: stored.state.subscription_id,
            next_due_at: (stored.state.due_at < NEVER).then_some(stored.state.due_at),
            problem: stored.state.problem.clone(),
        }
    }
}

/// The monitor a path names: its `{robotId}` and `{ruleId}`, each checked (400 with every
/// field at fault). The extractor of every route of one monitor, in the API and the UI.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Path, rename_all = "camelCase")]
pub struct MonitorKey {
    /// The robot
    #[param(minimum = 1)]
    pub robot_id: i64,
    /// The rule: 1 to 64 of a-z, 0-9 and -
    #[param(pattern = "^[a-z0-9-]{1,64}$")]
    pub rule_id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for MonitorKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path((robot, rule)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad_request(e.body_text()))?;
        let mut errors = Vec::new();
        let robot_id = canonical_id(&robot);
        if robot_id.is_none() {
            errors.push(FieldError::not_an_id("robotId"));
        }
        if let Err(message) = RuleId::parse(&rule) {
            errors.push(FieldError {
                field: "ruleId".to_owned(),
                message,
            });
        }
        match robot_id {
            Some(robot_id) if errors.is_empty() => Ok(MonitorKey {
                robot_id,
                rule_id: rule,
            }),
            _ => Err(ApiError::BadRequest {
                detail: "the monitor's path is invalid".to_owned(),
                errors,
            }),
        }
    }
}

/// `175.0` as `175`: JSON (and JSON Schema's `integer`) does not tell them apart, serde does.
fn integral_floats_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            if let Some(float) = number.as_f64()
                && float.fract() == 0.0
                && (i64::MIN as f64..i64::MAX as f64).contains(&float)
            {
                *value = Value::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(fields) => fields.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// Reads a body field by field, so a field of the wrong type or an unknown one is named.
fn definition_of(body: serde_json::Map<String, Value>) -> Result<MonitorDefinition, ApiError> {
    let mut definition = MonitorDefinition::default();
    let mut errors = Vec::new();
    for (field, mut value) in body {
        integral_floats_as_integers(&mut value);
        // The engine reads a string of digits as a robot id too (for files); the API's schema
        // says an integer, and the API holds to it.
        if field == "robotId" && !(value.is_null() || value.is_number()) {
            errors.push(FieldError {
                field,
                message: "must be an integer".to_owned(),
            });
            continue;
        }
        let single = Value::Object([(field.clone(), value)].into_iter().collect());
        match serde_json::from_value::<MonitorDefinition>(single) {
            Ok(part) => {
                definition.robot_id = part.robot_id.or(definition.robot_id);
                definition.rule_id = part.rule_id.or(definition.rule_id);
                definition.event_type = part.event_type.or(definition.event_type);
                definition.window = part.window.or(definition.window);
                definition.timezone = part.timezone.or(definition.timezone);
                definition.daily = part.daily.or(definition.daily);
                definition.actions = part.actions.or(definition.actions);
                definition.enabled = part.enabled.or(definition.enabled);
            }
            Err(e) => errors.push(FieldError {
                field,
                message: e.to_string(),
            }),
        }
    }
    if errors.is_empty() {
        Ok(definition)
    } else {
        Err(ApiError::BadRequest {
            detail: "the monitor is invalid".to_owned(),
            errors,
        })
    }
}

/// Create or replace a monitor.
#[utoipa::path(
    put,
    path = "/internal/v1/monitors/{robotId}/{ruleId}",
    tag = "monitors",
    request_body(content = MonitorBody, content_type = "application/json"),
    params(MonitorKey),
    responses(
        (status = 201, description = "Created; its session opens at its next start (at once when one is under way)", body = MonitorDto),
        (status = 200, description = "Replaced (or unchanged)", body = MonitorDto),
        (status = 400, description = "The body cannot be read as a monitor (malformed JSON, not an object, a field of the wrong JSON type, an unknown field), or an invalid robotId or ruleId in the path: each field at fault in `errors`", body = Problem, content_type = "application/problem+json"),
        InternalAuthProblems,
        JsonBodyProblems,
        (status = 422, description = "A well-formed monitor refused for what it says: a required field missing, a value out of range (window, daily times, timezone, actions), or a robotId or ruleId that contradicts the path; each field at fault in `errors`", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn put_monitor(
    _: Internal,
    State(state): State<AppState>,
    MonitorKey { robot_id, rule_id }: MonitorKey,
    JsonObject(body): JsonObject,
) -> Result<Response, ApiError> {
    tracing::Span::current().record("robot_id", robot_id);
    let definition = definition_of(body)?;
    let put = state.monitors.put(robot_id, &rule_id, definition).await?;
    let (status, stored) = match &put {
        MonitorPut::Created(stored) => (StatusCode::CREATED, stored),
        MonitorPut::Replaced(stored) | MonitorPut::Unchanged(stored) => (StatusCode::OK, stored),
    };
    Ok((status, Json(MonitorDto::from(stored))).into_response())
}

/// Every monitor, with its current session and window.
#[utoipa::path(
    get,
    path = "/internal/v1/monitors",
    tag = "monitors",
    responses(
        (status = 200, description = "The monitors, by robot and rule", body = MonitorList),
        InternalAuthProblems,
    )
)]
pub async fn list_monitors(
    _: Internal,
    State(state): State<AppState>,
) -> Result<Json<MonitorList>, ApiError> {
    let monitors = state.monitors.list().await?;
    Ok(Json(MonitorList {
        monitors: monitors.iter().map(MonitorDto::from).collect(),
    }))
}

/// A monitor, with its current session and window; with `?date=`, that day's session as
/// kept: each window and how it ended.
#[utoipa::path(
    get,
    path = "/internal/v1/monitors/{robotId}/{ruleId}",
    tag = "monitors",
    params(
        MonitorKey,
        ("date" = Option<String>, Query, description = "A session's local date (`YYYY-MM-DD`, the monitor's timezone): answer its history too, kept at least OUTBOX_RETENTION_SECS (7 days) after each window ended", format = Date, example = "2026-11-20"),
    ),
    responses(
        (status = 200, description = "The monitor (with `history` when `date` is given)", body = MonitorView),
        InternalAuthProblems,
        MonitorPathProblems,
        (status = 400, description = "Invalid robotId, ruleId or date", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_monitor(
    _: Internal,
    State(state): State<AppState>,
    MonitorKey { robot_id, rule_id }: MonitorKey,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<MonitorView>, ApiError> {
    let date = history_date(query)?;
    let Some(stored) = state.monitors.get(robot_id, &rule_id).await? else {
        return Err(ApiError::NotFound(format!(
            "robot {robot_id} has no monitor {rule_id}"
        )));
    };
    let history = match date {
        Some(date) => Some(day_history(&state, robot_id, &rule_id, date).await?),
        None => None,
    };
    Ok(Json(MonitorView {
        monitor: MonitorDto::from(&stored),
        history,
    }))
}

/// A day's session of a monitor as kept (SPEC §12 "History"), whether or not the monitor is
/// still there: a deleted monitor's windows are kept as long as any other's, and read here —
/// a collection of its own, not under the monitor, since it outlives it.
#[utoipa::path(
    get,
    path = "/internal/v1/monitor-history/{robotId}/{ruleId}",
    tag = "monitors",
    params(
        MonitorKey,
        ("date" = String, Query, description = "The session's local date (`YYYY-MM-DD`, the monitor's timezone when it ran), kept at least OUTBOX_RETENTION_SECS (7 days) after each window ended", format = Date, example = "2026-11-20"),
    ),
    responses(
        (status = 200, description = "That day's session as kept (the monitor need not exist any more); all null and no windows when nothing is kept", body = SessionHistoryDto),
        InternalAuthProblems,
        (status = 400, description = "Invalid robotId, ruleId or date, or no date", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_monitor_history(
    _: Internal,
    State(state): State<AppState>,
    MonitorKey { robot_id, rule_id }: MonitorKey,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<SessionHistoryDto>, ApiError> {
    let date = required_history_date(query)?;
    Ok(Json(day_history(&state, robot_id, &rule_id, date).await?))
}

/// The session of `date` as kept, for either route.
async fn day_history(
    state: &AppState,
    robot_id: i64,
    rule_id: &str,
    date: chrono::NaiveDate,
) -> Result<SessionHistoryDto, ApiError> {
    let history = state
        .monitors
        .session_history(robot_id, rule_id, date)
        .await?;
    Ok(SessionHistoryDto::new(date, history))
}

/// Delete a monitor: its session ends and its subscription is removed (alarms already
/// decided are still posted).
#[utoipa::path(
    delete,
    path = "/internal/v1/monitors/{robotId}/{ruleId}",
    tag = "monitors",
    params(MonitorKey),
    responses(
        (status = 204, description = "Deleted"),
        InternalAuthProblems,
        MonitorPathProblems,
    )
)]
pub async fn delete_monitor(
    _: Internal,
    State(state): State<AppState>,
    MonitorKey { robot_id, rule_id }: MonitorKey,
) -> Result<StatusCode, ApiError> {
    match state.monitors.delete(robot_id, &rule_id).await? {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound(format!(
            "robot {robot_id} has no monitor {rule_id}"
        ))),
    }
}
