//! Monitors (SPEC §12) — the use cases, in one home: keeping the monitors (the files synced at
//! start, the internal API), opening and closing their daily sessions, deciding each window's
//! end under a lease (`windows.rs`), taking in the deliveries of a session's subscription
//! (`deliveries.rs`), keeping each session's windows for operators (`history.rs`), and
//! posting the alarms the window ends decided (`actions.rs`). The engine
//! (`status_check_engine::monitor`) decides; this carries its decisions in and out. The workers
//! only bring time: the monitor worker calls [`Monitors::claim_due`] and
//! [`Monitors::act_on`], the relay runs
//! [`Monitors::alarm_runner`], the consumer's use case routes deliveries here.

mod actions;
mod deliveries;
mod due;
pub mod files;
mod history;
mod windows;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use status_check_engine::monitor::{FieldError, Monitor, MonitorDefinition};

pub use self::actions::AlarmPoster;
pub use self::due::DueTick;
pub use self::history::SessionHistory;
use crate::clock::Clock;
use crate::deps::Deps;
use crate::store::{DynStore, MonitorSource, StoreError, db_millis};
/// What the callers of these use cases see of a stored monitor (the API, the pages); `NEVER`
/// is the due time of a monitor with nothing to do.
pub use crate::store::{MonitorPut, NEVER, StoredMonitor, WindowClose, WindowRecord};
use crate::timeline::MonitorDay;
use crate::upstream::Megazord;

/// How the monitors behave.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// A lease older than this is presumed abandoned and taken over.
    pub stale_after: Duration,
    /// Most monitors one worker step acts on.
    pub batch: usize,
    /// How long posted alarms are kept before they are purged.
    pub retention: Duration,
    /// The `providerName` alarms are posted as (`ALARM_PROVIDER_NAME`): one Megazord knows.
    pub provider_name: String,
    /// `MONITORS_QUEUE_SUFFIX`: sessions subscribe with this queue suffix, so that their
    /// deliveries arrive on the monitors' own queue; `None`: the status queue.
    pub queue_suffix: Option<String>,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        MonitorSettings {
            stale_after: Duration::from_secs(30),
            batch: 50,
            retention: Duration::from_secs(7 * 24 * 3600),
            provider_name: crate::upstream::megazord::DEFAULT_PROVIDER_NAME.to_owned(),
            queue_suffix: None,
        }
    }
}

/// Why a monitor could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The definition is invalid; each field at fault (→ 422 problem+json).
    #[error("the monitor is invalid")]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What syncing the monitors files did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Synced {
    pub created: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Monitors a file named before and names no longer.
    pub disabled: usize,
}

/// The monitors' use cases with what they need.
pub struct Monitors {
    store: DynStore,
    megazord: Arc<dyn Megazord>,
    clock: Arc<dyn Clock>,
    settings: MonitorSettings,
}

