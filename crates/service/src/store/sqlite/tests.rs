//! What the shared behaviour suite (tests/it/store/) does not see: in-memory databases,
//! compatibility with files the sqlx backend migrated, errors as the shared logic expects
//! them, and waiting for another process's write lock without blocking the runtime.

use std::time::Duration;

use chrono::Utc;
use status_check_engine::TemplateDefinition;

use super::*;
use crate::store::db::{SqlRow, Tx, args, migrator};
use crate::store::{Store, Synced, TemplateStore};

fn definition(name: &str) -> TemplateDefinition {
    TemplateDefinition {
        name: name.into(),
        version: 1,
        description: String::new(),
        is_active: true,
        poll_until_end: false,
        poller: Default::default(),
        past: Some(status_check_engine::template::PhaseDefinition {
            depends_on: vec!["A".into()],
            pass: Some("true".into()),
            ..Default::default()
        }),
        future: None,
    }
}

fn file_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("db.sqlite").display())
}

#[test]
fn every_migration_file_is_embedded() {
    super::super::db::assert_all_embedded("sqlite", MIGRATIONS);
}

/// The behaviour suite runs on files; an in-memory database must work as well.
#[tokio::test]
async fn in_memory_database_works() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let Synced::Created(id) = store
        .sync_template(&definition("in-memory"), &|_| true, Utc::now())
        .await
        .unwrap()
    else {
        panic!("expected Created");
    };
    let stored = store.template_versions("in-memory").await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].id, &stored[0].definition),
        (id, &Ok(definition("in-memory")))
    );
}

/// The `_sqlx_migrations` rows of either are the other's: a file sqlx's migrator migrated
/// opens and migrates as a no-op here, and sqlx's migrator accepts a file migrated here.
#[tokio::test]
async fn migration_history_is_shared_with_sqlx() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir);
    let pool = sqlx::SqlitePool::connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    migrator(MIGRATIONS).run(&pool).await.unwrap();
    let history = "SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version";
    let by_sqlx: Vec<(i64, Vec<u8>, bool)> =
        sqlx::query_as(history).fetch_all(&pool).await.unwrap();

    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let after: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(history).fetch_all(&pool).await.unwrap();
    assert_eq!(after, by_sqlx, "nothing applied twice");

    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir);
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let here: Vec<(i64, Vec<u8>, bool)> = sqlx::query_as(history).fetch_all(&pool).await.unwrap();
    assert_eq!(here, by_sqlx, "the same rows and checksums as sqlx writes");
    migrator(MIGRATIONS).run(&pool).await.unwrap();
}

#[tokio::test]
async fn a_changed_or_unknown_migration_is_refused_as_sqlx_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
    store.migrate().await.unwrap();
    let pool = sqlx::SqlitePool::connect(&file_url(&dir)).await.unwrap();
    sqlx::query("UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 4")
        .execute(&pool)
        .await
        .unwrap();
    let error = store.migrate().await.unwrap_err().to_string();
    assert!(error.contains("migration 4 was previously applied but has been modified"));
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
         execution_time) VALUES (99, 'future', TRUE, X'00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let error = store.migrate().await.unwrap_err().to_string();
    assert!(error.contains("migration 99 was previously applied but is missing"));
}

/// The shared logic tells a lost unique key from other failures by `StoreError::is_duplicate`.
#[tokio::test]
async fn a_unique_violation_is_a_duplicate_naming_its_key() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let insert = "INSERT INTO status_check_description (name, description) VALUES (?, '')";
    let mut tx = store.begin(Mode::Write).await.unwrap();
    tx.execute(insert, args!["x"]).await.unwrap();
    let error = tx.execute(insert, args!["x"]).await.unwrap_err();
    assert_eq!(error.is_duplicate(), Some(false));
    assert!(error.to_string().contains("UNIQUE constraint failed"));
    let error = tx.execute("SELECT nope", args![]).await.unwrap_err();
    assert_eq!((error.is_duplicate(), error.is_transient()), (None, false));
    let error = tx.execute(insert, args![]).await.unwrap_err();
    assert!(error.to_string().contains("parameter"), "{error}");
}

/// A transaction dropped without commit leaves nothing, and the writer is usable at once.
#[tokio::test]
async fn a_dropped_transaction_rolls_back() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let mut tx = store.begin(Mode::Write).await.unwrap();
    tx.execute(
        "INSERT INTO status_check_description (name, description) VALUES ('gone', '')",
        args![],
    )
    .await
    .unwrap();
    drop(tx);
    let mut tx = store.begin(Mode::Read).await.unwrap();
    let row = tx
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM status_check_description",
            args![],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.int("n").unwrap(), 0);
}

