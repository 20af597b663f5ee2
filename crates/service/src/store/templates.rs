//! Template versions in the production tables (SPEC §4.4, §6, §6.1): the name and description
//! in `status_check_description`, one row per version in `status_check_template`, one rule per
//! `(template_id, phase, output)` in `status_check_template_detail.raw_expression`, and this
//! service's own `status_check_template_ext` (default windows, the version number the YAML file
//! declared).
//!
//! A description row is only ever inserted: Micro-Managers' `script_node_status_check` points
//! at it, and it may be the Node service's. A version the Node service wrote (EJS/JavaScript
//! rules) is never rewritten; a shipped YAML whose number it holds is synced under the next
//! free number.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use status_check_engine::TemplateDefinition;
use status_check_engine::template::{
    MAX_VERSION, PhaseDefinition, PollerDefaults, stored_dependencies,
};

use super::db::bounded;
use super::db::{Db, Mode, Retry, SqlRow, Tx, args, seconds_floor};
use super::{StoreError, StoredTemplate, Synced, Usable};

macro_rules! select_template {
    () => {
        "SELECT t.id AS id, d.name AS name, d.description AS description, t.version AS version, \
         t.is_active AS is_active, t.poll_until_end AS poll_until_end, \
         t.past_event_dependencies AS past_dependencies, \
         t.future_event_dependencies AS future_dependencies, \
         x.past_interval AS past_interval, x.future_interval AS future_interval, \
         x.declared_version AS declared_version \
         FROM status_check_template t \
         JOIN status_check_description d ON d.id = t.template_description_id \
         LEFT JOIN status_check_template_ext x ON x.status_check_template_id = t.id "
    };
}

const SELECT_TEMPLATE_BY_ID: &str = concat!(select_template!(), "WHERE t.id = ?");

pub(crate) const SELECT_VERSIONS_BY_NAME: &str = concat!(
    select_template!(),
    "WHERE d.name = ? ORDER BY t.version DESC"
);

const SELECT_VERSIONS_BY_DESCRIPTION: &str = concat!(
    select_template!(),
    "WHERE t.template_description_id = ? ORDER BY t.version DESC"
);

const SELECT_DETAILS: &str = "SELECT phase, output, raw_expression \
     FROM status_check_template_detail WHERE template_id = ? ORDER BY phase, output";

const SELECT_DESCRIPTION: &str = "SELECT id, name FROM status_check_description WHERE name = ?";

const INSERT_DESCRIPTION: &str =
    "INSERT INTO status_check_description (name, description, created_at) VALUES (?, ?, ?)";

const INSERT_TEMPLATE: &str = "INSERT INTO status_check_template (template_description_id, \
     past_event_dependencies, future_event_dependencies, version, is_active, poll_until_end, \
     created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";

const INSERT_DETAIL: &str = "INSERT INTO status_check_template_detail \
     (template_id, phase, raw_expression, output) VALUES (?, ?, ?, ?)";

const INSERT_TEMPLATE_EXT: &str = "INSERT INTO status_check_template_ext \
     (status_check_template_id, past_interval, future_interval, declared_version) \
     VALUES (?, ?, ?, ?)";

const UPDATE_TEMPLATE_ACTIVE: &str = "UPDATE status_check_template SET is_active = ? WHERE id = ?";

/// Where a definition goes among the stored versions of its name.
enum Placement {
    /// This stored version is the definition's (same declared number).
    Existing(Box<StoredTemplate>),
    /// Insert under this version number; `beside` is the version that moved it off the
    /// declared number (one holding it that cannot run, or an older file's stored above it).
    New { version: i64, beside: Option<i64> },
}

