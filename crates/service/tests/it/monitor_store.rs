//! The monitors' part of the store behaviour suite (SPEC §12): monitors and their state under
//! compare-and-set and leases — each behaviour once, on SQLite and MySQL/MariaDB. The actions
//! outbox is in `leased_queues`.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::json;
use status_check::store::{
    MonitorPut, MonitorSource, NEVER, NewAction, StateChange, StoredMonitor,
};
use status_check_engine::monitor::{Monitor, MonitorDefinition, WindowLength, WindowState};

use crate::harness::on_both_backends;
use crate::support::{TestDb, claim_jobs, lease};

mod history;

on_both_backends!(
    databases:
    put_creates_replaces_and_leaves_an_identical_monitor_alone,
    disabling_or_changing_the_watch_ends_the_session,
    claims_are_leased_disjoint_and_taken_over_when_stale,
    state_writes_are_compare_and_set_and_fenced,
    a_decision_writes_its_alarms_and_removal_with_the_state,
    deleting_a_monitor_removes_its_subscription_and_keeps_its_alarms,
);

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A monitor of robot 42 from a JSON definition (its defaults: whole-day, 2 h, one alarm).
pub(crate) fn monitor(rule: &str, changes: serde_json::Value) -> Monitor {
    let mut definition = json!({
        "robotId": 42, "ruleId": rule, "eventType": "TOILET_ACTIVITY", "window": "2h",
        "timezone": "Europe/Amsterdam", "daily": {"start": "08:00", "end": "22:00"},
        "actions": [{"type": "alarm", "eventName": "NO_TOILET_ACTIVITY_ALARM"}]
    });
    for (key, value) in changes.as_object().unwrap() {
        definition[key] = value.clone();
    }
    let definition: MonitorDefinition = serde_json::from_value(definition).unwrap();
    Monitor::from_definition(&definition).unwrap()
}

