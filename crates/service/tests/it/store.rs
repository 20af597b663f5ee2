//! The store's behaviour suite: every behaviour is written once and runs against SQLite and
//! MySQL/MariaDB (`store::sqlite::*` and `store::mysql::*`).

use std::collections::BTreeSet;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use status_check::store::{
    CheckKey, CheckUpdate, Claimed, Created, Fence, NewCheck, Notifications, Provenance,
    StoreError, StoredCheck, StoredTemplate, Synced, UpdateOutcome,
};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use status_check_engine::{
    CheckPhase, CheckResult, Event, Limits, Record, RecordPhase, TemplateDefinition,
};

use crate::harness::on_both_backends;
use crate::support::TestDb;

on_both_backends!(
    databases:
    migrations_are_idempotent,
    ping_answers,
    create_then_get_and_find_round_trip_every_field,
    unbounded_past_and_no_future_window_read_back_as_none,
    long_reference_ids_are_kept_cut_to_the_column,
    create_is_idempotent_per_request_key,
    concurrent_identical_creates_make_one_check,
    missing_checks_are_none,
    one_event_is_never_recorded_twice_for_a_check,
    planned_at_outside_the_timestamp_range_is_refused,
    sync_template_creates_then_leaves_an_identical_version_alone,
    sync_template_refuses_a_changed_version,
    sync_template_toggles_only_is_active,
    template_versions_are_listed_newest_first,
    descriptions_are_never_rewritten,
    node_versions_are_read,
    a_version_number_held_by_the_node_service_is_synced_under_the_next,
    create_check_sets_the_pending_deadline,
    find_by_subscription_matches_robot_and_subscription,
    find_by_subscriptions_answers_each_pair_as_one_lookup_does,
    get_checks_answers_each_id_as_one_read_does,
    update_check_appends_records_changes_state_and_notifies,
    a_decision_on_a_changed_check_writes_nothing,
    concurrent_updates_of_one_check_each_see_the_other,
    an_update_repeating_an_event_is_refused_whole,
    leases_fence_writes_and_stale_leases_are_released,
    claim_due_takes_free_due_future_checks_oldest_first,
    concurrent_claims_are_disjoint,
    outbox_claims_leases_and_retries,
    concurrent_outbox_claims_are_disjoint,
    subscription_removals_are_queued_once_leased_and_retried,
    sent_notifications_are_purged_after_the_retention,
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
    let (store, _dir) = crate::support::sqlite_store().await;
    let synced = store
        .sync_template(
            &template("helper", 1),
            &|_| true,
            at("2026-11-01T00:00:00Z"),
        )
        .await
        .unwrap();
    assert!(matches!(synced, Synced::Created(_)), "{synced:?}");
    if !crate::support::mysql_skipped() {
        let (store, _) = crate::support::mysql_store().await;
        let synced = store
            .sync_template(
                &template("helper", 1),
                &|_| true,
                at("2026-11-01T00:00:00Z"),
            )
            .await
            .unwrap();
        assert!(matches!(synced, Synced::Created(_)), "{synced:?}");
    }
}

// ---- Fixtures ----

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn template(name: &str, version: i64) -> TemplateDefinition {
    TemplateDefinition {
        name: name.to_owned(),
        version,
        description: format!("{name}, version {version}"),
        is_active: true,
        poll_until_end: false,
        poller: PollerDefaults {
            past_interval: 3600,
            future_interval: 600,
        },
        past: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into(), "CHARGING_STOPPED".into()],
            pass: Some("past.exists(e, e.name == 'CHARGING_STARTED')".into()),
            fail: Some("past.exists(e, e.name == 'CHARGING_STOPPED')".into()),
            unknown: None,
        }),
        future: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into()],
            pass: Some("future.size() > 0".into()),
            fail: None,
            unknown: Some("false".into()),
        }),
    }
}

fn now() -> DateTime<Utc> {
    at("2026-11-01T00:00:00Z")
}

/// Whether this service can run a definition: its rules compile as CEL (as the registry asks).
fn cel(definition: &TemplateDefinition) -> bool {
    status_check_engine::Template::from_definition(definition.clone(), &Limits::default()).is_ok()
}

/// The newest active version of `name`, as stored.
async fn newest_active(db: &TestDb, name: &str) -> Option<StoredTemplate> {
    db.store
        .template_versions(name)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.is_active)
}

/// Creates a check after inserting the other services' rows it refers to.
async fn create(db: &TestDb, check: NewCheck) -> Result<Created, StoreError> {
    db.neighbours.for_check(&check).await;
    db.store.create_check(check).await
}