fn placement(
    definition: &TemplateDefinition,
    mut versions: Vec<StoredTemplate>,
    usable: Usable<'_>,
) -> Placement {
    let declared = definition.version;
    if let Some(at) = versions
        .iter()
        .position(|v| v.declared_version == Some(declared))
    {
        return Placement::Existing(Box::new(versions.swap_remove(at)));
    }
    let highest = versions.iter().map(|v| v.version).max().unwrap_or(0);
    // An older file's version stored above the declared number (renumbered beside a Node
    // version): under it, the older file would stay the active one.
    let older_above = versions
        .iter()
        .filter(|v| v.declared_version.is_some_and(|older| older < declared))
        .filter(|v| v.version >= declared)
        .max_by_key(|v| v.version);
    match versions.iter().position(|v| v.version == declared) {
        None => Placement::New {
            version: if older_above.is_some() {
                highest + 1
            } else {
                declared
            },
            beside: older_above.map(|v| v.id),
        },
        Some(at) => {
            let holder = &versions[at];
            // A version another tool stored for the same number (no declared number of its
            // own) that this service can run is the definition's to compare with.
            let comparable =
                holder.declared_version.is_none() && holder.definition.as_ref().is_ok_and(usable);
            if comparable {
                Placement::Existing(Box::new(versions.swap_remove(at)))
            } else {
                Placement::New {
                    version: highest + 1,
                    beside: Some(holder.id),
                }
            }
        }
    }
}

async fn try_sync_template<D: Db>(
    db: &D,
    definition: &TemplateDefinition,
    usable: Usable<'_>,
    now: DateTime<Utc>,
) -> Result<Synced, StoreError> {
    let now = seconds_floor(now);
    let mut tx = db.begin(Mode::Write).await?;
    let description_id = match tx
        .fetch_optional(SELECT_DESCRIPTION, args![definition.name.as_str()])
        .await?
    {
        Some(row) => {
            let stored = row.text("name")?;
            if stored != definition.name {
                return Ok(Synced::NameTaken { stored });
            }
            row.int("id")?
        }
        None => {
            tx.execute(
                INSERT_DESCRIPTION,
                args![
                    definition.name.as_str(),
                    definition.description.as_str(),
                    now
                ],
            )
            .await?
            .last_insert_id
        }
    };
    let rows = tx
        .fetch_all(SELECT_VERSIONS_BY_DESCRIPTION, args![description_id])
        .await?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in &rows {
        versions.push(template_with_details(&mut tx, row).await?);
    }
    let synced = match placement(definition, versions, usable) {
        Placement::Existing(stored) => {
            let same = stored.definition.as_ref().is_ok_and(|stored| {
                let mut comparable = stored.clone();
                comparable.version = definition.version;
                comparable.is_active = definition.is_active;
                comparable.description = definition.description.clone();
                comparable == *definition
            });
            if !same {
                // Refused: nothing is changed (the transaction rolls back on drop).
                return Ok(Synced::Conflict {
                    id: stored.id,
                    stored: Box::new(
                        stored
                            .definition
                            .clone()
                            .unwrap_or_else(|_| definition.clone()),
                    ),
                });
            }
            if stored.is_active != definition.is_active {
                tx.execute(
                    UPDATE_TEMPLATE_ACTIVE,
                    args![definition.is_active, stored.id],
                )
                .await?;
            }
            Synced::Unchanged(stored.id)
        }
        Placement::New { version, .. } if version > i64::from(MAX_VERSION) => {
            return Ok(Synced::NoNumberLeft);
        }
        Placement::New { version, beside } => {
            let id = insert_version(&mut tx, description_id, definition, version, now).await?;
            match beside {
                None => Synced::Created(id),
                Some(displaced_by) => Synced::CreatedAs {
                    id,
                    version,
                    displaced_by,
                },
            }
        }
    };
    tx.commit().await?;
    Ok(synced)
}

async fn insert_version<T: Tx>(
    tx: &mut T,
    description_id: i64,
    definition: &TemplateDefinition,
    version: i64,
    now: DateTime<Utc>,
) -> Result<i64, StoreError> {
    let dependencies = |phase: &Option<PhaseDefinition>| {
        stored_dependencies(
            phase
                .as_ref()
                .map(|p| p.depends_on.as_slice())
                .unwrap_or_default(),
        )
    };
    let id = tx
        .execute(
            INSERT_TEMPLATE,
            args![
                description_id,
                dependencies(&definition.past),
                dependencies(&definition.future),
                version,
                definition.is_active,
                definition.poll_until_end,
                now,
            ],
        )
        .await?
        .last_insert_id;
    for (phase, output, expression) in rules_of(definition) {
        tx.execute(INSERT_DETAIL, args![id, phase, expression, output])
            .await?;
    }
    tx.execute(
        INSERT_TEMPLATE_EXT,
        args![
            id,
            definition.poller.past_interval,
            definition.poller.future_interval,
            definition.version
        ],
    )
    .await?;
    Ok(id)
}

