//! The leased work queues (`jobs::JobQueue`, store/jobs.rs), one behaviour suite run for each
//! kind of job — robot notifications, subscription removals, the monitors' alarms — on both
//! backends: claimed due and oldest first under a lease, never twice at once, taken over when
//! the lease ran out, done once and only by the lease that holds them, failed with a retry
//! time and the error cut to its column, dead-lettered, counted in the backlog and purged.
//! Each kind's jobs are written as the service writes them. What is particular to a kind
//! (its payload, the handoff, a removal queued once) is in job_kinds.rs.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;
use status_check::jobs::{Job, JobFailure, JobKind, JobQueue};
use status_check::store::{
    Alarms, Fence, MonitorSource, NewAction, NotificationJobs, Removals, Store,
};

use crate::harness::on_both_backends;
use crate::monitor_store::{created, date, monitor, open_session};
use crate::store::{at, create, created_new, new_check, notify, synced_template, update};
use crate::support::{TestDb, claim_jobs, lease};

/// A kind of job under test.
trait Kind {
    type Of: JobKind;
    /// Its table.
    const TABLE: &'static str;

    fn queue(store: &dyn Store) -> &dyn JobQueue<Self::Of>;

    /// Writes `n` jobs as the service does, due from `t0` on in this order; their keys.
    async fn enqueue(db: &TestDb, n: usize, t0: DateTime<Utc>) -> Vec<i64>;

    /// What tells a job apart from the others `enqueue` wrote.
    fn key(payload: &<Self::Of as JobKind>::Payload) -> i64;
}

/// A job's attempts and last error, as stored.
fn row_sql<K: Kind>() -> String {
    format!(
        "SELECT CAST(attempts AS CHAR), last_error FROM {} WHERE id = ?",
        K::TABLE
    )
}

/// How many of a kind's jobs are dead-lettered: retried at `store::NEVER`, 9999-01-01.
fn dead_sql<K: Kind>() -> String {
    format!(
        "SELECT COUNT(*) FROM {} WHERE next_attempt_at >= '9999-01-01'",
        K::TABLE
    )
}

/// Notifications of one check (one per state change), by sequence number.
struct Notifications;

impl Kind for Notifications {
    type Of = NotificationJobs;
    const TABLE: &'static str = "status_check_outbox";

    fn queue(store: &dyn Store) -> &dyn JobQueue<NotificationJobs> {
        store.notification_jobs()
    }

    async fn enqueue(db: &TestDb, n: usize, t0: DateTime<Utc>) -> Vec<i64> {
        let template_id = synced_template(db, "jobs").await;
        let check = created_new(create(db, new_check(template_id, 42)).await.unwrap());
        for i in 0..n {
            let now = t0 + TimeDelta::milliseconds(i as i64);
            update(db, check.id, Fence::None, &notify, "call", now)
                .await
                .unwrap();
        }
        (1..=n as i64).collect()
    }

    fn key(payload: &status_check::store::OutboxMessage) -> i64 {
        payload.seq
    }
}

/// Subscriptions to remove, by subscription id.
struct Removal;

impl Kind for Removal {
    type Of = Removals;
    const TABLE: &'static str = "status_check_subscription_removal";

    fn queue(store: &dyn Store) -> &dyn JobQueue<Removals> {
        store.removal_jobs()
    }

    async fn enqueue(db: &TestDb, n: usize, t0: DateTime<Utc>) -> Vec<i64> {
        let mut keys = Vec::new();
        for i in 0..n as i64 {
            let now = t0 + TimeDelta::milliseconds(i);
            db.store
                .queue_subscription_removal(42, 5000 + i, "ended", now)
                .await
                .unwrap();
            keys.push(5000 + i);
        }
        keys
    }

    fn key(payload: &status_check::store::SubscriptionRemoval) -> i64 {
        payload.subscription_id
    }
}

/// A monitor's alarms, one per window that passed quietly, by window number.
struct Alarm;

impl Kind for Alarm {
    type Of = Alarms;
    const TABLE: &'static str = "status_check_monitor_action";

    fn queue(store: &dyn Store) -> &dyn JobQueue<Alarms> {
        store.alarm_jobs()
    }

