//! What is particular to each kind of job, beyond the shared leased-queue suite
//! (leased_queues.rs): a notification's row as the change wrote it, notifications handed to
//! this process's relay, a subscription's removal queued once. (An alarm's row as its window
//! end wrote it: monitor_store.rs.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use status_check::clock::{Clock, ManualClock};
use status_check::jobs::{
    Handler, Job, JobFailure, JobQueue, Lease, LeaseOwner, Next, RetryPolicy, Runner,
    RunnerSettings,
};
use status_check::store::{
    BatchedUpdate, CheckUpdate, Fence, Notifications, OutboxHandoff, Removals, StoreError,
    StoredCheck, SubscriptionRemoval,
};

use crate::harness::on_both_backends;
use crate::store::batch::{item, repeating_an_event, three_checks};
use crate::store::{
    at, complete, create, created_new, new_check, notify, outbox_rows, render, synced_template,
    update, updated,
};
use crate::support::{TestDb, claim_jobs, lease};

on_both_backends!(
    databases:
    a_notification_carries_what_its_change_wrote,
    committed_notifications_are_handed_over_leased,
    a_subscription_removal_is_queued_once,
    a_batch_starts_no_job_once_half_its_lease_is_spent,
    a_slow_claim_starts_no_job_past_half_its_lease,
);

/// Removes nothing, but takes 10 s (on the test's clock) for each removal.
struct SlowRemover {
    clock: Arc<ManualClock>,
    performed: std::sync::Mutex<Vec<i64>>,
}

#[async_trait]
impl Handler for SlowRemover {
    type Kind = Removals;

    async fn perform_one(&self, job: &Job<SubscriptionRemoval>) -> Result<(), String> {
        self.performed
            .lock()
            .unwrap()
            .push(job.payload.subscription_id);
        self.clock.advance(TimeDelta::seconds(10));
        Ok(())
    }

    fn failed(&self, _: &Job<SubscriptionRemoval>, _: &str, _: Next) {}
}

/// Queues `count` subscription removals of robot 42 (subscriptions `first + 1`, …) at `at`.
async fn queue_removals(db: &TestDb, first: i64, count: i64, at: DateTime<Utc>) {
    for subscription in 1..=count {
        db.store
            .queue_subscription_removal(42, first + subscription, "ended", at)
            .await
            .unwrap();
    }
}

/// A removal runner over `queue` whose removals take 10 s each on `clock`, with 30 s leases.
fn slow_runner(
    queue: Arc<dyn JobQueue<Removals>>,
    clock: &Arc<ManualClock>,
) -> Runner<SlowRemover> {
    let handler = SlowRemover {
        clock: clock.clone(),
        performed: std::sync::Mutex::new(Vec::new()),
    };
    let settings = RunnerSettings::new(
        10,
        Duration::from_secs(30),
        Duration::from_millis(100),
        RetryPolicy::doubling(),
    );
    Runner::new(
        handler,
        queue,
        clock.clone(),
        settings,
        LeaseOwner::new("relay", "replica-a"),
    )
}

/// A batch whose jobs are slow stops starting them once half its 30 s lease is spent: a job
/// begun later could outlast the lease while another replica, which claimed the rest, performs
/// the same jobs (an alarm posted twice). The rest stay leased until the lease runs out.
async fn a_batch_starts_no_job_once_half_its_lease_is_spent(db: &TestDb) {
    let t0 = at("2026-11-20T08:00:00Z");
    queue_removals(db, 7000, 4, t0).await;
    let clock = Arc::new(ManualClock::new(t0));
    let runner = slow_runner(db.store.clone(), &clock);
    let tick = runner.tick_once().await;
    // Started at 0 s and 10 s; at 20 s half the lease was spent.
    assert_eq!((tick.claimed, tick.done, tick.not_started), (4, 2, 2));
    assert_eq!(clock.now(), t0 + TimeDelta::seconds(20));
    let queue = db.store.removal_jobs();
    assert_eq!(queue.backlog().await.unwrap(), 2);
    let lease_end = t0 + TimeDelta::seconds(30);
    assert!(
        claim_jobs(queue, lease_end, &lease("b"), 10)
            .await
            .is_empty()
    );
    let after = lease_end + TimeDelta::milliseconds(1);
    let rest = claim_jobs(queue, after, &lease("b"), 10).await;
    let mut left: Vec<i64> = rest.iter().map(|j| j.payload.subscription_id).collect();
    left.sort_unstable();
    assert_eq!(left, [7003, 7004]);
}

