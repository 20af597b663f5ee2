//! The check as JSON (SPEC §2.4): what `GET` answers and what a robot's notification carries.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoredCheck;

/// One history entry (SPEC §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordDto {
    pub order: u32,
    #[schema(example = "PAST")]
    pub phase: String,
    pub event_name: String,
    /// Null only on a record the Node service wrote without one.
    pub incoming_event_id: Option<i64>,
    pub outgoing_event_id: Option<i64>,
    pub event_created_at: String,
    #[schema(example = "PENDING")]
    pub result: String,
    pub created_at: String,
}

/// A status check (SPEC §2.4).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckDto {
    pub id: i64,
    pub robot_id: i64,
    /// The template's name.
    pub status_check: String,
    pub template_version: i64,
    pub step_id: i64,
    pub scheduled_id: i64,
    pub script_version_id: i64,
    pub planned_at: String,
    /// `CREATED`, `PAST`, `FUTURE`, `COMPLETED` or `FAILED`.
    pub phase: String,
    /// `PENDING`, `PASS`, `FAIL` or `UNKNOWN`.
    pub result: String,
    /// Set once the check has ended.
    pub next_step_id: Option<i64>,
    /// Start of the past window; null when the look-back is unbounded.
    pub polling_since: Option<String>,
    /// End of the future window (the deadline); null without a future phase.
    pub polling_until: Option<String>,
    pub subscription_id: Option<i64>,
    pub history: Vec<RecordDto>,
    pub created_at: String,
    pub updated_at: String,
}

/// A time as the API writes it: RFC 3339, UTC, milliseconds.
pub(crate) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl From<&StoredCheck> for CheckDto {
    fn from(check: &StoredCheck) -> Self {
        CheckDto {
            id: check.id,
            robot_id: check.key.robot_id,
            status_check: check.template_name.clone(),
            template_version: check.template_version,
            step_id: check.key.step_id,
            scheduled_id: check.key.scheduled_id,
            script_version_id: check.script_version_id,
            planned_at: time(check.key.planned_at),
            phase: check.phase.to_string(),
            result: check.result.to_string(),
            next_step_id: check.next_step_id,
            polling_since: check.windows.since.map(time),
            polling_until: check.windows.until.map(time),
            subscription_id: check.subscription_id,
            history: check
                .records
                .iter()
                .map(|record| RecordDto {
                    order: record.order,
                    phase: record.phase.to_string(),
                    event_name: record.event.name.clone(),
                    // A record the Node service wrote without one has a negative id.
                    incoming_event_id: (record.event.id > 0).then_some(record.event.id),
                    outgoing_event_id: record.outgoing_event_id,
                    event_created_at: time(record.event.created_at),
                    result: record.result.to_string(),
                    created_at: time(record.created_at),
                })
                .collect(),
            created_at: time(check.created_at),
            updated_at: time(check.updated_at),
        }
    }
}
