//! Plain data shared by templates, rules and the lifecycle.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a check is in its life (SPEC §3.2). Stored as the upper-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckPhase {
    Created,
    Past,
    Future,
    Completed,
    Failed,
}

impl CheckPhase {
    /// Whether the check has ended and will never change again.
    pub fn is_final(self) -> bool {
        matches!(self, CheckPhase::Completed | CheckPhase::Failed)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckPhase::Created => "CREATED",
            CheckPhase::Past => "PAST",
            CheckPhase::Future => "FUTURE",
            CheckPhase::Completed => "COMPLETED",
            CheckPhase::Failed => "FAILED",
        }
    }
}

/// The outcome of a check, or of one evaluation of a template phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CheckResult {
    Pending,
    Pass,
    Fail,
    Unknown,
}

impl CheckResult {
    /// Anything but `PENDING` decides the check.
    pub fn is_decisive(self) -> bool {
        self != CheckResult::Pending
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CheckResult::Pending => "PENDING",
            CheckResult::Pass => "PASS",
            CheckResult::Fail => "FAIL",
            CheckResult::Unknown => "UNKNOWN",
        }
    }
}

/// The phase a record (history entry) was taken in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordPhase {
    Past,
    Future,
}

impl RecordPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordPhase::Past => "PAST",
            RecordPhase::Future => "FUTURE",
        }
    }
}

macro_rules! display_and_parse {
    ($ty:ty, [$($variant:ident),+]) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $(if s == <$ty>::$variant.as_str() {
                    return Ok(<$ty>::$variant);
                })+
                Err(UnknownName(s.to_owned()))
            }
        }
    };
}

display_and_parse!(CheckPhase, [Created, Past, Future, Completed, Failed]);
display_and_parse!(CheckResult, [Pending, Pass, Fail, Unknown]);
display_and_parse!(RecordPhase, [Past, Future]);

/// A stored name that is not one of the enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value {0:?}")]
pub struct UnknownName(pub String);

/// An incoming event as Megazord holds it: what the rules see of a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Megazord's incoming event id; a check never records the same one twice.
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub level: Option<i64>,
    #[serde(default)]
    pub reference_id: Option<String>,
}

/// One history entry of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// 1-based position in the check's history, in the order records were taken in.
    pub order: u32,
    pub phase: RecordPhase,
    pub event: Event,
    /// Megazord's outgoing event id, for records that came through the status queue.
    pub outgoing_event_id: Option<i64>,
    /// The result of the evaluation that took this record in.
    pub result: CheckResult,
    /// When the service took the record in.
    pub created_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for phase in [
            CheckPhase::Created,
            CheckPhase::Past,
            CheckPhase::Future,
            CheckPhase::Completed,
            CheckPhase::Failed,
        ] {
            assert_eq!(phase.as_str().parse::<CheckPhase>().unwrap(), phase);
        }
        for result in [
            CheckResult::Pending,
            CheckResult::Pass,
            CheckResult::Fail,
            CheckResult::Unknown,
        ] {
            assert_eq!(result.to_string().parse::<CheckResult>().unwrap(), result);
        }
        assert!("pass".parse::<CheckResult>().is_err());
        assert_eq!(
            serde_json::to_string(&RecordPhase::Future).unwrap(),
            "\"FUTURE\""
        );
    }

    #[test]
    fn only_completed_and_failed_are_final() {
        assert!(CheckPhase::Completed.is_final());
        assert!(CheckPhase::Failed.is_final());
        assert!(!CheckPhase::Future.is_final());
        assert!(!CheckResult::Pending.is_decisive());
        assert!(CheckResult::Unknown.is_decisive());
    }
}
