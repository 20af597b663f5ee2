//! `Store::update_checks` (group commit) on both backends: a batch is written in one
//! transaction, each item as `update_check` would write it alone.

use status_check::store::BatchedUpdate;

use super::*;

use crate::harness::on_both_backends;

/// Three open checks of robots 42, 43 and 44; events `robot * 100 + 7001` and `+ 7002` of
/// each delivered.
pub(crate) async fn three_checks(db: &TestDb, name: &str) -> Vec<StoredCheck> {
    let template_id = synced_template(db, name).await;
    let mut checks = Vec::new();
    for robot in [42, 43, 44] {
        checks.push(created_new(
            create(db, new_check(template_id, robot)).await.unwrap(),
        ));
        delivered(db, robot, &[robot * 100 + 7001, robot * 100 + 7002]).await;
    }
    checks
}

pub(crate) fn item<'a>(current: &'a StoredCheck, update: CheckUpdate) -> BatchedUpdate<'a> {
    BatchedUpdate {
        current,
        fence: Fence::None,
        update,
        call_ref: "batch",
    }
}

async fn a_batch_writes_each_item_as_alone(db: &TestDb) {
    let checks = three_checks(db, "batch").await;
    let now = at("2026-11-20T08:01:00Z");
    // The third check changes after it was read: its item is stale, the others are written.
    let moved = updated(
        write_on(
            db,
            &checks[2],
            Fence::None,
            append(11_401)(&checks[2]).unwrap(),
            "c",
            now,
        )
        .await
        .unwrap(),
    );
    let outbox_before = outbox_rows(db).await;
    let batch = [
        item(&checks[0], append(11_201)(&checks[0]).unwrap()),
        item(&checks[1], notify(&checks[1]).unwrap()),
        item(&checks[2], append(11_402)(&checks[2]).unwrap()),
    ];
    let outcomes = db
        .store
        .update_checks(&batch, &notifications(), now)
        .await
        .unwrap();
    let [first, second, third]: [UpdateOutcome; 3] = outcomes.try_into().unwrap();
    assert_eq!(third, UpdateOutcome::Stale);
    let first = updated(first);
    let second = updated(second);
    // What each outcome says is what a fresh read says.
    assert_eq!(
        db.store.get_check(checks[0].id).await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(
        db.store.get_check(checks[1].id).await.unwrap(),
        Some(second.clone())
    );
    assert_eq!(db.store.get_check(checks[2].id).await.unwrap(), Some(moved));
    assert_eq!(first.records.len(), checks[0].records.len() + 1);
    assert_eq!(second.notification_seq, checks[1].notification_seq + 1);
    assert_eq!(outbox_rows(db).await, outbox_before + 1, "one notification");
}

async fn a_batch_with_a_refused_item_writes_nothing(db: &TestDb) {
    let checks = three_checks(db, "batch-refused").await;
    let rows = check_rows(db).await;
    let now = at("2026-11-20T08:01:00Z");
    // The second item repeats an event its check holds: the database refuses it, and the
    // first item — fine on its own — is not written either.
    let repeating = repeating_an_event(&checks[1]);
    let batch = [
        item(&checks[0], append(11_201)(&checks[0]).unwrap()),
        item(&checks[1], repeating),
    ];
    let error = db
        .store
        .update_checks(&batch, &notifications(), now)
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(check_rows(db).await, rows);
    assert_eq!(outbox_rows(db).await, 0);
    for check in &checks {
        assert_eq!(
            db.store.get_check(check.id).await.unwrap().as_ref(),
            Some(check)
        );
    }
}

async fn a_batch_naming_a_check_twice_is_refused(db: &TestDb) {
    let checks = three_checks(db, "batch-twice").await;
    let rows = check_rows(db).await;
    let batch = [
        item(&checks[0], append(11_201)(&checks[0]).unwrap()),
        item(&checks[0], notify(&checks[0]).unwrap()),
    ];
    let error = db
        .store
        .update_checks(&batch, &notifications(), at("2026-11-20T08:01:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(check_rows(db).await, rows);
}

/// Creates in one transaction: each as alone — a key taken by an earlier item of the same
/// batch is that check — and a refused item fails the batch with nothing written.
async fn creates_in_one_transaction(db: &TestDb) {
    let template_id = synced_template(db, "batch-create").await;
    let checks: Vec<NewCheck> = [42, 43, 42]
        .into_iter()
        .map(|robot| new_check(template_id, robot))
        .collect();
    for check in &checks {
        db.neighbours.for_check(check).await;
    }
    let created = db.store.create_checks(&checks).await.unwrap();
    let [first, second, third]: [Created; 3] = created.try_into().unwrap();
    let (first, second) = (created_new(first), created_new(second));
    let Created::Existing(third) = third else {
        panic!("the same key twice in one batch is one check: {third:?}");
    };
    assert_eq!(third, first);
    assert_eq!(db.store.get_check(first.id).await.unwrap(), Some(first));
    assert_eq!(db.store.get_check(second.id).await.unwrap(), Some(second));
    assert_eq!(check_rows(db).await, [2, 2, 2, 6, 6]);

    // The second item records one event twice: refused, and the first is not written either.
    let mut repeating = new_check(template_id, 45);
    repeating.records[1].event.id = repeating.records[0].event.id;
    let fine = new_check(template_id, 44);
    db.neighbours.for_check(&fine).await;
    db.neighbours.for_check(&repeating).await;
    let error = db
        .store
        .create_checks(&[fine.clone(), repeating])
        .await
        .unwrap_err();
    assert!(
        matches!(error, StoreError::Conflict(_) | StoreError::Database(_)),
        "{error:?}"
    );
    assert_eq!(check_rows(db).await, [2, 2, 2, 6, 6]);
    assert_eq!(db.store.find_check(&fine.key).await.unwrap(), None);
}

/// MySQL: a batch reads each check's last record under that check's lock (a locking read),
/// not from the snapshot its transaction took while it locked an earlier check — or a record
/// another replica committed to a later check meanwhile would go unseen, and the batch would
/// write its own record with the same `order` on top of it.
#[tokio::test]
async fn a_batch_sees_what_was_committed_while_it_waited_for_a_check() {
    let Some(db) = crate::support::mysql_db().await else {
        return;
    };
    let checks = three_checks(&db, "batch-snapshot").await;
    let crate::support::Raw::Mysql(pool) = &db.raw else {
        unreachable!("a MySQL test database")
    };
    // Another replica holds the second check while it changes it.
    let mut other = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM status_check WHERE id = ? FOR UPDATE")
        .bind(checks[1].id)
        .fetch_one(&mut *other)
        .await
        .unwrap();
    let store = db.store.clone();
    let (first, second) = (checks[0].clone(), checks[1].clone());
    let batch = tokio::spawn(async move {
        let batch = [
            item(&first, append(11_201)(&first).unwrap()),
            item(&second, append(11_301)(&second).unwrap()),
        ];
        store
            .update_checks(&batch, &notifications(), at("2026-11-20T08:01:00Z"))
            .await
    });
    // The batch has locked the first check and waits for the second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let waited = loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE DB = DATABASE() AND INFO LIKE '%FOR UPDATE%' AND ID <> CONNECTION_ID()",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting > 0 {
            break true;
        }
        if std::time::Instant::now() >= deadline {
            break false;
        }
        tokio::task::yield_now().await;
    };
    if !waited {
        // Ended first: an open transaction would hold up the test database's drop.
        other.rollback().await.unwrap();
        panic!("the batch never waited for the second check");
    }
    // The other replica records an event on the second check (phase and result unchanged)
    // and commits.
    sqlx::query(
        "INSERT INTO status_check_record \
         (status_check_id, incoming_event_id, event_name, `order`, phase, result) \
         VALUES (?, ?, 'CHARGING_STARTED', ?, 'FUTURE', 'PENDING')",
    )
    .bind(checks[1].id)
    .bind(11_302_i64)
    .bind(next_order(&checks[1]))
    .execute(&mut *other)
    .await
    .unwrap();
    other.commit().await.unwrap();
    let outcomes = batch.await.unwrap().unwrap();
    assert!(
        matches!(outcomes[0], UpdateOutcome::Updated(_)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes[1],
        UpdateOutcome::Stale,
        "the second check changed while the batch waited for it"
    );
    let orders: Vec<u32> = db
        .store
        .get_check(checks[1].id)
        .await
        .unwrap()
        .unwrap()
        .records
        .iter()
        .map(|r| r.order)
        .collect();
    let mut distinct = orders.clone();
    distinct.dedup();
    assert_eq!(orders, distinct, "one record per order");
}

on_both_backends!(
    databases:
    creates_in_one_transaction,
    a_batch_writes_each_item_as_alone,
    a_batch_with_a_refused_item_writes_nothing,
    a_batch_naming_a_check_twice_is_refused,
);

/// A notifying update of `check` that records event 5002 again — one the check holds, so
/// the database refuses it (`uk_status_check_record_event_incoming`).
pub(crate) fn repeating_an_event(check: &StoredCheck) -> CheckUpdate {
    CheckUpdate {
        new_records: vec![record(
            next_order(check),
            RecordPhase::Future,
            5002,
            "CHARGING_STOPPED",
        )],
        ..notify(check).unwrap()
    }
}
