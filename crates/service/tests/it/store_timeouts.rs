//! The operation timeout on MariaDB (`DB_OPERATION_TIMEOUT_SECS`, SPEC §13): an operation that
//! cannot finish in time fails at the bound, whole, and the connection it was stuck on is not
//! kept — the store goes on answering while the server still holds the abandoned statements.

use std::time::{Duration, Instant};

use status_check::store::{Created, StoreError};

use crate::store::{new_check, synced_template};
use crate::support::{self, Raw};

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
    let Raw::Mysql(pool) = &db.raw else {
        unreachable!("a MySQL test database")
    };
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("SELECT id FROM incoming_event WHERE id = ? FOR UPDATE")
        .bind(event)
        .fetch_all(&mut *blocker)
        .await
        .unwrap();

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
    // store answers at once.
    let started = Instant::now();
    db.store.ping().await.expect("the store answers");
    assert_eq!(db.store.get_check(1).await.unwrap(), None);
    assert!(started.elapsed() < limit, "took {:?}", started.elapsed());

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