/// Another process holding the write lock is waited for asleep: on a runtime with a single
/// thread, the task that releases it still runs (SQLite's busy handler would block that
/// thread until its timeout, and the write would fail).
#[tokio::test(flavor = "current_thread")]
async fn another_writer_is_waited_for_without_blocking_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir);
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let other = Connection::open(dir.path().join("db.sqlite")).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let holder = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        other.execute_batch("COMMIT").unwrap();
        release.send(()).unwrap();
    });
    let started = std::time::Instant::now();
    let tx = store.begin(Mode::Write).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100));
    released.await.unwrap();
    tx.commit().await.unwrap();
    holder.await.unwrap();
}

/// Reads run on their own connections, beside a write transaction.
#[tokio::test]
async fn reads_do_not_wait_for_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
    store.migrate().await.unwrap();
    let _writing = store.begin(Mode::Write).await.unwrap();
    let reads: Vec<_> = (0..MAX_READERS).map(|_| store.begin(Mode::Read)).collect();
    for read in futures_util::future::join_all(reads).await {
        read.unwrap().commit().await.unwrap();
    }
    Store::ping(&store).await.unwrap();
}

/// The reads every create and every delivery makes search an index — none scans a robot's
/// checks (they did before migration 0007, a cost that grew with each robot's history) — and
/// no index on `status_check` holds a column every change sets (`phase`, `result`): each such
/// index would be rewritten on every state change.
#[tokio::test]
async fn hot_path_reads_search_indexes_that_changes_leave_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::connect(&file_url(&dir)).await.unwrap();
    store.migrate().await.unwrap();
    let connection = Connection::open(dir.path().join("db.sqlite")).unwrap();
    let plan = |sql: &str| -> String {
        let mut statement = connection
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let values = (0..statement.parameter_count()).map(|i| i as i64);
        let details: Vec<String> = statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                row.get::<_, String>(3)
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        details.join("; ")
    };
    use crate::store::check_reads::{
        COUNT_OPEN_AT_STEP, SELECT_CHECK_BY_SUBSCRIPTION, SELECT_NODE_CHECK_BY_KEY,
    };
    for (sql, index) in [
        (
            SELECT_NODE_CHECK_BY_KEY,
            "idx_status_check_robot_step (robot_id=? AND step_id=? AND scheduled_id=?)",
        ),
        (
            COUNT_OPEN_AT_STEP,
            "idx_status_check_open_at_step (robot_id=? AND step_id=?)",
        ),
        (
            SELECT_CHECK_BY_SUBSCRIPTION,
            "idx_status_check_subscription_id (subscription_id=?)",
        ),
    ] {
        let plan = plan(sql);
        assert!(
            plan.starts_with(&format!("SEARCH sc USING INDEX {index}"))
                || plan.starts_with(&format!("SEARCH status_check USING INDEX {index}")),
            "{sql}\n→ {plan}"
        );
        assert!(!plan.contains("SCAN"), "{sql}\n→ {plan}");
    }
    // The batches' reads over id lists search the same way, whatever the list's length.
    for ids in [&[7][..], &[3, 5, 9, 11, 13]] {
        for (sql, index) in [
            (
                crate::store::check_reads::SELECT_CHECKS_BY_SUBSCRIPTIONS
                    .for_ids(ids)
                    .0,
                "SEARCH sc USING INDEX idx_status_check_subscription_id (subscription_id=?)",
            ),
            (
                crate::store::check_reads::SELECT_CHECKS_BY_IDS
                    .for_ids(ids)
                    .0,
                "SEARCH sc USING INTEGER PRIMARY KEY (rowid=?)",
            ),
            (
                crate::store::check_reads::SELECT_RECORDS_OF_CHECKS
                    .for_ids(ids)
                    .0,
                "SEARCH r USING INDEX",
            ),
        ] {
            let plan = plan(sql);
            assert!(plan.starts_with(index), "{sql}\n→ {plan}");
            assert!(!plan.contains("SCAN"), "{sql}\n→ {plan}");
        }
    }
    // A backtest's page (one statement per template version) walks that version's checks in
    // id order: nothing sorted, nothing scanned, however many pages the period holds.
    for robots in [0, 2] {
        let sql = crate::store::check_reads::ended_checks_sql(1, robots, false);
        let plan = plan(sql);
        assert!(
            plan.contains(
                "SEARCH sc USING INDEX fk_status_check_template_id \
                           (status_check_template_id=? AND rowid>?)"
            ),
            "{sql}\n→ {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{sql}\n→ {plan}");
        assert!(!plan.contains("SCAN sc"), "{sql}\n→ {plan}");
    }
    let mut statement = connection
        .prepare(
            "SELECT il.name, ii.name FROM pragma_index_list('status_check') il \
             JOIN pragma_index_info(il.name) ii WHERE il.partial = 0",
        )
        .unwrap();
    let indexed: Vec<(String, String)> = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (index, column) in &indexed {
        assert!(
            column != "phase" && column != "result",
            "{index} indexes {column}, which every change of a check sets"
        );
    }
    assert!(
        indexed
            .iter()
            .any(|(index, _)| index == "idx_status_check_subscription_id"),
        "{indexed:?}"
    );
}
