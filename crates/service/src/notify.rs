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

/// The notification body for `check` with sequence number `seq`.
pub fn render(check: &StoredCheck, seq: i64, hostname: &str) -> String {
    let mut payload = serde_json::to_value(CheckDto::from(check)).unwrap_or_default();
    payload["notificationSeq"] = json!(seq);
    json!({
        "from": {"serviceName": SERVICE_NAME, "hostname": hostname},
        "to": {"robotId": check.key.robot_id.to_string()},
        "link": {"link": format!("/v1/status-check/check/{}", check.id), "rel": "statusCheck"},
        "payload": payload,
    })
    .to_string()
}
