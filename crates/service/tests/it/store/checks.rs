//! Creating and reading checks on both backends: every field round-trips, a create is
//! idempotent per request, lookups by subscription and by id.

use super::*;

use crate::harness::on_both_backends;

on_both_backends!(
    databases:
    create_then_get_and_find_round_trip_every_field,
    unbounded_past_and_no_future_window_read_back_as_none,
    long_reference_ids_are_kept_cut_to_the_column,
    create_is_idempotent_per_request_key,
    concurrent_identical_creates_make_one_check,
    missing_checks_are_none,
    one_event_is_never_recorded_twice_for_a_check,
    planned_at_outside_the_timestamp_range_is_refused,
    create_check_sets_the_pending_deadline,
    find_by_subscription_matches_robot_and_subscription,
    find_by_subscriptions_answers_each_pair_as_one_lookup_does,
    get_checks_answers_each_id_as_one_read_does,
    a_backtest_starts_after_the_last_check_created_an_hour_before_the_period,
);

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

/// `templates backtest` finds where its pages start by a binary search of the primary key (no
/// index on `created_at`): after the last check created more than an hour before the period.
async fn a_backtest_starts_after_the_last_check_created_an_hour_before_the_period(db: &TestDb) {
    let template_id = synced_template(db, "seek").await;
    let mut ids = Vec::new();
    for (robot, created) in [
        (1, "2026-11-01T00:00:00Z"),
        (2, "2026-11-10T00:00:00Z"),
        (3, "2026-11-10T00:45:00Z"),
        (4, "2026-11-20T00:00:00Z"),
        (5, "2026-11-20T00:00:01Z"),
    ] {
        let check = NewCheck {
            now: at(created),
            ..new_check(template_id, robot)
        };
        ids.push(created_new(create(db, check).await.unwrap()).id);
    }
    let url = match &db.url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", db.sqlite_path().unwrap().display()),
    };
    let store = status_check::store::ReadOnlyStore::open(&url)
        .await
        .unwrap();
    for (since, after) in [
        ("2026-10-01T00:00:00Z", 0),
        ("2026-11-01T01:00:00Z", 0),
        ("2026-11-01T01:00:01Z", ids[0]),
        // 00:45 is within the hour before 01:00:01: the pages start before it.
        ("2026-11-10T01:00:01Z", ids[1]),
        ("2026-11-10T02:00:00Z", ids[2]),
        ("2026-11-20T00:30:00Z", ids[2]),
        ("2026-11-21T00:00:00Z", ids[4]),
    ] {
        assert_eq!(
            store.ended_checks_start(at(since)).await.unwrap(),
            after,
            "since {since}"
        );
    }
}