pub(crate) async fn template_versions<D: Db>(
    db: &D,
    name: &str,
) -> Result<Vec<StoredTemplate>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let rows = tx.fetch_all(SELECT_VERSIONS_BY_NAME, args![name]).await?;
    let mut versions = Vec::with_capacity(rows.len());
    for row in &rows {
        versions.push(template_with_details(&mut tx, row).await?);
    }
    tx.commit().await?;
    Ok(versions)
}

async fn template_with_details<T: Tx>(
    tx: &mut T,
    row: &T::Row,
) -> Result<StoredTemplate, StoreError> {
    let id = row.int("id")?;
    let details = tx.fetch_all(SELECT_DETAILS, args![id]).await?;
    let outline = outline_from_rows(row, &details)?;
    Ok(StoredTemplate {
        id,
        name: row.text("name")?,
        version: row.int("version")?,
        declared_version: row.opt_int("declared_version")?,
        is_active: row.boolean("is_active")?,
        definition: definition_from_rows(&outline, row, &details)?,
        outline,
    })
}

/// A version's dependencies and flags without its rules, read whatever else its rows hold —
/// all a stand-in needs (SPEC §6.1): unreadable dependencies count as none (its deliveries
/// are then passed over; the deadline still decides it), a phase is there when it has
/// dependencies or a rule row.
fn outline_from_rows<R: SqlRow>(row: &R, details: &[R]) -> Result<TemplateDefinition, StoreError> {
    let phase = |name: &str, column: &str| -> Result<Option<PhaseDefinition>, StoreError> {
        let depends_on = parse_dependencies(&row.text(column)?).unwrap_or_default();
        let mut has_rules = false;
        for detail in details {
            has_rules |= detail.text("phase")? == name;
        }
        Ok(
            (!depends_on.is_empty() || has_rules).then(|| PhaseDefinition {
                depends_on,
                ..PhaseDefinition::default()
            }),
        )
    };
    Ok(TemplateDefinition {
        past: phase("PAST", "past_dependencies")?,
        future: phase("FUTURE", "future_dependencies")?,
        poller: PollerDefaults {
            past_interval: row.opt_int("past_interval")?.unwrap_or(0),
            future_interval: row.opt_int("future_interval")?.unwrap_or(0),
        },
        name: row.text("name")?,
        version: row.int("version")?,
        description: row.text("description")?,
        is_active: row.boolean("is_active")?,
        poll_until_end: row.boolean("poll_until_end")?,
    })
}

/// The definition a version's rows hold — its outline with its rules — or why they hold none
/// this service can read (an unknown phase or output, unreadable dependencies: a version
/// another service wrote).
fn definition_from_rows<R: SqlRow>(
    outline: &TemplateDefinition,
    row: &R,
    details: &[R],
) -> Result<Result<TemplateDefinition, String>, StoreError> {
    for column in ["past_dependencies", "future_dependencies"] {
        if let Err(e) = parse_dependencies(&row.text(column)?) {
            return Ok(Err(format!("{column}: {e}")));
        }
    }
    let mut definition = outline.clone();
    for detail in details {
        let phase = detail.text("phase")?;
        let output = detail.text("output")?;
        // The outline has a phase wherever a rule row names it.
        let phase_definition = match phase.as_str() {
            "PAST" => definition.past.as_mut(),
            "FUTURE" => definition.future.as_mut(),
            _ => None,
        };
        let Some(phase_definition) = phase_definition else {
            return Ok(Err(format!("a rule of unknown phase {phase:?}")));
        };
        let slot = match output.as_str() {
            "PASS" => &mut phase_definition.pass,
            "FAIL" => &mut phase_definition.fail,
            "UNKNOWN" => &mut phase_definition.unknown,
            _ => return Ok(Err(format!("a {phase} rule of unknown output {output:?}"))),
        };
        *slot = Some(detail.text("raw_expression")?);
    }
    Ok(Ok(definition))
}