async fn a_notification_carries_what_its_change_wrote(db: &TestDb) {
    let template_id = synced_template(db, "outbox").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:01:00Z");
    update(db, created.id, Fence::None, &notify, "call-0", t0)
        .await
        .unwrap();
    let claimed = claim_jobs(db.store.notification_jobs(), t0, &lease("a"), 10).await;
    assert_eq!(claimed.len(), 1);
    let first = &claimed[0];
    assert_eq!(
        (
            first.payload.check_id,
            first.payload.robot_id,
            first.payload.seq,
            first.payload.call_ref.as_str(),
            first.attempts
        ),
        (created.id, 42, 1, "call-0", 0)
    );
    assert_eq!(
        first.payload.payload,
        format!(
            "check {} seq 1: FUTURE PENDING None with 3 records",
            created.id
        )
    );
    // Done: the row keeps when it was sent.
    let sent_at = t0 + TimeDelta::seconds(6);
    db.store
        .notification_jobs()
        .complete(&[first.id], &lease("a"), sent_at)
        .await
        .unwrap();
    let rows = db.raw.outbox(created.id).await;
    assert_eq!(rows[0].sent_at, Some(sent_at));
    assert_eq!((rows[0].attempts, rows[0].next_attempt_at), (0, t0));
}

/// Notifications handed to this process's relay: the rows are committed leased to it (no
/// other relay claims them until the lease runs out) and handed over only after the commit —
/// a refused batch hands nothing — and once the relay has `capacity` waiting, rows are
/// written for any relay to claim.
async fn committed_notifications_are_handed_over_leased(db: &TestDb) {
    let checks = three_checks(db, "batch-handoff").await;
    let here = LeaseOwner::new("relay", "here").standing_lease("handoff");
    let handoff = OutboxHandoff::new(here.clone(), Duration::from_secs(30), 2);
    let handing = Notifications {
        render: &render,
        handoff: Some(&handoff),
    };
    let now = at("2026-11-20T08:01:00Z");
    let there = lease("relay-there");
    let queue = db.store.notification_jobs();
    // The first item's row is written, then the second item is refused by the database: the
    // batch rolls back and hands nothing over.
    let repeating = repeating_an_event(&checks[1]);
    let refused = [
        item(&checks[0], notify(&checks[0]).unwrap()),
        item(&checks[1], repeating),
    ];
    assert!(
        db.store
            .update_checks(&refused, &handing, now)
            .await
            .is_err()
    );
    assert!(
        handoff.take(10).is_empty(),
        "nothing handed for a refused batch"
    );
    assert_eq!(outbox_rows(db).await, 0);

    let batch = [
        item(&checks[0], notify(&checks[0]).unwrap()),
        item(&checks[1], notify(&checks[1]).unwrap()),
    ];
    let outcomes = db.store.update_checks(&batch, &handing, now).await.unwrap();
    let notified: Vec<StoredCheck> = outcomes.into_iter().map(updated).collect();
    let claimed_elsewhere = claim_jobs(queue, now, &there, 10).await;
    assert!(claimed_elsewhere.is_empty(), "{claimed_elsewhere:?}");

    // The relay has two waiting (its capacity): the next notification is left to a claim.
    let third = db
        .store
        .update_check(
            BatchedUpdate {
                current: &checks[2],
                fence: Fence::None,
                update: notify(&checks[2]).unwrap(),
                call_ref: "c",
            },
            &handing,
            now,
        )
        .await
        .unwrap();
    let third = updated(third);
    let claimed = claim_jobs(queue, now, &there, 10).await;
    assert_eq!(
        claimed
            .iter()
            .map(|job| (job.payload.check_id, job.payload.seq))
            .collect::<Vec<_>>(),
        [(third.id, third.notification_seq)]
    );

    let handed = handoff.take(10);
    assert_eq!(
        handed
            .iter()
            .map(|job| (
                job.payload.check_id,
                job.payload.seq,
                job.payload.payload.clone(),
                job.payload.call_ref.as_str(),
                job.attempts
            ))
            .collect::<Vec<_>>(),
        notified
            .iter()
            .map(|check| (
                check.id,
                check.notification_seq,
                render(check, check.notification_seq),
                "batch",
                0
            ))
            .collect::<Vec<_>>()
    );
    // The relay marks them sent under its lease (the ids are the rows').
    let ids: Vec<i64> = handed.iter().map(|job| job.id).collect();
    let later = now + TimeDelta::seconds(1);
    assert_eq!(
        queue.complete(&ids, &there, later).await.unwrap(),
        Vec::<i64>::new(),
        "another lease marks nothing"
    );
    assert_eq!(queue.complete(&ids, &here, later).await.unwrap(), ids);
    assert_eq!(
        queue
            .complete(&[claimed[0].id], &there, later)
            .await
            .unwrap(),
        [claimed[0].id]
    );
    // After the leases, nothing is left to claim: sent is sent.
    let after = now + TimeDelta::seconds(60);
    assert!(claim_jobs(queue, after, &there, 10).await.is_empty());
}

