//! `Store::update_check` on both backends: a decision appends records, changes the state and
//! notifies in one write, only on the check it was made on.

use std::time::Duration;

use super::*;

use crate::fault_stack::PrivateMariadb;
use crate::harness::on_both_backends;
use crate::support::{Raw, lease};

on_both_backends!(
    databases:
    update_check_appends_records_changes_state_and_notifies,
    a_decision_on_a_changed_check_writes_nothing,
    concurrent_updates_of_one_check_each_see_the_other,
    an_update_repeating_an_event_is_refused_whole,
);

async fn update_check_appends_records_changes_state_and_notifies(db: &TestDb) {
    let template_id = synced_template(db, "update").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    delivered(db, 42, &[6001, 6002, 6003]).await;
    let mut expected = created.clone();
    for (i, event_id) in [6001, 6002, 6003].into_iter().enumerate() {
        let step = i64::try_from(i).unwrap();
        let now = at("2026-11-20T08:01:00.500Z") + TimeDelta::seconds(step);
        let last = i == 2;
        let decide = move |check: &StoredCheck| {
            Some(CheckUpdate {
                phase: if last {
                    CheckPhase::Completed
                } else {
                    CheckPhase::Future
                },
                result: if last {
                    CheckResult::Pass
                } else {
                    CheckResult::Pending
                },
                next_step_id: last.then_some(10),
                new_records: vec![Record {
                    result: if last {
                        CheckResult::Pass
                    } else {
                        CheckResult::Pending
                    },
                    ..future_record(next_order(check), event_id)
                }],
                deadline: pending(
                    check,
                    if last {
                        CheckPhase::Completed
                    } else {
                        CheckPhase::Future
                    },
                ),
                release_lease: last,
                notify: true,
                remove_subscription: false,
            })
        };
        let call_ref = format!("call-{i}");
        let check = updated(
            update(db, created.id, Fence::None, &decide, &call_ref, now)
                .await
                .unwrap(),
        );
        let decided = decide(&expected).unwrap().new_records.remove(0);
        let new_record = as_stored(decided.clone());
        assert_ne!(
            new_record, decided,
            "the times are finer than the store keeps"
        );
        assert_eq!(new_record.order, 4 + u32::try_from(i).unwrap());
        expected.records.push(new_record);
        expected.notification_seq = step + 1;
        expected.updated_at = now;
        if last {
            expected.phase = CheckPhase::Completed;
            expected.result = CheckResult::Pass;
            expected.next_step_id = Some(10);
        }
        assert_eq!(check, expected);
        assert_eq!(db.store.get_check(created.id).await.unwrap(), Some(check));
        // The deadline stays while the check is open and goes when it ends.
        let pending = (!last).then(deadline);
        assert_eq!(db.raw.schedule(created.id).await, (pending, None));
    }
    let rows = db.raw.outbox(created.id).await;
    assert_eq!(rows.len(), 3);
    for (i, row) in rows.iter().enumerate() {
        let step = i64::try_from(i).unwrap();
        let now = at("2026-11-20T08:01:00.500Z") + TimeDelta::seconds(step);
        assert_eq!(row.seq, step + 1);
        assert_eq!(row.call_ref, format!("call-{i}"));
        assert_eq!(row.attempts, 0);
        assert_eq!(row.created_at, now);
        assert_eq!(row.next_attempt_at, now);
        assert_eq!(row.sent_at, None);
        assert_eq!(row.last_error, None);
    }
    let id = created.id;
    assert_eq!(
        rows.iter().map(|r| r.payload.as_str()).collect::<Vec<_>>(),
        [
            format!("check {id} seq 1: FUTURE PENDING None with 4 records"),
            format!("check {id} seq 2: FUTURE PENDING None with 5 records"),
            format!("check {id} seq 3: COMPLETED PASS Some(10) with 6 records"),
        ]
    );
    assert_eq!(db.store.notification_jobs().backlog().await.unwrap(), 3);
}

