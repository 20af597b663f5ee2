//! The status-queue message Megazord sends for each matching event (SPEC §5.3), plain or
//! wrapped in an SNS notification.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use status_check_engine::Event;
use status_check_engine::lifecycle::Delivery;

/// One delivery, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusMessage {
    pub robot_id: i64,
    pub subscription_id: i64,
    /// Megazord's outgoing event id.
    pub outgoing_event_id: i64,
    pub event: Event,
}

impl StatusMessage {
    pub fn delivery(&self) -> Delivery {
        Delivery {
            event: self.event.clone(),
            outgoing_event_id: Some(self.outgoing_event_id),
        }
    }
}

/// Why a message can never be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed status message: {0}")]
pub struct Malformed(pub String);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    to: Option<To>,
    payload: Payload,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct To {
    robot_id: IdValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    id: i64,
    subscription_id: i64,
    source_event: SourceEvent,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SourceEvent {
    id: i64,
    robot_id: IdValue,
    event_name: String,
    #[serde(default)]
    level: Option<i64>,
    #[serde(default)]
    reference_id: Option<IdValue>,
    #[serde(deserialize_with = "crate::upstream::event_time")]
    created_at: DateTime<Utc>,
}

/// Ids arrive as numbers or as strings (`"to": {"robotId": "42"}`).
#[derive(Deserialize)]
#[serde(untagged)]
enum IdValue {
    Number(i64),
    Text(String),
}

impl IdValue {
    fn as_i64(&self) -> Option<i64> {
        match self {
            IdValue::Number(n) => Some(*n),
            IdValue::Text(s) => s.trim().parse().ok(),
        }
    }

    fn into_string(self) -> String {
        match self {
            IdValue::Number(n) => n.to_string(),
            IdValue::Text(s) => s,
        }
    }
}

#[derive(Deserialize)]
struct SnsNotification {
    #[serde(rename = "Type")]
    kind: String,
    #[serde(rename = "Message")]
    message: String,
}

/// Parses a message body: the Megazord envelope, or the same wrapped by SNS.
pub fn parse(body: &str) -> Result<StatusMessage, Malformed> {
    let value: serde_json::Value =
        serde_json::from_str(body).map_err(|e| Malformed(format!("not JSON: {e}")))?;
    let value = match serde_json::from_value::<SnsNotification>(value.clone()) {
        Ok(sns) if sns.kind == "Notification" => serde_json::from_str(&sns.message)
            .map_err(|e| Malformed(format!("SNS Message is not JSON: {e}")))?,
        _ => value,
    };
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| Malformed(format!("wrong shape: {e}")))?;
    let source = envelope.payload.source_event;
    let robot_id = source
        .robot_id
        .as_i64()
        .filter(|id| *id > 0)
        .ok_or_else(|| Malformed("sourceEvent.robotId is not a robot id".to_owned()))?;
    if let Some(to) = envelope.to.and_then(|to| to.robot_id.as_i64())
        && to != robot_id
    {
        return Err(Malformed(format!(
            "to.robotId {to} differs from sourceEvent.robotId {robot_id}"
        )));
    }
    Ok(StatusMessage {
        robot_id,
        subscription_id: envelope.payload.subscription_id,
        outgoing_event_id: envelope.payload.id,
        event: Event {
            id: source.id,
            name: source.event_name,
            created_at: source.created_at,
            level: source.level,
            reference_id: source.reference_id.map(IdValue::into_string),
        },
    })
}

/// The first `max` characters of a body, for a log line.
pub fn truncate(body: &str, max: usize) -> String {
    match body.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: &str = r#"{"from": "megazord", "to": {"robotId": "42"},
        "link": {"link": "/internal/v1/events/robots/42/subscriptions/991/outgoings/70001", "rel": ""},
        "payload": {"id": 70001, "sourceEventId": 5002, "subscriptionId": 991, "status": "CREATED",
            "createdAt": "2026-11-20T08:05:00Z", "updatedAt": "2026-11-20T08:05:00Z",
            "sourceEvent": {"id": 5002, "robotId": 42, "eventName": "CHARGING_STARTED",
                "level": 1, "referenceId": null, "createdAt": "2026-11-20T08:04:59Z"}}}"#;

    #[test]
    fn parses_the_megazord_envelope() {
        let message = parse(PLAIN).unwrap();
        assert_eq!(message.robot_id, 42);
        assert_eq!(message.subscription_id, 991);
        assert_eq!(message.outgoing_event_id, 70001);
        assert_eq!(message.event.id, 5002);
        assert_eq!(message.event.name, "CHARGING_STARTED");
        assert_eq!(message.event.level, Some(1));
        assert_eq!(message.event.reference_id, None);
        assert_eq!(
            message.event.created_at,
            "2026-11-20T08:04:59Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(message.delivery().outgoing_event_id, Some(70001));
    }

    #[test]
    fn parses_the_same_wrapped_by_sns() {
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "m-1", "Message": PLAIN});
        assert_eq!(parse(&sns.to_string()).unwrap(), parse(PLAIN).unwrap());
    }

    #[test]
    fn refuses_what_can_never_be_processed() {
        for body in [
            "not json",
            "{}",
            r#"{"payload": {"id": 1}}"#,
            r#"{"Type": "Notification", "Message": "{oops"}"#,
            &PLAIN.replace(r#""robotId": 42"#, r#""robotId": "x""#),
            &PLAIN.replace(r#""robotId": "42""#, r#""robotId": "43""#),
            // Years chrono reads but no Megazord time has (their grace would overflow).
            &PLAIN.replace("2026-11-20T08:04:59Z", "+262142-12-31T23:59:59Z"),
            &PLAIN.replace("2026-11-20T08:04:59Z", "-262143-01-01T00:00:00Z"),
            &PLAIN.replace("2026-11-20T08:04:59Z", "+10000-01-01T00:00:00Z"),
        ] {
            assert!(parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn truncates_on_character_boundaries() {
        assert_eq!(truncate("abcdef", 3), "abc…");
        assert_eq!(truncate("äöü", 2), "äö…");
        assert_eq!(truncate("ab", 3), "ab");
    }
}
