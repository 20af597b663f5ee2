//! The MySQL test store: the service's `MysqlStore` on a fresh database, forwarding every call,
//! that drops its database when it goes away.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use sqlx::mysql::MySqlConnectOptions;
use sqlx::{AssertSqlSafe, ConnectOptions, Connection};
use status_check::store::mysql::MysqlStore;
use status_check::store::{
    Adopted, BatchedUpdate, CheckKey, CheckUpdate, Claimed, Created, Fence, MonitorPut,
    MonitorSource, MonitorStore, NewCheck, Notifications, OutboxMessage, PendingAction,
    StateChange, Store, StoreError, StoredCheck, StoredMonitor, StoredTemplate,
    SubscriptionRemoval, Synced, UpdateOutcome, Usable, WindowRecord,
};
use status_check_engine::TemplateDefinition;
use status_check_engine::lifecycle::NextSteps;
use status_check_engine::monitor::Monitor;

/// Drops the test database (best effort) when the store that uses it is dropped.
pub(crate) struct DropDatabase {
    pub(crate) server: MySqlConnectOptions,
    pub(crate) name: String,
}

/// How long dropping a test database may take.
const DROP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = std::mem::take(&mut self.name);
        // Drop may run inside or outside a runtime: use a thread with its own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            // Bounded: a server that does not answer (e.g. stopped by a fault test) must not
            // hang the test that drops it.
            let drop_database = async move {
                let mut conn = server.connect().await.ok()?;
                sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                    .execute(&mut conn)
                    .await
                    .ok()?;
                conn.close().await.ok()
            };
            runtime
                .block_on(async { tokio::time::timeout(DROP_TIMEOUT, drop_database).await })
                .ok()
                .flatten()
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("warning: a MySQL test database was not dropped");
        }
    }
}

/// A MySQL store that drops its test database when it goes away.
pub(crate) struct DroppingStore {
    pub(crate) inner: MysqlStore,
    pub(crate) _guard: DropDatabase,
}

#[async_trait]
impl Store for DroppingStore {
    async fn migrate(&self) -> Result<(), StoreError> {
        self.inner.migrate().await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError> {
        self.inner.create_check(check).await
    }

    async fn create_checks(&self, checks: &[NewCheck]) -> Result<Vec<Created>, StoreError> {
        self.inner.create_checks(checks).await
    }

    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError> {
        self.inner.get_check(id).await
    }

    async fn list_checks(
        &self,
        filter: &status_check::store::CheckFilter,
        limit: usize,
    ) -> Result<Vec<status_check::store::CheckSummary>, StoreError> {
        self.inner.list_checks(filter, limit).await
    }

    async fn check_notifications(
        &self,
        check_id: i64,
    ) -> Result<Vec<status_check::store::StoredNotification>, StoreError> {
        self.inner.check_notifications(check_id).await
    }

    async fn session_alarms(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: chrono::NaiveDate,
    ) -> Result<Vec<status_check::store::StoredAlarm>, StoreError> {
        self.inner
            .session_alarms(robot_id, rule_id, session_date)
            .await
    }

    async fn get_checks(&self, ids: &[i64]) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        self.inner.get_checks(ids).await
    }

    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError> {
        self.inner.find_check(key).await
    }

    async fn open_checks_at_step(&self, robot_id: i64, step_id: i64) -> Result<u64, StoreError> {
        self.inner.open_checks_at_step(robot_id, step_id).await
    }

    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        usable: Usable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError> {
        self.inner.sync_template(definition, usable, now).await
    }

    async fn template_versions(&self, name: &str) -> Result<Vec<StoredTemplate>, StoreError> {
        self.inner.template_versions(name).await
    }

    async fn unadopted_checks(&self, after: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
        self.inner.unadopted_checks(after, limit).await
    }

    async fn adopt_check(
        &self,
        id: i64,
        next_steps: NextSteps,
        now: DateTime<Utc>,
    ) -> Result<Adopted, StoreError> {
        self.inner.adopt_check(id, next_steps, now).await
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError> {
        self.inner.template_by_id(id).await
    }

    async fn find_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredCheck>, StoreError> {
        self.inner
            .find_by_subscription(robot_id, subscription_id)
            .await
    }

    async fn find_by_subscriptions(
        &self,
        keys: &[(i64, i64)],
    ) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        self.inner.find_by_subscriptions(keys).await
    }

    async fn update_check(
        &self,
        current: &StoredCheck,
        fence: Fence<'_>,
        update: &CheckUpdate,
        notifications: &Notifications<'_>,
        call_ref: &str,
        now: DateTime<Utc>,
    ) -> Result<UpdateOutcome, StoreError> {
        self.inner
            .update_check(current, fence, update, notifications, call_ref, now)
            .await
    }