    async fn enqueue(db: &TestDb, n: usize, t0: DateTime<Utc>) -> Vec<i64> {
        let watched = monitor("a", json!({}));
        let stored = created(
            db.store
                .put_monitor(&watched, MonitorSource::Api, t0)
                .await
                .unwrap(),
        );
        let mut change = open_session(991);
        change.actions = (1..=n as u32)
            .flat_map(|number| {
                watched
                    .alarms(date(), number)
                    .into_iter()
                    .map(move |alarm| NewAction {
                        session_date: date(),
                        window_number: number,
                        window_end: at("2026-11-20T09:00:00Z"),
                        alarm,
                    })
            })
            .collect();
        assert_eq!(change.actions.len(), n, "one alarm per window");
        assert!(
            db.store
                .write_monitor_state(&stored, None, &change, t0)
                .await
                .unwrap()
        );
        (1..=n as i64).collect()
    }

    fn key(payload: &status_check::store::PendingAction) -> i64 {
        i64::from(payload.action.window_number)
    }
}

on_both_backends!(
    databases:
    notifications_are_claimed_due_oldest_first_under_a_lease,
    notifications_are_done_once_by_their_lease,
    notifications_fail_retry_and_dead_letter,
    notifications_are_taken_over_when_their_lease_ran_out,
    notifications_are_purged_after_the_retention,
    notifications_are_claimed_disjoint_at_once,
    removals_are_claimed_due_oldest_first_under_a_lease,
    removals_are_done_once_by_their_lease,
    removals_fail_retry_and_dead_letter,
    removals_are_taken_over_when_their_lease_ran_out,
    removals_are_purged_after_the_retention,
    removals_are_claimed_disjoint_at_once,
    alarms_are_claimed_due_oldest_first_under_a_lease,
    alarms_are_done_once_by_their_lease,
    alarms_fail_retry_and_dead_letter,
    alarms_are_taken_over_when_their_lease_ran_out,
    alarms_are_purged_after_the_retention,
    alarms_are_claimed_disjoint_at_once,
);

/// The suite's behaviours for one kind, under the kind's name.
macro_rules! suite_for {
    ($kind:ty: $due:ident, $done:ident, $fail:ident, $taken:ident, $purged:ident, $disjoint:ident) => {
        async fn $due(db: &TestDb) {
            claimed_due_oldest_first_under_a_lease::<$kind>(db).await;
        }
        async fn $done(db: &TestDb) {
            done_once_by_their_lease::<$kind>(db).await;
        }
        async fn $fail(db: &TestDb) {
            fail_retry_and_dead_letter::<$kind>(db).await;
        }
        async fn $taken(db: &TestDb) {
            taken_over_when_their_lease_ran_out::<$kind>(db).await;
        }
        async fn $purged(db: &TestDb) {
            purged_after_the_retention::<$kind>(db).await;
        }
        async fn $disjoint(db: &TestDb) {
            claimed_disjoint_at_once::<$kind>(db).await;
        }
    };
}

suite_for!(Notifications:
    notifications_are_claimed_due_oldest_first_under_a_lease,
    notifications_are_done_once_by_their_lease,
    notifications_fail_retry_and_dead_letter,
    notifications_are_taken_over_when_their_lease_ran_out,
    notifications_are_purged_after_the_retention,
    notifications_are_claimed_disjoint_at_once);
suite_for!(Removal:
    removals_are_claimed_due_oldest_first_under_a_lease,
    removals_are_done_once_by_their_lease,
    removals_fail_retry_and_dead_letter,
    removals_are_taken_over_when_their_lease_ran_out,
    removals_are_purged_after_the_retention,
    removals_are_claimed_disjoint_at_once);
suite_for!(Alarm:
    alarms_are_claimed_due_oldest_first_under_a_lease,
    alarms_are_done_once_by_their_lease,
    alarms_fail_retry_and_dead_letter,
    alarms_are_taken_over_when_their_lease_ran_out,
    alarms_are_purged_after_the_retention,
    alarms_are_claimed_disjoint_at_once);

fn t0() -> DateTime<Utc> {
    at("2026-11-20T08:01:00Z")
}

fn seconds(n: i64) -> TimeDelta {
    TimeDelta::seconds(n)
}

async fn claim<K: Kind>(
    db: &TestDb,
    now: DateTime<Utc>,
    holder: &str,
    limit: usize,
) -> Vec<Job<<K::Of as JobKind>::Payload>> {
    claim_jobs(K::queue(db.store.as_ref()), now, &lease(holder), limit).await
}

fn keys<K: Kind>(jobs: &[Job<<K::Of as JobKind>::Payload>]) -> Vec<i64> {
    jobs.iter().map(|job| K::key(&job.payload)).collect()
}

fn ids<P>(jobs: &[Job<P>]) -> Vec<i64> {
    jobs.iter().map(|job| job.id).collect()
}

async fn complete<K: Kind>(db: &TestDb, ids: &[i64], holder: &str, now: DateTime<Utc>) -> Vec<i64> {
    K::queue(db.store.as_ref())
        .complete(ids, &lease(holder), now)
        .await
        .unwrap()
}