impl Monitors {
    pub fn new(deps: &Deps, settings: MonitorSettings) -> Self {
        Monitors {
            store: deps.store.clone(),
            megazord: deps.megazord.clone(),
            clock: deps.clock.clone(),
            settings,
        }
    }

    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }

    /// Now, to the millisecond the state columns hold: a decision is made on the times it
    /// stores.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        db_millis(self.clock.now())
    }

    /// Creates or replaces a monitor from an API body for `(robot_id, rule_id)`: the path
    /// names the monitor; a `robotId` or `ruleId` in the body must agree with it.
    pub async fn put(
        &self,
        robot_id: i64,
        rule_id: &str,
        mut definition: MonitorDefinition,
    ) -> Result<MonitorPut, MonitorError> {
        let mut errors = Vec::new();
        if definition.robot_id.is_some_and(|id| id != robot_id) {
            errors.push(FieldError {
                field: "robotId".to_owned(),
                message: format!("is not the robot of the path ({robot_id})"),
            });
        }
        if definition
            .rule_id
            .as_deref()
            .is_some_and(|id| id != rule_id)
        {
            errors.push(FieldError {
                field: "ruleId".to_owned(),
                message: format!("is not the rule of the path ({rule_id})"),
            });
        }
        definition.robot_id = Some(robot_id);
        definition.rule_id = Some(rule_id.to_owned());
        let monitor = match Monitor::from_definition(&definition) {
            Ok(monitor) if errors.is_empty() => monitor,
            Ok(_) => return Err(MonitorError::Invalid(errors)),
            Err(mut invalid) => {
                errors.append(&mut invalid);
                return Err(MonitorError::Invalid(errors));
            }
        };
        self.before_change(robot_id, rule_id, Some(&monitor))
            .await?;
        let put = self
            .store
            .put_monitor(&monitor, MonitorSource::Api, self.now())
            .await?;
        log_put(&put, MonitorSource::Api);
        Ok(put)
    }

    /// Before `new` replaces the monitor (`None`: it is deleted): a change that ends its
    /// session (disabled, deleted, watching something else) first decides the window ends the
    /// session has passed, so that their alarms are not lost with it.
    async fn before_change(
        &self,
        robot_id: i64,
        rule_id: &str,
        new: Option<&Monitor>,
    ) -> Result<(), StoreError> {
        let Some(stored) = self.store.get_monitor(robot_id, rule_id).await? else {
            return Ok(());
        };
        let ends_session = match new {
            None => true,
            Some(new) => !new.enabled() || !stored.monitor.watches_as(new),
        };
        if ends_session {
            self.decide_overdue(&stored).await;
        }
        Ok(())
    }

    pub async fn get(
        &self,
        robot_id: i64,
        rule_id: &str,
    ) -> Result<Option<StoredMonitor>, MonitorError> {
        Ok(self.store.get_monitor(robot_id, rule_id).await?)
    }

    pub async fn list(&self) -> Result<Vec<StoredMonitor>, MonitorError> {
        Ok(self.store.list_monitors().await?)
    }

    /// The monitor's local day `date` as kept, for the support page: its session's windows,
    /// the events that reset them, the alarms.
    pub async fn day(
        &self,
        stored: &StoredMonitor,
        date: chrono::NaiveDate,
        now: DateTime<Utc>,
    ) -> Result<MonitorDay, MonitorError> {
        Ok(crate::support::monitor_day(&self.store, stored, date, now).await?)
    }

    /// Deletes a monitor: its session ends and its subscription is queued for removal (the
    /// relay removes it); alarms already decided are still posted.
    pub async fn delete(
        &self,
        robot_id: i64,
        rule_id: &str,
    ) -> Result<Option<StoredMonitor>, MonitorError> {
        self.before_change(robot_id, rule_id, None).await?;
        let deleted = self
            .store
            .delete_monitor(robot_id, rule_id, self.now())
            .await?;
        if let Some(deleted) = &deleted {
            tracing::info!(
                robot_id,
                rule_id,
                subscription_id = deleted.state.subscription_id,
                "monitor deleted"
            );
        }
        Ok(deleted)
    }

    /// Syncs the monitors of the files (SPEC §12): each is created or changed as the file
    /// says; a monitor a file wrote before and no file names any more is disabled. Monitors
    /// the API wrote and no file names are left alone.
    pub async fn sync_files(&self, monitors: &[Monitor]) -> Result<Synced, StoreError> {
        let mut synced = Synced::default();
        for monitor in monitors {
            let (robot_id, rule_id) = (monitor.robot_id(), monitor.rule_id().as_str());
            self.before_change(robot_id, rule_id, Some(monitor)).await?;
            let put = self
                .store
                .put_monitor(monitor, MonitorSource::File, self.now())
                .await?;
            log_put(&put, MonitorSource::File);
            match put {
                MonitorPut::Created(_) => synced.created += 1,
                MonitorPut::Replaced(_) => synced.changed += 1,
                MonitorPut::Unchanged(_) => synced.unchanged += 1,
            }
        }
        let named = |stored: &StoredMonitor| {
            monitors.iter().any(|m| {
                m.robot_id() == stored.monitor.robot_id() && m.rule_id() == stored.monitor.rule_id()
            })
        };
        for stored in self.store.list_monitors().await? {
            if stored.source != MonitorSource::File || !stored.monitor.enabled() || named(&stored) {
                continue;
            }
            let Some(disabled) = disabled(&stored.monitor) else {
                continue;
            };
            self.decide_overdue(&stored).await;
            self.store
                .put_monitor(&disabled, MonitorSource::File, self.now())
                .await?;
            tracing::info!(
                robot_id = stored.monitor.robot_id(),
                rule_id = %stored.monitor.rule_id(),
                "monitor no longer in the monitors file: disabled"
            );
            synced.disabled += 1;
        }
        Ok(synced)
    }
}

/// The same monitor, disabled.
fn disabled(monitor: &Monitor) -> Option<Monitor> {
    let mut definition = monitor.definition();
    definition.enabled = Some(false);
    Monitor::from_deployed_definition(&definition).ok()
}

fn log_put(put: &MonitorPut, source: MonitorSource) {
    let (what, stored) = match put {
        MonitorPut::Created(stored) => ("monitor created", stored),
        MonitorPut::Replaced(stored) => ("monitor changed", stored),
        MonitorPut::Unchanged(_) => return,
    };
    tracing::info!(
        robot_id = stored.monitor.robot_id(),
        rule_id = %stored.monitor.rule_id(),
        enabled = stored.monitor.enabled(),
        version = stored.version,
        source = source.as_str(),
        "{what}"
    );
}
