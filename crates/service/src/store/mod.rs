//! Storage (SPEC §6): one interface, a SQLite and a MySQL implementation, one behaviour suite.
//!
//! The production `tinybots` tables are used with their exact columns; what this service needs
//! beyond them lives in tables of its own (see the migrations): `status_check_ext` (windows,
//! next steps, the idempotency key of create, the notification sequence, the scheduler's
//! exact deadline and lease time), `status_check_record_event` (the event attributes rules
//! read), `status_check_template_ext` (a template version's default windows) and
//! `status_check_outbox` (robot notifications waiting to be sent); monitors (SPEC §12) have
//! `status_check_monitor`, `status_check_monitor_state` and `status_check_monitor_action`.
//!
//! Locking (MySQL; docs/storage.md "Lock order"): every change of a check's state locks its
//! `status_check` row first, then its `status_check_poller` row, then its `status_check_ext`
//! row. The scheduler's claim reads them in join order with `SKIP LOCKED` and never waits.

mod adoption;
mod check_reads;
mod checks;
mod db;
mod error;
#[cfg(test)]
pub(crate) mod fixtures;
mod in_list;
mod intents;
mod jobs;
mod lifecycle;
mod monitor_rows;
mod monitor_windows;
mod monitors;
pub mod mysql;
mod production_only;
mod read_only;
mod removals;
mod templates;
mod timeline_reads;

/// The backend seam, reachable for the SQLite driver benchmark, which measures a backend
/// through it (benches/shared/driver_unit.rs; docs/benchmarks.md "What the library keeps for
/// the benchmarks"); not an API.
#[doc(hidden)]
pub mod seam {
    pub use super::db::{Arg, Db, Done, Mode, SqlRow, Tx, millis, seconds_floor};
}

/// Statements the store runs, for the benchmarks' raw-database limits: they write exactly the
/// rows the service writes, and follow it when the SQL changes (docs/benchmarks.md "What the
/// library keeps for the benchmarks"). Not an API.
#[doc(hidden)]
pub mod sql {
    pub use super::checks::{
        INSERT_CHECK, INSERT_CHECK_EXT, INSERT_POLLER, INSERT_RECORD, INSERT_RECORD_EVENT,
    };
    pub use super::intents::{DELETE_INTENT, INSERT_INTENT};
    pub use super::lifecycle::{
        CLAIM_DUE_SQLITE, INSERT_OUTBOX, LEASE_EXT, LEASE_POLLER, LOCK_CHECK_SQLITE,
        LOCK_POLLER_SQLITE, RELEASE_POLLER, UPDATE_CHECK_STATE, UPDATE_EXT_STATE,
    };
    pub use super::removals::QUEUE_REMOVAL_SQLITE;

    /// The backtest's page of ended checks for so many template versions and robots; its
    /// arguments: the template ids, since, until, the robots, the id after, the limit.
    pub fn ended_checks_page(templates: usize, robots: usize) -> &'static str {
        super::check_reads::ended_checks_sql(templates, robots, false)
    }

    /// The records of up to 64 checks (the backtest reads a page's so): the statement and
    /// the ids to bind.
    pub fn records_of_checks(check_ids: &[i64]) -> (&'static str, Vec<i64>) {
        super::check_reads::SELECT_RECORDS_OF_CHECKS.for_ids(check_ids)
    }
}
pub mod sqlite;

pub use adoption::AdoptionStore;
pub use check_reads::{CheckReads, EndedChecksPage};
pub use checks::CheckWrites;
/// Truncated to the millisecond, as the store keeps the times of its own tables.
pub(crate) use db::millis as db_millis;
pub use db::{TIMESTAMP_MAX, TIMESTAMP_MIN};
pub(crate) use error::CONNECT_TIMEOUT;
pub use error::{Cause, DEFAULT_OPERATION_TIMEOUT, DatabaseError, DatabaseFailure, StoreError};
pub use intents::SubscriptionRecords;
pub use jobs::{Alarms, NotificationJobs, Removals};
pub use lifecycle::CheckUpdates;
pub use monitor_windows::{WindowClose, WindowRecord};
pub use monitors::{
    MonitorPut, MonitorSource, MonitorState, MonitorStore, NewAction, PendingAction, StateChange,
    StoredMonitor,
};
pub use read_only::ReadOnlyStore;
pub use templates::TemplateStore;
pub use timeline_reads::{
    CheckFilter, CheckSummary, StoredAlarm, StoredNotification, TimelineReads,
};

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::jobs::{Handoff, JobQueue, Lease};
use db::{Db, bounded};

