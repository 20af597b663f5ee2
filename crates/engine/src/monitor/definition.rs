//! A monitor as plain data (what a file entry or an API body says) and its validation into a
//! [`Monitor`], naming the field at fault.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Action, ClockTime, DailyWindow, Monitor, RuleId, Timezone, WindowLength, fields};

/// A monitor as plain data: what a monitors file entry or an API body says (camelCase). Every
/// field is optional here so that validation can name a missing one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MonitorDefinition {
    /// A positive integer; a string of digits is accepted too.
    #[serde(
        default,
        deserialize_with = "robot_id_number_or_text",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<RobotIdSchema>")]
    pub robot_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
    /// `"2h"`, `"90m"`, `"4s"`, `"1h30m"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// IANA name; default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<DailyDefinition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<ActionDefinition>>,
    /// Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// A robot id as a file may write it, for the JSON Schema: a positive integer, or a string
/// of digits (what [`robot_id_number_or_text`] reads).
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub(super) enum RobotIdSchema {
    Number(#[schemars(range(min = 1))] i64),
    Digits(#[schemars(regex(pattern = r"^\s*[0-9]+\s*$"))] String),
}

/// `daily: {start: "HH:MM", end: "HH:MM" | "24:00"}`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DailyDefinition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
}

/// `{type: alarm, eventName, level?}`: `type` in any case (`alarm`, `ALARM`); without `level`
/// the alarm is posted without one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionDefinition {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<i64>,
}

/// A problem with one field of a monitor: `field` is a path such as `daily.end` or
/// `actions[0].eventName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

impl Monitor {
    /// Validates a definition as a person writes one (an API body, `MONITORS_FILE`),
    /// collecting every problem with the field it concerns. A window longer than the daily
    /// session is refused: it could never end before the session does. So is an action
    /// without a level whose event another action posts with one: every post of a window
    /// carries its reference id, and without a level Megazord's schema sets one, so the relay
    /// could not tell the two posts apart (it reads them back to find a post whose answer was
    /// lost).
    pub fn from_definition(definition: &MonitorDefinition) -> Result<Monitor, Vec<FieldError>> {
        Self::validate(definition, true)
    }

    /// Validates like [`Monitor::from_definition`], but takes a window longer than the daily
    /// session (its windows are cut at the session's end, so it alarms only on a day a clock
    /// change lengthens) and actions of one event with and without a level. The job service
    /// ran with such files, which load here unchanged (SPEC §12), and what was stored is read
    /// back as it was.
    pub fn from_deployed_definition(
        definition: &MonitorDefinition,
    ) -> Result<Monitor, Vec<FieldError>> {
        Self::validate(definition, false)
    }

    /// Whether the window is longer than the session on a day without a clock change.
    pub fn window_outlasts_session(&self) -> bool {
        self.window.as_seconds() > self.daily.nominal_seconds()
    }

    fn validate(
        definition: &MonitorDefinition,
        as_written: bool,
    ) -> Result<Monitor, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: String| {
            errors.push(FieldError {
                field: field.to_owned(),
                message,
            })
        };
        let missing = || "is missing".to_owned();