async fn fail<K: Kind>(
    db: &TestDb,
    id: i64,
    holder: &str,
    retry_at: Option<DateTime<Utc>>,
    error: &str,
) -> u64 {
    let failure = JobFailure {
        id,
        retry_at,
        error: error.to_owned(),
    };
    K::queue(db.store.as_ref())
        .fail(&[failure], &lease(holder))
        .await
        .unwrap()
}

async fn backlog<K: Kind>(db: &TestDb) -> i64 {
    K::queue(db.store.as_ref()).backlog().await.unwrap()
}

/// Due jobs only, oldest first, up to the limit, each with no attempt yet; a leased job is
/// not handed out again while its lease runs.
async fn claimed_due_oldest_first_under_a_lease<K: Kind>(db: &TestDb) {
    let keys_written = K::enqueue(db, 3, t0()).await;
    assert_eq!(backlog::<K>(db).await, 3);
    assert!(claim::<K>(db, t0() - seconds(1), "a", 10).await.is_empty());
    let a = claim::<K>(db, t0() + seconds(1), "a", 2).await;
    assert_eq!(keys::<K>(&a), keys_written[..2]);
    assert!(a.iter().all(|job| job.attempts == 0));
    let b = claim::<K>(db, t0() + seconds(5), "b", 10).await;
    assert_eq!(keys::<K>(&b), keys_written[2..]);
    assert!(claim::<K>(db, t0() + seconds(5), "b", 10).await.is_empty());
    assert!(claim::<K>(db, t0() + seconds(5), "b", 0).await.is_empty());
    assert_eq!(backlog::<K>(db).await, 3, "claimed is not done");
}

/// Done once, by the lease that holds the job; a batch marks only what its lease holds.
async fn done_once_by_their_lease<K: Kind>(db: &TestDb) {
    K::enqueue(db, 3, t0()).await;
    let a = claim::<K>(db, t0() + seconds(1), "a", 2).await;
    let b = claim::<K>(db, t0() + seconds(1), "b", 2).await;
    let now = t0() + seconds(2);
    assert_eq!(
        complete::<K>(db, &ids(&a), "b", now).await,
        Vec::<i64>::new()
    );
    assert_eq!(complete::<K>(db, &[a[0].id], "a", now).await, [a[0].id]);
    assert_eq!(
        complete::<K>(db, &[a[0].id], "a", now).await,
        Vec::<i64>::new()
    );
    assert_eq!(backlog::<K>(db).await, 2);
    // A batch: the job done already and one of another lease are left alone.
    assert_eq!(
        complete::<K>(db, &[a[0].id, a[1].id, b[0].id], "a", now).await,
        [a[1].id]
    );
    assert_eq!(complete::<K>(db, &ids(&b), "b", now).await, ids(&b));
    assert_eq!(backlog::<K>(db).await, 0);
    assert!(
        claim::<K>(db, t0() + seconds(3600), "c", 10)
            .await
            .is_empty(),
        "done is done"
    );
}

/// A failed job frees its lease and comes back when its retry is due, with its attempt
/// counted and its error kept (cut to the column's 1024 characters); one whose last attempt
/// failed is dead-lettered: never claimed again, no backlog, kept with its error.
async fn fail_retry_and_dead_letter<K: Kind>(db: &TestDb) {
    K::enqueue(db, 2, t0()).await;
    let a = claim::<K>(db, t0() + seconds(1), "a", 10).await;
    assert_eq!(
        complete::<K>(db, &[a[1].id], "a", t0() + seconds(1)).await,
        [a[1].id]
    );
    let error = "é".repeat(3000);
    let retry_at = Some(t0() + seconds(60));
    assert_eq!(
        fail::<K>(db, a[0].id, "b", retry_at, &error).await,
        0,
        "not b's"
    );
    assert_eq!(fail::<K>(db, a[0].id, "a", retry_at, &error).await, 1);
    assert_eq!(
        fail::<K>(db, a[0].id, "a", retry_at, &error).await,
        0,
        "freed"
    );
    let row = db.raw.texts(&row_sql::<K>(), &[&a[0].id.to_string()]).await;
    assert_eq!(
        row,
        [vec![Some("1".to_owned()), Some("é".repeat(1024))]],
        "the attempt and its error"
    );
    assert_eq!(backlog::<K>(db).await, 1);
    assert!(claim::<K>(db, t0() + seconds(59), "c", 10).await.is_empty());
    let again = claim::<K>(db, t0() + seconds(60), "c", 10).await;
    assert_eq!(
        again
            .iter()
            .map(|job| (job.id, job.attempts))
            .collect::<Vec<_>>(),
        [(a[0].id, 1)]
    );
    // Its last attempt fails: dead-lettered.
    assert_eq!(db.raw.count(&dead_sql::<K>()).await, 0);
    assert_eq!(fail::<K>(db, a[0].id, "c", None, "gave up").await, 1);
    assert_eq!(
        db.raw.count(&dead_sql::<K>()).await,
        1,
        "retried at 9999-01-01"
    );
    assert_eq!(backlog::<K>(db).await, 0);
    let far = at("9000-01-01T00:00:00Z");
    assert!(claim::<K>(db, far, "d", 10).await.is_empty());
    let row = db.raw.texts(&row_sql::<K>(), &[&a[0].id.to_string()]).await;
    assert_eq!(
        row,
        [vec![Some("2".to_owned()), Some("gave up".to_owned())]]
    );
}

