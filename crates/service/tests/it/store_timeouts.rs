//! The operation timeout on MariaDB (`DB_OPERATION_TIMEOUT_SECS`, SPEC §13): an operation that
//! cannot finish in time fails at the bound, whole, and the connection it was stuck on is not
//! kept — the store goes on answering while the server still holds the abandoned statements.
//! The bound holds for every operation, the checks' (`Store`), the monitors' (`MonitorStore`)
//! and the leased job queues' (`JobQueue`): on a frozen server (SIGSTOP) each fails at the
//! bound, and once the server is continued the store works again.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use chrono::TimeDelta;
use serde_json::json;
use status_check::jobs::JobFailure;
use status_check::store::{
    BatchedUpdate, CheckFilter, Created, Fence, MonitorPut, MonitorSource, Notifications,
    StateChange, StoreError, UnknownDelivery,
};
use status_check_engine::lifecycle::NextSteps;

use crate::fault_stack::PrivateMariadb;
use crate::monitor_store::{at, date, monitor};
use crate::store::{new_check, notify, render, synced_template};
use crate::support::{self, Raw, TestDb, lease};

/// Another session holding the incoming event `event` (`FOR UPDATE`) until the transaction
/// returned is rolled back: a create recording it waits on that lock in its record's
/// foreign-key check. The raw pool, for the test's own reads.
async fn hold_incoming_event(
    db: &TestDb,
    event: i64,
) -> (&sqlx::MySqlPool, sqlx::Transaction<'static, sqlx::MySql>) {
    let Raw::Mysql(pool) = &db.raw else {
        unreachable!("a MySQL test database")
    };
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM incoming_event WHERE id = ? FOR UPDATE")
        .bind(event)
        .fetch_all(&mut *blocker)
        .await
        .unwrap();
    (pool, blocker)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operation_past_the_timeout_fails_whole_and_frees_its_connection() {
    let limit = Duration::from_secs(1);
    let Some(db) = support::mysql_db_bounded(limit).await else {
        return;
    };
    let template = synced_template(&db, "bounded").await;
    let base = new_check(template, 42);
    db.neighbours.for_check(&base).await;
    let event = base.records[0].event.id;
    // Another session holds the incoming event every attempt records: each attempt inserts its
    // check row, then waits on that lock in its record's foreign-key check.
    let (_, blocker) = hold_incoming_event(&db, event).await;

    // At once, more abandoned attempts than the pool has connections (10): the last ones wait
    // for a connection and time out too.
    let attempt = |n: i64| {
        let mut check = base.clone();
        check.key.scheduled_id = 1000 + n;
        check
    };
    let started = Instant::now();
    let results = futures_util::future::join_all((0..12).map(|n| {
        let store = db.store.clone();
        let check = attempt(n);
        async move { store.create_check(check).await }
    }))
    .await;
    let took = started.elapsed();
    assert!(took >= limit && took < limit * 3, "took {took:?}");
    for (n, result) in results.iter().enumerate() {
        assert!(
            matches!(
                result,
                Err(StoreError::TimedOut {
                    operation: "create_check",
                    ..
                })
            ),
            "attempt {n}: {result:?}"
        );
    }
    // The server still holds ten of those statements, but none holds a pool connection: the
    // store answers (a pool still held would fail each at the bound). New connections on a
    // loaded machine may take a while: the time is bounded loosely.
    let started = Instant::now();
    db.store.ping().await.expect("the store answers");
    assert_eq!(db.store.get_check(1).await.unwrap(), None);
    assert!(
        started.elapsed() < limit * 3,
        "took {:?}",
        started.elapsed()
    );

    // Released, the abandoned sessions find their connections gone and roll back: the first
    // attempt's request key is free, nothing of any attempt was committed.
    blocker.rollback().await.unwrap();
    let created = db.store.create_check(attempt(0)).await.unwrap();
    assert!(matches!(created, Created::New(_)), "{created:?}");
    assert_eq!(
        db.raw.count("SELECT COUNT(*) FROM status_check").await,
        1,
        "only the last create is stored"
    );
}

/// A statement of an operation abandoned at the bound does not go on waiting for its lock on
/// the server (the default lock wait is 50 s, while its connection is gone): each session
/// waits at most half the bound, so its wait ends soon after the operation did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_operation_stops_waiting_for_its_lock() {
    let limit = Duration::from_secs(4);
    let Some(db) = support::mysql_db_bounded(limit).await else {
        return;
    };
    let template = synced_template(&db, "lock-wait").await;
    let check = new_check(template, 42);
    db.neighbours.for_check(&check).await;
    let (pool, blocker) = hold_incoming_event(&db, check.records[0].event.id).await;
    let result = db.store.create_check(check).await;
    assert!(
        matches!(result, Err(StoreError::TimedOut { .. })),
        "{result:?}"
    );
    // The blocker still holds the lock; no session of this database waits for it any more
    // within a lock wait (2 s) after the bound.
    // (The test user sees its own sessions: the record insert that waits on the event's lock.)
    let waiting = "SELECT COUNT(*) FROM information_schema.processlist \
                   WHERE db = DATABASE() AND id <> CONNECTION_ID() \
                   AND info LIKE 'INSERT INTO status_check_record%'";
    let deadline = Instant::now() + Duration::from_secs(4);
    loop {
        let count: i64 = sqlx::query_scalar(waiting).fetch_one(pool).await.unwrap();
        if count == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{count} abandoned statements still wait for the lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    blocker.rollback().await.unwrap();
}

/// The operation timeout of the frozen-database tests: long enough that the first operation
/// after the thaw (new connections included) finishes within it on a loaded machine.
const FROZEN_LIMIT: Duration = Duration::from_secs(2);

/// A MariaDB server of the test's own (to stop and continue) with a fresh, migrated database
/// whose every store operation is bounded by [`FROZEN_LIMIT`]; `None` when MySQL tests are
/// skipped.
async fn private_database() -> Option<(PrivateMariadb, TestDb)> {
    if support::mysql_skipped() {
        return None;
    }
    let server = PrivateMariadb::start().await;
    let db = support::mysql_db_at_bounded(&server.url(), FROZEN_LIMIT).await;
    Some((server, db))
}

/// `result` is the timeout of `operation`.
fn assert_timed_out<T: Debug>(result: &Result<T, StoreError>, operation: &str) {
    assert!(
        matches!(result, Err(StoreError::TimedOut { operation: op, after })
            if *op == operation && *after == FROZEN_LIMIT),
        "{operation}: {result:?}"
    );
}

/// `operations`' results; fails the test if they are not all in long after the bound (an
/// operation without it would wait for the frozen server forever).
async fn unless_hung<T>(operations: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(FROZEN_LIMIT * 5, operations)
        .await
        .expect("an operation on the frozen database did not end: it is not bounded")
}

/// Answered at the bound: not before it (the server really answered nothing), not much after.
fn assert_at_the_bound(took: Duration) {
    assert!(
        took >= FROZEN_LIMIT && took < FROZEN_LIMIT * 3,
        "took {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_operations_on_a_frozen_database_fail_at_the_bound_then_work_again() {
    let Some((server, db)) = private_database().await else {
        return;
    };
    let template = synced_template(&db, "frozen").await;
    let first = new_check(template, 42);
    db.neighbours.for_check(&first).await;
    let Created::New(stored) = db.store.create_check(first.clone()).await.unwrap() else {
        panic!("a new check")
    };
    let mut second = first.clone();
    second.key.scheduled_id += 1;

    let key = first.key.clone();
    let (robot, sub) = (first.key.robot_id, 991);
    let t0 = first.now;
    let decision = notify(&stored).unwrap();
    let notifications = Notifications::rendered_by(&render);
    let batch = [BatchedUpdate {
        current: &stored,
        fence: Fence::None,
        update: decision.clone(),
        call_ref: "frozen",
    }];
    let alone = BatchedUpdate {
        current: &stored,
        fence: Fence::None,
        update: decision,
        call_ref: "f",
    };
    let holder = lease("frozen");
    let steps = NextSteps {
        pass: 10,
        fail: 11,
        unknown: None,
    };
    let names = ["CHARGING_STARTED".to_owned()];
    let definition = crate::store::template("frozen-sync", 1);
    let grace = TimeDelta::seconds(60);
    let unknown = UnknownDelivery {
        robot_id: robot,
        subscription_id: sub,
        event_name: &names[0],
        event_created_at: t0,
    };
    let (ids, pairs, filter) = ([stored.id], [(robot, sub)], CheckFilter::default());
    let store = &db.store;

    let frozen = server.freeze();
    let started = Instant::now();
    let (read, write) = unless_hung(async {
        tokio::join!(
            db.store.get_check(stored.id),
            db.store.create_check(second.clone())
        )
    })
    .await;
    assert_at_the_bound(started.elapsed());
    // Every other operation of the checks' half, at once, each at the bound too.
    let started = Instant::now();
    let (
        (ping, clock, creates, reads, by_key, open, by_sub, by_subs),
        (list, notes, alarms, sync, versions, by_id, unadopted, adopt),
        (update, updates, claim, stale, removal, intent, forget, unknown, purge),
    ) = unless_hung(async {
        tokio::join!(
            async {
                tokio::join!(
                    store.ping(),
                    store.read_database_clock(3),
                    store.create_checks(std::slice::from_ref(&second)),
                    store.get_checks(&ids),
                    store.find_check(&key),
                    store.open_checks_at_step(robot, key.step_id),
                    store.find_by_subscription(robot, sub),
                    store.find_by_subscriptions(&pairs),
                )
            },
            async {
                tokio::join!(
                    store.list_checks(&filter, 10),
                    store.check_notifications(stored.id),
                    store.session_alarms(robot, "frozen", t0.date_naive()),
                    store.sync_template(&definition, &|_| true, t0),
                    store.template_versions("frozen"),
                    store.template_by_id(template),
                    store.unadopted_checks(0, 10),
                    store.adopt_check(stored.id, steps, t0),
                )
            },
            async {
                tokio::join!(
                    store.update_check(alone, &notifications, t0),
                    store.update_checks(&batch, &notifications, t0),
                    store.claim_due(t0, &holder, 10),
                    store.release_stale_leases(t0, t0),
                    store.queue_subscription_removal(robot, sub, "ended", t0),
                    store.record_subscribe_intent(robot, &names, None, t0),
                    store.forget_subscribe_intent(1),
                    store.claim_unknown_subscription(unknown, grace, t0),
                    store.purge_subscribe_intents(t0, 10),
                )
            },
        )
    })
    .await;
    assert_at_the_bound(started.elapsed());
    assert_timed_out(&read, "get_check");
    assert_timed_out(&write, "create_check");
    assert_timed_out(&ping, "ping");
    assert_timed_out(&clock, "read_database_clock");
    assert_timed_out(&creates, "create_checks");
    assert_timed_out(&reads, "get_checks");
    assert_timed_out(&by_key, "find_check");
    assert_timed_out(&open, "open_checks_at_step");
    assert_timed_out(&by_sub, "find_by_subscription");
    assert_timed_out(&by_subs, "find_by_subscriptions");
    assert_timed_out(&list, "list_checks");
    assert_timed_out(&notes, "check_notifications");
    assert_timed_out(&alarms, "session_alarms");
    assert_timed_out(&sync, "sync_template");
    assert_timed_out(&versions, "template_versions");
    assert_timed_out(&by_id, "template_by_id");
    assert_timed_out(&unadopted, "unadopted_checks");
    assert_timed_out(&adopt, "adopt_check");
    assert_timed_out(&update, "update_check");
    assert_timed_out(&updates, "update_checks");
    assert_timed_out(&claim, "claim_due");
    assert_timed_out(&stale, "release_stale_leases");
    assert_timed_out(&removal, "queue_subscription_removal");
    assert_timed_out(&intent, "record_subscribe_intent");
    assert_timed_out(&forget, "forget_subscribe_intent");
    assert_timed_out(&unknown, "claim_unknown_subscription");
    assert_timed_out(&purge, "purge_subscribe_intents");
    frozen.thaw();

    assert_eq!(db.store.get_check(stored.id).await.unwrap(), Some(stored));
    let created = db.store.create_check(second).await.unwrap();
    assert!(matches!(created, Created::New(_)), "{created:?}");
    assert_eq!(
        db.raw.count("SELECT COUNT(*) FROM status_check").await,
        2,
        "the abandoned create wrote nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_operations_on_a_frozen_database_fail_at_the_bound_then_work_again() {
    let Some((server, db)) = private_database().await else {
        return;
    };
    let t0 = at("2026-11-20T07:00:00Z");
    let rule = monitor("frozen", json!({}));
    let MonitorPut::Created(stored) = db
        .store
        .put_monitor(&rule, MonitorSource::Api, t0)
        .await
        .unwrap()
    else {
        panic!("a new monitor")
    };
    let changed = monitor("frozen", json!({"window": "3h"}));
    let change = StateChange {
        window: None,
        subscription_id: Some(991),
        due_at: t0 + TimeDelta::hours(1),
        release_lease: true,
        actions: Vec::new(),
        remove_subscription: None,
        windows: Vec::new(),
    };

    // Every monitor operation at once, each at the bound.
    let held = lease("lease-1");
    let frozen = server.freeze();
    let started = Instant::now();
    let store = &db.store;
    let (put, get, list, delete, claim, by_subscription, write, release, last, windows, purge) =
        unless_hung(async {
            tokio::join!(
                store.put_monitor(&changed, MonitorSource::Api, t0),
                store.get_monitor(42, "frozen"),
                store.list_monitors(),
                store.delete_monitor(42, "frozen", t0),
                store.claim_due_monitors(t0, &held, t0, 10),
                store.find_monitor_by_subscription(42, 991),
                store.write_monitor_state(&stored, None, &change, t0),
                store.release_monitor(stored.id, &held, t0, None, t0),
                store.last_alarm_number(42, "frozen", date()),
                store.monitor_windows(42, "frozen", date()),
                store.purge_monitor_windows(t0, 10),
            )
        })
        .await;
    assert_at_the_bound(started.elapsed());
    assert_timed_out(&put, "put_monitor");
    assert_timed_out(&get, "get_monitor");
    assert_timed_out(&list, "list_monitors");
    assert_timed_out(&delete, "delete_monitor");
    assert_timed_out(&claim, "claim_due_monitors");
    assert_timed_out(&by_subscription, "find_monitor_by_subscription");
    assert_timed_out(&write, "write_monitor_state");
    assert_timed_out(&release, "release_monitor");
    assert_timed_out(&last, "last_alarm_number");
    assert_timed_out(&windows, "monitor_windows");
    assert_timed_out(&purge, "purge_monitor_windows");
    frozen.thaw();

    // Nothing abandoned was written — the monitor is as created: not changed, deleted or
    // claimed, its state at the same version — and the store works again.
    assert_eq!(
        store.get_monitor(42, "frozen").await.unwrap(),
        Some(stored.clone())
    );
    assert!(
        store
            .write_monitor_state(&stored, None, &change, t0)
            .await
            .unwrap(),
        "the state is still at the version it was read at"
    );
    let put = store
        .put_monitor(&changed, MonitorSource::Api, t0)
        .await
        .unwrap();
    assert!(matches!(put, MonitorPut::Replaced(_)), "{put:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_queue_operations_on_a_frozen_database_fail_at_the_bound_then_work_again() {
    let Some((server, db)) = private_database().await else {
        return;
    };
    let t0 = at("2026-11-20T07:00:00Z");
    db.store
        .queue_subscription_removal(42, 991, "ended", t0)
        .await
        .unwrap();
    let holder = lease("frozen");
    let until = t0 + TimeDelta::seconds(30);
    let failure = JobFailure {
        id: 1,
        retry_at: Some(until),
        error: "503".to_owned(),
    };

    let frozen = server.freeze();
    let started = Instant::now();
    let queue = db.store.removal_jobs();
    let (claim, complete, fail, backlog, purge) = unless_hung(async {
        tokio::join!(
            queue.claim(t0, &holder, until, 10),
            queue.complete(&[1], &holder, t0),
            queue.fail(std::slice::from_ref(&failure), &holder),
            queue.backlog(),
            queue.purge(t0, 10),
        )
    })
    .await;
    assert_at_the_bound(started.elapsed());
    assert_timed_out(&claim, "claim_jobs");
    assert_timed_out(&complete, "complete_jobs");
    assert_timed_out(&fail, "fail_jobs");
    assert_timed_out(&backlog, "job_backlog");
    assert_timed_out(&purge, "purge_jobs");
    frozen.thaw();

    // The abandoned claim leased nothing: the removal is claimed now, once.
    let claimed = queue.claim(t0, &holder, until, 10).await.unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|job| job.payload.subscription_id)
            .collect::<Vec<_>>(),
        [991]
    );
    assert_eq!(
        queue.complete(&[claimed[0].id], &holder, t0).await.unwrap(),
        [claimed[0].id]
    );
    assert_eq!(queue.backlog().await.unwrap(), 0);
}