/// A decision is written only on the check it was made on: one made on an older read
/// (another change committed since) is refused as `Stale` and writes nothing; a missing check
/// or a lease the poller does not hold writes nothing either.
async fn a_decision_on_a_changed_check_writes_nothing(db: &TestDb) {
    let template_id = synced_template(db, "stale").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    delivered(db, 42, &[6001, 6002]).await;
    let now = at("2026-11-20T08:01:00Z");
    let first = updated(
        update(db, created.id, Fence::None, &append(6001), "first", now)
            .await
            .unwrap(),
    );
    let rows = check_rows(db).await;
    let on_old_read = append(6002)(&created).unwrap();
    assert_eq!(
        write_on(db, &created, Fence::None, on_old_read, "late", now)
            .await
            .unwrap(),
        UpdateOutcome::Stale
    );
    // A change of phase or result alone (no record) makes a read stale too.
    let completed = updated(
        write_on(
            db,
            &first,
            Fence::None,
            complete(&first).unwrap(),
            "end",
            now,
        )
        .await
        .unwrap(),
    );
    let on_first = append(6002)(&first).unwrap();
    assert_eq!(
        write_on(db, &first, Fence::None, on_first, "late", now)
            .await
            .unwrap(),
        UpdateOutcome::Stale
    );
    assert_eq!(
        db.store.get_check(created.id).await.unwrap(),
        Some(completed.clone())
    );
    assert_eq!(check_rows(db).await, rows);
    assert_eq!(outbox_rows(db).await, 1, "only the completion notified");

    let decision = notify(&completed).unwrap();
    let missing = StoredCheck {
        id: 999_999,
        ..completed.clone()
    };
    assert_eq!(
        write_on(db, &missing, Fence::None, decision.clone(), "late", now)
            .await
            .unwrap(),
        UpdateOutcome::NotFound
    );
    let nobody = lease("nobody");
    assert_eq!(
        write_on(db, &completed, Fence::Lease(&nobody), decision, "late", now)
            .await
            .unwrap(),
        UpdateOutcome::Fenced
    );
    assert_eq!(
        db.store.get_check(created.id).await.unwrap(),
        Some(completed)
    );
    assert_eq!(outbox_rows(db).await, 1);
}

async fn concurrent_updates_of_one_check_each_see_the_other(db: &TestDb) {
    let template_id = synced_template(db, "concurrent-updates").await;
    let now = at("2026-11-20T08:01:00Z");
    for round in 0..8 {
        let created = created_new(
            create(db, new_check(template_id, 200 + round))
                .await
                .unwrap(),
        );
        delivered(db, 200 + round, &[7000 + round * 10, 7001 + round * 10]).await;
        let (first, second) = (append(7000 + round * 10), append(7001 + round * 10));
        let (a, b) = tokio::join!(
            update(db, created.id, Fence::None, &first, "a", now),
            update(db, created.id, Fence::None, &second, "b", now)
        );
        let (a, b) = (updated(a.unwrap()), updated(b.unwrap()));
        // One of them went second and saw the other's record.
        assert_eq!(
            (
                a.records.len().min(b.records.len()),
                a.records.len().max(b.records.len())
            ),
            (4, 5),
            "round {round}"
        );
        let stored = db.store.get_check(created.id).await.unwrap().unwrap();
        // The one that went second returned the check as it is now.
        let second = if a.records.len() == 5 { &a } else { &b };
        assert_eq!(second, &stored, "round {round}");
        let orders: Vec<u32> = stored.records.iter().map(|r| r.order).collect();
        assert_eq!(orders, [1, 2, 3, 4, 5], "round {round}");
        let events: BTreeSet<i64> = stored.records.iter().map(|r| r.event.id).collect();
        assert!(
            events.contains(&(7000 + round * 10)) && events.contains(&(7001 + round * 10)),
            "round {round}: {events:?}"
        );
    }
}

async fn an_update_repeating_an_event_is_refused_whole(db: &TestDb) {
    let template_id = synced_template(db, "repeat").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    delivered(db, 42, &[6001, 6002]).await;
    let rows = check_rows(db).await;
    let now = at("2026-11-20T08:01:00Z");
    // Each decision also ends the check and notifies, so a partial write would show.
    let repeating = |records: fn(u32) -> Vec<Record>| {
        move |check: &StoredCheck| {
            Some(CheckUpdate {
                new_records: records(next_order(check)),
                ..complete(check).unwrap()
            })
        }
    };
    let cases: [fn(u32) -> Vec<Record>; 3] = [
        // An event the check holds already (the database's unique key refuses it).
        |order| vec![record(order, RecordPhase::Future, 5002, "CHARGING_STOPPED")],
        // One event twice in one update.
        |order| {
            vec![
                record(order, RecordPhase::Future, 6001, "CHARGING_STARTED"),
                record(order + 1, RecordPhase::Future, 6001, "CHARGING_STARTED"),
            ]
        },
        // Orders that do not follow the stored ones.
        |order| {
            vec![record(
                order + 1,
                RecordPhase::Future,
                6002,
                "CHARGING_STARTED",
            )]
        },
    ];
    for (i, records) in cases.into_iter().enumerate() {
        let decide = repeating(records);
        let error = update(db, created.id, Fence::None, &decide, "call", now)
            .await
            .unwrap_err();
        assert!(
            matches!(error, StoreError::Conflict(_)),
            "case {i}: {error:?}"
        );
        assert_eq!(
            db.store.get_check(created.id).await.unwrap(),
            Some(created.clone()),
            "case {i}"
        );
        assert_eq!(check_rows(db).await, rows, "case {i}");
        assert_eq!(outbox_rows(db).await, 0, "case {i}");
        assert_eq!(db.raw.schedule(created.id).await, (Some(deadline()), None));
    }
}

