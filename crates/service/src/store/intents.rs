//! Subscribes recorded before they are made (SPEC §13): a subscribe whose answer is lost
//! leaves a subscription this service never learns the id of. Its deliveries then arrive for
//! an unknown subscription, and only such a record — same robot, an event name asked for,
//! inside the grace period after it — tells it apart from another service's subscription on a
//! queue shared by mistake, which must never be removed.

use chrono::{DateTime, TimeDelta, Timelike, Utc};

use super::db::{Db, PerDialect, SqlRow, Step, Tx, args, millis, retrying};
use super::db::{bounded, purge_older};
use super::removals::queue_in;
use super::{StoreError, UnknownDelivery, UnknownSubscription};

pub const INSERT_INTENT: &str = "INSERT INTO status_check_subscribe_intent \
     (robot_id, event_names, queue, created_at) VALUES (?, ?, ?, ?)";

pub const DELETE_INTENT: &str = "DELETE FROM status_check_subscribe_intent WHERE id = ?";

/// The robot's records from the window in which a subscribe could have made the subscription
/// an event of `created_at` came through (Megazord fans out only events created after it).
const INTENTS_BEFORE: PerDialect = PerDialect {
    mysql: "SELECT id, event_names FROM status_check_subscribe_intent \
            WHERE robot_id = ? AND created_at >= ? AND created_at <= ? \
            ORDER BY created_at DESC, id DESC FOR UPDATE",
    sqlite: "SELECT id, event_names FROM status_check_subscribe_intent \
             WHERE robot_id = ? AND created_at >= ? AND created_at <= ? \
             ORDER BY created_at DESC, id DESC",
};

/// Whether a removal is (or was) queued for the subscription: then it is this service's.
const REMOVAL_OF: &str =
    "SELECT id FROM status_check_subscription_removal WHERE subscription_id = ?";

const INTENTS_CREATED_BEFORE: &str = "SELECT id FROM status_check_subscribe_intent \
     WHERE created_at < ? ORDER BY created_at LIMIT ?";

/// What a delivery for a subscription no check or monitor session has, past the grace period,
/// tells about that subscription; a lost answer's subscription is queued for removal (and its
/// record forgotten) in the same transaction.
pub(crate) async fn claim_unknown_subscription<D: Db>(
    db: &D,
    delivery: UnknownDelivery<'_>,
    grace: TimeDelta,
    now: DateTime<Utc>,
) -> Result<UnknownSubscription, StoreError> {
    let UnknownDelivery {
        robot_id,
        subscription_id,
        event_name,
        event_created_at,
    } = delivery;
    // Megazord stamps events in whole seconds (a `TIMESTAMP`), a subscribe's record has
    // milliseconds: an event stamped 08:00:00 may have happened at 08:00:00.800, after a
    // subscribe recorded at 08:00:00.400.
    let latest = if event_created_at.nanosecond() == 0 {
        event_created_at + TimeDelta::milliseconds(999)
    } else {
        event_created_at
    };
    retrying!(db, tx => async {
        if tx.fetch_optional(REMOVAL_OF, args![subscription_id]).await?.is_some() {
            return Ok(Step::Commit(UnknownSubscription::AlreadyRemoved));
        }
        let rows = tx
            .fetch_all(
                db.sql(&INTENTS_BEFORE),
                args![robot_id, millis(event_created_at - grace), millis(latest)],
            )
            .await?;
        for row in rows {
            let names: Vec<String> = serde_json::from_str(&row.text("event_names")?)
                .map_err(|e| StoreError::Corrupt(format!("subscribe intent: {e}")))?;
            if names.iter().any(|name| name == event_name) {
                let intent = row.int("id")?;
                queue_in(db, &mut tx, robot_id, subscription_id, "lost_answer", now).await?;
                tx.execute(DELETE_INTENT, args![intent]).await?;
                return Ok(Step::Commit(UnknownSubscription::LostAnswer { intent }));
            }
        }
        Ok(Step::Commit(UnknownSubscription::Foreign))
    }
    .await)
}

/// This service's Megazord subscriptions (SPEC §13): each subscribe recorded before the call,
/// removals queued once, unknown subscriptions recognised. Part of [`Store`](super::Store);
/// implemented once, below, for every backend, each operation bounded by the backend's
/// operation timeout.
#[async_trait::async_trait]
pub trait SubscriptionRecords: Send + Sync {
    /// Queues the removal of a Megazord subscription; nothing when it is queued already.
    async fn queue_subscription_removal(
        &self,
        robot_id: i64,
        subscription_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Records a subscribe about to be made (SPEC §13), before the call; the record's id.
    async fn record_subscribe_intent(
        &self,
        robot_id: i64,
        event_names: &[String],
        queue: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError>;

    /// The subscribe's answer came and its subscription is stored (or queued for removal).
    async fn forget_subscribe_intent(&self, id: i64) -> Result<(), StoreError>;

    /// A delivery for a subscription no check or monitor session has kept coming past the
    /// grace period: whose is it? A subscribe this service recorded and whose answer was lost
    /// (same robot, an event name it asked for, made at most `grace` before the event) makes
    /// it this service's, queued for removal in the same transaction.
    async fn claim_unknown_subscription(
        &self,
        delivery: UnknownDelivery<'_>,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<UnknownSubscription, StoreError>;

    /// Deletes up to `limit` subscribe records made before `before`; how many.
    async fn purge_subscribe_intents(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> SubscriptionRecords for B {
    async fn queue_subscription_removal(
        &self,
        robot_id: i64,
        subscription_id: i64,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        retrying!(self, "queue_subscription_removal", tx => {
            queue_in(self, &mut tx, robot_id, subscription_id, reason, now)
                .await
                .map(Step::Commit)
        })
    }

    async fn record_subscribe_intent(
        &self,
        robot_id: i64,
        event_names: &[String],
        queue: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        // Records a subscribe about to be made; its id, to forget it once the answer is stored.
        let names = serde_json::to_string(event_names)
            .map_err(|e| StoreError::Conflict(format!("event names: {e}")))?;
        let args = args![robot_id, names, queue.map(str::to_owned), millis(now)];
        retrying!(self, "record_subscribe_intent", tx => tx
            .execute(INSERT_INTENT, args.clone())
            .await
            .map(|done| Step::Commit(done.last_insert_id)))
    }

    async fn forget_subscribe_intent(&self, id: i64) -> Result<(), StoreError> {
        // The subscribe's answer came: its subscription is stored elsewhere (or queued for
        // removal).
        retrying!(self, "forget_subscribe_intent", tx => tx
            .execute(DELETE_INTENT, args![id])
            .await
            .map(|_| Step::Commit(())))
    }

    async fn claim_unknown_subscription(
        &self,
        delivery: UnknownDelivery<'_>,
        grace: TimeDelta,
        now: DateTime<Utc>,
    ) -> Result<UnknownSubscription, StoreError> {
        bounded(
            self,
            "claim_unknown_subscription",
            claim_unknown_subscription(self, delivery, grace, now),
        )
        .await
    }

    async fn purge_subscribe_intents(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        // Deletes up to `limit` records made before `before` (no delivery can match them any more);
        // how many.
        bounded(
            self,
            "purge_subscribe_intents",
            purge_older(self, INTENTS_CREATED_BEFORE, DELETE_INTENT, before, limit),
        )
        .await
    }
}
