//! The store of every backend: `Store` implemented once, for any `Db`, over the shared SQL
//! of `checks`, `adoption`, `templates`, `lifecycle`, `removals` and `intents` (the leased
//! work queues' in `jobs`); every operation
//! bounded by the backend's operation timeout.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use status_check_engine::TemplateDefinition;

use super::db::{Db, bounded};
use super::*;

/// The store of every backend: the shared SQL of `checks`, `templates`, `lifecycle` and `outbox` over
/// the backend's `Db`; only migrations and the connection differ.
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

    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError> {
        bounded(
            self,
            "create_check",
            crate::store::checks::create_check(self, check),
        )
        .await
    }

    async fn create_checks(&self, checks: &[NewCheck]) -> Result<Vec<Created>, StoreError> {
        bounded(
            self,
            "create_checks",
            crate::store::checks::create_checks(self, checks),
        )
        .await
    }

    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError> {
        bounded(
            self,
            "get_check",
            crate::store::check_reads::get_check(self, id),
        )
        .await
    }

    async fn get_checks(&self, ids: &[i64]) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        bounded(
            self,
            "get_checks",
            crate::store::check_reads::get_checks(self, ids),
        )
        .await
    }

    async fn list_checks(
        &self,
        filter: &CheckFilter,
        limit: usize,
    ) -> Result<Vec<CheckSummary>, StoreError> {
        bounded(
            self,
            "list_checks",
            crate::store::timeline_reads::list_checks(self, filter, limit),
        )
        .await
    }

    async fn check_notifications(
        &self,
        check_id: i64,
    ) -> Result<Vec<StoredNotification>, StoreError> {
        bounded(
            self,
            "check_notifications",
            crate::store::timeline_reads::check_notifications(self, check_id),
        )
        .await
    }

    async fn session_alarms(
        &self,
        robot_id: i64,
        rule_id: &str,
        session_date: chrono::NaiveDate,
    ) -> Result<Vec<StoredAlarm>, StoreError> {
        bounded(
            self,
            "session_alarms",
            crate::store::timeline_reads::session_alarms(self, robot_id, rule_id, session_date),
        )
        .await
    }

    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError> {
        bounded(
            self,
            "find_check",
            crate::store::check_reads::find_check(self, key),
        )
        .await
    }

    async fn open_checks_at_step(&self, robot_id: i64, step_id: i64) -> Result<u64, StoreError> {
        bounded(
            self,
            "open_checks_at_step",
            crate::store::check_reads::open_checks_at_step(self, robot_id, step_id),
        )
        .await
    }

    async fn sync_template(
        &self,
        definition: &TemplateDefinition,
        usable: crate::store::Usable<'_>,
        now: DateTime<Utc>,
    ) -> Result<Synced, StoreError> {
        bounded(
            self,
            "sync_template",
            crate::store::templates::sync_template(self, definition, usable, now),
        )
        .await
    }

    async fn template_versions(&self, name: &str) -> Result<Vec<StoredTemplate>, StoreError> {
        bounded(
            self,
            "template_versions",
            crate::store::templates::template_versions(self, name),
        )
        .await
    }

    async fn template_by_id(&self, id: i64) -> Result<Option<StoredTemplate>, StoreError> {
        bounded(
            self,
            "template_by_id",
            crate::store::templates::template_by_id(self, id),
        )
        .await
    }

    async fn unadopted_checks(&self, after: i64, limit: usize) -> Result<Vec<i64>, StoreError> {
        bounded(
            self,
            "unadopted_checks",
            crate::store::adoption::unadopted_checks(self, after, limit),
        )
        .await
    }

    async fn adopt_check(
        &self,
        id: i64,
        next_steps: status_check_engine::lifecycle::NextSteps,
        now: DateTime<Utc>,
    ) -> Result<crate::store::Adopted, StoreError> {
        bounded(
            self,
            "adopt_check",
            crate::store::adoption::adopt_check(self, id, next_steps, now),
        )
        .await
    }

    async fn find_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredCheck>, StoreError> {
        bounded(
            self,
            "find_by_subscription",
            crate::store::check_reads::find_by_subscription(self, robot_id, subscription_id),
        )
        .await
    }

    async fn find_by_subscriptions(
        &self,
        keys: &[(i64, i64)],
    ) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        bounded(
            self,
            "find_by_subscriptions",
            crate::store::check_reads::find_by_subscriptions(self, keys),
        )
        .await
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
        bounded(
            self,
            "update_check",
            crate::store::lifecycle::update_check(
                self,
                current,
                fence,
                update,
                notifications,
                call_ref,
                now,
            ),
        )
        .await
    }

    async fn update_checks(
        &self,
        batch: &[BatchedUpdate<'_>],
        notifications: &Notifications<'_>,
        now: DateTime<Utc>,
    ) -> Result<Vec<UpdateOutcome>, StoreError> {
        bounded(
            self,
            "update_checks",
            crate::store::lifecycle::update_checks(self, batch, notifications, now),
        )
        .await
    }

    async fn claim_due(
        &self,
        now: DateTime<Utc>,
        lease: &crate::jobs::Lease,
        limit: usize,
    ) -> Result<Vec<Claimed>, StoreError> {
        bounded(
            self,
            "claim_due",
            crate::store::lifecycle::claim_due(self, now, lease, limit),
        )
        .await
    }

    async fn release_stale_leases(&self, taken_before: DateTime<Utc>) -> Result<u64, StoreError> {
        bounded(
            self,
            "release_stale_leases",
            crate::store::lifecycle::release_stale_leases(self, taken_before),
        )
        .await
    }

    async fn queue_subscription_removal(
        &self,
        robot_id: i64,
        subscription_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        bounded(
            self,
            "queue_subscription_removal",
            crate::store::removals::queue_subscription_removal(
                self,
                robot_id,
                subscription_id,
                reason,
                now,
            ),
        )
        .await
    }

    async fn record_subscribe_intent(
        &self,
        robot_id: i64,
        event_names: &[String],
        queue: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        bounded(
            self,
            "record_subscribe_intent",
            crate::store::intents::record_subscribe_intent(self, robot_id, event_names, queue, now),
        )
        .await
    }

    async fn forget_subscribe_intent(&self, id: i64) -> Result<(), StoreError> {
        bounded(
            self,
            "forget_subscribe_intent",
            crate::store::intents::forget_subscribe_intent(self, id),
        )
        .await
    }

    async fn claim_unknown_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
        event_name: &str,
        event_created_at: DateTime<Utc>,
        grace: chrono::TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<crate::store::UnknownSubscription, StoreError> {
        bounded(
            self,
            "claim_unknown_subscription",
            crate::store::intents::claim_unknown_subscription(
                self,
                robot_id,
                subscription_id,
                event_name,
                event_created_at,
                grace,
                now,
            ),
        )
        .await
    }

    async fn purge_subscribe_intents(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        bounded(
            self,
            "purge_subscribe_intents",
            crate::store::intents::purge_subscribe_intents(self, before, limit),
        )
        .await
    }
}
