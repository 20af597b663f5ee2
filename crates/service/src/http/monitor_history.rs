//! A monitor's history on the internal API (SPEC §12 "History"): `GET
//! /internal/v1/monitors/{robotId}/{ruleId}?date=YYYY-MM-DD` answers the monitor with that
//! day's session — each window, when it started and ended, and how: reset by an event (which
//! one), expired (the alarm's reference id), cut by the session's end, or stopped by a change
//! of the monitor.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::monitors::MonitorDto;
use super::problem::{ApiError, FieldError};
use crate::monitors::{SessionHistory, WindowClose, WindowRecord};

/// The query of `GET …/{robotId}/{ruleId}`.
#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    date: Option<String>,
}

fn invalid_date(message: String) -> ApiError {
    ApiError::BadRequest {
        detail: "the query is invalid".to_owned(),
        errors: vec![FieldError {
            field: "date".to_owned(),
            message,
        }],
    }
}

/// The `date` a route needs; 400 naming `date` when it is missing or not a date.
pub fn required_history_date(
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<NaiveDate, ApiError> {
    history_date(query)?
        .ok_or_else(|| invalid_date("is required: the session's local date, YYYY-MM-DD".to_owned()))
}

/// The `date` asked for, if any; 400 naming `date` when it is not a `YYYY-MM-DD` date.
pub fn history_date(
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Option<NaiveDate>, ApiError> {
    let Query(query) = query.map_err(|e| invalid_date(e.body_text()))?;
    let Some(text) = query.date else {
        return Ok(None);
    };
    let well_formed = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    match NaiveDate::parse_from_str(&text, "%Y-%m-%d") {
        Ok(date) if well_formed => Ok(Some(date)),
        _ => Err(invalid_date(format!(
            "{text:?} is not a date: use YYYY-MM-DD (the session's local date)"
        ))),
    }
}

/// A monitor with its current session and window; with `?date=`, that day's session too.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MonitorView {
    #[serde(flatten)]
    pub monitor: MonitorDto,
    /// Only with `?date=`: the session of that local date, as kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<SessionHistoryDto>,
}

/// One day's session of a monitor, as kept (at least `OUTBOX_RETENTION_SECS`, 7 days by
/// default, after each window ended). All `null` and no windows when none is kept for the day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionHistoryDto {
    /// The date asked for: the session's local date in the monitor's timezone.
    #[schema(example = "2026-11-20")]
    session_date: String,
    /// The day's session `[sessionStart, sessionEnd)` as it ran (of its last opening when it
    /// was opened again that day, e.g. after the monitor changed).
    session_start: Option<DateTime<Utc>>,
    session_end: Option<DateTime<Utc>>,
    /// The session's Megazord subscription (of its last opening).
    subscription_id: Option<i64>,
    /// The windows that passed quietly, each with an alarm.
    alarms_sent: u32,
    /// Every window span, in time order; the last one may still be open.
    windows: Vec<WindowDto>,
}

/// A window span: from its (re)start to its end.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowDto {
    /// The window's number: the alarms of the session before it + 1 (a reset keeps it).
    window_number: u32,
    start: DateTime<Utc>,
    /// When it ended; while it is open, when it is due to end.
    end: DateTime<Utc>,
    /// How it ended; `null` while it is open.
    ending: Option<WindowEndingDto>,
    /// For an expired window: the alarm's `referenceId` at Megazord.
    #[schema(example = "status-check:42:no-toilet:2026-11-20:1")]
    reference_id: Option<String>,
    /// For a reset: the event that restarted the window.
    reset_by: Option<ResetByDto>,
    /// The session's Megazord subscription while this window ran.
    subscription_id: Option<i64>,
}

/// How a window ended.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum WindowEndingDto {
    /// The watched event happened: the window restarted there (same number).
    Reset,
    /// A full window passed without the event: the monitor alarmed.
    Expired,
    /// The session ended before the window's full length: no alarm.
    SessionEnded,
    /// The monitor was disabled, changed to watch something else, or deleted.
    Stopped,
}

/// The event that reset a window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetByDto {
    /// Megazord's id of the (incoming) event.
    event_id: i64,
    /// When it happened (the window's `end`).
    at: DateTime<Utc>,
}

impl SessionHistoryDto {
    pub fn new(date: NaiveDate, history: Option<SessionHistory>) -> Self {
        let session_date = date.format("%Y-%m-%d").to_string();
        let Some(history) = history else {
            return SessionHistoryDto {
                session_date,
                session_start: None,
                session_end: None,
                subscription_id: None,
                alarms_sent: 0,
                windows: Vec::new(),
            };
        };
        SessionHistoryDto {
            session_date,
            session_start: Some(history.session_start),
            session_end: Some(history.session_end),
            subscription_id: history.subscription_id,
            alarms_sent: u32::try_from(history.alarms().count()).unwrap_or(u32::MAX),
            windows: history.windows.iter().map(WindowDto::from).collect(),
        }
    }
}

impl From<&WindowRecord> for WindowDto {
    fn from(window: &WindowRecord) -> Self {
        WindowDto {
            window_number: window.number,
            start: window.start,
            end: window.end,
            ending: window.ending.map(|ending| match ending {
                WindowClose::Reset => WindowEndingDto::Reset,
                WindowClose::Expired => WindowEndingDto::Expired,
                WindowClose::SessionEnded => WindowEndingDto::SessionEnded,
                WindowClose::Stopped => WindowEndingDto::Stopped,
            }),
            reference_id: window.reference_id.clone(),
            reset_by: window.reset_event_id.map(|event_id| ResetByDto {
                event_id,
                at: window.end,
            }),
            subscription_id: window.subscription_id,
        }
    }
}