/// `(phase, output, rule)` of every rule the definition has.
fn rules_of(definition: &TemplateDefinition) -> Vec<(&'static str, &'static str, String)> {
    let mut rules = Vec::new();
    for (phase, definition) in [("PAST", &definition.past), ("FUTURE", &definition.future)] {
        let Some(definition) = definition else {
            continue;
        };
        for (output, rule) in [
            ("PASS", &definition.pass),
            ("FAIL", &definition.fail),
            ("UNKNOWN", &definition.unknown),
        ] {
            if let Some(rule) = rule {
                rules.push((phase, output, rule.clone()));
            }
        }
    }
    rules
}

/// Reads a dependency list: `["A","B"]`, or the Node service's `[{"eventName":"A"}]`; blank
/// is empty.
pub(crate) fn parse_dependencies(text: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Dependency {
        Name(String),
        Legacy {
            #[serde(rename = "eventName")]
            event_name: String,
        },
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let dependencies: Vec<Dependency> = serde_json::from_str(text).map_err(|e| {
        format!("{text:?} is not a JSON array of event names or {{\"eventName\": …}}: {e}")
    })?;
    Ok(dependencies
        .into_iter()
        .map(|dependency| match dependency {
            Dependency::Name(name) | Dependency::Legacy { event_name: name } => name,
        })
        .collect())
}

/// Template versions (SPEC §4.4): synced from the shipped files, read by name or id. Part of
/// [`Store`](super::Store); implemented once, below, for every backend, each operation bounded
/// by the backend's operation timeout.
#[async_trait::async_trait]
pub trait TemplateStore: Send + Sync {
    /// Creates a template version (description when the name is new, template row, rules,
    /// default windows) when missing; leaves an identical one alone; refuses a changed one.
    /// The declared version number held by a version that is not `usable` (the Node
    /// service's) is not compared with: the definition goes under the next free number.
    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        usable: Usable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError>;

    /// Every version of `name`, active or not, the highest version number first.
    async fn template_versions(&self, name: &str) -> Result<Vec<StoredTemplate>, StoreError>;

    /// A template version by `status_check_template.id` (active or not): a check keeps the
    /// version it started with.
    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> TemplateStore for B {
    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        usable: crate::store::Usable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError> {
        let db = self;
        bounded(db, "sync_template", async {
            let mut retry = Retry::default();
            loop {
                let error = match try_sync_template(db, definition, usable, now).await {
                    Ok(synced) => return Ok(synced),
                    Err(error) => error,
                };
                // Another replica syncing the same template at the same time: the retry sees its
                // rows.
                let again = match error.is_duplicate() {
                    Some(_) => retry.again_after(&error).await,
                    None => retry.again(&error).await,
                };
                if !again {
                    return Err(error);
                }
            }
        })
        .await
    }

    async fn template_versions(&self, name: &str) -> Result<Vec<StoredTemplate>, StoreError> {
        bounded(self, "template_versions", template_versions(self, name)).await
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError> {
        let db = self;
        bounded(db, "template_by_id", async {
            let mut tx = db.begin(Mode::Read).await?;
            let template = match tx.fetch_optional(SELECT_TEMPLATE_BY_ID, args![id]).await? {
                Some(row) => Some(template_with_details(&mut tx, &row).await?),
                None => None,
            };
            tx.commit().await?;
            Ok(template)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse_in_both_forms() {
        assert_eq!(
            parse_dependencies(r#"["CHARGING_STARTED","B"]"#).unwrap(),
            ["CHARGING_STARTED", "B"]
        );
        assert_eq!(
            parse_dependencies(r#"[{"eventName":"X"},{"eventName":"Y","extra":1}]"#).unwrap(),
            ["X", "Y"]
        );
        assert_eq!(parse_dependencies(" ").unwrap(), Vec::<String>::new());
        assert!(parse_dependencies(r#"[{"name":"X"}]"#).is_err());
        assert!(parse_dependencies("CHARGING").is_err());
    }
}
