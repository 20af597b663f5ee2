//! The store's behaviour suite: every behaviour is written once and runs against SQLite and
//! MySQL/MariaDB (`store::sqlite::*` and `store::mysql::*`).

use chrono::{DateTime, TimeDelta, Utc};
use status_check::store::{
    CheckKey, Created, NewCheck, StoreError, StoredCheck, StoredWindows, Synced,
};
use status_check_engine::lifecycle::NextSteps;
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use status_check_engine::{
    CheckPhase, CheckResult, Event, Record, RecordPhase, TemplateDefinition,
};

use crate::support::TestDb;

/// Generates `sqlite::NAME` and `mysql::NAME` for each behaviour `NAME(&TestDb)`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::sqlite_db().await;
                    super::$name(&db).await;
                }
            )*
        }

        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::support::mysql_db().await else {
                        return;
                    };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

on_both_backends!(
    migrations_are_idempotent,
    ping_answers,
    create_then_get_and_find_round_trip_every_field,
    unbounded_past_and_no_future_window_read_back_as_none,
    create_is_idempotent_per_request_key,
    concurrent_identical_creates_make_one_check,
    missing_checks_are_none,
    one_event_is_never_recorded_twice_for_a_check,
    planned_at_outside_the_timestamp_range_is_refused,
    sync_template_creates_then_leaves_an_identical_version_alone,
    sync_template_refuses_a_changed_version,
    sync_template_toggles_only_is_active,
    active_template_is_the_highest_active_version,
    description_follows_the_highest_version,
    legacy_dependencies_are_read,
    overlong_dependencies_are_refused,
);

