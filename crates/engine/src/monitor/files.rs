//! The two file formats monitors come in (SPEC §12):
//!
//! - **the monitors list** (`MONITORS_FILE`): a YAML or JSON list of [`MonitorDefinition`]s,
//!   camelCase, unknown fields refused;
//! - **the monitoring job service's JSON** (`MONITORING_CONFIG` as that service is deployed,
//!   `TOILET_MONITORING_CONFIG`, or a file):
//!   `{"robots":[{"robotId","timezone","enabled","monitoringRules":[{"ruleId","eventName"
//!   (older files: "eventType"),"windowDurationMinutes","dailyWindow":{"startTime","endTime"},
//!   "actions":[{"type":"ALARM" (any case),"config":{"eventName"}}]}]}]}`. Fields this service
//!   does not use are ignored there, so any file that service read loads here.
//!
//! Both are read with the YAML parser (JSON is YAML), which reports lines and columns for
//! JSON too. Every error names the monitor (its position in the file, and its robot and rule
//! ids when they are valid) and the field, in the file's own spelling; the caller adds the
//! file's name ([`MonitorError::source`]).

use std::collections::HashMap;
use std::fmt;

use schemars::JsonSchema;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ActionDefinition, DailyDefinition, Monitor, MonitorDefinition, RuleId};

/// The event the monitoring job service's alarm action posted when its `config` named none.
pub const JOB_SERVICE_ALARM: &str = "NO_TOILET_ACTIVITY_ALARM";

/// A problem in a monitors file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorError {
    /// The file (or variable) the text came from; set by the caller, e.g. with
    /// [`MonitorError::with_source`].
    pub source: Option<String>,
    /// For syntax and type errors: the line in the text.
    pub line: Option<u32>,
    /// The monitor at fault; `None` when the error concerns the file as a whole.
    pub monitor: Option<MonitorLabel>,
    /// The field inside the monitor, as written in the file: `daily.end`,
    /// `actions[0].eventName`, `dailyWindow.endTime`. Empty when the whole entry is at fault.
    pub field: String,
    pub message: String,
}

/// Which monitor of a file an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorLabel {
    /// Where it is: `[3]` in a list, `robots[0].monitoringRules[1]` (or `robots[0]` for a
    /// robot's own fields) in the job service's JSON.
    pub position: String,
    /// Its ids, when they could be read and are valid.
    pub robot_id: Option<i64>,
    pub rule_id: Option<String>,
}

impl MonitorError {
    pub fn with_source(mut self, source: impl Into<String>) -> MonitorError {
        self.source = Some(source.into());
        self
    }
}

impl fmt::Display for MonitorLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "monitor {}", self.position)?;
        match (self.robot_id, &self.rule_id) {
            (Some(robot), Some(rule)) => write!(f, " (robot {robot}, rule {rule})"),
            (Some(robot), None) => write!(f, " (robot {robot})"),
            (None, Some(rule)) => write!(f, " (rule {rule})"),
            (None, None) => Ok(()),
        }
    }
}