/// MySQL only (SQLite has one writer at a time): a change of one check, stopped in the middle
/// of its transaction, does not hold up a change of another. Under REPEATABLE READ the first's
/// read of its last record locked the index gap after that record, where the second check's
/// first record goes, and the second waited for the first to commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_changes_of_two_checks_do_not_wait_for_each_other() {
    // Bounded well past the waits below, so that a slow machine cannot time the held change out.
    let Some(db) = crate::support::mysql_db_bounded(Duration::from_secs(30)).await else {
        return;
    };
    let Raw::Mysql(pool) = &db.raw else {
        unreachable!("a MySQL test database")
    };
    // A server logging statements refuses READ COMMITTED writes: there the changes keep
    // REPEATABLE READ and do wait (the next test writes on such a server).
    let logs_statements = "SELECT CAST(@@log_bin AND @@binlog_format = 'STATEMENT' AS SIGNED)";
    if db.raw.count(logs_statements).await == 1 {
        eprintln!("skipped: TEST_MYSQL_URL's server logs statements (binlog_format=STATEMENT)");
        return;
    }
    let template_id = synced_template(&db, "disjoint").await;
    let held = created_new(create(&db, new_check(template_id, 310)).await.unwrap());
    // Created second and without records: its first record sorts after all of `held`'s.
    let other = created_new(
        create(
            &db,
            NewCheck {
                records: Vec::new(),
                ..new_check(template_id, 311)
            },
        )
        .await
        .unwrap(),
    );
    delivered(&db, 310, &[6101]).await;
    delivered(&db, 311, &[6102]).await;
    let now = at("2026-11-20T08:01:00Z");

    // The first change stops at its record: the foreign key's check waits for the event's
    // row, which another session holds.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM incoming_event WHERE id = 6101 FOR UPDATE")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let first = write_on(
        &db,
        &held,
        Fence::None,
        append(6101)(&held).unwrap(),
        "held",
        now,
    );
    let meanwhile = async {
        let waiting = "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND INFO LIKE 'INSERT INTO status_check_record %'";
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while db.raw.count(waiting).await == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the first change never reached its record"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = tokio::time::timeout(
            Duration::from_secs(3),
            write_on(
                &db,
                &other,
                Fence::None,
                append(6102)(&other).unwrap(),
                "free",
                now,
            ),
        )
        .await
        .expect("the other check's change waited for the stopped one");
        assert_eq!(updated(second.unwrap()).records.len(), 1);
        holder.rollback().await.unwrap();
    };
    let (first, ()) = tokio::join!(first, meanwhile);
    let first = updated(first.unwrap());
    assert_eq!(first.records.len(), held.records.len() + 1);
    assert_eq!(
        db.store.get_check(held.id).await.unwrap().as_ref(),
        Some(&first)
    );
}

/// On a server that logs statements as statements (`binlog_format=STATEMENT`), which refuses
/// InnoDB writes at READ COMMITTED, the first change is refused at that level and retried at
/// REPEATABLE READ, where the changes after it stay: they all write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_changes_of_checks_write_where_the_binary_log_logs_statements() {
    if crate::support::mysql_skipped() {
        return;
    }
    let server = PrivateMariadb::start_logging_statements().await;
    let db = crate::support::mysql_db_at(&server.url()).await;
    let template_id = synced_template(&db, "statement-binlog").await;
    let created = created_new(create(&db, new_check(template_id, 320)).await.unwrap());
    delivered(&db, 320, &[6201, 6202]).await;
    let now = at("2026-11-20T08:01:00Z");
    for event in [6201, 6202] {
        let changed = update(&db, created.id, Fence::None, &append(event), "call", now)
            .await
            .unwrap_or_else(|e| panic!("the change of event {event} writes: {e:?}"));
        assert_eq!(
            updated(changed).records.last().map(|r| r.event.id),
            Some(event)
        );
    }
}
