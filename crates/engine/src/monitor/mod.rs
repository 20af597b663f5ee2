//! Monitors (SPEC §12): watch a robot for an event in rolling windows within a daily session,
//! and raise an alarm whenever a window passes without one. Pure code: the service stores the
//! state, passes in the time and the events, and carries out the alarms this returns.
//!
//! - [`Monitor`]: the validated monitor; [`MonitorDefinition`] is what a file or an API body
//!   says, [`Monitor::from_definition`] turns one into the other naming the field at fault.
//! - [`files`]: the `MONITORS_FILE` list and the old job service's JSON.
//! - [`Session`]: one local day's `[start, end)` in UTC, right across daylight-saving changes.
//! - [`WindowState`] and [`advance`]: the window state machine, including catch-up.
//!
//! docs/monitors.md describes the behaviour at the edges.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

mod definition;
mod fields;
pub mod files;
mod session;
mod window;

pub use definition::{ActionDefinition, DailyDefinition, FieldError, MonitorDefinition};
pub use fields::{Action, ClockTime, DailyWindow, RuleId, Timezone, WindowLength};
pub use files::{
    MonitorError, MonitorLabel, parse_job_service_config, parse_monitor_list, parse_monitors,
};
pub use session::Session;
pub use window::{Advance, InvalidWindowState, WindowEnding, WindowSpan, WindowState, advance};

/// A validated monitor: `(robot_id, rule_id)` and what it watches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    robot_id: i64,
    rule_id: RuleId,
    event_type: String,
    window: WindowLength,
    timezone: Timezone,
    daily: DailyWindow,
    actions: Vec<Action>,
    enabled: bool,
}

/// One alarm to post when a window ends quietly: `POST /internal/v1/events/robots/{robotId}/
/// incomings` with this event name, level and reference id. Every action of a window shares
/// the window's reference id; `action_index` tells them apart (e.g. in an outbox key).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlarmRequest {
    pub action_index: usize,
    pub event_name: String,
    /// `None`: posted without a level (Megazord's schema decides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<u8>,
    pub reference_id: String,
}

/// The alarm's `referenceId`: `status-check:{robotId}:{ruleId}:{sessionDate}:{windowNumber}`,
/// the session date as `YYYY-MM-DD` (SPEC §12). The same on every retry.
pub fn reference_id(
    robot_id: i64,
    rule_id: &RuleId,
    session_date: NaiveDate,
    window_number: u32,
) -> String {
    format!(
        "status-check:{robot_id}:{rule_id}:{}:{window_number}",
        session_date.format("%Y-%m-%d")
    )
}

impl Monitor {
    pub fn robot_id(&self) -> i64 {
        self.robot_id
    }

    pub fn rule_id(&self) -> &RuleId {
        &self.rule_id
    }

    /// The event name watched (subscribed to at Megazord).
    pub fn event_type(&self) -> &str {
        &self.event_type
    }

    pub fn window(&self) -> WindowLength {
        self.window
    }

    pub fn timezone(&self) -> &Timezone {
        &self.timezone
    }

    pub fn daily(&self) -> DailyWindow {
        self.daily
    }

    /// At least one.
    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether `other` watches what this monitor watches — the same event, timezone and daily
    /// times — so that its session goes on when one replaces the other.
    pub fn watches_as(&self, other: &Monitor) -> bool {
        self.event_type == other.event_type
            && self.timezone == other.timezone
            && self.daily == other.daily
    }

    /// This monitor's alarm reference for a window (see [`reference_id`]).
    pub fn reference_id(&self, session_date: NaiveDate, window_number: u32) -> String {
        reference_id(self.robot_id, &self.rule_id, session_date, window_number)
    }

    /// What to post when window `window_number` of the session on `session_date` ends quietly:
    /// one request per action, in order — an action the same as an earlier one (event and
    /// level) once: every post of a window carries its reference id, so Megazord could not
    /// tell the two apart, and the robot's script would start twice.
    pub fn alarms(&self, session_date: NaiveDate, window_number: u32) -> Vec<AlarmRequest> {
        let reference_id = self.reference_id(session_date, window_number);
        let mut alarms: Vec<AlarmRequest> = Vec::with_capacity(self.actions.len());
        for (action_index, action) in self.actions.iter().enumerate() {
            let Action::Alarm { event_name, level } = action;
            let repeated = alarms
                .iter()
                .any(|alarm| alarm.event_name == *event_name && alarm.level == *level);
            if !repeated {
                alarms.push(AlarmRequest {
                    action_index,
                    event_name: event_name.clone(),
                    level: *level,
                    reference_id: reference_id.clone(),
                });
            }
        }
        alarms
    }
}