impl fmt::Display for MonitorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.line) {
            (Some(source), Some(line)) => write!(f, "{source}:{line}: ")?,
            (Some(source), None) => write!(f, "{source}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if let Some(monitor) = &self.monitor {
            write!(f, "{monitor}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for MonitorError {}

/// Reads either format: a text whose first item is a list (`[` or `- `) or that is empty is
/// a monitors list, anything else the job service's JSON.
pub fn parse_monitors(text: &str) -> Result<Vec<Monitor>, Vec<MonitorError>> {
    let first_line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && *line != "---");
    match first_line {
        Some(line) if !line.starts_with('[') && !line.starts_with('-') => {
            parse_job_service_config(text)
        }
        _ => parse_monitor_list(text),
    }
}

/// Reads a monitors list (`MONITORS_FILE`). An empty text is an empty list.
pub fn parse_monitor_list(text: &str) -> Result<Vec<Monitor>, Vec<MonitorError>> {
    let definitions: Vec<MonitorDefinition> =
        deserialize(text).map_err(|e| vec![e.locate(split_list_path)])?;
    let mut checked = Checked::default();
    for (i, definition) in definitions.iter().enumerate() {
        let label = label(
            format!("[{i}]"),
            definition.robot_id,
            definition.rule_id.as_deref(),
        );
        match Monitor::from_definition(definition) {
            Ok(monitor) => checked.add(monitor, label),
            Err(errors) => checked.fail(&label, errors.into_iter().map(|e| (e.field, e.message))),
        }
    }
    checked.finish()
}

/// Reads the old job service's configuration (SPEC §12).
pub fn parse_job_service_config(text: &str) -> Result<Vec<Monitor>, Vec<MonitorError>> {
    let config: JobConfig = deserialize(text).map_err(|e| vec![e.locate(split_job_path)])?;
    let Some(robots) = config.robots else {
        return Err(vec![MonitorError {
            source: None,
            line: None,
            monitor: None,
            field: "robots".to_owned(),
            message: "is missing: expected {\"robots\": [...]} (or a list of monitors)".to_owned(),
        }]);
    };
    let mut checked = Checked::default();
    for (r, robot) in robots.into_iter().enumerate() {
        let robot_label = label(format!("robots[{r}]"), robot.robot_id, None);
        // The robot's own fields (robotId, timezone) are reported once, from its first rule;
        // the other rules' errors about them are dropped.
        let definition = |rule: &JobRule| MonitorDefinition {
            robot_id: robot.robot_id,
            rule_id: rule.rule_id.clone(),
            event_type: rule.event_name.clone().or_else(|| rule.event_type.clone()),
            window: rule
                .window_duration_minutes
                .map(|minutes| format!("{minutes}m")),
            timezone: robot.timezone.clone(),
            daily: rule.daily_window.as_ref().map(|daily| DailyDefinition {
                start: daily.start_time.clone(),
                end: daily.end_time.clone(),
            }),
            actions: rule.actions.as_ref().map(|actions| {
                actions
                    .iter()
                    .map(|action| ActionDefinition {
                        kind: action.kind.clone(),
                        // The job service posted its alarm when the action named none.
                        event_name: action
                            .config
                            .as_ref()
                            .and_then(|c| c.event_name.clone())
                            .or_else(|| Some(JOB_SERVICE_ALARM.to_owned())),
                        level: action.config.as_ref().and_then(|c| c.level),
                    })
                    .collect()
            }),
            enabled: Some(robot.enabled.unwrap_or(true) && rule.enabled.unwrap_or(true)),
        };
        let robot_errors: Vec<(String, String)> = match robot.monitoring_rules.first() {
            Some(rule) => Monitor::from_deployed_definition(&definition(rule))
                .err()
                .unwrap_or_default()
                .into_iter()
                .filter(|e| is_robot_field(&e.field))
                .map(|e| (e.field, e.message))
                .collect(),
            None => Vec::new(),
        };
        checked.fail(&robot_label, robot_errors.into_iter());
        for (i, rule) in robot.monitoring_rules.iter().enumerate() {
            let position = format!("robots[{r}].monitoringRules[{i}]");
            let rule_label = label(position, robot.robot_id, rule.rule_id.as_deref());
            match Monitor::from_deployed_definition(&definition(rule)) {
                Ok(monitor) => checked.add(monitor, rule_label),
                Err(errors) => {
                    let errors = errors.into_iter().filter(|e| !is_robot_field(&e.field));
                    checked.fail(
                        &rule_label,
                        errors.map(|e| {
                            let message = match (e.field.as_str(), rule.window_duration_minutes) {
                                ("window", Some(minutes)) if !(1..=24 * 60).contains(&minutes) => {
                                    format!("{minutes} is not a window: use 1 to 1440 minutes")
                                }
                                _ => e.message,
                            };
                            (job_field(&e.field), message)
                        }),
                    )
                }
            }
        }
    }
    checked.finish()
}

/// Monitors and errors collected over a file, refusing a second monitor with the same ids.
#[derive(Default)]
struct Checked {
    monitors: Vec<Monitor>,
    errors: Vec<MonitorError>,
    positions: HashMap<(i64, RuleId), String>,
}

impl Checked {
    fn add(&mut self, monitor: Monitor, label: MonitorLabel) {
        let key = (monitor.robot_id(), monitor.rule_id().clone());
        if let Some(first) = self.positions.get(&key) {
            let message = format!(
                "robot {} already has a monitor with rule id {} (at {first})",
                key.0, key.1
            );
            self.fail(&label, [("ruleId".to_owned(), message)].into_iter());
            return;
        }
        self.positions.insert(key, label.position);
        self.monitors.push(monitor);
    }

    fn fail(&mut self, label: &MonitorLabel, errors: impl Iterator<Item = (String, String)>) {
        self.errors
            .extend(errors.map(|(field, message)| MonitorError {
                source: None,
                line: None,
                monitor: Some(label.clone()),
                field,
                message,
            }));
    }

    fn finish(self) -> Result<Vec<Monitor>, Vec<MonitorError>> {
        if self.errors.is_empty() {
            Ok(self.monitors)
        } else {
            Err(self.errors)
        }
    }
}

fn label(position: String, robot_id: Option<i64>, rule_id: Option<&str>) -> MonitorLabel {
    MonitorLabel {
        position,
        robot_id: robot_id.filter(|id| *id > 0),
        rule_id: rule_id
            .filter(|id| RuleId::parse(id).is_ok())
            .map(str::to_owned),
    }
}

fn is_robot_field(field: &str) -> bool {
    field == "robotId" || field == "timezone"
}

/// A monitor field's name in the job service's JSON.
fn job_field(field: &str) -> String {
    match field {
        "eventType" => "eventName".to_owned(),
        "window" => "windowDurationMinutes".to_owned(),
        "daily" => "dailyWindow".to_owned(),
        "daily.start" => "dailyWindow.startTime".to_owned(),
        "daily.end" => "dailyWindow.endTime".to_owned(),
        _ => match field.rsplit_once('.') {
            Some((action, leaf @ ("eventName" | "level"))) if action.starts_with("actions[") => {
                format!("{action}.config.{leaf}")
            }
            _ => field.to_owned(),
        },
    }
}

/// A syntax or type error, before it is split into monitor and field.
struct Unlocated {
    path: String,
    line: Option<u32>,
    message: String,
}

impl Unlocated {
    fn locate(self, split: fn(&str) -> (Option<&str>, &str)) -> MonitorError {
        let (position, field) = split(&self.path);
        MonitorError {
            source: None,
            line: self.line,
            monitor: position.map(|position| label(position.to_owned(), None, None)),
            field: field.to_owned(),
            message: self.message,
        }
    }
}

fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, Unlocated> {
    let mut path = String::new();
    serde_saphyr::with_deserializer_from_str(text, |deserializer| {
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            path = e.path().to_string();
            e.into_inner()
        })
    })
    .map_err(|e| Unlocated {
        path: if path == "." { String::new() } else { path },
        line: e
            .location()
            .and_then(|l| u32::try_from(l.line()).ok())
            .filter(|l| *l > 0),
        message: crate::template::yaml_message(&e),
    })
}

