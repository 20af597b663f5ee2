//! Storage (SPEC §6): one interface, a SQLite and a MySQL implementation, one behaviour suite.
//!
//! The production `tinybots` tables are used with their exact columns; what this service needs
//! beyond them lives in tables of its own (see the migrations): `status_check_ext` (windows,
//! next steps, the idempotency key of create, the notification sequence),
//! `status_check_record_event` (the event attributes rules read) and
//! `status_check_template_ext` (a template version's default windows).

mod db;
pub mod mysql;
mod queries;
pub mod sqlite;

pub use db::{TIMESTAMP_MAX, TIMESTAMP_MIN};

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use status_check_engine::lifecycle::NextSteps;
use status_check_engine::{CheckPhase, CheckResult, Record, TemplateDefinition};

/// A database failure. `Conflict` is a constraint the caller may act on; everything else is
/// an internal error whose cause is logged and never shown to clients.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

/// The request that identifies a check for idempotent create (SPEC §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckKey {
    pub robot_id: i64,
    pub step_id: i64,
    pub scheduled_id: i64,
    /// Stored and compared to the millisecond. The production column is a `TIMESTAMP`:
    /// `create_check` refuses (`Conflict`) a time outside `TIMESTAMP_MIN..=TIMESTAMP_MAX`.
    pub planned_at: DateTime<Utc>,
}

/// A check's windows as stored: the anchor and the effective intervals in seconds
/// (`past_seconds` −1 = unbounded, 0 = none; `future_seconds` 0 = none), from which
/// `Windows::compute(past, future, &PollerDefaults::default(), anchor)` rebuilds the windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredWindows {
    pub anchor: DateTime<Utc>,
    pub past_seconds: i64,
    pub future_seconds: i64,
}

/// Everything needed to insert a new check, its poller and its first records in one
/// transaction.
#[derive(Debug, Clone)]
pub struct NewCheck {
    pub key: CheckKey,
    pub script_version_id: i64,
    /// `status_check_template.id` of the exact template version.
    pub template_id: i64,
    pub phase: CheckPhase,
    pub result: CheckResult,
    pub next_step_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub windows: StoredWindows,
    pub next_steps: NextSteps,
    pub records: Vec<Record>,
    pub now: DateTime<Utc>,
}

/// A check as stored, with its template's name and version and its records in `order`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheck {
    pub id: i64,
    pub key: CheckKey,
    pub script_version_id: i64,
    pub template_id: i64,
    pub template_name: String,
    pub template_version: i64,
    pub phase: CheckPhase,
    pub result: CheckResult,
    pub next_step_id: Option<i64>,
    pub subscription_id: Option<i64>,
    pub windows: StoredWindows,
    pub next_steps: NextSteps,
    /// The window's start and end (`None` when unbounded / no future window), exact to the
    /// millisecond: `Windows::compute` over `windows`. The poller row holds the same bounds
    /// widened to whole seconds (`since` down, `until` up) for the scheduler's claims.
    pub polling_since: Option<DateTime<Utc>>,
    pub polling_until: Option<DateTime<Utc>>,
    /// The last notification sequence number handed out for this check (0: none yet).
    pub notification_seq: i64,
    pub records: Vec<Record>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What `create_check` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Inserted now.
    New(StoredCheck),
    /// The same robot already has a check for the same (step, scheduled, plannedAt): that one,
    /// unchanged. Nothing was inserted.
    Existing(StoredCheck),
}

/// A template version as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    /// `status_check_template.id`.
    pub id: i64,
    pub definition: TemplateDefinition,
}

/// What syncing a shipped template into the database did (SPEC §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The version was missing and has been created.
    Created(i64),
    /// An identical version was already there; left alone.
    Unchanged(i64),
    /// The same name and version exist with a different definition: refused, nothing changed.
    Conflict {
        id: i64,
        stored: Box<TemplateDefinition>,
    },
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies the migrations of this backend.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts the check, its poller, its records with their event attributes and its
    /// idempotency key in one transaction. When the key exists already, inserts nothing and
    /// returns the existing check.
    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError>;

    /// The check with this id, whoever owns it.
    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError>;

    /// The check created for this request key, if any.
    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError>;

    /// Creates a template version (description, template row, rules, default windows) when
    /// missing; leaves an identical one alone; refuses a changed one.
    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError>;

    /// The active version of `name` with the highest version number.
    async fn active_template(&self, name: &str) -> Result<Option<StoredTemplate>, StoreError>;

    /// A template version by `status_check_template.id` (active or not): a check keeps the
    /// version it started with.
    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store a database URL names: `sqlite:…` or `mysql://…`.
pub async fn connect(url: &str) -> Result<DynStore, StoreError> {
    if url.starts_with("mysql://") {
        Ok(Arc::new(mysql::MysqlStore::connect(url).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::connect(url).await?))
    }
}
