//! How Megazord's records look on the wire: subscriptions, incoming and outgoing events, and
//! the status queue envelope (SPEC §5.2, §5.3).

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::{EventSchema, Incoming, Outgoing, SENDER, Subscription};

impl Subscription {
    pub(super) fn to_json(&self, schemas: &BTreeMap<String, EventSchema>) -> Value {
        let details: Vec<Value> = self
            .event_names
            .iter()
            .map(|name| json!({"eventTypeId": schemas.get(name).map(|s| s.type_id), "eventName": name}))
            .collect();
        json!({
            "id": self.id, "robotId": self.robot_id, "subscriptionDetails": details,
            "isActive": self.active, "subscriptionType": self.subscription_type,
            "createdAt": rfc3339(self.created_at), "updatedAt": rfc3339(self.updated_at),
        })
    }
}

impl Incoming {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id, "robotId": self.robot_id, "eventName": self.event_name,
            "level": self.level, "referenceId": self.reference_id,
            "providerName": self.provider_name, "createdAt": rfc3339(self.created_at),
        })
    }
}

impl Outgoing {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "id": self.id, "sourceEventId": self.source.id, "subscriptionId": self.subscription_id,
            "status": "CREATED", "createdAt": rfc3339(self.created_at),
            "updatedAt": rfc3339(self.created_at), "sourceEvent": self.source.to_json(),
        })
    }

    /// The status queue message (SPEC §5.3).
    pub(super) fn envelope(&self) -> Value {
        let robot_id = self.source.robot_id;
        json!({
            "from": SENDER,
            "to": {"robotId": robot_id.to_string()},
            "link": {
                "link": format!("/internal/v1/events/robots/{robot_id}/subscriptions/{}/outgoings/{}",
                    self.subscription_id, self.id),
                "rel": "",
            },
            "payload": self.to_json(),
        })
    }
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}
