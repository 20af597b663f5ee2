//! The message a robot gets on its own queue when its check changes (SPEC §3.7).

use serde_json::json;

use crate::checks::view::CheckDto;
use crate::store::StoredCheck;

/// The name robots know the sender by (the Node service's).
pub const SERVICE_NAME: &str = "azi-3-status-check";

/// This host's name, for the `from` block.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The largest notification body: SQS takes at most 256 KiB per message, attributes included.
pub const MAX_NOTIFICATION_BYTES: usize = 240 * 1024;

/// The notification body for `check` with sequence number `seq`: the check as `GET` answers
/// it (SPEC §3.7) — except that a history too long for one queue message is cut to its latest
/// records, with `historyTruncated: true` and `historySize` the whole count (the robot can
/// always `GET` the check). So a notification always fits the queue.
pub fn render(check: &StoredCheck, seq: i64, hostname: &str) -> String {
    let mut payload = serde_json::to_value(CheckDto::from(check)).unwrap_or_default();
    payload["notificationSeq"] = json!(seq);
    let message = |payload: &serde_json::Value| {
        json!({
            "from": {"serviceName": SERVICE_NAME, "hostname": hostname},
            "to": {"robotId": check.key.robot_id.to_string()},
            "link": {"link": format!("/v1/status-check/check/{}", check.id), "rel": "statusCheck"},
            "payload": payload,
        })
        .to_string()
    };
    let whole = message(&payload);
    if whole.len() <= MAX_NOTIFICATION_BYTES {
        return whole;
    }
    let history = payload["history"].as_array().cloned().unwrap_or_default();
    let size = history.len();
    payload["historyTruncated"] = json!(true);
    payload["historySize"] = json!(size);
    // The largest tail that fits, found by halving: each try renders once.
    let (mut fits, mut too_many) = (0, size);
    while too_many - fits > 1 {
        let keep = (fits + too_many) / 2;
        payload["history"] = json!(history[size - keep..]);
        if message(&payload).len() <= MAX_NOTIFICATION_BYTES {
            fits = keep;
        } else {
            too_many = keep;
        }
    }
    payload["history"] = json!(history[size - fits..]);
    message(&payload)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeDelta, Utc};
    use status_check_engine::lifecycle::{NextSteps, Windows};
    use status_check_engine::{CheckPhase, CheckResult, Event, Record, RecordPhase};

    use super::*;
    use crate::store::{CheckKey, Provenance};

    fn check(records: u32) -> StoredCheck {
        let at: DateTime<Utc> = "2026-11-20T08:00:00Z".parse().unwrap();
        StoredCheck {
            id: 17,
            key: CheckKey {
                robot_id: 42,
                step_id: 123,
                scheduled_id: 456,
                planned_at: at,
            },
            script_version_id: 789,
            template_id: 1,
            template_name: "toilet-activity".into(),
            template_version: 1,
            phase: CheckPhase::Completed,
            result: CheckResult::Fail,
            next_step_id: Some(125),
            subscription_id: Some(991),
            windows: Windows::from_effective(at, 3600, 600),
            next_steps: Some(NextSteps {
                pass: 124,
                fail: 125,
                unknown: None,
            }),
            provenance: Provenance::Own,
            notification_seq: 3,
            records: (1..=records)
                .map(|order| Record {
                    order,
                    phase: RecordPhase::Future,
                    event: Event {
                        id: i64::from(order),
                        name: "TOILET_VISIT".into(),
                        created_at: at + TimeDelta::seconds(i64::from(order)),
                        level: Some(1),
                        reference_id: Some("r".repeat(100)),
                    },
                    outgoing_event_id: Some(i64::from(order) + 70_000),
                    result: CheckResult::Fail,
                    created_at: at,
                })
                .collect(),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn a_short_history_is_sent_whole() {
        let body: serde_json::Value = serde_json::from_str(&render(&check(3), 3, "h")).unwrap();
        assert_eq!(body["payload"]["history"].as_array().unwrap().len(), 3);
        assert_eq!(body["payload"]["historyTruncated"], serde_json::Value::Null);
        assert_eq!(body["payload"]["notificationSeq"], 3);
    }

    #[test]
    fn a_long_history_is_cut_to_its_latest_records_and_fits_the_queue() {
        let text = render(&check(5_000), 4, "h");
        assert!(text.len() <= MAX_NOTIFICATION_BYTES, "{} bytes", text.len());
        let body: serde_json::Value = serde_json::from_str(&text).unwrap();
        let payload = &body["payload"];
        assert_eq!(payload["historyTruncated"], true);
        assert_eq!(payload["historySize"], 5_000);
        let history = payload["history"].as_array().unwrap();
        assert!(history.len() > 100, "kept only {}", history.len());
        assert_eq!(history.last().unwrap()["order"], 5_000, "the latest kept");
        assert_eq!(payload["phase"], "COMPLETED");
        assert_eq!(payload["nextStepId"], 125);
        // Nothing more would have fitted.
        assert!(text.len() > MAX_NOTIFICATION_BYTES - 1_000);
    }
}
