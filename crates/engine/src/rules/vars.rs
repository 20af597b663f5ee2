//! The scalar variables a rule sees besides the event lists (SPEC §4.2).

use chrono::{DateTime, Utc};

/// Every variable name a rule may use.
pub const VARIABLES: &[&str] = &[
    "events",
    "past",
    "future",
    "now",
    "since",
    "until",
    "plannedAt",
    "robotId",
];

/// The check's facts and the evaluation time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleVars {
    pub now: DateTime<Utc>,
    /// Start of the past window; `None` when the look-back is unbounded.
    pub since: Option<DateTime<Utc>>,
    /// End of the future window; `None` when there is no future phase.
    pub until: Option<DateTime<Utc>>,
    pub planned_at: DateTime<Utc>,
    pub robot_id: i64,
}
