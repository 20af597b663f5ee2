//! Templates: the YAML file format (SPEC §4.1), the stored definition, and the compiled,
//! validated template the lifecycle runs.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::Spanned;

use crate::history::History;
use crate::model::{CheckResult, Event, Record, RecordPhase};
use crate::rules::{Limits, PhaseRules, Rule, RuleVars, TrialError};

/// A template name: `[a-z0-9-]{1,128}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TemplateName(String);

impl TemplateName {
    pub fn parse(name: &str) -> Result<TemplateName, String> {
        let valid_chars = name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if name.is_empty() || name.len() > 128 || !valid_chars {
            return Err(format!(
                "{name:?} is not a valid name: use 1 to 128 of a-z, 0-9 and -"
            ));
        }
        Ok(TemplateName(name.to_owned()))
    }

    /// A name as another service stored it, unchecked: only for the stand-in of a version
    /// this service cannot run ([`Template::without_rules`]), whose checks must still end.
    pub fn as_stored(name: &str) -> TemplateName {
        TemplateName(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TemplateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Default windows of a template, in seconds (`pastInterval = -1`: unbounded look-back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PollerDefaults {
    /// Look-back in seconds when the step says 0: -1 unbounded, 0 no past phase.
    #[schemars(range(min = -1, max = MAX_INTERVAL))]
    pub past_interval: i64,
    /// Look-ahead in seconds when the step says 0: 0 no future phase.
    #[schemars(range(min = 0, max = MAX_INTERVAL))]
    pub future_interval: i64,
}

/// One phase of a template as stored: the events it depends on and its rule texts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PhaseDefinition {
    pub depends_on: Vec<String>,
    pub pass: Option<String>,
    pub fail: Option<String>,
    pub unknown: Option<String>,
}

/// A template as plain data: what a YAML file says and what the database stores. Two
/// definitions that are equal are the same template version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateDefinition {
    pub name: String,
    pub version: i64,
    pub description: String,
    pub is_active: bool,
    pub poll_until_end: bool,
    pub poller: PollerDefaults,
    pub past: Option<PhaseDefinition>,
    pub future: Option<PhaseDefinition>,
}

/// A problem with a template, naming where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// The file (or other source) the template came from.
    pub source: Option<String>,
    /// The field, as a path: `resources.pastEvents.PASS`.
    pub field: String,
    pub line: Option<u32>,
    pub message: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(source) = &self.source {
            write!(f, "{source}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            write!(f, ": ")?;
        } else if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for TemplateError {}

/// A validated template with its rules compiled.
#[derive(Debug)]
pub struct Template {
    pub name: TemplateName,
    pub version: u32,
    pub description: String,
    pub is_active: bool,
    pub poll_until_end: bool,
    pub poller: PollerDefaults,
    pub past: Option<PhaseRules>,
    pub future: Option<PhaseRules>,
    definition: TemplateDefinition,
}

impl Template {
    /// The definition this template was built from.
    pub fn definition(&self) -> &TemplateDefinition {
        &self.definition
    }

    /// Whether a future event delivered out of order cannot change how the check ends: it ends
    /// at its first decisive event (not `pollUntilEnd`), and its future rules decide alike in
    /// any order ([`PhaseRules::decides_alike_in_any_order`]). A delivery that ends such a check
    /// needs no confirming read of Megazord.
    pub fn future_decides_alike_in_any_order(&self) -> bool {
        !self.poll_until_end
            && self
                .future
                .as_ref()
                .is_some_and(PhaseRules::decides_alike_in_any_order)
    }

    /// Parses, validates and compiles a YAML template (SPEC §4.1). `source` names the file in
    /// errors.
    pub fn from_yaml(
        text: &str,
        source: &str,
        limits: &Limits,
    ) -> Result<Template, Vec<TemplateError>> {
        let raw: RawTemplate = serde_saphyr::from_str(text).map_err(|e| {
            vec![TemplateError {
                source: Some(source.to_owned()),
                field: String::new(),
                line: e.location().map(|l| l.line() as u32).filter(|l| *l > 0),
                message: yaml_message(&e),
            }]
        })?;
        let lines = raw.lines();
        let definition = raw.into_definition();
        Template::from_definition(definition, limits).map_err(|errors| {
            errors
                .into_iter()
                .map(|mut error| {
                    error.source = Some(source.to_owned());
                    error.line = error.line.or_else(|| lines.get(&error.field).copied());
                    error
                })
                .collect()
        })
    }

    /// The template of a definition whose rules this service cannot run (a version the Node
    /// service wrote in EJS/JavaScript, SPEC §6.1), when no runnable version of its name
    /// exists: its dependencies and flags, no rules. A check bound to it records its
    /// deliveries without evaluating them and is decided at the deadline from its current
    /// result. Its name is kept as stored, whatever the Node service called it.
    pub fn without_rules(definition: TemplateDefinition) -> Template {
        let name = TemplateName::parse(&definition.name)
            .unwrap_or_else(|_| TemplateName::as_stored(&definition.name));
        let phase = |phase: &Option<PhaseDefinition>| {
            phase.as_ref().map(|phase| PhaseRules {
                depends_on: phase.depends_on.clone(),
                ..PhaseRules::default()
            })
        };
        Template {
            name,
            version: u32::try_from(definition.version).unwrap_or(0),
            description: definition.description.clone(),
            is_active: definition.is_active,
            poll_until_end: definition.poll_until_end,
            poller: definition.poller,
            past: phase(&definition.past),
            future: phase(&definition.future),
            definition,
        }
    }

    /// Validates and compiles a stored definition (SPEC §4.3): every rule is parsed, then
    /// trial-evaluated against representative inputs.
    pub fn from_definition(
        definition: TemplateDefinition,
        limits: &Limits,
    ) -> Result<Template, Vec<TemplateError>> {
        let mut errors = Vec::new();
        let mut fail = |field: &str, message: String| {
            errors.push(TemplateError {
                source: None,
                field: field.to_owned(),
                line: None,
                message,
            })
        };
        let name = TemplateName::parse(&definition.name);
        if let Err(message) = &name {
            fail("name", message.clone());
        }
        let version = u32::try_from(definition.version)
            .ok()
            .filter(|v| (1..=MAX_VERSION).contains(v));
        if version.is_none() {
            fail(
                "version",
                format!(
                    "{} is not a version: use a whole number from 1 to {MAX_VERSION} \
                     (status_check_template.version is a SMALLINT UNSIGNED)",
                    definition.version
                ),
            );
        }
        if definition.poller.past_interval < -1 || definition.poller.past_interval > MAX_INTERVAL {
            fail(
                "poller.pastInterval",
                format!(
                    "{} is out of range: use -1 (unbounded), 0 (none) or up to {MAX_INTERVAL} seconds",
                    definition.poller.past_interval
                ),
            );
        }
        if !(0..=MAX_INTERVAL).contains(&definition.poller.future_interval) {
            fail(
                "poller.futureInterval",
                format!(
                    "{} is out of range: use 0 (none) up to {MAX_INTERVAL} seconds",
                    definition.poller.future_interval
                ),
            );
        }
        if definition.description.chars().count() > MAX_DESCRIPTION_CHARS {
            fail(
                "description",
                format!(
                    "is {} characters; status_check_description.description holds \
                     {MAX_DESCRIPTION_CHARS}",
                    definition.description.chars().count()
                ),
            );
        }
        if definition.past.is_none() && definition.future.is_none() {
            fail(
                "resources",
                "no pastEvents or futureEvents: the template could never decide".to_owned(),
            );
        }
        let mut compile_phase = |phase: &Option<PhaseDefinition>, key: &str| {
            let phase = phase.as_ref()?;
            let path = format!("resources.{key}");
            let mut rules = PhaseRules {
                depends_on: phase.depends_on.clone(),
                ..PhaseRules::default()
            };
            if phase.depends_on.is_empty() {
                fail(&format!("{path}.dependsOn"), "lists no events".to_owned());
            }
            for (i, event) in phase.depends_on.iter().enumerate() {
                if let Err(message) = check_event_name(event) {
                    fail(&format!("{path}.dependsOn[{i}]"), message);
                }
            }
            let stored = stored_dependencies(&phase.depends_on).chars().count();
            if stored > MAX_DEPENDENCIES_CHARS {
                fail(
                    &format!("{path}.dependsOn"),
                    format!(
                        "takes {stored} characters stored as JSON; the column \
                         status_check_template.*_event_dependencies holds \
                         {MAX_DEPENDENCIES_CHARS}"
                    ),
                );
            }
            for (outcome, text, slot) in [
                (CheckResult::Pass, &phase.pass, &mut rules.pass),
                (CheckResult::Fail, &phase.fail, &mut rules.fail),
                (CheckResult::Unknown, &phase.unknown, &mut rules.unknown),
            ] {
                let Some(text) = text else { continue };
                let chars = text.chars().count();
                if chars > MAX_STORED_RULE_CHARS {
                    fail(
                        &format!("{path}.{outcome}"),
                        format!(
                            "is {chars} characters; status_check_template_detail.raw_expression \
                             holds {MAX_STORED_RULE_CHARS}"
                        ),
                    );
                    continue;
                }
                match Rule::compile(text, limits) {
                    Ok(rule) => match rule.growth_error() {
                        // SPEC §13: rules whose cost grows faster than linearly in the history
                        // are refused at load.
                        Some(message) => fail(&format!("{path}.{outcome}"), message),
                        None => *slot = Some(rule),
                    },
                    Err(e) => fail(&format!("{path}.{outcome}"), e.to_string()),
                }
            }
            if phase.pass.is_none() && phase.fail.is_none() && phase.unknown.is_none() {
                fail(&path, "has no PASS, FAIL or UNKNOWN rule".to_owned());
            }
            Some(rules)
        };
        let mut past = compile_phase(&definition.past, "pastEvents");
        let mut future = compile_phase(&definition.future, "futureEvents");
        errors.extend(trial_evaluate(&mut past, &mut future));
        let (Ok(name), Some(version), true) = (name, version, errors.is_empty()) else {
            return Err(errors);
        };
        Ok(Template {
            name,
            version,
            description: definition.description.clone(),
            is_active: definition.is_active,
            poll_until_end: definition.poll_until_end,
            poller: definition.poller,
            past,
            future,
            definition,
        })
    }
}

/// Runs every rule over representative histories; a rule that reads an unknown field or
/// returns a non-boolean rejects the template. A native rule that disagrees with the
/// interpreter on any of them falls back to the interpreter.
fn trial_evaluate(
    past: &mut Option<PhaseRules>,
    future: &mut Option<PhaseRules>,
) -> Vec<TemplateError> {
    let samples = trial_histories(&phase_names(past), &phase_names(future));
    let mut errors = Vec::new();
    for (key, phase, past_only) in [("pastEvents", past, true), ("futureEvents", future, false)] {
        let Some(phase) = phase else { continue };
        for (outcome, rule) in phase.rules_mut() {
            for (history, vars) in &samples {
                let input = if past_only {
                    history.past_input(vars)
                } else {
                    history.full_input(vars)
                };
                let reason = match rule.trial(&input) {
                    Err(TrialError::UnknownField(name)) => Some(format!(
                        "events have no field '{name}' (fields: id, name, createdAt, phase, level, referenceId)"
                    )),
                    Err(TrialError::NotBoolean(ty)) => Some(format!("returns {ty}, not a bool")),
                    Err(TrialError::Refused(reason)) => Some(reason),
                    Ok(_) | Err(TrialError::Runtime(_)) => None,
                };
                let reason = reason.or_else(|| {
                    rule.keep_native_if_agrees(&input)
                        .err()
                        .map(|e| e.to_string())
                });
                if let Some(message) = reason {
                    errors.push(TemplateError {
                        source: None,
                        field: format!("resources.{key}.{outcome}"),
                        line: None,
                        message,
                    });
                    break;
                }
            }
        }
    }
    errors
}

/// Longest window a template or step may ask for: ten years, in seconds.
pub const MAX_INTERVAL: i64 = 10 * 366 * 24 * 3600;

// What the production tables hold (SPEC §6): a template that would not fit is refused at
// load, naming the limit, instead of failing (or being cut) when it is stored.

/// `status_check_template.version` is a `SMALLINT UNSIGNED`.
pub const MAX_VERSION: u32 = 65_535;
/// `status_check_description.description` is a `VARCHAR(1024)`.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;
/// `status_check_template_detail.raw_expression` is a `VARCHAR(1024)`.
pub const MAX_STORED_RULE_CHARS: usize = 1024;
/// `status_check_template.past_event_dependencies` / `future_event_dependencies` are
/// `VARCHAR(512)`, holding [`stored_dependencies`].
pub const MAX_DEPENDENCIES_CHARS: usize = 512;

/// How a phase's dependencies are stored: a JSON array of event names.
pub fn stored_dependencies(names: &[String]) -> String {
    serde_json::to_string(names).unwrap_or_else(|_| "[]".to_owned())
}

pub(crate) fn check_event_name(name: &str) -> Result<(), String> {
    // Characters, as the API's schema (`maxLength`) and MySQL's VARCHAR count them.
    if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_whitespace) {
        Err(format!(
            "{name:?} is not an event name: 1 to 128 characters, no spaces"
        ))
    } else {
        Ok(())
    }
}

fn phase_names(phase: &Option<PhaseRules>) -> Vec<String> {
    phase
        .as_ref()
        .map(|phase| phase.depends_on.clone())
        .unwrap_or_default()
}

/// Representative inputs for trial evaluation: empty, one event, many events; `since` and
/// `until` both null and set.
fn trial_histories(past_names: &[String], future_names: &[String]) -> Vec<(History, RuleVars)> {
    let anchor: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
    let vars = |bounded: bool| RuleVars {
        now: anchor,
        since: bounded.then(|| anchor - chrono::TimeDelta::hours(1)),
        until: bounded.then(|| anchor + chrono::TimeDelta::minutes(10)),
        planned_at: anchor,
        robot_id: 42,
    };
    let history = |events: &[(RecordPhase, &str)]| {
        let mut history = History::default();
        for (i, (phase, name)) in events.iter().enumerate() {
            let i = i as i64;
            let offset = match phase {
                RecordPhase::Past => -600 + i,
                RecordPhase::Future => 60 + i,
            };
            history.push(Record {
                order: history.next_order(),
                phase: *phase,
                event: Event {
                    id: 1000 + i,
                    name: (*name).to_owned(),
                    created_at: anchor + chrono::TimeDelta::seconds(offset),
                    level: Some(1),
                    reference_id: Some(format!("ref-{i}")),
                },
                outgoing_event_id: None,
                result: CheckResult::Pending,
                created_at: anchor,
            });
        }
        history
    };
    let fallback = ["EVENT".to_owned()];
    let first_past = past_names.first().or(fallback.first()).map(String::as_str);
    let first_future = future_names
        .first()
        .or(fallback.first())
        .map(String::as_str);
    let one: Vec<_> = [
        first_past.map(|n| (RecordPhase::Past, n)),
        first_future.map(|n| (RecordPhase::Future, n)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let many: Vec<_> = (0..3)
        .flat_map(|_| {
            past_names
                .iter()
                .map(|n| (RecordPhase::Past, n.as_str()))
                .chain(
                    future_names
                        .iter()
                        .map(|n| (RecordPhase::Future, n.as_str())),
                )
        })
        .collect();
    vec![
        (history(&[]), vars(false)),
        (history(&[]), vars(true)),
        (history(&one), vars(true)),
        (history(&one), vars(false)),
        (history(&many), vars(true)),
    ]
}

// ---- The YAML file format ----

/// The JSON Schema of a template file (SPEC §4.1), derived from the types the loader reads
/// it with, so the two cannot drift; committed as `templates/template.schema.json`.
pub fn file_schema() -> schemars::Schema {
    schemars::schema_for!(RawTemplate)
}

/// A status-check template: one version of one template, in YAML (docs/templates.md).
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "status-check template")]
struct RawTemplate {
    /// Unique name of the template: 1 to 128 of a-z, 0-9 and -.
    #[schemars(with = "String", regex(pattern = r"^[a-z0-9-]{1,128}$"))]
    name: Spanned<String>,
    /// A positive integer; one file per version. A check keeps the version it started with.
    #[schemars(with = "i64", range(min = 1))]
    version: Spanned<i64>,
    #[serde(default)]
    description: String,
    /// Whether new checks may use this version.
    #[serde(default = "yes")]
    is_active: bool,
    /// Keep the check open until the end of its window even after a decisive result; the
    /// last evaluation stands.
    #[serde(default)]
    poll_until_end: bool,
    /// Default windows, used when the step's interval is 0.
    #[serde(default)]
    #[schemars(with = "Option<PollerDefaults>")]
    poller: Option<Spanned<PollerDefaults>>,
    resources: RawResources,
}

fn yes() -> bool {
    true
}

/// The template's phases.
#[derive(Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawResources {
    /// Evaluated once at the check's creation over the events of the past window.
    #[serde(default)]
    #[schemars(with = "Option<RawPhase>")]
    past_events: Option<Spanned<RawPhase>>,
    /// Evaluated on each event of the future window, over every record.
    #[serde(default)]
    #[schemars(with = "Option<RawPhase>")]
    future_events: Option<Spanned<RawPhase>>,
}

/// One phase: the events it depends on and up to three CEL rules, tried in the order PASS,
/// FAIL, UNKNOWN; the first that is true is the result, none true is PENDING. A rule sees
/// `events`, `past`, `future` (each `{id, name, createdAt, phase, level, referenceId}`),
/// `now`, `since`, `until`, `plannedAt` and `robotId`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawPhase {
    /// The event names this phase takes in (and, for the future, subscribes to).
    #[serde(rename = "dependsOn", default)]
    #[schemars(with = "Option<Vec<String>>")]
    depends_on: Option<Spanned<Vec<String>>>,
    /// CEL: true → PASS.
    #[serde(rename = "PASS", default)]
    #[schemars(with = "Option<String>", length(max = 1024))]
    pass: Option<Spanned<String>>,
    /// CEL: true → FAIL.
    #[serde(rename = "FAIL", default)]
    #[schemars(with = "Option<String>", length(max = 1024))]
    fail: Option<Spanned<String>>,
    /// CEL: true → UNKNOWN.
    #[serde(rename = "UNKNOWN", default)]
    #[schemars(with = "Option<String>", length(max = 1024))]
    unknown: Option<Spanned<String>>,
}