/// `[3].daily.end` → (`[3]`, `daily.end`).
fn split_list_path(path: &str) -> (Option<&str>, &str) {
    match path.find(']') {
        Some(end) if path.starts_with('[') => {
            let rest = &path[end + 1..];
            (Some(&path[..=end]), rest.strip_prefix('.').unwrap_or(rest))
        }
        _ => (None, path),
    }
}

/// `robots[0].monitoringRules[1].dailyWindow.endTime` → (`robots[0].monitoringRules[1]`,
/// `dailyWindow.endTime`); `robots[0].timezone` → (`robots[0]`, `timezone`).
fn split_job_path(path: &str) -> (Option<&str>, &str) {
    let entry_end = match path.find(".monitoringRules[") {
        Some(rules) => path[rules..].find(']').map(|end| rules + end),
        None if path.starts_with("robots[") => path.find(']'),
        None => None,
    };
    match entry_end {
        Some(end) => {
            let rest = &path[end + 1..];
            (Some(&path[..=end]), rest.strip_prefix('.').unwrap_or(rest))
        }
        None => (None, path),
    }
}

// ---- The job service's JSON ----

/// The JSON Schema of a monitors file, derived from the types the loader reads it with, so
/// the two cannot drift; committed as `docs/monitors.schema.json`.
pub fn file_schema() -> schemars::Schema {
    schemars::schema_for!(MonitorsFile)
}

/// A status-check monitors file (docs/monitors.md): a list of monitors, or the monitoring
/// job service's configuration.
#[derive(JsonSchema)]
#[serde(untagged)]
#[schemars(title = "status-check monitors")]
#[allow(dead_code)]
enum MonitorsFile {
    List(Vec<MonitorDefinition>),
    JobService(JobConfig),
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobConfig {
    #[serde(default)]
    robots: Option<Vec<JobRobot>>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobRobot {
    #[serde(
        default,
        deserialize_with = "super::definition::robot_id_number_or_text"
    )]
    #[schemars(with = "Option<super::definition::RobotIdSchema>")]
    robot_id: Option<i64>,
    #[serde(default)]
    timezone: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    monitoring_rules: Vec<JobRule>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobRule {
    #[serde(default)]
    rule_id: Option<String>,
    /// The watched event, as the job service reads it.
    #[serde(default)]
    event_name: Option<String>,
    /// The watched event in older files; `eventName` wins when a file has both.
    #[serde(default)]
    event_type: Option<String>,
    #[serde(default)]
    window_duration_minutes: Option<i64>,
    #[serde(default)]
    daily_window: Option<JobDailyWindow>,
    #[serde(default)]
    actions: Option<Vec<JobAction>>,
    #[serde(default)]
    enabled: Option<bool>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobDailyWindow {
    #[serde(default)]
    start_time: Option<String>,
    #[serde(default)]
    end_time: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobAction {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    config: Option<JobActionConfig>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
struct JobActionConfig {
    #[serde(default)]
    event_name: Option<String>,
    #[serde(default)]
    level: Option<i64>,
}