/// A subscription's removal is queued once, whoever asks again (with another reason); ending
/// a check queues its subscription's removal with the change.
async fn a_subscription_removal_is_queued_once(db: &TestDb) {
    let t0 = at("2026-11-20T08:00:00Z");
    let queue = db.store.removal_jobs();
    db.store
        .queue_subscription_removal(42, 5555, "create_failed", t0)
        .await
        .unwrap();
    db.store
        .queue_subscription_removal(42, 5555, "unowned", t0)
        .await
        .unwrap();
    assert_eq!(queue.backlog().await.unwrap(), 1);
    let claimed = crate::support::claim_jobs(queue, t0, &lease("a"), 10).await;
    assert_eq!(
        claimed
            .iter()
            .map(|job| (
                job.payload.robot_id,
                job.payload.subscription_id,
                job.payload.reason.as_str(),
                job.attempts
            ))
            .collect::<Vec<_>>(),
        [(42, 5555, "create_failed", 0)]
    );
    assert_eq!(
        queue
            .complete(&[claimed[0].id], &lease("a"), t0)
            .await
            .unwrap(),
        [claimed[0].id]
    );
    // Done, and asked again: still done.
    db.store
        .queue_subscription_removal(42, 5555, "ended", t0 + TimeDelta::seconds(1))
        .await
        .unwrap();
    assert_eq!(queue.backlog().await.unwrap(), 0);

    let template_id = synced_template(db, "removal").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let ending = |check: &StoredCheck| {
        Some(CheckUpdate {
            remove_subscription: true,
            ..complete(check).unwrap()
        })
    };
    updated(
        update(db, created.id, Fence::None, &ending, "end", t0)
            .await
            .unwrap(),
    );
    let later = t0 + TimeDelta::seconds(10);
    let queued = claim_jobs(queue, later, &lease("c"), 10).await;
    assert_eq!(
        queued
            .iter()
            .map(|job| (job.payload.subscription_id, job.payload.reason.as_str()))
            .collect::<Vec<_>>(),
        [(991, "ended")]
    );
}

/// The store's removal queue, but a claim takes 20 s on the test's clock (a slow write).
struct SlowClaim {
    store: status_check::store::DynStore,
    clock: Arc<ManualClock>,
}

#[async_trait]
impl JobQueue<Removals> for SlowClaim {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job<SubscriptionRemoval>>, StoreError> {
        let claimed = self
            .store
            .removal_jobs()
            .claim(now, lease, lease_until, limit)
            .await;
        self.clock.advance(TimeDelta::seconds(20));
        claimed
    }

    async fn complete(
        &self,
        ids: &[i64],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        self.store.removal_jobs().complete(ids, lease, now).await
    }

    async fn fail(&self, failures: &[JobFailure], lease: &Lease) -> Result<u64, StoreError> {
        self.store.removal_jobs().fail(failures, lease).await
    }

    async fn backlog(&self) -> Result<i64, StoreError> {
        self.store.removal_jobs().backlog().await
    }

    async fn purge(&self, done_before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.store.removal_jobs().purge(done_before, limit).await
    }
}

/// Half the lease is counted from the lease's start, not from when the claim came back: a
/// claim whose write took 20 s of a 30 s lease starts none of its jobs (one begun now could
/// outlast the lease), and they are claimed again once the lease ran out.
async fn a_slow_claim_starts_no_job_past_half_its_lease(db: &TestDb) {
    let t0 = at("2026-11-20T08:00:00Z");
    queue_removals(db, 7100, 2, t0).await;
    let clock = Arc::new(ManualClock::new(t0));
    let queue = Arc::new(SlowClaim {
        store: db.store.clone(),
        clock: clock.clone(),
    });
    let runner = slow_runner(queue, &clock);
    let tick = runner.tick_once().await;
    assert_eq!(
        (tick.claimed, tick.done, tick.not_started),
        (2, 0, 2),
        "{tick:?}"
    );
    let after = t0 + TimeDelta::milliseconds(30_001);
    let again = claim_jobs(db.store.removal_jobs(), after, &lease("b"), 10).await;
    assert_eq!(again.len(), 2);
}
