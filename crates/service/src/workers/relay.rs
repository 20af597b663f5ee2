//! The relay. Robot notifications (SPEC §3.7): sends the outbox rows written with each state change
//! to `${ROBOT_QUEUE_ADDRESS}${robotId}`, with the `callRef` attribute; a row is marked sent
//! only after SQS accepted it, and a failed send is retried with exponential backoff. Rows are
//! leased, so several replicas never send the same row at once; a relay that dies mid-send
//! leaves a row that is sent again after its lease runs out — at least once, with the same
//! `notificationSeq`, so robots drop the duplicate. The notifications committed in this
//! process come to it in memory, already leased to it (`OutboxHandoff`): it sends them at once
//! and claims only the rest (other replicas', retries, what a dead process left). It also
//! removes the subscriptions queued for removal (SPEC §13) and posts the monitors' alarms
//! (SPEC §12, `Monitors::send_alarms`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::{StreamExt as _, stream};
use tokio_util::sync::CancellationToken;

use crate::checks::{Checks, RemovalTick};
use crate::clock::Clock;
use crate::config::Config;
use crate::monitors::{AlarmTick, Monitors};
use crate::queue::Queue;
use crate::store::{DEAD_LETTER_AT, DynStore, OutboxHandoff, OutboxMessage};

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `ROBOT_QUEUE_ADDRESS`: the robot id is appended. `None` (a monitoring-only replica):
    /// this relay sends no notifications, only removes subscriptions and posts alarms.
    pub robot_queue_prefix: Option<String>,
    /// How often `run` looks for rows when the last tick found none.
    pub poll_interval: Duration,
    pub batch: usize,
    /// How long a claimed row is reserved for this relay.
    pub lease: Duration,
    /// First retry delay; doubles per failed attempt up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// Robots sent to at once; one robot's notifications go one after the other, in order.
    pub concurrency: usize,
    /// Attempts after which a notification that could not be sent is dead-lettered.
    pub max_attempts: u32,
    /// How long sent notifications are kept before they are purged.
    pub retention: Duration,
    /// `UNKNOWN_SUBSCRIPTION_GRACE_SECS`: subscribe records are kept a few of these.
    pub unknown_grace: Duration,
}

impl RelayConfig {
    /// The configured relay to `robot_queue_prefix` (the defaults of the configurable parts
    /// live with the keys, in `crate::config`); what is not configurable is fixed here.
    pub fn from_config(robot_queue_prefix: Option<String>, config: &Config) -> Self {
        RelayConfig {
            robot_queue_prefix,
            poll_interval: config.relay_poll_interval,
            // A claim (and its mark) per 250 rows: at 50 the relay sent ≈ 5,000/s and fell
            // 17 s behind a burst of 100,000 deadlines; at 250, 8 s (docs/benchmarks.md).
            batch: 250,
            lease: RELAY_LEASE,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: config.relay_concurrency,
            max_attempts: config.outbox_max_attempts,
            retention: config.outbox_retention,
            unknown_grace: config.unknown_subscription_grace,
        }
    }
}

/// What one tick did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayTick {
    /// Notifications taken from this process's handoff.
    pub handed: usize,
    /// Notifications claimed from the outbox table.
    pub claimed: usize,
    pub sent: usize,
    pub failed: usize,
    /// Megazord subscriptions removed (or tried) this step.
    pub removals: RemovalTick,
    /// Monitors' alarms posted to Megazord (or tried) this step.
    pub alarms: AlarmTick,
    /// Sent notifications (and posted alarms, and monitors' window history) purged after
    /// their retention.
    pub purged: u64,
}

/// How many sent rows one purge deletes at most.
const PURGE_BATCH: usize = 500;

/// How long a claimed (or handed-over) row is reserved for its relay.
const RELAY_LEASE: Duration = Duration::from_secs(30);

/// Most handed-over notifications one tick sends (and marks in one write).
const HANDOFF_BATCH: usize = 2_000;

/// Most notifications waiting in the handoff; beyond, writes leave theirs to be claimed.
pub const HANDOFF_CAPACITY: usize = 20_000;