/// The helpers other test modules start services with hand out migrated, working stores.
#[tokio::test]
async fn support_stores_are_migrated() {
    let (store, _dir) = crate::support::sqlite_store().await;
    let synced = store
        .sync_template(&template("helper", 1), at("2026-11-01T00:00:00Z"))
        .await
        .unwrap();
    assert!(matches!(synced, Synced::Created(_)), "{synced:?}");
    if !crate::support::mysql_skipped() {
        let store = crate::support::mysql_store().await;
        let synced = store
            .sync_template(&template("helper", 1), at("2026-11-01T00:00:00Z"))
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

async fn synced_template(db: &TestDb, name: &str) -> i64 {
    match db
        .store
        .sync_template(&template(name, 1), at("2026-11-01T00:00:00Z"))
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

fn new_check(template_id: i64, robot_id: i64) -> NewCheck {
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
        windows: StoredWindows {
            anchor,
            past_seconds: 3600,
            future_seconds: 600,
        },
        next_steps: NextSteps {
            pass: 10,
            fail: 11,
            unknown: Some(12),
        },
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
    // A database that has the tables but no migration history (production, where the tables
    // predate this service): the migrations create nothing twice and fail on nothing.
    let template_id = synced_template(db, "before-history-lost").await;
    db.raw.execute("DROP TABLE _sqlx_migrations").await;
    db.store.migrate().await.unwrap();
    let stored = db.store.template_by_id(template_id).await.unwrap().unwrap();
    assert_eq!(stored.definition, template("before-history-lost", 1));
}

async fn ping_answers(db: &TestDb) {
    db.store.ping().await.unwrap();
}

async fn create_then_get_and_find_round_trip_every_field(db: &TestDb) {
    let template_id = synced_template(db, "round-trip").await;
    let check = new_check(template_id, 42);
    let stored = created_new(db.store.create_check(check.clone()).await.unwrap());

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
        next_steps: check.next_steps,
        polling_since: Some(at("2026-11-20T07:00:05.250Z")),
        polling_until: Some(at("2026-11-20T08:10:05.250Z")),
        notification_seq: 0,
        records: check.records.clone(),
        created_at: anchor,
        updated_at: anchor,
    };
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
    fine.windows.anchor = at("2026-11-20T08:00:05.250999Z");
    fine.now = fine.windows.anchor;
    let stored = created_new(db.store.create_check(fine.clone()).await.unwrap());
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
    check.windows.past_seconds = -1;
    check.windows.future_seconds = 0;
    check.phase = CheckPhase::Completed;
    check.result = CheckResult::Fail;
    check.next_step_id = Some(11);
    check.subscription_id = None;
    check.next_steps.unknown = None;
    check.records.clear();
    let stored = created_new(db.store.create_check(check.clone()).await.unwrap());
    assert_eq!(stored.polling_since, None);
    assert_eq!(stored.polling_until, None);
    assert_eq!(stored.phase, CheckPhase::Completed);
    assert_eq!(stored.result, CheckResult::Fail);
    assert_eq!(stored.next_step_id, Some(11));
    assert_eq!(stored.subscription_id, None);
    assert_eq!(stored.next_steps.unknown, None);
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
    check.windows.past_seconds = 0;
    let stored = created_new(db.store.create_check(check.clone()).await.unwrap());
    assert_eq!(stored.polling_since, Some(check.windows.anchor));
    assert_eq!(
        stored.polling_until,
        Some(check.windows.anchor + TimeDelta::seconds(600))
    );
}

async fn create_is_idempotent_per_request_key(db: &TestDb) {
    let template_id = synced_template(db, "idempotent").await;
    let first = created_new(
        db.store
            .create_check(new_check(template_id, 42))
            .await
            .unwrap(),
    );
    let rows = check_rows(db).await;
    assert_eq!(rows, [1, 1, 1, 3, 3]);

    // Same robot, step, scheduled id and plannedAt: the first check, whatever else differs.
    let mut again = new_check(template_id, 42);
    again.subscription_id = Some(5);
    again.records.truncate(1);
    again.now += TimeDelta::seconds(30);
    match db.store.create_check(again).await.unwrap() {
        Created::Existing(existing) => assert_eq!(existing, first),
        Created::New(check) => panic!("a duplicate check {} was created", check.id),
    }
    assert_eq!(check_rows(db).await, rows);

    // Any part of the key differing makes another check.
    let mut other = new_check(template_id, 42);
    other.key.planned_at += TimeDelta::milliseconds(1);
    let second = created_new(db.store.create_check(other).await.unwrap());
    assert_ne!(second.id, first.id);
    let changes: [fn(&mut NewCheck); 3] = [
        |c| c.key.robot_id = 7,
        |c| c.key.step_id = 7,
        |c| c.key.scheduled_id = 7,
    ];
    for change in changes {
        let mut other = new_check(template_id, 42);
        change(&mut other);
        created_new(db.store.create_check(other).await.unwrap());
    }
    assert_eq!(check_rows(db).await, [5, 5, 5, 15, 15]);
}

async fn concurrent_identical_creates_make_one_check(db: &TestDb) {
    let template_id = synced_template(db, "concurrent").await;
    for round in 0..5 {
        let check = new_check(template_id, 100 + round);
        let (a, b) = tokio::join!(
            db.store.create_check(check.clone()),
            db.store.create_check(check.clone())
        );
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
    let error = db.store.create_check(check).await.unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(check_rows(db).await, [0, 0, 0, 0, 0]);

    // The database itself refuses a second record of one event for a check.
    created_new(
        db.store
            .create_check(new_check(template_id, 42))
            .await
            .unwrap(),
    );
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
        let error = db.store.create_check(check).await.unwrap_err();
        assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    }
    assert_eq!(check_rows(db).await, [0, 0, 0, 0, 0]);
}

async fn sync_template_creates_then_leaves_an_identical_version_alone(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let both = template("both-phases", 1);
    let Synced::Created(id) = db.store.sync_template(&both, now).await.unwrap() else {
        panic!("expected Created");
    };
    assert_eq!(
        db.store.sync_template(&both, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    let stored = db.store.template_by_id(id).await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.definition, both);
    assert_eq!(
        db.store.active_template("both-phases").await.unwrap(),
        Some(stored)
    );

    // Only a future phase, polling until the end, no default windows.
    let future_only = TemplateDefinition {
        poll_until_end: true,
        poller: PollerDefaults::default(),
        past: None,
        ..template("future-only", 1)
    };
    let Synced::Created(future_id) = db.store.sync_template(&future_only, now).await.unwrap()
    else {
        panic!("expected Created");
    };
    let stored = db.store.template_by_id(future_id).await.unwrap().unwrap();
    assert_eq!(stored.definition, future_only);

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
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template_detail")
            .await,
        4 + 2
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
    let Synced::Created(id) = db.store.sync_template(&original, now).await.unwrap() else {
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
            db.store.sync_template(&changed, now).await.unwrap(),
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
        original
    );
    // The description is not part of a version.
    let described = TemplateDefinition {
        description: "said differently".into(),
        ..original.clone()
    };
    assert_eq!(
        db.store.sync_template(&described, now).await.unwrap(),
        Synced::Unchanged(id)
    );
}

async fn sync_template_toggles_only_is_active(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let active = template("toggled", 1);
    let Synced::Created(id) = db.store.sync_template(&active, now).await.unwrap() else {
        panic!("expected Created");
    };
    let inactive = TemplateDefinition {
        is_active: false,
        ..active.clone()
    };
    assert_eq!(
        db.store.sync_template(&inactive, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    assert_eq!(
        db.store
            .template_by_id(id)
            .await
            .unwrap()
            .unwrap()
            .definition,
        inactive
    );
    assert_eq!(db.store.active_template("toggled").await.unwrap(), None);
    assert_eq!(
        db.store.sync_template(&active, now).await.unwrap(),
        Synced::Unchanged(id)
    );
    assert_eq!(
        db.store
            .active_template("toggled")
            .await
            .unwrap()
            .map(|t| t.id),
        Some(id)
    );
}

async fn active_template_is_the_highest_active_version(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let mut ids = Vec::new();
    for (version, is_active) in [(2, true), (1, true), (3, false)] {
        let definition = TemplateDefinition {
            is_active,
            ..template("versions", version)
        };
        let Synced::Created(id) = db.store.sync_template(&definition, now).await.unwrap() else {
            panic!("expected Created");
        };
        ids.push((version, id));
    }
    let active = db.store.active_template("versions").await.unwrap().unwrap();
    assert_eq!(active.definition.version, 2);
    assert_eq!(active.id, ids[0].1);
    // A check keeps its version, active or not.
    let inactive = db.store.template_by_id(ids[2].1).await.unwrap().unwrap();
    assert_eq!(inactive.definition.version, 3);
    assert!(!inactive.definition.is_active);

    assert_eq!(
        db.store.active_template("no-such-template").await.unwrap(),
        None
    );
    assert_eq!(db.store.template_by_id(999_999).await.unwrap(), None);
}

async fn description_follows_the_highest_version(db: &TestDb) {
    let now = at("2026-11-01T00:00:00Z");
    let v1 = template("described", 1);
    let v2 = template("described", 2);
    db.store.sync_template(&v1, now).await.unwrap();
    db.store.sync_template(&v2, now).await.unwrap();
    // Syncing the older file again does not take the description back.
    db.store.sync_template(&v1, now).await.unwrap();
    let active = db
        .store
        .active_template("described")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(active.definition.description, "described, version 2");
}

async fn legacy_dependencies_are_read(db: &TestDb) {
    // Written as another tool did: dependencies as [{"eventName": …}], no default windows row.
    db.raw
        .execute(
            "INSERT INTO status_check_description (name, description, created_at, updated_at) \
             VALUES ('legacy', 'From before', '2025-01-01 00:00:00', '2025-01-01 00:00:00')",
        )
        .await;
    db.raw
        .execute(
            "INSERT INTO status_check_template (template_description_id, \
             past_event_dependencies, future_event_dependencies, version, is_active, \
             poll_until_end, created_at) \
             SELECT id, '[{\"eventName\":\"CHARGING_STARTED\"}]', '[]', 1, TRUE, FALSE, \
             '2025-01-01 00:00:00' FROM status_check_description WHERE name = 'legacy'",
        )
        .await;
    db.raw
        .execute(
            "INSERT INTO status_check_template_detail (status_check_template_id, phase, \
             output, expression, created_at) \
             SELECT t.id, 'PAST', 'PASS', 'past.size() > 0', '2025-01-01 00:00:00' \
             FROM status_check_template t \
             JOIN status_check_description d ON d.id = t.template_description_id \
             WHERE d.name = 'legacy'",
        )
        .await;
    let expected = TemplateDefinition {
        name: "legacy".into(),
        version: 1,
        description: "From before".into(),
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
    let stored = db.store.active_template("legacy").await.unwrap().unwrap();
    assert_eq!(stored.definition, expected);
    // The same template from a file is that version, not a conflicting one.
    assert_eq!(
        db.store
            .sync_template(&expected, at("2026-11-01T00:00:00Z"))
            .await
            .unwrap(),
        Synced::Unchanged(stored.id)
    );
}

async fn overlong_dependencies_are_refused(db: &TestDb) {
    let mut definition = template("overlong", 1);
    definition.past.as_mut().unwrap().depends_on = (0..30)
        .map(|i| format!("A_RATHER_LONG_EVENT_NAME_{i}"))
        .collect();
    let error = db
        .store
        .sync_template(&definition, at("2026-11-01T00:00:00Z"))
        .await
        .unwrap_err();
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_template")
            .await,
        0
    );
}