/// A time no claim or due date reaches (9999-01-01): a dead-lettered job's retry time (the
/// row stays, with its last error, for an operator), a disabled monitor's due time.
pub const NEVER: DateTime<Utc> = match DateTime::from_timestamp(253_370_764_800, 0) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// Robot notifications committed in this process, handed to its relay in memory.
pub type OutboxHandoff = Handoff<OutboxMessage>;
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::{CheckPhase, CheckResult, Record, TemplateDefinition};

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
    pub windows: Windows,
    /// The pending deadline (the engine's `Check::deadline`): the scheduler finalises the
    /// check then; none once it ended or without a future window.
    pub deadline: Option<DateTime<Utc>>,
    pub next_steps: NextSteps,
    pub records: Vec<Record>,
    /// The check ended at once with a subscription made for it: queue its removal in the same
    /// transaction.
    pub remove_subscription: bool,
    /// The record of the subscribe made for it (`record_subscribe_intent`), deleted in the
    /// same transaction: its answer came.
    pub subscribe_intent: Option<i64>,
    pub now: DateTime<Utc>,
}

/// Who wrote a check, and whether this service holds its own row for it (SPEC §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Created by this service.
    Own,
    /// Written by the Node service; this service has derived and stored what it lacked.
    Adopted,
    /// Written by the Node service, production rows only: readable, but to be adopted (its
    /// next steps read from Micro-Managers) before anything can decide it.
    NodeOnly,
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
    /// The effective intervals, their anchor and the window they make (`Windows::
    /// from_effective` of the stored row; for a check of the Node service, derived from its
    /// poller), exact to the millisecond. The poller row holds the same bounds widened to
    /// whole seconds (`since` down, `until` up) for the scheduler's claims.
    pub windows: Windows,
    /// `None` until a check of the Node service is adopted.
    pub next_steps: Option<NextSteps>,
    pub provenance: Provenance,
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
    pub name: String,
    /// `status_check_template.version`: what checks show as `templateVersion`.
    pub version: i64,
    /// The version number its YAML file declared, when this service synced it (it differs
    /// from `version` when a version the Node service wrote held that number).
    pub declared_version: Option<i64>,
    pub is_active: bool,
    /// The definition its rows hold (`version` as stored), or why they hold none this service
    /// can read. Whether its rules are valid CEL is the template registry's to say.
    pub definition: Result<TemplateDefinition, String>,
    /// Its dependencies and flags without rules, readable even when `definition` is not:
    /// what a stand-in for it is made of (SPEC §6.1).
    pub outline: TemplateDefinition,
}

/// What syncing a shipped template into the database did (SPEC §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Synced {
    /// The version was missing and has been created.
    Created(i64),
    /// Created under `version`, the next free number, because of `displaced_by`: the version
    /// holding the declared number (one this service cannot run, the Node service's), or an
    /// older file's version stored above that number, which the newer file must stay above.
    CreatedAs {
        id: i64,
        version: i64,
        displaced_by: i64,
    },
    /// The next free number would pass the last one a version may have (65535): nothing
    /// stored.
    NoNumberLeft,
    /// The database's collation takes the name for `stored`, a name differing only in case
    /// (MySQL's): nothing stored.
    NameTaken { stored: String },
    /// An identical version was already there; left alone.
    Unchanged(i64),
    /// The same name and version exist with a different definition: refused, nothing changed.
    Conflict {
        id: i64,
        stored: Box<TemplateDefinition>,
    },
}

/// The lease a write depends on (SPEC §3.6 fencing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fence<'a> {
    /// No lease needed (queue deliveries).
    None,
    /// The write applies only while the check's poller holds this lease (`lock_id`).
    Lease(&'a Lease),
}

/// What a decision writes, under the check's row lock, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckUpdate {
    pub phase: CheckPhase,
    pub result: CheckResult,
    pub next_step_id: Option<i64>,
    /// Records appended by the decision; their `order`s follow the stored ones (the first is
    /// the last stored `order` + 1, then one by one — anything else is refused as a bug).
    pub new_records: Vec<Record>,
    /// The pending deadline after the decision (the engine's `Transition::deadline`).
    pub deadline: Option<DateTime<Utc>>,
    /// Clear the poller's lease (`lock_id = NULL`): the scheduler is done with this check.
    pub release_lease: bool,
    /// Queue a robot notification in the outbox: the store hands out the next
    /// `notification_seq` and stores `render(&updated_check, seq)` as the payload.
    pub notify: bool,
    /// Queue the removal of the check's subscription (it ended), in the same transaction.
    pub remove_subscription: bool,
}

/// One decision to write: alone ([`Store::update_check`]) or with a batch in one transaction
/// ([`Store::update_checks`]).
#[derive(Debug, Clone)]
pub struct BatchedUpdate<'a> {
    /// The check as the decision read it.
    pub current: &'a StoredCheck,
    pub fence: Fence<'a>,
    pub update: CheckUpdate,
    /// The request id its notification carries.
    pub call_ref: &'a str,
}

/// Whether a stored definition is one this service can run (its rules compile as CEL).
pub type Usable<'a> = &'a (dyn Fn(&TemplateDefinition) -> bool + Send + Sync);

/// What adopting a check of the Node service did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adopted {
    /// The row is written; the check is due at this deadline.
    Now {
        deadline: DateTime<Utc>,
    },
    /// It had ended, or was adopted already (by another replica): nothing written.
    NotNeeded,
    NotFound,
}

/// Renders the notification body for the updated check and its sequence number.
pub type Render<'a> = &'a (dyn Fn(&StoredCheck, i64) -> String + Send + Sync);