/// A lease that ran out: another claimer takes the job over (its attempts unchanged), and the
/// older lease can neither mark it done nor failed.
async fn taken_over_when_their_lease_ran_out<K: Kind>(db: &TestDb) {
    K::enqueue(db, 1, t0()).await;
    let b = claim::<K>(db, t0() + seconds(5), "b", 10).await;
    assert!(
        claim::<K>(db, t0() + seconds(35), "c", 10).await.is_empty(),
        "b's until 08:01:35"
    );
    let c = claim::<K>(db, t0() + seconds(36), "c", 10).await;
    assert_eq!(
        c.iter()
            .map(|job| (job.id, job.attempts))
            .collect::<Vec<_>>(),
        [(b[0].id, 0)]
    );
    let late = t0() + seconds(37);
    assert_eq!(
        complete::<K>(db, &ids(&b), "b", late).await,
        Vec::<i64>::new()
    );
    assert_eq!(fail::<K>(db, b[0].id, "b", Some(late), "late").await, 0);
    assert_eq!(complete::<K>(db, &ids(&c), "c", late).await, ids(&c));
}

/// Done jobs older than the retention are purged in bounded batches; jobs not done and newer
/// ones stay.
async fn purged_after_the_retention<K: Kind>(db: &TestDb) {
    K::enqueue(db, 5, t0()).await;
    let claimed = claim::<K>(db, t0() + seconds(10), "relay", 10).await;
    assert_eq!(claimed.len(), 5);
    // Four done, at 08:01:20 .. 08:01:23; one left.
    for (i, job) in claimed.iter().take(4).enumerate() {
        let now = t0() + seconds(20 + i as i64);
        assert_eq!(complete::<K>(db, &[job.id], "relay", now).await, [job.id]);
    }
    let queue = K::queue(db.store.as_ref());
    let before = |cut: i64| t0() + seconds(cut);
    assert_eq!(queue.purge(before(20), 10).await.unwrap(), 0);
    assert_eq!(queue.purge(before(23), 2).await.unwrap(), 2, "a batch");
    assert_eq!(queue.purge(before(23), 10).await.unwrap(), 1);
    assert_eq!(queue.purge(before(23), 10).await.unwrap(), 0);
    assert_eq!(backlog::<K>(db).await, 1, "the one not done stays");
    assert_eq!(
        queue.purge(before(3600), 10).await.unwrap(),
        1,
        "the newest done one"
    );
    let left = claim::<K>(db, t0() + seconds(60), "other", 10).await;
    assert_eq!(ids(&left), [claimed[4].id]);
}

/// Two claimers at once get disjoint sets, and together with a third every job once.
async fn claimed_disjoint_at_once<K: Kind>(db: &TestDb) {
    let written: BTreeSet<i64> = K::enqueue(db, 12, t0()).await.into_iter().collect();
    let now = t0() + seconds(1);
    let (a, b) = tokio::join!(claim::<K>(db, now, "a", 5), claim::<K>(db, now, "b", 5));
    let set = |jobs: &[Job<<K::Of as JobKind>::Payload>]| -> BTreeSet<i64> {
        keys::<K>(jobs).into_iter().collect()
    };
    let (a, b) = (set(&a), set(&b));
    assert_eq!((a.len(), b.len()), (5, 5));
    assert!(a.is_disjoint(&b), "{a:?} / {b:?}");
    let rest = claim::<K>(db, now, "c", 100).await;
    assert_eq!(rest.len(), 2);
    let union: BTreeSet<i64> = a.iter().chain(&b).copied().chain(set(&rest)).collect();
    assert_eq!(union, written);
}