pub(crate) fn created(put: MonitorPut) -> StoredMonitor {
    match put {
        MonitorPut::Created(stored) => stored,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn replaced(put: MonitorPut) -> StoredMonitor {
    match put {
        MonitorPut::Replaced(stored) => stored,
        other => panic!("expected Replaced, got {other:?}"),
    }
}

pub(crate) fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

/// An open window 1 of 2026-11-20 (08:00–22:00 Amsterdam = 07:00–21:00 UTC).
fn open_window() -> WindowState {
    WindowState {
        session_date: date(),
        session_end: at("2026-11-20T21:00:00Z"),
        window_number: 1,
        window_start: at("2026-11-20T07:00:00Z"),
        window_end: at("2026-11-20T09:00:00Z"),
        window_length: WindowLength::parse("2h").unwrap(),
    }
}

pub(crate) fn open_session(subscription: i64) -> StateChange {
    StateChange {
        window: Some(open_window()),
        subscription_id: Some(subscription),
        due_at: open_window().window_end,
        release_lease: true,
        actions: Vec::new(),
        remove_subscription: None,
        windows: Vec::new(),
    }
}

/// The removals queued: (subscription, reason), by subscription.
async fn removals(db: &TestDb) -> Vec<(i64, String)> {
    db.raw
        .texts(
            "SELECT CAST(subscription_id AS CHAR), reason FROM status_check_subscription_removal \
             ORDER BY subscription_id",
            &[],
        )
        .await
        .into_iter()
        .map(|row| {
            (
                row[0].as_deref().unwrap().parse().unwrap(),
                row[1].clone().unwrap(),
            )
        })
        .collect()
}

async fn put_creates_replaces_and_leaves_an_identical_monitor_alone(db: &TestDb) {
    let t0 = at("2026-11-20T06:00:00Z");
    let first = created(
        db.store
            .put_monitor(&monitor("no-toilet", json!({})), MonitorSource::File, t0)
            .await
            .unwrap(),
    );
    assert_eq!(first.monitor, monitor("no-toilet", json!({})));
    assert_eq!((first.source, first.version), (MonitorSource::File, 1));
    assert_eq!(first.state.window, None);
    assert_eq!(first.state.due_at, t0, "a new monitor is due at once");
    let again = db
        .store
        .put_monitor(&monitor("no-toilet", json!({})), MonitorSource::File, t0)
        .await
        .unwrap();
    assert_eq!(again, MonitorPut::Unchanged(first.clone()));
    let longer = monitor("no-toilet", json!({"window": "90m"}));
    let second = replaced(
        db.store
            .put_monitor(&longer, MonitorSource::Api, t0 + TimeDelta::seconds(1))
            .await
            .unwrap(),
    );
    assert_eq!((second.id, second.version), (first.id, 2));
    assert_eq!(
        (second.monitor.window().as_seconds(), second.source),
        (5400, MonitorSource::Api)
    );
    let disabled = created(
        db.store
            .put_monitor(
                &monitor("night", json!({"enabled": false})),
                MonitorSource::File,
                t0,
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        disabled.state.due_at, NEVER,
        "a disabled monitor is never due"
    );
    let listed: Vec<(i64, String)> = db
        .store
        .list_monitors()
        .await
        .unwrap()
        .iter()
        .map(|m| (m.monitor.robot_id(), m.monitor.rule_id().to_string()))
        .collect();
    assert_eq!(
        listed,
        [(42, "night".to_owned()), (42, "no-toilet".to_owned())]
    );
    assert_eq!(
        db.store.get_monitor(42, "no-toilet").await.unwrap(),
        Some(second)
    );
    assert_eq!(db.store.get_monitor(42, "other").await.unwrap(), None);
    assert_eq!(db.store.get_monitor(43, "night").await.unwrap(), None);
}

async fn disabling_or_changing_the_watch_ends_the_session(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    let stored = created(
        db.store
            .put_monitor(&monitor("a", json!({})), MonitorSource::Api, t0)
            .await
            .unwrap(),
    );
    assert!(
        db.store
            .write_monitor_state(&stored, None, &open_session(991), t0)
            .await
            .unwrap()
    );
    // Another window length: the open window stays.
    let t1 = t0 + TimeDelta::minutes(5);
    let longer = replaced(
        db.store
            .put_monitor(
                &monitor("a", json!({"window": "3h"})),
                MonitorSource::Api,
                t1,
            )
            .await
            .unwrap(),
    );
    assert_eq!(longer.state.window, Some(open_window()));
    assert_eq!(longer.state.subscription_id, Some(991));
    // Another event type: the session ends, its subscription is removed, it reopens at once.
    let t2 = t1 + TimeDelta::minutes(5);
    let changed = replaced(
        db.store
            .put_monitor(
                &monitor("a", json!({"window": "3h", "eventType": "BED_EXIT"})),
                MonitorSource::Api,
                t2,
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        (changed.state.window, changed.state.subscription_id),
        (None, None)
    );
    assert_eq!(changed.state.due_at, t2);
    assert_eq!(removals(db).await, [(991, "monitor_changed".to_owned())]);
    // Disabled: the reopened session ends too, and the monitor is never due.
    let reopened = db.store.get_monitor(42, "a").await.unwrap().unwrap();
    assert!(
        db.store
            .write_monitor_state(&reopened, None, &open_session(992), t2)
            .await
            .unwrap()
    );
    let off = replaced(
        db.store
            .put_monitor(
                &monitor(
                    "a",
                    json!({"window": "3h", "eventType": "BED_EXIT", "enabled": false}),
                ),
                MonitorSource::Api,
                t2,
            )
            .await
            .unwrap(),
    );
    assert_eq!((off.state.window, off.state.due_at), (None, NEVER));
    assert_eq!(
        removals(db).await,
        [
            (991, "monitor_changed".to_owned()),
            (992, "monitor_disabled".to_owned())
        ]
    );
    // Enabled again: due at once.
    let t3 = t2 + TimeDelta::minutes(1);
    let on = replaced(
        db.store
            .put_monitor(
                &monitor("a", json!({"window": "3h", "eventType": "BED_EXIT"})),
                MonitorSource::Api,
                t3,
            )
            .await
            .unwrap(),
    );
    assert_eq!(on.state.due_at, t3);
}

async fn claims_are_leased_disjoint_and_taken_over_when_stale(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    for i in 0..10 {
        db.store
            .put_monitor(
                &monitor(&format!("m{i}"), json!({})),
                MonitorSource::Api,
                t0 + TimeDelta::milliseconds(i),
            )
            .await
            .unwrap();
    }
    db.store
        .put_monitor(
            &monitor("later", json!({})),
            MonitorSource::Api,
            t0 + TimeDelta::hours(1),
        )
        .await
        .unwrap();
    let now = t0 + TimeDelta::seconds(1);
    let stale_before = now - TimeDelta::seconds(30);
    let (lease_a, lease_b) = (lease("a"), lease("b"));
    let (a, b) = tokio::join!(
        db.store.claim_due_monitors(now, &lease_a, stale_before, 4),
        db.store.claim_due_monitors(now, &lease_b, stale_before, 4)
    );
    let rules = |claimed: &[StoredMonitor]| -> BTreeSet<String> {
        claimed
            .iter()
            .map(|m| m.monitor.rule_id().to_string())
            .collect()
    };
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!((a.len(), b.len()), (4, 4));
    assert!(rules(&a).is_disjoint(&rules(&b)));
    assert!(a.iter().all(|m| m.state.lock_id.as_deref() == Some("a")));
    let rest = db
        .store
        .claim_due_monitors(now, &lease("c"), stale_before, 100)
        .await
        .unwrap();
    assert_eq!(rest.len(), 2, "the monitor due in an hour is not claimed");
    assert!(
        db.store
            .claim_due_monitors(
                now + TimeDelta::seconds(29),
                &lease("d"),
                now - TimeDelta::seconds(1),
                100
            )
            .await
            .unwrap()
            .is_empty(),
        "held leases are not taken"
    );
    // A lease released with a new due time is claimed again then, not before.
    assert!(
        db.store
            .release_monitor(a[0].id, &lease("a"), now + TimeDelta::seconds(5), None, now)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .release_monitor(a[0].id, &lease("a"), now, None, now)
            .await
            .unwrap(),
        "a lease released is not held any more"
    );
    let later = now + TimeDelta::seconds(31);
    let taken_over = db
        .store
        .claim_due_monitors(later, &lease("e"), later - TimeDelta::seconds(30), 100)
        .await
        .unwrap();
    assert_eq!(taken_over.len(), 10, "stale leases are taken over");
}

async fn state_writes_are_compare_and_set_and_fenced(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    created(
        db.store
            .put_monitor(&monitor("a", json!({})), MonitorSource::Api, t0)
            .await
            .unwrap(),
    );
    let claimed = db
        .store
        .claim_due_monitors(t0, &lease("lease-1"), t0, 1)
        .await
        .unwrap()
        .remove(0);
    assert!(
        !db.store
            .write_monitor_state(&claimed, Some(&lease("lease-2")), &open_session(991), t0)
            .await
            .unwrap(),
        "another lease writes nothing"
    );
    assert!(
        db.store
            .write_monitor_state(&claimed, Some(&lease("lease-1")), &open_session(991), t0)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .write_monitor_state(&claimed, None, &open_session(992), t0)
            .await
            .unwrap(),
        "a decision on an older state writes nothing"
    );
    let stored = db
        .store
        .find_monitor_by_subscription(42, 991)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.window, Some(open_window()));
    assert_eq!(stored.state.lock_id, None, "the lease was released");
    assert_eq!(stored.state.due_at, open_window().window_end);
    assert!(stored.state.version > claimed.state.version);
    assert_eq!(
        db.store
            .find_monitor_by_subscription(43, 991)
            .await
            .unwrap(),
        None,
        "another robot's subscription"
    );
}

async fn a_decision_writes_its_alarms_and_removal_with_the_state(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    let two_actions = monitor(
        "a",
        json!({"actions": [{"type": "alarm", "eventName": "ALARM_A"},
                           {"type": "alarm", "eventName": "ALARM_B", "level": 3}]}),
    );
    let stored = created(
        db.store
            .put_monitor(&two_actions, MonitorSource::Api, t0)
            .await
            .unwrap(),
    );
    assert!(
        db.store
            .write_monitor_state(&stored, None, &open_session(991), t0)
            .await
            .unwrap()
    );
    let stored = db.store.get_monitor(42, "a").await.unwrap().unwrap();
    let actions = |number: u32, end: &str| -> Vec<NewAction> {
        two_actions
            .alarms(date(), number)
            .into_iter()
            .map(|alarm| NewAction {
                session_date: date(),
                window_number: number,
                window_end: at(end),
                alarm,
            })
            .collect()
    };
    // Windows 1 and 2 passed quietly; the session is closed at its end.
    let mut all = actions(1, "2026-11-20T09:00:00Z");
    all.extend(actions(2, "2026-11-20T11:00:00Z"));
    let change = StateChange {
        window: None,
        subscription_id: None,
        due_at: at("2026-11-21T07:00:00Z"),
        release_lease: false,
        actions: all,
        remove_subscription: Some((991, "monitor_session_ended")),
        windows: Vec::new(),
    };
    let now = at("2026-11-20T21:00:01Z");
    assert!(
        db.store
            .write_monitor_state(&stored, None, &change, now)
            .await
            .unwrap()
    );
    assert_eq!(
        db.store.last_alarm_number(42, "a", date()).await.unwrap(),
        2
    );
    assert_eq!(
        db.store
            .last_alarm_number(42, "a", date().succ_opt().unwrap())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        removals(db).await,
        [(991, "monitor_session_ended".to_owned())]
    );
    let pending = claim_jobs(db.store.alarm_jobs(), now, &lease("relay"), 10).await;
    let posted: Vec<(String, String, Option<u8>)> = pending
        .iter()
        .map(|job| &job.payload)
        .map(|a| &a.action.alarm)
        .map(|a| (a.reference_id.clone(), a.event_name.clone(), a.level))
        .collect();
    assert_eq!(
        posted,
        [
            (
                "status-check:42:a:2026-11-20:1".to_owned(),
                "ALARM_A".to_owned(),
                None
            ),
            (
                "status-check:42:a:2026-11-20:1".to_owned(),
                "ALARM_B".to_owned(),
                Some(3)
            ),
            (
                "status-check:42:a:2026-11-20:2".to_owned(),
                "ALARM_A".to_owned(),
                None
            ),
            (
                "status-check:42:a:2026-11-20:2".to_owned(),
                "ALARM_B".to_owned(),
                Some(3)
            ),
        ]
    );
    // Each claimed alarm is the action written, whole, of its monitor.
    let claimed: Vec<&NewAction> = pending.iter().map(|job| &job.payload.action).collect();
    assert_eq!(claimed, change.actions.iter().collect::<Vec<_>>());
    assert!(pending.iter().all(|job| {
        let a = &job.payload;
        (a.monitor_id, a.robot_id, a.rule_id.as_str()) == (stored.id, 42, "a")
    }));
    // The same alarm decided again (it cannot be, but if) is not queued twice.
    let stored = db.store.get_monitor(42, "a").await.unwrap().unwrap();
    let repeat = StateChange {
        actions: actions(2, "2026-11-20T11:00:00Z"),
        remove_subscription: None,
        ..change
    };
    assert!(
        db.store
            .write_monitor_state(&stored, None, &repeat, now)
            .await
            .unwrap()
    );
    assert_eq!(
        db.store.alarm_jobs().backlog().await.unwrap(),
        4,
        "one row per reference and action"
    );
}

async fn deleting_a_monitor_removes_its_subscription_and_keeps_its_alarms(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    let stored = created(
        db.store
            .put_monitor(&monitor("a", json!({})), MonitorSource::Api, t0)
            .await
            .unwrap(),
    );
    let mut change = open_session(991);
    change.actions = monitor("a", json!({}))
        .alarms(date(), 1)
        .into_iter()
        .map(|alarm| NewAction {
            session_date: date(),
            window_number: 1,
            window_end: at("2026-11-20T09:00:00Z"),
            alarm,
        })
        .collect();
    assert!(
        db.store
            .write_monitor_state(&stored, None, &change, t0)
            .await
            .unwrap()
    );
    let deleted = db.store.delete_monitor(42, "a", t0).await.unwrap().unwrap();
    assert_eq!(deleted.id, stored.id);
    assert_eq!(db.store.get_monitor(42, "a").await.unwrap(), None);
    assert_eq!(db.store.delete_monitor(42, "a", t0).await.unwrap(), None);
    assert_eq!(removals(db).await, [(991, "monitor_deleted".to_owned())]);
    assert_eq!(db.store.alarm_jobs().backlog().await.unwrap(), 1);
    // Created again the same day: its alarms number on from the deleted one's.
    assert_eq!(
        db.store.last_alarm_number(42, "a", date()).await.unwrap(),
        1
    );
}
