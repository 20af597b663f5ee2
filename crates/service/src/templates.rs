//! Templates at run time (SPEC §4.4): the shipped YAML files are validated and synced to the
//! database at start; templates that exist only in the database are loaded on demand,
//! validated, and cached with a TTL. A check keeps the version it started with, looked up by
//! its `status_check_template.id`.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use moka::future::Cache;
use status_check_engine::template::{MAX_VERSION, PhaseDefinition, PollerDefaults};
use status_check_engine::{Limits, Template, TemplateDefinition};

use crate::store::{DynStore, StoreError, StoredTemplate, Synced};
use crate::telemetry::ReportedOnce;
use crate::template_files::TemplateSource;

/// A compiled template version and its database id.
#[derive(Debug, Clone)]
pub struct LoadedTemplate {
    pub id: i64,
    pub template: Arc<Template>,
}

/// Why start-up could not sync the shipped templates.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("TEMPLATES_DIR: cannot read the templates folder {dir}: {source}")]
    Folder { dir: String, source: std::io::Error },
    #[error("invalid templates:\n{0}")]
    Invalid(String),
    #[error(
        "{file}: {name} version {version} is already in the database with a different definition \
         ({changes}); give the changed template a new version"
    )]
    Changed {
        file: String,
        name: String,
        version: u32,
        /// What differs, field by field.
        changes: String,
    },
    #[error(
        "{file}: {name} version {version} must be stored under a new number, above the \
         versions of {name} in the database, and the next one would pass the last a version \
         may have ({MAX_VERSION}); deactivate the old versions and give the template a new name"
    )]
    NoNumberLeft {
        file: String,
        name: String,
        version: u32,
    },
    #[error(
        "{file}: the database takes the name {name} for {stored:?}, a template it already has \
         (its collation ignores case); rename the file's template"
    )]
    NameTaken {
        file: String,
        name: String,
        stored: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks templates up by name (the newest active version this service can run) and by id (a
/// check's own version — or, for a version it cannot run, the stand-in of SPEC §6.1).
pub struct TemplateRegistry {
    store: DynStore,
    limits: Limits,
    by_name: Cache<String, Option<LoadedTemplate>>,
    /// Runnable versions by id: they never change once stored, so no TTL, only a bound.
    by_id: Cache<i64, Option<LoadedTemplate>>,
    /// Stand-ins for versions that cannot run, by the legacy version's id: with a TTL, as a
    /// newer runnable version of the name may be synced later.
    stand_ins: Cache<i64, Option<LoadedTemplate>>,
    /// Legacy versions already reported by this process.
    reported: ReportedOnce,
}

impl TemplateRegistry {
    pub fn new(store: DynStore, limits: Limits, ttl: Duration) -> Self {
        TemplateRegistry {
            store,
            limits,
            by_name: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(10_000)
                .build(),
            by_id: Cache::builder().max_capacity(10_000).build(),
            stand_ins: Cache::builder()
                .time_to_live(ttl)
                .max_capacity(10_000)
                .build(),
            reported: ReportedOnce::default(),
        }
    }

    /// Validates every shipped template and syncs it to the database. Any invalid file or
    /// changed version stops start-up; a version number held by a legacy version is synced
    /// under the next free number, with a warning. Returns how many templates were synced.
    pub async fn sync(&self, source: &TemplateSource) -> Result<usize, SyncError> {
        let loaded = source
            .load(&self.limits)
            .map_err(|error| SyncError::Folder {
                dir: source.to_string(),
                source: error,
            })?;
        if !loaded.errors.is_empty() {
            let lines: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            return Err(SyncError::Invalid(lines.join("\n")));
        }
        let count = loaded.templates.len();
        // In version order, not file-name order (`x.v10.yaml` sorts before `x.v2.yaml`): a
        // version whose number is held goes under the highest + 1, so a lower version synced
        // after a higher one would become the active one.
        let mut templates = loaded.templates;
        templates.sort_by(|(_, a), (_, b)| (&a.name, a.version).cmp(&(&b.name, b.version)));
        let mut names: Vec<String> = templates.iter().map(|(_, t)| t.name.to_string()).collect();
        names.dedup();
        let usable = |definition: &TemplateDefinition| {
            Template::from_definition(definition.clone(), &self.limits).is_ok()
        };
        for (path, template) in templates {
            let synced = self
                .store
                .sync_template(template.definition(), &usable, Utc::now())
                .await?;
            let id = match synced {
                Synced::Created(id) | Synced::Unchanged(id) => {
                    tracing::info!(template = %template.name, version = template.version, id, "template synced");
                    id
                }
                Synced::CreatedAs {
                    id,
                    version,
                    displaced_by,
                } => {
                    tracing::warn!(
                        template = %template.name,
                        file = %path.display(),
                        declared_version = template.version,
                        stored_version = version,
                        displaced_by,
                        id,
                        "template synced under a new version number: its own number is held by \
                         another version (the Node service's, or one synced under a new number \
                         before), which is left as it is — or an older file's version is stored \
                         above it, which the newer must stay above (displaced_by)"
                    );
                    metrics::counter!("templates_renumbered_total").increment(1);
                    id
                }
                Synced::NoNumberLeft => {
                    return Err(SyncError::NoNumberLeft {
                        file: path.display().to_string(),
                        name: template.name.to_string(),
                        version: template.version,
                    });
                }
                Synced::NameTaken { stored } => {
                    return Err(SyncError::NameTaken {
                        file: path.display().to_string(),
                        name: template.name.to_string(),
                        stored,
                    });
                }
                Synced::Conflict { stored, .. } => {
                    return Err(SyncError::Changed {
                        file: path.display().to_string(),
                        name: template.name.to_string(),
                        version: template.version,
                        changes: changes(&stored, template.definition()),
                    });
                }
            };
            let loaded = LoadedTemplate {
                id,
                template: Arc::new(template),
            };
            self.by_id.insert(id, Some(loaded)).await;
        }
        for name in names {
            let versions = self.store.template_versions(&name).await?;
            for (older, newer) in misordered(&versions) {
                tracing::warn!(
                    template = %name,
                    older_file_version = older.declared_version,
                    older_stored_version = older.version,
                    newer_file_version = newer.declared_version,
                    newer_stored_version = newer.version,
                    "an older file's version is stored above a newer one's (synced before the \
                     newer went above it), so its rules are the active ones: give the newer \
                     file a new version to store it above"
                );
            }
        }
        Ok(count)
    }

    /// The active version of `name` with the highest version number that this service can
    /// run; legacy versions are passed over (and reported once).
    pub async fn active(&self, name: &str) -> Result<Option<LoadedTemplate>, StoreError> {
        if let Some(hit) = self.by_name.get(name).await {
            return Ok(hit);
        }
        let versions = self.store.template_versions(name).await?;
        let loaded = self.newest_runnable(versions.into_iter().filter(|v| v.is_active));
        self.by_name.insert(name.to_owned(), loaded.clone()).await;
        Ok(loaded)
    }

    /// The active versions of `name` this service cannot run (the Node service's), newest
    /// first: what a create that found no template says. Read afresh, not cached: another
    /// replica may have synced a runnable one since.
    pub async fn unrunnable_active(&self, name: &str) -> Result<Vec<i64>, StoreError> {
        let versions = self.store.template_versions(name).await?;
        Ok(versions
            .into_iter()
            .filter(|v| v.is_active)
            .filter_map(|v| {
                let version = v.version;
                self.compile(v).is_err().then_some(version)
            })
            .collect())
    }

    /// The template a check bound to version `id` is evaluated with: that version; for a
    /// legacy one, the newest version of the same name this service can run; without one, the
    /// legacy version's dependencies without rules (deliveries are recorded, not evaluated).
    pub async fn by_id(&self, id: i64) -> Result<Option<LoadedTemplate>, StoreError> {
        if let Some(hit) = self.by_id.get(&id).await {
            return Ok(hit);
        }
        if let Some(hit) = self.stand_ins.get(&id).await {
            return Ok(hit);
        }
        let Some(stored) = self.store.template_by_id(id).await? else {
            return Ok(None);
        };
        let name = stored.name.clone();
        let definition = match self.compile(stored) {
            Ok(loaded) => {
                self.by_id.insert(id, Some(loaded.clone())).await;
                return Ok(Some(loaded));
            }
            Err(definition) => definition,
        };
        let versions = self.store.template_versions(&name).await?;
        let stand_in = match self.newest_runnable(versions.into_iter()) {
            Some(loaded) => Some(loaded),
            None => Some(LoadedTemplate {
                id,
                template: Arc::new(Template::without_rules(*definition)),
            }),
        };
        self.stand_ins.insert(id, stand_in.clone()).await;
        Ok(stand_in)
    }

    fn newest_runnable(
        &self,
        versions: impl Iterator<Item = StoredTemplate>,
    ) -> Option<LoadedTemplate> {
        versions
            .into_iter()
            .find_map(|version| self.compile(version).ok())
    }

    /// The version compiled, or — when its rules cannot run here — its definition as stored
    /// (its outline when unreadable), after reporting it once.
    fn compile(&self, stored: StoredTemplate) -> Result<LoadedTemplate, Box<TemplateDefinition>> {
        let reason = match stored.definition.clone() {
            Ok(definition) => match Template::from_definition(definition, &self.limits) {
                Ok(template) => {
                    return Ok(LoadedTemplate {
                        id: stored.id,
                        template: Arc::new(template),
                    });
                }
                Err(errors) => errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            },
            Err(reason) => reason,
        };
        self.report_legacy(&stored, &reason);
        Err(Box::new(stored.definition.unwrap_or(stored.outline)))
    }

    /// A version this service cannot run: logged and counted once per process (SPEC §6.1).
    fn report_legacy(&self, stored: &StoredTemplate, reason: &str) {
        if self.reported.first(stored.id) {
            tracing::warn!(
                template = %stored.name,
                version = stored.version,
                id = stored.id,
                reason,
                "legacy template version (not runnable here, e.g. the Node service's EJS): never \
                 used for new checks; checks bound to it use the newest runnable version"
            );
            metrics::counter!("templates_legacy_total").increment(1);
        }
    }
}

/// What `file` changes in the `stored` definition of the same version, in the YAML's names.
fn changes(stored: &TemplateDefinition, file: &TemplateDefinition) -> String {
    let mut changed = Vec::new();
    if stored.poll_until_end != file.poll_until_end {
        changed.push(format!(
            "pollUntilEnd: {} stored, {} in the file",
            stored.poll_until_end, file.poll_until_end
        ));
    }
    if stored.poller != file.poller {
        // The production tables have no column for the windows: a version another tool stored
        // has none, read as 0 and 0.
        let none_stored = if stored.poller == PollerDefaults::default() {
            " (none stored with the version: another tool wrote it?)"
        } else {
            ""
        };
        changed.push(format!(
            "poller: pastInterval {} and futureInterval {} stored{none_stored}, {} and {} in the \
             file",
            stored.poller.past_interval,
            stored.poller.future_interval,
            file.poller.past_interval,
            file.poller.future_interval
        ));
    }
    let none = PhaseDefinition::default();
    for (path, stored, file) in [
        ("resources.pastEvents", &stored.past, &file.past),
        ("resources.futureEvents", &stored.future, &file.future),
    ] {
        let (stored, file) = (
            stored.as_ref().unwrap_or(&none),
            file.as_ref().unwrap_or(&none),
        );
        if stored.depends_on != file.depends_on {
            changed.push(format!("{path}.dependsOn"));
        }
        for (rule, a, b) in [
            ("PASS", &stored.pass, &file.pass),
            ("FAIL", &stored.fail, &file.fail),
            ("UNKNOWN", &stored.unknown, &file.unknown),
        ] {
            if a != b {
                changed.push(format!("{path}.{rule}"));
            }
        }
    }
    if changed.is_empty() {
        return "its stored rows are not a definition this service can read".to_owned();
    }
    changed.join("; ")
}

/// Active versions synced from files whose stored numbers contradict their files' order:
/// `(older, newer)` where the older file's version is stored above the newer's — the older
/// rules win. Possible only in a database synced before files kept their order (docs/
/// templates.md).
fn misordered(versions: &[StoredTemplate]) -> Vec<(&StoredTemplate, &StoredTemplate)> {
    let synced: Vec<&StoredTemplate> = versions
        .iter()
        .filter(|v| v.is_active && v.declared_version.is_some())
        .collect();
    let mut pairs = Vec::new();
    for older in &synced {
        for newer in &synced {
            if older.declared_version < newer.declared_version && older.version > newer.version {
                pairs.push((*older, *newer));
            }
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use status_check_engine::template::{PhaseDefinition, PollerDefaults};

    use super::*;
    use crate::store::Store;
    use crate::store::sqlite::SqliteStore;

    fn definition(version: i64, rule: &str) -> TemplateDefinition {
        TemplateDefinition {
            name: "door".into(),
            version,
            description: String::new(),
            is_active: true,
            poll_until_end: false,
            poller: PollerDefaults::default(),
            past: Some(PhaseDefinition {
                depends_on: vec!["DOOR_OPENED".into()],
                pass: Some(rule.into()),
                ..PhaseDefinition::default()
            }),
            future: None,
        }
    }

    fn stored(version: i64, declared_version: Option<i64>, is_active: bool) -> StoredTemplate {
        StoredTemplate {
            id: version,
            name: "door".into(),
            version,
            declared_version,
            is_active,
            definition: Ok(definition(version, "true")),
            outline: definition(version, "true"),
        }
    }

    /// File 1 stored as 4 beside the Node service's 1 and 3, file 2 then as 2 (before files
    /// kept their order): found. In order, or with the older one inactive: nothing.
    #[test]
    fn an_older_file_stored_above_a_newer_one_is_found() {
        let versions = [
            stored(4, Some(1), true),
            stored(3, None, true),
            stored(2, Some(2), true),
            stored(1, None, true),
        ];
        let pairs: Vec<(i64, i64)> = misordered(&versions)
            .iter()
            .map(|(older, newer)| (older.version, newer.version))
            .collect();
        assert_eq!(pairs, [(4, 2)]);
        assert!(misordered(&[stored(5, Some(2), true), stored(4, Some(1), true)]).is_empty());
        assert!(misordered(&[stored(4, Some(1), false), stored(2, Some(2), true)]).is_empty());
    }

    /// Each legacy version is counted once, however often it is met (a recorder of the
    /// test's own: the process's is shared by every test).
    #[tokio::test]
    async fn a_legacy_version_is_counted_once() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        let registry =
            TemplateRegistry::new(Arc::new(store), Limits::default(), Duration::from_secs(60));
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            for id in [7, 7, 8, 7] {
                registry.report_legacy(&stored(id, None, true), "EJS");
            }
        });
        assert!(
            handle.render().contains("templates_legacy_total 2"),
            "{}",
            handle.render()
        );
    }

    /// An EJS version (as the Node service stored it) is passed over for new checks, stood in
    /// for by the newest runnable version, and reported once however often it is met.
    #[tokio::test]
    async fn legacy_versions_are_passed_over_stood_in_for_and_reported_once() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let store: DynStore = Arc::new(store);
        let now = Utc::now();
        let stored = |synced| match synced {
            Synced::Created(id) => id,
            other => panic!("{other:?}"),
        };
        let runnable = stored(
            store
                .sync_template(&definition(1, "past.size() > 0"), &|_| true, now)
                .await
                .unwrap(),
        );
        let legacy = stored(
            store
                .sync_template(&definition(2, "<%= events.length > 0 %>"), &|_| true, now)
                .await
                .unwrap(),
        );
        let registry = TemplateRegistry::new(store, Limits::default(), Duration::from_secs(60));
        let active = registry.active("door").await.unwrap().unwrap();
        assert_eq!(active.id, runnable, "the newest runnable active version");
        for _ in 0..3 {
            let stand_in = registry.by_id(legacy).await.unwrap().unwrap();
            assert_eq!(stand_in.id, runnable);
        }
        assert_eq!(
            registry.by_id(runnable).await.unwrap().unwrap().id,
            runnable
        );
        let reported = registry.reported.ids();
        assert_eq!(reported, std::collections::HashSet::from([legacy]));
    }
}