impl RawTemplate {
    /// The line of each field that validation may name.
    fn lines(&self) -> HashMap<String, u32> {
        let mut lines = HashMap::new();
        let mut put = |field: String, line: u64| {
            lines.insert(field, line as u32);
        };
        put("name".into(), self.name.referenced.line());
        put("version".into(), self.version.referenced.line());
        if let Some(poller) = &self.poller {
            put("poller.pastInterval".into(), poller.referenced.line());
            put("poller.futureInterval".into(), poller.referenced.line());
        }
        for (key, phase) in [
            ("pastEvents", &self.resources.past_events),
            ("futureEvents", &self.resources.future_events),
        ] {
            let Some(phase) = phase else { continue };
            let path = format!("resources.{key}");
            put(path.clone(), phase.referenced.line());
            if let Some(depends_on) = &phase.value.depends_on {
                put(format!("{path}.dependsOn"), depends_on.referenced.line());
            }
            for (outcome, rule) in [
                ("PASS", &phase.value.pass),
                ("FAIL", &phase.value.fail),
                ("UNKNOWN", &phase.value.unknown),
            ] {
                if let Some(rule) = rule {
                    put(format!("{path}.{outcome}"), rule.referenced.line());
                }
            }
        }
        lines.retain(|_, line| *line > 0);
        lines
    }

    fn into_definition(self) -> TemplateDefinition {
        let phase = |phase: Option<Spanned<RawPhase>>| {
            phase.map(|phase| {
                let phase = phase.value;
                PhaseDefinition {
                    depends_on: phase.depends_on.map(|d| d.value).unwrap_or_default(),
                    pass: phase.pass.map(|r| r.value),
                    fail: phase.fail.map(|r| r.value),
                    unknown: phase.unknown.map(|r| r.value),
                }
            })
        };
        TemplateDefinition {
            name: self.name.value,
            version: self.version.value,
            description: self.description.trim().to_owned(),
            is_active: self.is_active,
            poll_until_end: self.poll_until_end,
            poller: self.poller.map(|p| p.value).unwrap_or_default(),
            past: phase(self.resources.past_events),
            future: phase(self.resources.future_events),
        }
    }
}

/// The YAML parser's message on one line, without its source snippet.
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default().trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    // The line is reported separately; drop the parser's own "line N column M: " prefix.
    match first.split_once(": ") {
        Some((position, rest)) if position.starts_with("line ") => rest.to_owned(),
        _ => first.to_owned(),
    }
}