pub struct Relay {
    checks: Arc<Checks>,
    /// The monitors whose alarms this relay posts.
    monitors: Option<Arc<Monitors>>,
    store: DynStore,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
    config: RelayConfig,
    replica: String,
    /// The notifications committed in this process, leased to this relay.
    handoff: Option<Arc<OutboxHandoff>>,
    /// When the next purge of sent rows is due.
    next_purge: Mutex<DateTime<Utc>>,
    /// When the backlog gauge is next refreshed: its count reads every unsent row's index
    /// entry, too much for every step while a burst is being sent.
    next_backlog: Mutex<DateTime<Utc>>,
}

impl Relay {
    pub fn new(
        checks: Arc<Checks>,
        queue: Arc<dyn Queue>,
        config: RelayConfig,
        hostname: &str,
    ) -> Self {
        Relay {
            store: checks.store().clone(),
            clock: checks.clock().clone(),
            checks,
            monitors: None,
            queue,
            config,
            replica: format!("relay-{hostname}-{}", uuid::Uuid::new_v4().simple()),
            handoff: None,
            next_purge: Mutex::new(DateTime::UNIX_EPOCH),
            next_backlog: Mutex::new(DateTime::UNIX_EPOCH),
        }
    }

    /// A handoff for this process's `Checks` (`Checks::with_handoff`) and relay
    /// (`with_handoff`): rows written leased to the relay for its lease time, at most
    /// [`HANDOFF_CAPACITY`] waiting.
    pub fn handoff_for(hostname: &str) -> Arc<OutboxHandoff> {
        Arc::new(OutboxHandoff::new(
            format!("relay-{hostname}-{}-handoff", uuid::Uuid::new_v4().simple()),
            RELAY_LEASE,
            HANDOFF_CAPACITY,
        ))
    }

    /// Sends the notifications handed over by `handoff` too, if any.
    pub fn with_handoff(mut self, handoff: Option<Arc<OutboxHandoff>>) -> Self {
        self.handoff = handoff;
        self
    }

    /// The handoff this relay takes from, if any.
    pub fn handoff(&self) -> Option<&OutboxHandoff> {
        self.handoff.as_deref()
    }

    /// Posts the monitors' alarms too (SPEC §12).
    pub fn with_monitors(mut self, monitors: Arc<Monitors>) -> Self {
        self.monitors = Some(monitors);
        self
    }

    /// Sends a batch of due notifications, removes a batch of due subscriptions, posts a batch
    /// of due monitor alarms, and — once a minute — purges a batch of notifications sent (and
    /// alarms posted, and monitor windows ended) before the retention.
    pub async fn tick_once(&self) -> RelayTick {
        let notified = self.send_notifications().await;
        RelayTick {
            handed: notified.handed,
            claimed: notified.claimed,
            sent: notified.sent,
            failed: notified.failed,
            ..self.upkeep().await
        }
    }

    /// The relay's work besides notifications: subscription removals, monitor alarms, purges.
    async fn upkeep(&self) -> RelayTick {
        let mut tick = RelayTick::default();
        let lease = format!("{}-{}", self.replica, uuid::Uuid::new_v4().simple());
        match self.checks.remove_subscriptions(&lease).await {
            Ok(removals) => tick.removals = removals,
            Err(e) => tracing::warn!(error = %e, "could not work on subscription removals"),
        }
        if let Some(monitors) = &self.monitors {
            match monitors.send_alarms(&lease).await {
                Ok(alarms) => tick.alarms = alarms,
                Err(e) => tracing::warn!(error = %e, "could not work on monitor alarms"),
            }
        }
        let now = self.clock.now();
        if due(&self.next_purge, now, TimeDelta::minutes(1)) {
            let retention = TimeDelta::from_std(self.config.retention).unwrap_or(TimeDelta::MAX);
            match self
                .store
                .purge_sent_outbox(now - retention, PURGE_BATCH)
                .await
            {
                Ok(purged) => {
                    tick.purged = purged;
                    metrics::counter!("outbox_purged_total").increment(purged);
                }
                Err(e) => tracing::warn!(error = %e, "could not purge sent notifications"),
            }
            match self
                .checks
                .purge_subscribe_intents(self.config.unknown_grace)
                .await
            {
                Ok(purged) => tick.purged += purged,
                Err(e) => tracing::warn!(error = %e, "could not purge subscribe records"),
            }
            if let Some(monitors) = &self.monitors {
                match monitors.purge_sent_alarms().await {
                    Ok(purged) => tick.purged += purged,
                    Err(e) => tracing::warn!(error = %e, "could not purge posted alarms"),
                }
                match monitors.purge_window_history().await {
                    Ok(purged) => tick.purged += purged,
                    Err(e) => tracing::warn!(error = %e, "could not purge monitor history"),
                }
            }
        }
        tick
    }