pub(crate) async fn synced_template(db: &TestDb, name: &str) -> i64 {
    match db
        .store
        .sync_template(&template(name, 1), &|_| true, at("2026-11-01T00:00:00Z"))
        .await
        .unwrap()
    {
        Synced::Created(id) => id,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn record(order: u32, phase: RecordPhase, event_id: i64, name: &str) -> Record {
    Record {
        order,
        phase,
        event: Event {
            id: event_id,
            name: name.to_owned(),
            created_at: at("2026-11-20T07:59:00.001Z") + TimeDelta::seconds(i64::from(order)),
            level: None,
            reference_id: None,
        },
        outgoing_event_id: None,
        result: CheckResult::Pending,
        created_at: at("2026-11-20T08:00:05Z"),
    }
}

pub(crate) fn new_check(template_id: i64, robot_id: i64) -> NewCheck {
    let anchor = at("2026-11-20T08:00:05.250Z");
    NewCheck {
        key: CheckKey {
            robot_id,
            step_id: 123,
            scheduled_id: 456,
            planned_at: at("2026-11-20T08:00:00.123Z"),
        },
        script_version_id: 789,
        template_id,
        phase: CheckPhase::Future,
        result: CheckResult::Pending,
        next_step_id: None,
        subscription_id: Some(991),
        windows: Windows::from_effective(anchor, 3600, 600),
        deadline: Some(anchor + TimeDelta::seconds(600)),
        next_steps: NextSteps {
            pass: 10,
            fail: 11,
            unknown: Some(12),
        },
        remove_subscription: false,
        subscribe_intent: None,
        records: vec![
            Record {
                event: Event {
                    level: Some(3),
                    reference_id: Some("ref-1".into()),
                    ..record(1, RecordPhase::Past, 5001, "CHARGING_STOPPED").event
                },
                ..record(1, RecordPhase::Past, 5001, "CHARGING_STOPPED")
            },
            Record {
                outgoing_event_id: Some(7002),
                result: CheckResult::Fail,
                ..record(2, RecordPhase::Past, 5002, "CHARGING_STOPPED")
            },
            record(3, RecordPhase::Future, 5003, "CHARGING_STARTED"),
        ],
        now: anchor,
    }
}

fn created_new(created: Created) -> StoredCheck {
    match created {
        Created::New(check) => check,
        Created::Existing(check) => panic!("expected a new check, got the existing {}", check.id),
    }
}

async fn check_rows(db: &TestDb) -> [i64; 5] {
    [
        db.raw.count("SELECT COUNT(*) FROM status_check").await,
        db.raw.count("SELECT COUNT(*) FROM status_check_ext").await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_poller")
            .await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_record")
            .await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_record_event")
            .await,
    ]
}

// ---- Behaviours ----

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

async fn create_then_get_and_find_round_trip_every_field(db: &TestDb) {
    let template_id = synced_template(db, "round-trip").await;
    let check = new_check(template_id, 42);
    let stored = created_new(create(db, check.clone()).await.unwrap());

    let anchor = check.windows.anchor;
    let expected = StoredCheck {
        id: stored.id,
        key: check.key.clone(),
        script_version_id: 789,
        template_id,
        template_name: "round-trip".into(),
        template_version: 1,
        phase: CheckPhase::Future,
        result: CheckResult::Pending,
        next_step_id: None,
        subscription_id: Some(991),
        windows: check.windows,
        next_steps: Some(check.next_steps),
        provenance: Provenance::Own,
        notification_seq: 0,
        records: check.records.clone(),
        created_at: anchor,
        updated_at: anchor,
    };
    assert_eq!(
        (stored.windows.since, stored.windows.until),
        (
            Some(at("2026-11-20T07:00:05.250Z")),
            Some(at("2026-11-20T08:10:05.250Z"))
        )
    );
    assert!(stored.id > 0);
    assert_eq!(stored, expected);
    assert_eq!(
        db.store.get_check(stored.id).await.unwrap(),
        Some(expected.clone())
    );
    assert_eq!(
        db.store.find_check(&check.key).await.unwrap(),
        Some(expected)
    );

    // The production columns hold whole seconds: the poller widened to hold the exact window.
    let (since, until, lock_id) = db.raw.poller(stored.id).await;
    assert_eq!(since, at("2026-11-20T07:00:05Z"));
    assert_eq!(until, at("2026-11-20T08:10:06Z"));
    assert_eq!(lock_id, None);
    assert_eq!(
        db.raw.planned_at(stored.id).await,
        at("2026-11-20T08:00:00Z")
    );

    // Times finer than a millisecond are kept to the millisecond, on the way in and in lookups.
    let mut fine = new_check(template_id, 43);
    fine.key.planned_at = at("2026-11-20T08:00:00.123456Z");
    set_windows(&mut fine, at("2026-11-20T08:00:05.250999Z"), 3600, 600);
    let stored = created_new(create(db, fine.clone()).await.unwrap());
    assert_eq!(stored.key.planned_at, at("2026-11-20T08:00:00.123Z"));
    assert_eq!(stored.windows.anchor, at("2026-11-20T08:00:05.250Z"));
    assert_eq!(stored.created_at, at("2026-11-20T08:00:05.250Z"));
    assert_eq!(
        db.store.find_check(&fine.key).await.unwrap().map(|c| c.id),
        Some(stored.id)
    );
}

async fn unbounded_past_and_no_future_window_read_back_as_none(db: &TestDb) {
    let template_id = synced_template(db, "windows").await;
    let mut check = new_check(template_id, 42);
    check.phase = CheckPhase::Completed;
    let anchor = check.windows.anchor;
    set_windows(&mut check, anchor, -1, 0);
    check.result = CheckResult::Fail;
    check.next_step_id = Some(11);
    check.subscription_id = None;
    check.next_steps.unknown = None;
    check.records.clear();
    let stored = created_new(create(db, check.clone()).await.unwrap());
    assert_eq!(stored.windows.since, None);
    assert_eq!(stored.windows.until, None);
    assert_eq!(stored.phase, CheckPhase::Completed);
    assert_eq!(stored.result, CheckResult::Fail);
    assert_eq!(stored.next_step_id, Some(11));
    assert_eq!(stored.subscription_id, None);
    assert_eq!(stored.next_steps.unwrap().unknown, None);
    assert_eq!(stored.records, []);
    assert_eq!(
        db.store.get_check(stored.id).await.unwrap(),
        Some(stored.clone())
    );
    let (since, until, _) = db.raw.poller(stored.id).await;
    assert_eq!(since, at("1970-01-01T00:00:01Z"));
    assert_eq!(until, at("2026-11-20T08:00:06Z"));

    // No past phase: the window starts at the anchor.
    let mut check = new_check(template_id, 43);
    let anchor = check.windows.anchor;
    set_windows(&mut check, anchor, 0, 600);
    let stored = created_new(create(db, check.clone()).await.unwrap());
    assert_eq!(stored.windows.since, Some(check.windows.anchor));
    assert_eq!(
        stored.windows.until,
        Some(check.windows.anchor + TimeDelta::seconds(600))
    );
}

/// `reference_id` is a `VARCHAR(256)`: a longer one from Megazord is kept cut, on both
/// backends (MySQL's strict mode would otherwise refuse the whole write).
async fn long_reference_ids_are_kept_cut_to_the_column(db: &TestDb) {
    let template_id = synced_template(db, "long-reference").await;
    let mut check = new_check(template_id, 42);
    check.records[0].event.reference_id = Some("é".repeat(300));
    let stored = created_new(create(db, check).await.unwrap());
    assert_eq!(stored.records[0].event.reference_id, Some("é".repeat(256)));
    delivered(db, 42, &[6001]).await;
    let long = |check: &StoredCheck| {
        let mut update = append(6001)(check).unwrap();
        update.new_records[0].event.reference_id = Some("x".repeat(1000));
        Some(update)
    };
    let now = at("2026-11-20T08:01:00Z");
    let updated = updated(
        update(db, stored.id, Fence::None, &long, "call", now)
            .await
            .unwrap(),
    );
    assert_eq!(updated.records[3].event.reference_id, Some("x".repeat(256)));
    assert_eq!(
        db.store.get_check(stored.id).await.unwrap(),
        Some(updated),
        "what the update returns is what is stored"
    );
}

async fn create_is_idempotent_per_request_key(db: &TestDb) {
    let template_id = synced_template(db, "idempotent").await;
    let first = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let rows = check_rows(db).await;
    assert_eq!(rows, [1, 1, 1, 3, 3]);

    // Same robot, step, scheduled id and plannedAt: the first check, whatever else differs.
    let mut again = new_check(template_id, 42);
    again.subscription_id = Some(5);
    again.records.truncate(1);
    again.now += TimeDelta::seconds(30);
    match create(db, again).await.unwrap() {
        Created::Existing(existing) => assert_eq!(existing, first),
        Created::New(check) => panic!("a duplicate check {} was created", check.id),
    }
    assert_eq!(check_rows(db).await, rows);

    // Any part of the key differing makes another check.
    let mut other = new_check(template_id, 42);
    other.key.planned_at += TimeDelta::milliseconds(1);
    let second = created_new(create(db, other).await.unwrap());
    assert_ne!(second.id, first.id);
    let changes: [fn(&mut NewCheck); 3] = [
        |c| c.key.robot_id = 7,
        |c| c.key.step_id = 7,
        |c| c.key.scheduled_id = 7,
    ];
    for change in changes {
        let mut other = new_check(template_id, 42);
        change(&mut other);
        created_new(create(db, other).await.unwrap());
    }
    assert_eq!(check_rows(db).await, [5, 5, 5, 15, 15]);
}

async fn concurrent_identical_creates_make_one_check(db: &TestDb) {
    let template_id = synced_template(db, "concurrent").await;
    for round in 0..5 {
        let check = new_check(template_id, 100 + round);
        let (a, b) = tokio::join!(create(db, check.clone()), create(db, check.clone()));
        let (new, existing) = match (a.unwrap(), b.unwrap()) {
            (Created::New(new), Created::Existing(existing))
            | (Created::Existing(existing), Created::New(new)) => (new, existing),
            (a, b) => panic!("round {round}: expected one New and one Existing: {a:?} / {b:?}"),
        };
        assert_eq!(new, existing);
    }
    assert_eq!(check_rows(db).await, [5, 5, 5, 15, 15]);
}

async fn missing_checks_are_none(db: &TestDb) {
    assert_eq!(db.store.get_check(999_999).await.unwrap(), None);
    let key = new_check(1, 42).key;
    assert_eq!(db.store.find_check(&key).await.unwrap(), None);
}

async fn one_event_is_never_recorded_twice_for_a_check(db: &TestDb) {
    let template_id = synced_template(db, "dedup").await;
    let mut check = new_check(template_id, 42);
    check.records[2].event.id = check.records[0].event.id;
    let error = create(db, check).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(check_rows(db).await, [0, 0, 0, 0, 0]);

    // The database itself refuses a second record of one event for a check.
    created_new(create(db, new_check(template_id, 42)).await.unwrap());
    db.raw
        .execute(
            "INSERT INTO status_check_record (status_check_id, incoming_event_id, \
             outgoing_event_id, event_name, `order`, phase, result, created_at) \
             SELECT id, 5001, NULL, 'CHARGING_STOPPED', 9, 'FUTURE', 'PENDING', \
             '2026-11-20 08:01:00' FROM status_check",
        )
        .await;
    let duplicate = db
        .raw
        .try_execute(
            "INSERT INTO status_check_record_event (record_id, record_phase, status_check_id, \
             incoming_event_id, event_created_at, `level`, reference_id) \
             SELECT id, phase, status_check_id, 5001, '2026-11-20 08:01:00', NULL, NULL \
             FROM status_check_record WHERE `order` = 9",
        )
        .await;
    assert!(duplicate.is_err(), "a duplicate record event was accepted");
}

async fn planned_at_outside_the_timestamp_range_is_refused(db: &TestDb) {
    let template_id = synced_template(db, "range").await;
    for planned_at in ["2100-01-01T00:00:00Z", "1960-01-01T00:00:00Z"] {
        let mut check = new_check(template_id, 42);
        check.key.planned_at = at(planned_at);
        let error = create(db, check).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    }
    assert_eq!(check_rows(db).await, [0, 0, 0, 0, 0]);
}

async fn sync_template_creates_then_leaves_an_identical_version_alone(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let both = template("both-phases", 1);
    let Synced::Created(id) = db.store.sync_template(&both, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    assert_eq!(
        db.store.sync_template(&both, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(
        (stored.id, stored.version, stored.declared_version),
        (id, 1, Some(1))
    );
    assert_eq!(stored.definition, Ok(both));
    assert_eq!(newest_active(db, "both-phases").await, Some(stored));

    // Only a future phase, polling until the end, no default windows.
    let future_only = TemplateDefinition {
        poll_until_end: true,
        poller: PollerDefaults::default(),
        past: None,
        ..template("future-only", 1)
    };
    let Synced::Created(future_id) = db
        .store
        .sync_template(&future_only, &cel, now)
        .await
        .unwrap()
    else {
        panic!("expected Created");
    };
    let stored = db.store.template_by_id(future_id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(future_only));

    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_description")
            .await,
        2
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template")
            .await,
        2
    );
    // One row per (template, phase, output), the rule in raw_expression.
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template_detail")
            .await,
        4 + 2
    );
    assert_eq!(
        db.raw
            .count(
                "SELECT COUNT(*) FROM status_check_template_detail \
                 WHERE phase = 'PAST' AND output = 'PASS' \
                   AND raw_expression = 'past.exists(e, e.name == ''CHARGING_STARTED'')'"
            )
            .await,
        1
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template_ext")
            .await,
        2
    );
}

async fn sync_template_refuses_a_changed_version(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let original = template("changed", 1);
    let Synced::Created(id) = db.store.sync_template(&original, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    let changes: [fn(&mut TemplateDefinition); 6] = [
        |t| t.past.as_mut().unwrap().pass = Some("true".into()),
        |t| t.future.as_mut().unwrap().fail = Some("true".into()),
        |t| t.past.as_mut().unwrap().depends_on.push("DOCKED".into()),
        |t| t.poller.future_interval = 60,
        |t| t.poll_until_end = true,
        |t| t.future = None,
    ];
    for change in changes {
        let mut changed = original.clone();
        change(&mut changed);
        assert_eq!(
            db.store.sync_template(&changed, &cel, now).await.unwrap(),
            Synced::Conflict {
                id,
                stored: Box::new(original.clone())
            }
        );
    }
    assert_eq!(
        db.store
            .template_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .definition,
        Ok(original.clone())
    );
    // The description is not part of a version.
    let described = TemplateDefinition {
        description: "said differently".into(),
        ..original.clone()
    };
    assert_eq!(
        db.store.sync_template(&described, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
}

async fn sync_template_toggles_only_is_active(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let active = template("toggled", 1);
    let Synced::Created(id) = db.store.sync_template(&active, &cel, now).await.unwrap() else {
        panic!("expected Created");
    };
    let inactive = TemplateDefinition {
        is_active: false,
        ..active.clone()
    };
    assert_eq!(
        db.store.sync_template(&inactive, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(inactive));
    assert!(!stored.is_active);
    assert_eq!(newest_active(db, "toggled").await, None);
    assert_eq!(
        db.store.sync_template(&active, &cel, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    assert_eq!(newest_active(db, "toggled").await.map(|t| t.id), Some(id));
}

async fn template_versions_are_listed_newest_first(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let mut ids = Vec::new();
    for (version, is_active) in [(2, true), (1, true), (3, false)] {
        let definition = TemplateDefinition {
            is_active,
            ..template("versions", version)
        };
        let Synced::Created(id) = db
            .store
            .sync_template(&definition, &cel, now)
            .await
            .unwrap()
        else {
            panic!("expected Created");
        };
        ids.push((version, id));
    }
    let versions = db.store.template_versions("versions").await.unwrap();
    let listed: Vec<(i64, bool)> = versions.iter().map(|v| (v.version, v.is_active)).collect();
    assert_eq!(listed, [(3, false), (2, true), (1, true)]);
    let active = newest_active(db, "versions").await.unwrap();
    assert_eq!(active.id, ids[0].1);
    // A check keeps its version, active or not.
    let inactive = db.store.template_by_id(ids[2].1).await.unwrap().unwrap();
    assert_eq!(inactive.version, 3);
    assert!(!inactive.is_active);

    assert!(
        db.store
            .template_versions("no-such-template")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(db.store.template_by_id(999_999).await.unwrap(), None);
}

/// Micro-Managers' `script_node_status_check` points at the description row: it is inserted
/// once, never renamed or rewritten (SPEC §6).
async fn descriptions_are_never_rewritten(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    db.store
        .sync_template(&template("described", 1), &cel, now)
        .await
        .unwrap();
    let v2 = TemplateDefinition {
        description: "said differently in version 2".into(),
        ..template("described", 2)
    };
    db.store.sync_template(&v2, &cel, now).await.unwrap();
    assert_eq!(
        db.raw
            .count(
                "SELECT COUNT(*) FROM status_check_description \
                 WHERE name = 'described' AND description = 'described, version 1'"
            )
            .await,
        1
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_description")
            .await,
        1
    );
}

/// A version the Node service wrote: its description, template row and one rule, the way it
/// stored them (dependencies as `[{"eventName": …}]`, no row of this service's own).
async fn node_version(db: &TestDb, name: &'static str, version: i64, rule: &'static str) -> i64 {
    db.raw
        .execute_text(
            "INSERT INTO status_check_description (name, description, created_at) \
             SELECT ?, 'Written by the Node service', '2025-01-01 00:00:00' \
             WHERE NOT EXISTS (SELECT 1 FROM status_check_description WHERE name = ?)",
            &[name, name],
        )
        .await;
    let version = version.to_string();
    db.raw
        .execute_text(
            "INSERT INTO status_check_template (template_description_id, \
             past_event_dependencies, future_event_dependencies, version, is_active, \
             poll_until_end, created_at) \
             SELECT id, '[{\"eventName\":\"CHARGING_STARTED\"}]', '[]', ?, TRUE, FALSE, \
             '2025-01-01 00:00:00' FROM status_check_description WHERE name = ?",
            &[&version, name],
        )
        .await;
    db.raw
        .execute_text(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) \
             SELECT t.id, 'PAST', ?, 'PASS' FROM status_check_template t \
             JOIN status_check_description d ON d.id = t.template_description_id \
             WHERE d.name = ? AND t.version = ?",
            &[rule, name, &version],
        )
        .await;
    let versions = db.store.template_versions(name).await.unwrap();
    versions
        .iter()
        .find(|v| v.version.to_string() == version)
        .unwrap()
        .id
}

/// The rule text the Node service stored: EJS around JavaScript.
const EJS_RULE: &str = "<%= events.some(e => e.eventName === 'CHARGING_STARTED') %>";

async fn node_versions_are_read(db: &TestDb) {
    // A version another tool stored in CEL: read as the definition it holds.
    let id = node_version(db, "legacy", 1, "past.size() > 0").await;
    let expected = TemplateDefinition {
        name: "legacy".into(),
        version: 1,
        description: "Written by the Node service".into(),
        is_active: true,
        poll_until_end: false,
        poller: PollerDefaults::default(),
        past: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into()],
            pass: Some("past.size() > 0".into()),
            fail: None,
            unknown: None,
        }),
        future: None,
    };
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.definition, Ok(expected.clone()));
    assert_eq!(stored.declared_version, None);
    // The same template from a file is that version, not a conflicting one.
    assert_eq!(
        db.store
            .sync_template(&expected, &cel, now())
            .await
            .unwrap(),
        Synced::Unchanged(id)
    );
    // An EJS version is read as it is; whether it can run is the registry's question.
    let ejs = node_version(db, "node-only", 1, EJS_RULE).await;
    let stored = db.store.template_by_id(ejs).await.unwrap().unwrap();
    let definition = stored.definition.unwrap();
    assert_eq!(definition.past.unwrap().pass.as_deref(), Some(EJS_RULE));
    // One rule per (template, phase, output): the production unique key.
    let second = db
        .raw
        .try_execute(
            "INSERT INTO status_check_template_detail (template_id, phase, raw_expression, \
             output) SELECT template_id, phase, 'true', output FROM status_check_template_detail",
        )
        .await;
    assert!(second.is_err(), "a second PAST/PASS rule was accepted");
}

async fn a_version_number_held_by_the_node_service_is_synced_under_the_next(db: &TestDb) {
    let legacy_1 = node_version(db, "renumbered", 1, EJS_RULE).await;
    node_version(db, "renumbered", 2, EJS_RULE).await;
    let before = db.store.template_versions("renumbered").await.unwrap();
    let shipped = template("renumbered", 1);
    let Synced::CreatedAs {
        id,
        version,
        legacy_id,
    } = db.store.sync_template(&shipped, &cel, now()).await.unwrap()
    else {
        panic!("expected CreatedAs");
    };
    assert_eq!((version, legacy_id), (3, legacy_1));
    // Synced again (the next start-up): the same version, not another one.
    assert_eq!(
        db.store.sync_template(&shipped, &cel, now()).await.unwrap(),
        Synced::Unchanged(id)
    );
    let mut changed = shipped.clone();
    changed.poll_until_end = true;
    assert!(matches!(
        db.store.sync_template(&changed, &cel, now()).await.unwrap(),
        Synced::Conflict { id: conflict, .. } if conflict == id
    ));
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!((stored.version, stored.declared_version), (3, Some(1)));
    // The description belongs to the name, and the name's row is the Node service's.
    assert_eq!(
        stored.definition,
        Ok(TemplateDefinition {
            version: 3,
            description: "Written by the Node service".into(),
            ..shipped
        })
    );
    // The file's version 3 finds 3 taken by the file's version 1: the next number again.
    let three = template("renumbered", 3);
    assert!(matches!(
        db.store.sync_template(&three, &cel, now()).await.unwrap(),
        Synced::CreatedAs { version: 4, .. }
    ));
    // The Node service's rows are as it wrote them.
    let after = db.store.template_versions("renumbered").await.unwrap();
    for legacy in &before {
        assert!(after.contains(legacy), "{legacy:?} was changed");
    }
    assert_eq!(newest_active(db, "renumbered").await.unwrap().version, 4);
}

// ---- Cleanup: subscriptions to remove, the outbox purge ----

/// A removal is queued once per subscription (however many paths ask), claimed under a
/// lease, retried at its backoff, and done once Megazord said so; an update that ends a check
/// queues its removal in the same transaction.
async fn subscription_removals_are_queued_once_leased_and_retried(db: &TestDb) {
    let t0 = at("2026-11-20T08:00:00Z");
    let seconds = TimeDelta::seconds;
    db.store
        .queue_subscription_removal(42, 5555, "create_failed", t0)
        .await
        .unwrap();
    db.store
        .queue_subscription_removal(42, 5555, "unowned", t0)
        .await
        .unwrap();
    assert_eq!(db.store.subscription_removal_backlog().await.unwrap(), 1);
    let claimed = db
        .store
        .claim_subscription_removals(t0, "a", t0 + seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0].robot_id,
            claimed[0].subscription_id,
            claimed[0].reason.as_str(),
            claimed[0].attempts
        ),
        (42, 5555, "create_failed", 0)
    );
    // Leased: another replica does not get it.
    assert!(
        db.store
            .claim_subscription_removals(t0, "b", t0 + seconds(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .subscription_removal_failed(claimed[0].id, "a", t0 + seconds(2), "megazord 503")
            .await
            .unwrap()
    );
    assert!(
        db.store
            .claim_subscription_removals(t0 + seconds(1), "b", t0 + seconds(31), 10)
            .await
            .unwrap()
            .is_empty(),
        "not before its retry time"
    );
    let again = db
        .store
        .claim_subscription_removals(t0 + seconds(2), "b", t0 + seconds(32), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        db.store
            .subscriptions_removed(&[5555, 5556], t0 + seconds(3))
            .await
            .unwrap(),
        1,
        "one was pending"
    );
    assert_eq!(
        db.store
            .subscriptions_removed(&[5555], t0 + seconds(3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(db.store.subscription_removal_backlog().await.unwrap(), 0);

    // Ending a check queues its subscription's removal with the change.
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
    let queued = db
        .store
        .claim_subscription_removals(t0 + seconds(10), "c", t0 + seconds(40), 10)
        .await
        .unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|r| (r.subscription_id, r.reason.as_str()))
            .collect::<Vec<_>>(),
        [(991, "ended")]
    );
}

/// Sent notifications older than the retention are purged in bounded batches; unsent ones
/// and newer ones stay.
async fn sent_notifications_are_purged_after_the_retention(db: &TestDb) {
    let template_id = synced_template(db, "purge").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:00:00Z");
    let seconds = TimeDelta::seconds;
    for i in 0..5 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            &format!("n{i}"),
            t0 + seconds(i),
        )
        .await
        .unwrap();
    }
    let claimed = db
        .store
        .claim_outbox(t0 + seconds(10), "relay", t0 + seconds(40), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    // Four sent, at 08:00:20 .. 08:00:23; one left unsent.
    for (i, message) in claimed.iter().take(4).enumerate() {
        db.store
            .outbox_sent(&[message.id], "relay", t0 + seconds(20 + i as i64))
            .await
            .unwrap();
    }
    let before = |cut: i64| t0 + seconds(cut);
    assert_eq!(db.store.purge_sent_outbox(before(20), 10).await.unwrap(), 0);
    assert_eq!(
        db.store.purge_sent_outbox(before(23), 2).await.unwrap(),
        2,
        "a batch"
    );
    assert_eq!(db.store.purge_sent_outbox(before(23), 10).await.unwrap(), 1);
    assert_eq!(
        outbox_rows(db).await,
        2,
        "the newest sent row and the unsent one stay"
    );
    assert_eq!(db.store.outbox_backlog().await.unwrap(), 1);
}

// ---- The lifecycle: deliveries, the scheduler, the outbox ----

/// The deadline of `new_check`: anchor 08:00:05.250 + 600 s.
fn deadline() -> DateTime<Utc> {
    at("2026-11-20T08:10:05.250Z")
}

/// Megazord stored these incoming events of `robot_id` and fanned each out to subscription
/// 991 as outgoing event `id + 100_000` (what `future_record` refers to).
async fn delivered(db: &TestDb, robot_id: i64, event_ids: &[i64]) {
    for &id in event_ids {
        db.neighbours
            .outgoing_event(id + 100_000, id, 991, robot_id)
            .await;
    }
}

/// The `order` the next record of a check gets.
fn next_order(check: &StoredCheck) -> u32 {
    check.records.iter().map(|r| r.order).max().unwrap_or(0) + 1
}

/// A FUTURE record as a decision makes it: times finer than the store keeps (the event's
/// to the millisecond, the record's to the second).
fn future_record(order: u32, event_id: i64) -> Record {
    let mut record = record(order, RecordPhase::Future, event_id, "CHARGING_STARTED");
    record.event.created_at =
        at("2026-11-20T08:00:30.123456Z") + TimeDelta::seconds(i64::from(order));
    record.event.level = Some(2);
    record.event.reference_id = Some(format!("ref-{event_id}"));
    record.outgoing_event_id = Some(event_id + 100_000);
    record.created_at = at("2026-11-20T08:01:00.987654Z");
    record
}

/// What a fresh read returns for a record `future_record` made.
fn as_stored(mut record: Record) -> Record {
    record.event.created_at = record.event.created_at.trunc_subsecs(3);
    record.created_at = record.created_at.trunc_subsecs(0);
    record
}

/// A decision that appends one FUTURE record of `event_id` and keeps the check open.
fn append(event_id: i64) -> impl Fn(&StoredCheck) -> Option<CheckUpdate> + Send + Sync {
    move |check: &StoredCheck| {
        Some(CheckUpdate {
            phase: CheckPhase::Future,
            result: CheckResult::Pending,
            next_step_id: None,
            new_records: vec![future_record(next_order(check), event_id)],
            deadline: pending(check, CheckPhase::Future),
            release_lease: false,
            notify: false,
            remove_subscription: false,
        })
    }
}

/// A decision that only notifies: the state stays, no record is added.
fn notify(check: &StoredCheck) -> Option<CheckUpdate> {
    Some(CheckUpdate {
        phase: check.phase,
        result: check.result,
        next_step_id: check.next_step_id,
        new_records: Vec::new(),
        deadline: pending(check, check.phase),
        release_lease: false,
        notify: true,
        remove_subscription: false,
    })
}

/// A decision that completes the check with PASS, releases the lease and notifies.
fn complete(check: &StoredCheck) -> Option<CheckUpdate> {
    Some(CheckUpdate {
        phase: CheckPhase::Completed,
        result: CheckResult::Pass,
        next_step_id: Some(check.next_steps.unwrap().pass),
        new_records: Vec::new(),
        deadline: None,
        release_lease: true,
        notify: true,
        remove_subscription: false,
    })
}

/// The tests' outbox rows: rendered by [`render`], for any relay to claim.
fn notifications() -> Notifications<'static> {
    Notifications::rendered_by(&render)
}

fn render(check: &StoredCheck, seq: i64) -> String {
    format!(
        "check {} seq {seq}: {} {} {:?} with {} records",
        check.id,
        check.phase,
        check.result,
        check.next_step_id,
        check.records.len()
    )
}

fn updated(outcome: UpdateOutcome) -> StoredCheck {
    match outcome {
        UpdateOutcome::Updated(check) => *check,
        other => panic!("expected Updated, got {other:?}"),
    }
}

async fn outbox_rows(db: &TestDb) -> i64 {
    db.raw
        .count("SELECT COUNT(*) FROM status_check_outbox")
        .await
}

/// A new check of `robot_id` whose future window is `future_seconds` from `anchor`.
async fn open_check(
    db: &TestDb,
    template_id: i64,
    robot_id: i64,
    anchor: &str,
    future: i64,
) -> StoredCheck {
    let mut check = new_check(template_id, robot_id);
    set_windows(&mut check, at(anchor), 3600, future);
    created_new(create(db, check).await.unwrap())
}

/// Gives a new check other windows, created at their anchor, with the deadline the engine
/// would set (the end of the future window while the check is in `FUTURE`).
fn set_windows(check: &mut NewCheck, anchor: DateTime<Utc>, past: i64, future: i64) {
    check.windows = Windows::from_effective(anchor, past, future);
    check.now = anchor;
    check.deadline = check
        .windows
        .until
        .filter(|_| check.phase == CheckPhase::Future);
}

/// The pending deadline of `check` once in `phase`, as the engine says it.
fn pending(check: &StoredCheck, phase: CheckPhase) -> Option<DateTime<Utc>> {
    check.windows.until.filter(|_| phase == CheckPhase::Future)
}

/// Reads the check, decides on it and writes the decision — again when the check changed
/// meanwhile (`Stale`) — as the use cases do.
async fn update(
    db: &TestDb,
    id: i64,
    fence: Fence<'_>,
    decide: &(dyn Fn(&StoredCheck) -> Option<CheckUpdate> + Send + Sync),
    call_ref: &str,
    now: DateTime<Utc>,
) -> Result<UpdateOutcome, StoreError> {
    loop {
        let Some(current) = db.store.get_check(id).await? else {
            return Ok(UpdateOutcome::NotFound);
        };
        let decision = decide(&current).expect("the decision writes something");
        match db
            .store
            .update_check(&current, fence, &decision, &notifications(), call_ref, now)
            .await?
        {
            UpdateOutcome::Stale => continue,
            outcome => return Ok(outcome),
        }
    }
}

async fn create_check_sets_the_pending_deadline(db: &TestDb) {
    let template_id = synced_template(db, "deadline").await;
    let open = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    assert_eq!(db.raw.schedule(open.id).await, (Some(deadline()), None));
    assert_eq!(open.windows.until, Some(deadline()));

    // No deadline to wait for: the check ended at once, or has no future window.
    let mut ended = new_check(template_id, 43);
    ended.phase = CheckPhase::Completed;
    ended.result = CheckResult::Pass;
    ended.deadline = None;
    let ended = created_new(create(db, ended).await.unwrap());
    assert_eq!(db.raw.schedule(ended.id).await, (None, None));
    let mut no_future = new_check(template_id, 44);
    let anchor = no_future.windows.anchor;
    set_windows(&mut no_future, anchor, 3600, 0);
    let no_future = created_new(create(db, no_future).await.unwrap());
    assert_eq!(db.raw.schedule(no_future.id).await, (None, None));
}

async fn find_by_subscription_matches_robot_and_subscription(db: &TestDb) {
    let template_id = synced_template(db, "subscription").await;
    let mut check = new_check(template_id, 42);
    check.subscription_id = Some(991);
    let mine = created_new(create(db, check).await.unwrap());
    let mut other = new_check(template_id, 43);
    other.subscription_id = Some(992);
    let theirs = created_new(create(db, other).await.unwrap());

    assert_eq!(
        db.store.find_by_subscription(42, 991).await.unwrap(),
        Some(mine)
    );
    assert_eq!(
        db.store.find_by_subscription(43, 992).await.unwrap(),
        Some(theirs)
    );
    // Another robot's subscription, or one nobody has.
    assert_eq!(db.store.find_by_subscription(43, 991).await.unwrap(), None);
    assert_eq!(db.store.find_by_subscription(42, 992).await.unwrap(), None);
    assert_eq!(db.store.find_by_subscription(42, 999).await.unwrap(), None);
}

async fn find_by_subscriptions_answers_each_pair_as_one_lookup_does(db: &TestDb) {
    let template_id = synced_template(db, "subscriptions").await;
    // More subscriptions than one statement takes, each robot its own.
    let robots: Vec<i64> = (1..=70).collect();
    for &robot_id in &robots {
        let mut check = new_check(template_id, robot_id);
        check.subscription_id = Some(10_000 + robot_id);
        created_new(create(db, check).await.unwrap());
    }
    // A second, newer check of robot 42 names the same subscription: the newest answers.
    let mut newer = new_check(template_id, 42);
    newer.key.scheduled_id = 457;
    newer.subscription_id = Some(10_042);
    newer.records.truncate(1);
    let newer = created_new(create(db, newer).await.unwrap());

    let mut keys: Vec<(i64, i64)> = robots
        .iter()
        .map(|&robot| (robot, 10_000 + robot))
        .collect();
    keys.extend([(43, 10_042), (42, 99_999), (1, 10_001)]);
    let found = db.store.find_by_subscriptions(&keys).await.unwrap();
    assert_eq!(found.len(), keys.len());
    for (&(robot_id, subscription_id), found) in keys.iter().zip(&found) {
        assert_eq!(
            found,
            &db.store
                .find_by_subscription(robot_id, subscription_id)
                .await
                .unwrap(),
            "robot {robot_id}, subscription {subscription_id}"
        );
    }
    assert_eq!(found[41], Some(newer));
    assert_eq!(found[0].as_ref().unwrap().records.len(), 3);
    assert_eq!(found[0], found[72]);
    assert_eq!(found[70], None, "another robot's subscription");
    assert_eq!(found[71], None, "a subscription nobody has");
    assert!(
        db.store
            .find_by_subscriptions(&[])
            .await
            .unwrap()
            .is_empty()
    );
}

async fn get_checks_answers_each_id_as_one_read_does(db: &TestDb) {
    let template_id = synced_template(db, "by-ids").await;
    // More checks than one statement takes; some with fewer records than others.
    let mut ids = Vec::new();
    for robot_id in 1..=70 {
        let mut check = new_check(template_id, robot_id);
        check
            .records
            .truncate(usize::try_from(robot_id % 4).unwrap());
        ids.push(created_new(create(db, check).await.unwrap()).id);
    }
    // Asked out of order, with a repeat and an id nobody has.
    let mut asked: Vec<i64> = ids.iter().rev().copied().collect();
    asked.extend([ids[3], 9_999_999]);
    let found = db.store.get_checks(&asked).await.unwrap();
    assert_eq!(found.len(), asked.len());
    for (&id, found) in asked.iter().zip(&found) {
        assert_eq!(found, &db.store.get_check(id).await.unwrap(), "check {id}");
    }
    assert_eq!(found[0].as_ref().unwrap().id, ids[69]);
    assert_eq!(found[0].as_ref().unwrap().records.len(), 2, "robot 70's");
    assert_eq!(found[70], found[66], "a repeated id answers the same check");
    assert_eq!(found[71], None, "an id nobody has");
    assert!(db.store.get_checks(&[]).await.unwrap().is_empty());
}

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
    assert_eq!(db.store.outbox_backlog().await.unwrap(), 3);
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
    let write = |current: StoredCheck, fence: Fence<'static>| {
        let on_old_read = on_old_read.clone();
        async move {
            db.store
                .update_check(&current, fence, &on_old_read, &notifications(), "late", now)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        write(created.clone(), Fence::None).await,
        UpdateOutcome::Stale
    );
    // A change of phase or result alone (no record) makes a read stale too.
    let completed = updated(
        db.store
            .update_check(
                &first,
                Fence::None,
                &complete(&first).unwrap(),
                &notifications(),
                "end",
                now,
            )
            .await
            .unwrap(),
    );
    let on_first = append(6002)(&first).unwrap();
    assert_eq!(
        db.store
            .update_check(
                &first,
                Fence::None,
                &on_first,
                &notifications(),
                "late",
                now
            )
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
    let write = |current: StoredCheck, fence: Fence<'static>| {
        let decision = decision.clone();
        async move {
            db.store
                .update_check(&current, fence, &decision, &notifications(), "late", now)
                .await
                .unwrap()
        }
    };
    let missing = StoredCheck {
        id: 999_999,
        ..completed.clone()
    };
    assert_eq!(write(missing, Fence::None).await, UpdateOutcome::NotFound);
    assert_eq!(
        write(completed.clone(), Fence::Lease("nobody")).await,
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

async fn leases_fence_writes_and_stale_leases_are_released(db: &TestDb) {
    let template_id = synced_template(db, "fencing").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let due = deadline();
    let claimed = |id| {
        vec![Claimed {
            check_id: id,
            deadline: due,
        }]
    };
    let millisecond = TimeDelta::milliseconds(1);

    // Not due a millisecond before its deadline; due at it.
    assert_eq!(
        db.store
            .claim_due(due - millisecond, "lease-a", 10)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        db.store.claim_due(due, "lease-a", 10).await.unwrap(),
        claimed(created.id)
    );
    assert_eq!(
        db.raw.poller(created.id).await.2.as_deref(),
        Some("lease-a")
    );
    assert_eq!(db.raw.schedule(created.id).await, (Some(due), Some(due)));
    // Leased: nobody else gets it.
    assert_eq!(
        db.store
            .claim_due(due + TimeDelta::seconds(1), "lease-x", 10)
            .await
            .unwrap(),
        []
    );

    // Its holder is presumed dead once the lease is older than the stale window.
    assert_eq!(db.store.release_stale_leases(due).await.unwrap(), 0);
    assert_eq!(
        db.store
            .release_stale_leases(due + millisecond)
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.raw.poller(created.id).await.2, None);
    assert_eq!(db.raw.schedule(created.id).await, (Some(due), None));
    assert_eq!(
        db.store
            .release_stale_leases(due + millisecond)
            .await
            .unwrap(),
        0
    );
    let later = due + TimeDelta::seconds(2);
    assert_eq!(
        db.store.claim_due(later, "lease-b", 10).await.unwrap(),
        claimed(created.id)
    );

    // The old holder wakes up: its write is fenced off, nothing changes.
    let rows = check_rows(db).await;
    assert_eq!(
        update(
            db,
            created.id,
            Fence::Lease("lease-a"),
            &complete,
            "a",
            later
        )
        .await
        .unwrap(),
        UpdateOutcome::Fenced
    );
    assert_eq!(
        db.store.get_check(created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(check_rows(db).await, rows);
    assert_eq!(outbox_rows(db).await, 0);
    assert_eq!(
        db.raw.poller(created.id).await.2.as_deref(),
        Some("lease-b")
    );

    // The current holder's write goes through and gives the lease back.
    let done = updated(
        update(
            db,
            created.id,
            Fence::Lease("lease-b"),
            &complete,
            "b",
            later,
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (
            done.phase,
            done.result,
            done.next_step_id,
            done.notification_seq
        ),
        (CheckPhase::Completed, CheckResult::Pass, Some(10), 1)
    );
    assert_eq!(db.raw.poller(created.id).await.2, None);
    assert_eq!(db.raw.schedule(created.id).await, (None, None));
    assert_eq!(outbox_rows(db).await, 1);
    // Ended: never claimed again, nothing stale.
    let much_later = later + TimeDelta::hours(1);
    assert_eq!(
        db.store.claim_due(much_later, "lease-c", 10).await.unwrap(),
        []
    );
    assert_eq!(db.store.release_stale_leases(much_later).await.unwrap(), 0);
}

async fn claim_due_takes_free_due_future_checks_oldest_first(db: &TestDb) {
    let template_id = synced_template(db, "claims").await;
    // Deadlines: anchor + window.
    let late = open_check(db, template_id, 1, "2026-11-20T08:00:05.250Z", 600).await; // 08:10:05.250
    let early = open_check(db, template_id, 2, "2026-11-20T08:00:01.000Z", 600).await; // 08:10:01
    let earliest = open_check(db, template_id, 3, "2026-11-20T08:00:03.000Z", 60).await; // 08:01:03
    let tie = open_check(db, template_id, 4, "2026-11-20T08:00:05.250Z", 600).await; // 08:10:05.250
    open_check(db, template_id, 5, "2026-11-20T08:00:05.250Z", 3600).await; // not due
    // Due, but leased by someone else.
    let leased = open_check(db, template_id, 6, "2026-11-20T07:00:00Z", 600).await;
    db.raw
        .execute_for(
            "UPDATE status_check_poller SET lock_id = 'elsewhere' WHERE status_check_id = ?",
            leased.id,
        )
        .await;
    // Due, but no longer in FUTURE (changed behind the store's back: the phase decides).
    let ended = open_check(db, template_id, 7, "2026-11-20T07:00:00Z", 600).await;
    db.raw
        .execute_for(
            "UPDATE status_check SET phase = 'COMPLETED' WHERE id = ?",
            ended.id,
        )
        .await;
    // Ended through the store.
    let completed = open_check(db, template_id, 8, "2026-11-20T07:00:00Z", 600).await;
    updated(
        update(
            db,
            completed.id,
            Fence::None,
            &complete,
            "c",
            at("2026-11-20T07:01:00Z"),
        )
        .await
        .unwrap(),
    );

    let now = at("2026-11-20T08:20:00Z");
    let deadline_of = |check: &StoredCheck| check.windows.until.unwrap();
    let first = db.store.claim_due(now, "lease-1", 2).await.unwrap();
    assert_eq!(
        first,
        [
            Claimed {
                check_id: earliest.id,
                deadline: at("2026-11-20T08:01:03Z")
            },
            Claimed {
                check_id: early.id,
                deadline: at("2026-11-20T08:10:01Z")
            },
        ]
    );
    let second = db.store.claim_due(now, "lease-2", 10).await.unwrap();
    assert_eq!(
        second,
        [
            Claimed {
                check_id: late.id,
                deadline: deadline_of(&late)
            },
            Claimed {
                check_id: tie.id,
                deadline: deadline_of(&tie)
            },
        ]
    );
    assert_eq!(second[0].deadline, deadline());
    assert_eq!(db.store.claim_due(now, "lease-3", 10).await.unwrap(), []);
    assert_eq!(db.store.claim_due(now, "lease-3", 0).await.unwrap(), []);
    assert_eq!(
        db.raw.poller(earliest.id).await.2.as_deref(),
        Some("lease-1")
    );
    assert_eq!(db.raw.poller(tie.id).await.2.as_deref(), Some("lease-2"));
    assert_eq!(
        db.raw.poller(leased.id).await.2.as_deref(),
        Some("elsewhere")
    );
}

async fn concurrent_claims_are_disjoint(db: &TestDb) {
    let template_id = synced_template(db, "concurrent-claims").await;
    let now = at("2026-11-20T09:00:00Z");
    for round in 0..3 {
        let mut all = BTreeSet::new();
        for i in 0..20 {
            let check = open_check(
                db,
                template_id,
                1000 * (round + 1) + i,
                "2026-11-20T08:00:00Z",
                60,
            )
            .await;
            all.insert(check.id);
        }
        let (a, b) = tokio::join!(
            db.store.claim_due(now, "claimer-a", 7),
            db.store.claim_due(now, "claimer-b", 7)
        );
        let ids = |claimed: Vec<Claimed>| -> BTreeSet<i64> {
            claimed.into_iter().map(|c| c.check_id).collect()
        };
        let (a, b) = (ids(a.unwrap()), ids(b.unwrap()));
        assert_eq!((a.len(), b.len()), (7, 7), "round {round}");
        assert!(a.is_disjoint(&b), "round {round}: {a:?} / {b:?}");
        let (c, d) = tokio::join!(
            db.store.claim_due(now, "claimer-c", 100),
            db.store.claim_due(now, "claimer-d", 100)
        );
        let (c, d) = (ids(c.unwrap()), ids(d.unwrap()));
        assert!(c.is_disjoint(&d), "round {round}: {c:?} / {d:?}");
        let union: BTreeSet<i64> = a.iter().chain(&b).chain(&c).chain(&d).copied().collect();
        assert_eq!(union, all, "round {round}");
        assert_eq!(
            a.len() + b.len() + c.len() + d.len(),
            all.len(),
            "round {round}"
        );
    }
}

async fn outbox_claims_leases_and_retries(db: &TestDb) {
    let template_id = synced_template(db, "outbox").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:01:00Z");
    let seconds = TimeDelta::seconds;
    for i in 0..3 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            &format!("call-{i}"),
            t0 + seconds(i),
        )
        .await
        .unwrap();
    }
    assert_eq!(db.store.outbox_backlog().await.unwrap(), 3);

    // Due rows only, oldest first, up to the limit.
    assert_eq!(
        db.store
            .claim_outbox(t0 - seconds(1), "a", t0 + seconds(30), 10)
            .await
            .unwrap(),
        []
    );
    let a = db
        .store
        .claim_outbox(t0 + seconds(1), "a", t0 + seconds(31), 10)
        .await
        .unwrap();
    assert_eq!(a.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    let first = &a[0];
    assert_eq!(
        (
            first.check_id,
            first.robot_id,
            first.call_ref.as_str(),
            first.attempts
        ),
        (created.id, 42, "call-0", 0)
    );
    assert_eq!(
        first.payload,
        format!(
            "check {} seq 1: FUTURE PENDING None with 3 records",
            created.id
        )
    );
    // Leased rows are not handed out again while their lease runs.
    let b = db
        .store
        .claim_outbox(t0 + seconds(5), "b", t0 + seconds(35), 10)
        .await
        .unwrap();
    assert_eq!(b.iter().map(|m| m.seq).collect::<Vec<_>>(), [3]);
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(5), "b", t0 + seconds(35), 10)
            .await
            .unwrap(),
        []
    );

    // Sent, once.
    assert!(
        db.store
            .outbox_sent(&[a[0].id], "a", t0 + seconds(6))
            .await
            .unwrap()
            .contains(&a[0].id)
    );
    assert!(
        !db.store
            .outbox_sent(&[a[0].id], "a", t0 + seconds(6))
            .await
            .unwrap()
            .contains(&a[0].id)
    );
    assert_eq!(db.store.outbox_backlog().await.unwrap(), 2);

    // Failed: retried later, with the error kept (cut to the column).
    let error = "é".repeat(3000);
    assert!(
        db.store
            .outbox_failed(a[1].id, "a", t0 + seconds(60), &error)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .outbox_failed(a[1].id, "a", t0 + seconds(60), &error)
            .await
            .unwrap()
    );
    let rows = db.raw.outbox(created.id).await;
    assert_eq!(rows[0].sent_at, Some(t0 + seconds(6)));
    assert_eq!(rows[1].attempts, 1);
    assert_eq!(
        rows[1].last_error.as_deref(),
        Some("é".repeat(1024).as_str())
    );
    assert_eq!(rows[1].next_attempt_at, t0 + seconds(60));
    assert_eq!(rows[1].sent_at, None);

    // b's lease ran out: c takes the row over, and b can no longer mark it.
    let c = db
        .store
        .claim_outbox(t0 + seconds(40), "c", t0 + seconds(70), 10)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|m| (m.seq, m.attempts)).collect::<Vec<_>>(),
        [(3, 0)]
    );
    assert!(
        !db.store
            .outbox_sent(&[b[0].id], "b", t0 + seconds(41))
            .await
            .unwrap()
            .contains(&b[0].id)
    );
    assert!(
        !db.store
            .outbox_failed(b[0].id, "b", t0 + seconds(41), "late")
            .await
            .unwrap()
    );
    assert!(
        db.store
            .outbox_sent(&[c[0].id], "c", t0 + seconds(42))
            .await
            .unwrap()
            .contains(&c[0].id)
    );

    // The failed row comes back when its retry is due, with its attempt count.
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(59), "d", t0 + seconds(90), 10)
            .await
            .unwrap(),
        []
    );
    let d = db
        .store
        .claim_outbox(t0 + seconds(60), "d", t0 + seconds(90), 10)
        .await
        .unwrap();
    assert_eq!(
        d.iter().map(|m| (m.seq, m.attempts)).collect::<Vec<_>>(),
        [(2, 1)]
    );
    // A batch marks only the rows its lease holds (a's row was sent already).
    assert_eq!(
        db.store
            .outbox_sent(&[a[0].id, d[0].id], "d", t0 + seconds(61))
            .await
            .unwrap(),
        [d[0].id]
    );
    assert_eq!(db.store.outbox_backlog().await.unwrap(), 0);
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(3600), "e", t0 + seconds(3630), 10)
            .await
            .unwrap(),
        []
    );
}

