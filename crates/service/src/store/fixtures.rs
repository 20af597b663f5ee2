//! A stored check for unit tests of what reads one (the timelines, the backtest's replay): an
//! ended robot-is-charging check of robot 42, no records; a test changes what it is about.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::lifecycle::Windows;
use status_check_engine::{CheckPhase, CheckResult};

use super::{CheckKey, Provenance, StoredCheck};

/// Created at `anchor`, the Node service's unbounded look-back and a ten-minute future window,
/// COMPLETED PASS to step 124 five minutes later; no subscription, next steps or records.
pub(crate) fn stored_check(anchor: DateTime<Utc>) -> StoredCheck {
    StoredCheck {
        id: 3,
        key: CheckKey {
            robot_id: 42,
            step_id: 123,
            scheduled_id: 7,
            planned_at: anchor,
        },
        script_version_id: 789,
        template_id: 1,
        template_name: "robot-is-charging".to_owned(),
        template_version: 1,
        phase: CheckPhase::Completed,
        result: CheckResult::Pass,
        next_step_id: Some(124),
        subscription_id: None,
        windows: Windows::from_effective(anchor, -1, 600),
        next_steps: None,
        provenance: Provenance::Own,
        notification_seq: 0,
        records: Vec::new(),
        created_at: anchor,
        updated_at: anchor + TimeDelta::minutes(5),
    }
}