/// How a write queues the robot notifications its decisions ask for (`CheckUpdate::notify`).
#[derive(Clone, Copy)]
pub struct Notifications<'a> {
    /// The payload of each outbox row.
    pub render: Render<'a>,
    /// This process's relay, when it runs one: the rows are written leased to it and handed
    /// over in memory after the commit, instead of waiting to be claimed ([`OutboxHandoff`]).
    pub handoff: Option<&'a OutboxHandoff>,
}

impl<'a> Notifications<'a> {
    /// Rows written for any relay to claim.
    pub fn rendered_by(render: Render<'a>) -> Self {
        Notifications {
            render,
            handoff: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// Written and committed: the check as it is now.
    Updated(Box<StoredCheck>),
    /// The check changed since it was read (another change committed first): nothing
    /// written; read it again and decide again.
    Stale,
    /// The fence's lease is no longer the poller's: nothing written.
    Fenced,
    NotFound,
}

/// A check whose deadline has passed, claimed under a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    pub check_id: i64,
    /// The exact deadline (anchor + future window), for lateness.
    pub deadline: DateTime<Utc>,
}

/// A Megazord subscription to remove (a job of [`Removals`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRemoval {
    pub robot_id: i64,
    pub subscription_id: i64,
    /// Why: `ended`, `create_failed`, `lost_answer`, `monitor_session_ended`, …
    pub reason: String,
}

/// A notification to send to a robot (a job of [`NotificationJobs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub check_id: i64,
    pub robot_id: i64,
    pub seq: i64,
    pub payload: String,
    pub call_ref: String,
}

/// The whole store; monitors' part is [`MonitorStore`] (store/monitors.rs), the leased work
/// queues' the [`JobQueue`]s (store/jobs.rs).
#[async_trait]
pub trait Store:
    MonitorStore
    + CheckWrites
    + CheckReads
    + TimelineReads
    + TemplateStore
    + AdoptionStore
    + CheckUpdates
    + SubscriptionRecords
    + JobQueue<NotificationJobs>
    + JobQueue<Removals>
    + JobQueue<Alarms>
    + Send
    + Sync
    + 'static
{
    /// Applies the migrations of this backend.
    async fn migrate(&self) -> Result<(), StoreError>;

    /// A cheap round trip, for readiness.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads the database's own clock `count` times on one connection, timing each round
    /// trip (`clock::estimate`); none on a backend whose clock is this process's (SQLite).
    async fn read_database_clock(
        &self,
        count: usize,
    ) -> Result<Vec<crate::clock::ClockSample>, StoreError>;
}

#[async_trait]
impl<B: Db + 'static> Store for B {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.apply_migrations().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        bounded(self, "ping", Db::ping(self)).await
    }

    async fn read_database_clock(
        &self,
        count: usize,
    ) -> Result<Vec<crate::clock::ClockSample>, StoreError> {
        bounded(
            self,
            "read_database_clock",
            Db::read_database_clock(self, count),
        )
        .await
    }
}

/// The leased work queues of a store, by kind.
impl dyn Store {
    pub fn notification_jobs(&self) -> &dyn JobQueue<NotificationJobs> {
        self
    }

    pub fn removal_jobs(&self) -> &dyn JobQueue<Removals> {
        self
    }

    pub fn alarm_jobs(&self) -> &dyn JobQueue<Alarms> {
        self
    }
}

/// A delivery for a subscription no check or monitor session has: what tells whose the
/// subscription is (SPEC §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownDelivery<'a> {
    pub robot_id: i64,
    pub subscription_id: i64,
    pub event_name: &'a str,
    pub event_created_at: DateTime<Utc>,
}

/// Whose a subscription is that no check or monitor session has (SPEC §13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSubscription {
    /// Its removal is queued or done already (an ended monitor session's, a failed
    /// create's): nothing more to do.
    AlreadyRemoved,
    /// A subscribe of this service whose answer was lost: now queued for removal.
    LostAnswer { intent: i64 },
    /// Nothing here knows it: another service's, perhaps on a queue shared by mistake. Never
    /// removed.
    Foreign,
}

pub type DynStore = Arc<dyn Store>;

/// How the store connects and bounds its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreSettings {
    /// The most one store operation may take (`DB_OPERATION_TIMEOUT_SECS`).
    pub operation_timeout: Duration,
    /// Connections of the MySQL pool (`DB_POOL_SIZE`).
    pub mysql_pool_size: u32,
}

/// Opens the store a database URL names: `sqlite:…` or `mysql://…`, every operation bounded
/// by the settings' timeout.
pub async fn connect(url: &str, settings: StoreSettings) -> Result<DynStore, StoreError> {
    let timeout = settings.operation_timeout;
    if url.starts_with("mysql://") {
        Ok(Arc::new(
            mysql::MysqlStore::connect_sized(url, settings.mysql_pool_size)
                .await?
                .with_operation_timeout(timeout),
        ))
    } else {
        Ok(Arc::new(
            sqlite::SqliteStore::connect(url)
                .await?
                .with_operation_timeout(timeout),
        ))
    }
}