async fn concurrent_outbox_claims_are_disjoint(db: &TestDb) {
    let template_id = synced_template(db, "outbox-claims").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:01:00Z");
    for i in 0..12 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            "call",
            t0 + TimeDelta::milliseconds(i),
        )
        .await
        .unwrap();
    }
    let now = t0 + TimeDelta::seconds(1);
    let until = now + TimeDelta::seconds(30);
    let (a, b) = tokio::join!(
        db.store.claim_outbox(now, "a", until, 5),
        db.store.claim_outbox(now, "b", until, 5)
    );
    let seqs = |claimed: Vec<status_check::store::OutboxMessage>| -> BTreeSet<i64> {
        claimed.into_iter().map(|m| m.seq).collect()
    };
    let (a, b) = (seqs(a.unwrap()), seqs(b.unwrap()));
    assert_eq!((a.len(), b.len()), (5, 5));
    assert!(a.is_disjoint(&b), "{a:?} / {b:?}");
    let rest = seqs(db.store.claim_outbox(now, "c", until, 100).await.unwrap());
    let union: BTreeSet<i64> = a.iter().chain(&b).chain(&rest).copied().collect();
    assert_eq!(union, (1..=12).collect());
    assert_eq!(a.len() + b.len() + rest.len(), 12);
}

// After the macro: it is in scope only below its definition.
mod batch;