    async fn update_checks(
        &self,
        batch: &[BatchedUpdate<'_>],
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        self.inner.update_checks(batch, notifications, now).await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner.claim_due(now, lease, limit).await
    }

    async fn release_stale_leases(&self, taken_before: DateTime<Utc>) -> Result<u64, StoreError> {
        self.inner.release_stale_leases(taken_before).await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.inner
            .claim_outbox(now, lease, lease_until, limit)
            .await
    }

    async fn outbox_sent(
        &self,
        ids: &[i64],
        lease: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        self.inner.outbox_sent(ids, lease, now).await
    }

    async fn outbox_failed(
        &self,
        id: i64,
        lease: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .outbox_failed(id, lease, next_attempt_at, error)
            .await
    }

    async fn outbox_backlog(&self) -> Result<i64, StoreError> {
        self.inner.outbox_backlog().await
    }

    async fn purge_sent_outbox(
        &self,
        sent_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.purge_sent_outbox(sent_before, limit).await
    }

    async fn queue_subscription_removal(
        &self,
        robot_id: i64,
        subscription_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner
            .queue_subscription_removal(robot_id, subscription_id, reason, now)
            .await
    }

    async fn claim_subscription_removals(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<SubscriptionRemoval>, StoreError> {
        self.inner
            .claim_subscription_removals(now, lease, lease_until, limit)
            .await
    }

    async fn subscriptions_removed(
        &self,
        subscription_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        self.inner
            .subscriptions_removed(subscription_ids, now)
            .await
    }

    async fn subscription_removal_failed(
        &self,
        id: i64,
        lease: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .subscription_removal_failed(id, lease, next_attempt_at, error)
            .await
    }

    async fn subscription_removal_backlog(&self) -> Result<i64, StoreError> {
        self.inner.subscription_removal_backlog().await
    }

    async fn record_subscribe_intent(
        &self,
        robot_id: i64,
        event_names: &[String],
        queue: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        self.inner
            .record_subscribe_intent(robot_id, event_names, queue, now)
            .await
    }

    async fn forget_subscribe_intent(&self, id: i64) -> Result<(), StoreError> {
        self.inner.forget_subscribe_intent(id).await
    }

    async fn claim_unknown_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
        event_name: &str,
        event_created_at: DateTime<Utc>,
        grace: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<status_check::store::UnknownSubscription, StoreError> {
        self.inner
            .claim_unknown_subscription(
                robot_id,
                subscription_id,
                event_name,
                event_created_at,
                grace,
                now,
            )
            .await
    }

    async fn purge_subscribe_intents(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.purge_subscribe_intents(before, limit).await
    }
}

#[async_trait]
impl MonitorStore for DroppingStore {
    async fn put_monitor(
        &self,
        monitor: &Monitor,
        source: MonitorSource,
        now: DateTime<Utc>,
    ) -> Result<MonitorPut, StoreError> {
        self.inner.put_monitor(monitor, source, now).await
    }

    async fn get_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        self.inner.get_monitor(robot_id, rule_id).await
    }

    async fn list_monitors(&self) -> Result<Vec<StoredMonitor>, StoreError> {
        self.inner.list_monitors().await
    }

    async fn delete_monitor(
        &self,
        robot_id: i64,
        rule_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        self.inner.delete_monitor(robot_id, rule_id, now).await
    }

    async fn claim_due_monitors(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        stale_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<StoredMonitor>, StoreError> {
        self.inner
            .claim_due_monitors(now, lease, stale_before, limit)
            .await
    }

    async fn find_monitor_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredMonitor>, StoreError> {
        self.inner
            .find_monitor_by_subscription(robot_id, subscription_id)
            .await
    }

    async fn write_monitor_state(
        &self,
        current: &StoredMonitor,
        lease: Option<&str>,
        change: &StateChange,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .write_monitor_state(current, lease, change, now)
            .await
    }

    async fn release_monitor(
        &self,
        monitor_id: i64,
        lease: &str,
        due_at: DateTime<Utc>,
        problem: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner
            .release_monitor(monitor_id, lease, due_at, problem, now)
            .await
    }

    async fn last_alarm_number(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<u32, StoreError> {
        self.inner
            .last_alarm_number(robot_id, rule_id, session_date)
            .await
    }

    async fn claim_monitor_actions(
        &self,
        now: DateTime<Utc>,
        lease: &str,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<PendingAction>, StoreError> {
        self.inner
            .claim_monitor_actions(now, lease, lease_until, limit)
            .await
    }

    async fn monitor_action_sent(
        &self,
        id: i64,
        lease: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.monitor_action_sent(id, lease, now).await
    }

    async fn monitor_action_failed(
        &self,
        id: i64,
        lease: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.inner
            .monitor_action_failed(id, lease, next_attempt_at, error)
            .await
    }

    async fn monitor_action_backlog(&self) -> Result<i64, StoreError> {
        self.inner.monitor_action_backlog().await
    }

    async fn purge_sent_monitor_actions(
        &self,
        sent_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner
            .purge_sent_monitor_actions(sent_before, limit)
            .await
    }

    async fn monitor_windows(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: NaiveDate,
    ) -> Result<Vec<WindowRecord>, StoreError> {
        self.inner
            .monitor_windows(robot_id, rule_id, session_date)
            .await
    }

    async fn purge_monitor_windows(
        &self,
        ended_before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.inner.purge_monitor_windows(ended_before, limit).await
    }
}
