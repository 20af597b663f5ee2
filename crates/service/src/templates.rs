//! Templates at run time (SPEC §4.4): the shipped YAML files are validated and synced to the
//! database at start; templates that exist only in the database are loaded on demand,
//! validated, and cached with a TTL. A check keeps the version it started with, looked up by
//! its `status_check_template.id`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use moka::future::Cache;
use status_check_engine::{Limits, Template};

use crate::store::{DynStore, StoreError, StoredTemplate, Synced};
use crate::template_files::load_dir;

/// A compiled template version and its database id.
#[derive(Debug, Clone)]
pub struct LoadedTemplate {
    pub id: i64,
    pub template: Arc<Template>,
}

/// Why start-up could not sync the shipped templates.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("cannot read the templates folder {dir}: {source}")]
    Folder { dir: String, source: std::io::Error },
    #[error("invalid templates:\n{0}")]
    Invalid(String),
    #[error(
        "{file}: {name} version {version} is already in the database with a different definition; \
         give the changed template a new version"
    )]
    Changed {
        file: String,
        name: String,
        version: u32,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Looks templates up by name (the active version with the highest number) and by id.
pub struct TemplateRegistry {
    store: DynStore,
    limits: Limits,
    by_name: Cache<String, Option<LoadedTemplate>>,
    by_id: Cache<i64, Option<LoadedTemplate>>,
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
            // Versions never change once stored: no TTL needed, only a bound.
            by_id: Cache::builder().max_capacity(10_000).build(),
        }
    }

    /// Validates every template in `dir` and syncs it to the database. Any invalid file or
    /// changed version stops start-up. Returns how many templates were synced.
    pub async fn sync_dir(&self, dir: &Path) -> Result<usize, SyncError> {
        let loaded = load_dir(dir, &self.limits).map_err(|source| SyncError::Folder {
            dir: dir.display().to_string(),
            source,
        })?;
        if !loaded.errors.is_empty() {
            let lines: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
            return Err(SyncError::Invalid(lines.join("\n")));
        }
        let count = loaded.templates.len();
        for (path, template) in loaded.templates {
            match self
                .store
                .sync_template(template.definition(), Utc::now())
                .await?
            {
                Synced::Created(id) | Synced::Unchanged(id) => {
                    tracing::info!(template = %template.name, version = template.version, id, "template synced");
                    let loaded = LoadedTemplate {
                        id,
                        template: Arc::new(template),
                    };
                    self.by_id.insert(id, Some(loaded)).await;
                }
                Synced::Conflict { .. } => {
                    return Err(SyncError::Changed {
                        file: path.display().to_string(),
                        name: template.name.to_string(),
                        version: template.version,
                    });
                }
            }
        }
        Ok(count)
    }

    /// The active version of `name` with the highest version number, if it is valid.
    pub async fn active(&self, name: &str) -> Result<Option<LoadedTemplate>, StoreError> {
        if let Some(hit) = self.by_name.get(name).await {
            return Ok(hit);
        }
        let stored = self.store.active_template(name).await?;
        let loaded = stored.and_then(|stored| self.compile(stored));
        self.by_name.insert(name.to_owned(), loaded.clone()).await;
        Ok(loaded)
    }

    /// The version with this id, active or not.
    pub async fn by_id(&self, id: i64) -> Result<Option<LoadedTemplate>, StoreError> {
        if let Some(hit) = self.by_id.get(&id).await {
            return Ok(hit);
        }
        let stored = self.store.template_by_id(id).await?;
        let loaded = stored.and_then(|stored| self.compile(stored));
        self.by_id.insert(id, loaded.clone()).await;
        Ok(loaded)
    }

    fn compile(&self, stored: StoredTemplate) -> Option<LoadedTemplate> {
        let name = stored.definition.name.clone();
        let version = stored.definition.version;
        match Template::from_definition(stored.definition, &self.limits) {
            Ok(template) => Some(LoadedTemplate {
                id: stored.id,
                template: Arc::new(template),
            }),
            Err(errors) => {
                let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
                tracing::error!(
                    template = %name,
                    version,
                    id = stored.id,
                    reasons = %reasons.join("; "),
                    "template in the database is invalid; treated as missing"
                );
                None
            }
        }
    }
}