    /// Sends the notifications handed over, then claims a batch of due rows and sends each.
    async fn send_notifications(&self) -> RelayTick {
        let mut tick = RelayTick::default();
        if self.config.robot_queue_prefix.is_none() {
            return tick;
        }
        if let Some(handoff) = &self.handoff {
            let handed = handoff.take(HANDOFF_BATCH);
            tick.handed = handed.len();
            self.send_rows(handed, handoff.lease(), &mut tick).await;
        }
        let now = self.clock.now();
        let lease_until = now + TimeDelta::from_std(self.config.lease).unwrap_or(TimeDelta::MAX);
        let lease = format!("{}-{}", self.replica, uuid::Uuid::new_v4().simple());
        match self
            .store
            .claim_outbox(now, &lease, lease_until, self.config.batch)
            .await
        {
            Ok(rows) => {
                tick.claimed = rows.len();
                self.send_rows(rows, &lease, &mut tick).await;
            }
            Err(e) => tracing::warn!(error = %e, "could not claim notifications"),
        }
        if due(&self.next_backlog, now, TimeDelta::seconds(1))
            && let Ok(backlog) = self.store.outbox_backlog().await
        {
            metrics::gauge!("outbox_backlog").set(backlog as f64);
        }
        tick
    }

    /// Sends rows leased under `lease` and marks the sent ones in one write.
    async fn send_rows(&self, rows: Vec<OutboxMessage>, lease: &str, tick: &mut RelayTick) {
        if rows.is_empty() {
            return;
        }
        // Robots in parallel (each send is an SQS round trip; the sent rows are marked in one
        // write at the end); each robot's rows in order.
        let mut by_robot: BTreeMap<i64, Vec<OutboxMessage>> = BTreeMap::new();
        for row in rows {
            by_robot.entry(row.robot_id).or_default().push(row);
        }
        let mut robots = stream::iter(by_robot.into_values())
            .map(|rows| async move {
                let mut sent = Vec::with_capacity(rows.len());
                for row in &rows {
                    if self.send(row, lease).await {
                        sent.push(row.id);
                    }
                }
                let failed = rows.len() - sent.len();
                (sent, failed)
            })
            .buffer_unordered(self.config.concurrency.max(1));
        let mut sent = Vec::new();
        while let Some((robot_sent, failed)) = robots.next().await {
            sent.extend(robot_sent);
            tick.failed += failed;
        }
        drop(robots);
        tick.sent += sent.len();
        self.mark_sent(&sent, lease).await;
    }

    /// Ticks until `shutdown`, notifications and the rest in two loops of their own (a slow
    /// Megazord must not hold robots' notifications back): each right away again while it
    /// has work, else after the poll interval — or, for notifications, as soon as rows are
    /// handed over.
    pub async fn run(self, shutdown: CancellationToken) {
        if self.config.robot_queue_prefix.is_none() {
            self.upkeep_until(&shutdown).await;
            return;
        }
        tokio::join!(self.notify_until(&shutdown), self.upkeep_until(&shutdown));
        // What was handed over and not sent yet would wait out its lease in another replica.
        if let Some(handoff) = &self.handoff {
            let mut tick = RelayTick::default();
            self.send_rows(handoff.take(HANDOFF_CAPACITY), handoff.lease(), &mut tick)
                .await;
        }
    }