        let robot_id = match definition.robot_id {
            Some(id) => fields::check_robot_id(id)
                .map_err(|m| fail("robotId", m))
                .ok(),
            None => {
                fail("robotId", missing());
                None
            }
        };
        let rule_id = match &definition.rule_id {
            Some(id) => RuleId::parse(id).map_err(|m| fail("ruleId", m)).ok(),
            None => {
                fail("ruleId", missing());
                None
            }
        };
        let event_type = match &definition.event_type {
            Some(name) => crate::template::check_event_name(name)
                .map(|()| name.clone())
                .map_err(|m| fail("eventType", m))
                .ok(),
            None => {
                fail("eventType", missing());
                None
            }
        };
        let window = match &definition.window {
            Some(text) => WindowLength::parse(text)
                .map_err(|m| fail("window", m))
                .ok(),
            None => {
                fail("window", missing());
                None
            }
        };
        let timezone = match &definition.timezone {
            Some(name) => Timezone::parse(name).map_err(|m| fail("timezone", m)).ok(),
            None => Some(Timezone::utc()),
        };
        let daily = match &definition.daily {
            Some(daily) => {
                let mut clock = |text: &Option<String>, field: &str| match text {
                    Some(text) => ClockTime::parse(text).map_err(|m| fail(field, m)).ok(),
                    None => {
                        fail(field, missing());
                        None
                    }
                };
                let start = clock(&daily.start, "daily.start");
                let end = clock(&daily.end, "daily.end");
                match (start, end) {
                    (Some(start), Some(end)) => DailyWindow::new(start, end)
                        .map_err(|(which, m)| fail(&format!("daily.{which}"), m))
                        .ok(),
                    _ => None,
                }
            }
            None => {
                fail("daily", missing());
                None
            }
        };
        if let (true, Some(window), Some(daily)) = (as_written, window, daily)
            && window.as_seconds() > daily.nominal_seconds()
        {
            fail(
                "window",
                format!(
                    "{window} is longer than the daily session {}–{}: no window could end \
                     before the session does",
                    daily.start(),
                    daily.end()
                ),
            );
        }
        let actions = match &definition.actions {
            Some(actions) if actions.is_empty() => {
                fail(
                    "actions",
                    "lists no action: a monitor needs at least one".to_owned(),
                );
                None
            }
            Some(actions) => {
                let parsed: Vec<Option<Action>> = actions
                    .iter()
                    .enumerate()
                    .map(|(i, action)| parse_action(action, &format!("actions[{i}]"), &mut fail))
                    .collect();
                let parsed = parsed.into_iter().collect::<Option<Vec<_>>>();
                if let (true, Some(parsed)) = (as_written, &parsed) {
                    for (i, leveled) in levels_left_out(parsed) {
                        fail(
                            &format!("actions[{i}].level"),
                            format!(
                                "is missing while actions[{leveled}] posts the same event with \
                                 one: give this one a level too (without one Megazord's schema \
                                 sets it, and the two posts could not be told apart)"
                            ),
                        );
                    }
                }
                parsed
            }
            None => {
                fail("actions", missing());
                None
            }
        };
        match (
            robot_id, rule_id, event_type, window, timezone, daily, actions,
        ) {
            (
                Some(robot_id),
                Some(rule_id),
                Some(event_type),
                Some(window),
                Some(timezone),
                Some(daily),
                Some(actions),
            ) if errors.is_empty() => Ok(Monitor {
                robot_id,
                rule_id,
                event_type,
                window,
                timezone,
                daily,
                actions,
                enabled: definition.enabled.unwrap_or(true),
            }),
            _ => Err(errors),
        }
    }

    /// The canonical definition: every field set, the window as e.g. `"1h30m"`, the timezone
    /// as the tz database spells it. `from_definition` of it gives back an equal monitor.
    pub fn definition(&self) -> MonitorDefinition {
        MonitorDefinition {
            robot_id: Some(self.robot_id),
            rule_id: Some(self.rule_id.to_string()),
            event_type: Some(self.event_type.clone()),
            window: Some(self.window.to_string()),
            timezone: Some(self.timezone.to_string()),
            daily: Some(DailyDefinition {
                start: Some(self.daily.start().to_string()),
                end: Some(self.daily.end().to_string()),
            }),
            actions: Some(
                self.actions
                    .iter()
                    .map(|action| match action {
                        Action::Alarm { event_name, level } => ActionDefinition {
                            kind: Some("alarm".to_owned()),
                            event_name: Some(event_name.clone()),
                            level: level.map(i64::from),
                        },
                    })
                    .collect(),
            ),
            enabled: Some(self.enabled),
        }
    }
}

fn parse_action(
    action: &ActionDefinition,
    path: &str,
    fail: &mut impl FnMut(&str, String),
) -> Option<Action> {
    match action.kind.as_deref() {
        // The job service writes `"ALARM"`; case carries no meaning here.
        Some(kind) if kind.eq_ignore_ascii_case("alarm") => {}
        Some(other) => {
            fail(
                &format!("{path}.type"),
                format!(
                    "{other:?} is not an action type: the one there is is \"alarm\" (any case)"
                ),
            );
            return None;
        }
        None => {
            fail(
                &format!("{path}.type"),
                "is missing (use \"alarm\")".to_owned(),
            );
            return None;
        }
    }
    let event_name = match &action.event_name {
        Some(name) => match crate::template::check_event_name(name) {
            Ok(()) => Some(name.clone()),
            Err(m) => {
                fail(&format!("{path}.eventName"), m);
                None
            }
        },
        None => {
            fail(&format!("{path}.eventName"), "is missing".to_owned());
            None
        }
    };
    let level = match action.level.map(u8::try_from) {
        None => Some(None),
        Some(Ok(level)) => Some(Some(level)),
        Some(Err(_)) => {
            fail(
                &format!("{path}.level"),
                format!(
                    "{} is not a level: use 0 to 255, or leave it out so that Megazord's event \
                     schema decides",
                    action.level.unwrap_or_default()
                ),
            );
            None
        }
    };
    Some(Action::Alarm {
        event_name: event_name?,
        level: level?,
    })
}

/// A robot id written as a number (`42`) or as a string of digits (`"42"`).
pub(super) fn robot_id_number_or_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    struct RobotId;
    impl serde::de::Visitor<'_> for RobotId {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a robot id (a positive integer)")
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::custom(format!("{v} is too large for a robot id")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.trim()
                .parse()
                .map(Some)
                .map_err(|_| E::custom(format!("{v:?} is not a robot id (a positive integer)")))
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }
    deserializer.deserialize_any(RobotId)
}

/// Each action without a level whose event an action with a level posts too: (its index, the
/// first such other action's index).
fn levels_left_out(actions: &[Action]) -> Vec<(usize, usize)> {
    let event_and_level = |action: &Action| match action {
        Action::Alarm { event_name, level } => (event_name.clone(), *level),
    };
    let mut left_out = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let (event, level) = event_and_level(action);
        if level.is_some() {
            continue;
        }
        let leveled = actions.iter().position(|other| {
            let (other_event, other_level) = event_and_level(other);
            other_event == event && other_level.is_some()
        });
        if let Some(leveled) = leveled {
            left_out.push((i, leveled));
        }
    }
    left_out
}
