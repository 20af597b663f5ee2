//! The store's schema on both backends: the migrations against the live definition, its foreign
//! keys, a retired migration history, and the helpers' stores.

use super::*;

use crate::harness::on_both_backends;

on_both_backends!(
    databases:
    migrations_are_idempotent,
    ping_answers,
);

/// The six production tables, in the live definition's order.
const PRODUCTION_TABLES: [&str; 6] = [
    "status_check_description",
    "status_check_template",
    "status_check_template_detail",
    "status_check",
    "status_check_poller",
    "status_check_record",
];

/// On a database that has the production tables (created from the live definition, with
/// the other services' tables their foreign keys need), `migrate` adds this service's own
/// objects and changes none of the six: `SHOW CREATE TABLE` is the same before and after,
/// and again after a second run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migrate_leaves_the_production_tables_as_they_are() {
    let Some(db) = crate::support::mysql_db_production_unmigrated().await else {
        return;
    };
    let before = db.raw.show_create(&PRODUCTION_TABLES).await;
    db.store.migrate().await.unwrap();
    assert_eq!(db.raw.show_create(&PRODUCTION_TABLES).await, before);
    db.store.migrate().await.unwrap();
    assert_eq!(db.raw.show_create(&PRODUCTION_TABLES).await, before);
    // This service's own objects are there.
    for table in [
        "status_check_ext",
        "status_check_record_event",
        "status_check_template_ext",
        "status_check_outbox",
    ] {
        assert_eq!(db.raw.show_create(&[table]).await.len(), 1);
    }
}

/// The MySQL databases the suite runs on are made from the live definition and enforce its
/// foreign keys: a check of a robot, step and script version that the other services' tables
/// do not hold is refused (error 1452), and nothing of it is written; with their rows, it is
/// created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_test_databases_enforce_the_production_foreign_keys() {
    let Some(db) = crate::support::mysql_db().await else {
        return;
    };
    let template_id = synced_template(&db, "foreign-keys").await;
    let check = new_check(template_id, 42);
    let error = db.store.create_check(check.clone()).await.unwrap_err();
    assert!(
        error.to_string().contains("1452") || error.to_string().contains("foreign key"),
        "{error}"
    );
    assert_eq!(db.store.find_check(&check.key).await.unwrap(), None);
    assert!(matches!(create(&db, check).await.unwrap(), Created::New(_)));
}

/// On a database of its own, the migrations create exactly the live definition's six
/// tables, without the foreign keys to the other services' tables (which it lacks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_migrate_creates_the_production_tables_exactly() {
    let Some(production) = crate::support::mysql_db_production_unmigrated().await else {
        return;
    };
    let fresh = crate::support::mysql_db_unmigrated().await.unwrap();
    fresh.store.migrate().await.unwrap();
    let others = [
        "robot_account",
        "script_step",
        "script_version",
        "event_subscription",
        "incoming_event",
        "outgoing_event",
    ];
    let expected: Vec<String> = production
        .raw
        .show_create(&PRODUCTION_TABLES)
        .await
        .iter()
        .map(|table| without_foreign_keys_to(table, &others))
        .collect();
    let created = fresh.raw.show_create(&PRODUCTION_TABLES).await;
    for (created, expected) in created.iter().zip(&expected) {
        assert_eq!(created, expected);
    }
}

/// `SHOW CREATE TABLE` text without the constraint lines that reference `tables`.
fn without_foreign_keys_to(create: &str, tables: &[&str]) -> String {
    let lines: Vec<&str> = create
        .lines()
        .filter(|line| {
            !tables
                .iter()
                .any(|t| line.contains(&format!("REFERENCES `{t}`")))
        })
        .collect();
    // The line before `)` lost its trailing comma partner: the last column/key line keeps
    // a comma only when another line follows.
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        let next_closes = lines.get(i + 1).is_some_and(|next| next.starts_with(')'));
        if next_closes {
            out.push(line.trim_end_matches(',').to_owned());
        } else {
            out.push((*line).to_owned());
        }
    }
    out.join("\n")
}

/// A database the pre-release schema (migrations 0001/0002) migrated is refused with what to
/// do, and nothing is changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_retired_migration_history_is_refused() {
    let db = crate::support::sqlite_db_unmigrated().await;
    a_retired_migration_history_is_refused(&db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_a_retired_migration_history_is_refused() {
    let Some(db) = crate::support::mysql_db_unmigrated().await else {
        return;
    };
    a_retired_migration_history_is_refused(&db).await;
}

async fn a_retired_migration_history_is_refused(db: &TestDb) {
    db.raw
        .execute(
            "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
             installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL, \
             checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)",
        )
        .await;
    db.raw
        .execute(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, \
             execution_time) VALUES (1, 'init', TRUE, X'00', 1)",
        )
        .await;
    let error = db.store.migrate().await.unwrap_err().to_string();
    assert!(error.contains("pre-release schema"), "{error}");
    assert!(error.contains("0001"), "{error}");
    assert_eq!(
        db.raw
            .try_execute("SELECT COUNT(*) FROM status_check")
            .await
            .map_err(|_| ()),
        Err(()),
        "nothing was created"
    );
}

/// The helpers other test modules start services with hand out migrated, working stores.
#[tokio::test]
async fn support_stores_are_migrated() {
    async fn takes_a_template(db: &TestDb) {
        let synced = db
            .store
            .sync_template(
                &template("helper", 1),
                &|_| true,
                at("2026-11-01T00:00:00Z"),
            )
            .await
            .unwrap();
        assert!(matches!(synced, Synced::Created(_)), "{synced:?}");
    }
    takes_a_template(&crate::support::sqlite_db().await).await;
    if !crate::support::mysql_skipped() {
        takes_a_template(&crate::support::mysql_db().await.unwrap()).await;
    }
}

async fn migrations_are_idempotent(db: &TestDb) {
    // The helper migrated once already.
    db.store.migrate().await.unwrap();
    db.store.migrate().await.unwrap();
    // Production, where the tables predate this service: the production tables are there,
    // this service's own objects and its migration history are not. The migrations create
    // nothing twice and fail on nothing.
    let template_id = synced_template(db, "before-history-lost").await;
    for sql in [
        "DROP TABLE _sqlx_migrations",
        "DROP TABLE status_check_outbox",
        "DROP TABLE status_check_record_event",
        "DROP TABLE status_check_ext",
        "DROP TABLE status_check_template_ext",
    ] {
        db.raw.execute(sql).await;
    }
    db.store.migrate().await.unwrap();
    let stored = db.store.template_by_id(template_id).await.unwrap().unwrap();
    // The default windows lived in the dropped status_check_template_ext.
    let expected = TemplateDefinition {
        poller: PollerDefaults::default(),
        ..template("before-history-lost", 1)
    };
    assert_eq!(stored.definition, Ok(expected.clone()));

    // A lost history alone: every file runs again over a database that has all of it.
    db.raw.execute("DROP TABLE _sqlx_migrations").await;
    db.store.migrate().await.unwrap();
    let stored = db.store.template_by_id(template_id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(expected));
}

async fn ping_answers(db: &TestDb) {
    db.store.ping().await.unwrap();
}