    async fn notify_until(&self, shutdown: &CancellationToken) {
        loop {
            let tick = self.send_notifications().await;
            if tick.handed + tick.claimed > 0 && tick.failed == 0 {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            let handed = async {
                match &self.handoff {
                    Some(handoff) => handoff.ready().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(self.config.poll_interval) => {}
                () = handed => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    async fn upkeep_until(&self, shutdown: &CancellationToken) {
        loop {
            let tick = self.upkeep().await;
            let worked = tick.removals.claimed + tick.alarms.claimed > 0;
            if worked && tick.removals.failed + tick.alarms.failed == 0 {
                if shutdown.is_cancelled() {
                    return;
                }
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.poll_interval) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Marks the batch's sent rows in one write. A row not marked (lease lost, or the write
    /// failed) is sent again later — at least once, with the same `notificationSeq`.
    async fn mark_sent(&self, ids: &[i64], lease: &str) {
        if ids.is_empty() {
            return;
        }
        match self.store.outbox_sent(ids, lease, self.clock.now()).await {
            Ok(marked) if marked.len() == ids.len() => {}
            Ok(marked) => tracing::warn!(
                unmarked = ids.len() - marked.len(),
                "notifications sent after their lease ran out; they may be sent again"
            ),
            Err(e) => tracing::warn!(
                count = ids.len(),
                error = %e,
                "notifications sent but not marked; they will be sent again"
            ),
        }
    }

    /// Sends one row; on failure records the attempt and its backoff. Whether it was sent.
    async fn send(&self, row: &OutboxMessage, lease: &str) -> bool {
        let prefix = self
            .config
            .robot_queue_prefix
            .as_deref()
            .unwrap_or_default();
        let url = format!("{prefix}{}", row.robot_id);
        let attributes = BTreeMap::from([("callRef".to_owned(), row.call_ref.clone())]);
        match self.queue.send(&url, &row.payload, &attributes).await {
            Ok(_) => {
                metrics::counter!("outbox_sent_total").increment(1);
                tracing::debug!(check_id = row.check_id, seq = row.seq, "robot notified");
                true
            }
            Err(e) => {
                let attempts = row.attempts + 1;
                metrics::counter!("outbox_send_failures_total").increment(1);
                let next = if attempts >= self.config.max_attempts {
                    // It will not go: stop trying, keep it (with its error) for an operator.
                    tracing::error!(
                        check_id = row.check_id,
                        robot_id = row.robot_id,
                        seq = row.seq,
                        attempts,
                        error = %e,
                        "could not notify the robot; dead-lettered after its last attempt"
                    );
                    metrics::counter!("outbox_dead_lettered_total").increment(1);
                    DEAD_LETTER_AT
                } else {
                    let backoff = backoff(&self.config, row.attempts);
                    tracing::warn!(
                        check_id = row.check_id,
                        robot_id = row.robot_id,
                        seq = row.seq,
                        attempts,
                        retry_in_ms = backoff.as_millis() as u64,
                        error = %e,
                        "could not notify the robot; will retry"
                    );
                    self.clock.now() + TimeDelta::from_std(backoff).unwrap_or(TimeDelta::MAX)
                };
                if let Err(e) = self
                    .store
                    .outbox_failed(row.id, lease, next, &e.to_string())
                    .await
                {
                    tracing::warn!(outbox_id = row.id, error = %e, "could not record a failed send");
                }
                false
            }
        }
    }
}

/// Whether `now` has reached the time in `next`, which then moves `every` on.
fn due(next: &Mutex<DateTime<Utc>>, now: DateTime<Utc>, every: TimeDelta) -> bool {
    let mut next = next.lock().unwrap_or_else(|e| e.into_inner());
    let due = now >= *next;
    if due {
        *next = now + every;
    }
    due
}

/// `base · 2^attempts`, capped.
fn backoff(config: &RelayConfig, attempts: u32) -> Duration {
    config
        .base_backoff
        .checked_mul(1u32 << attempts.min(20))
        .unwrap_or(config.max_backoff)
        .min(config.max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let env = [("ROLES", "api")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let config =
            RelayConfig::from_config(Some("q/".to_owned()), &Config::from_sources(env).unwrap());
        assert_eq!(backoff(&config, 0), Duration::from_secs(1));
        assert_eq!(backoff(&config, 3), Duration::from_secs(8));
        assert_eq!(backoff(&config, 30), Duration::from_secs(300));
    }
}
