//! The monitors' history in the store behaviour suite (SPEC §12 "History"), on SQLite and
//! MySQL/MariaDB: a state write keeps its window spans (and only a write that won its
//! compare-and-set), a stopped session ends its open span, ended spans are purged after the
//! retention in batches.

use chrono::NaiveDate;
use serde_json::json;
use status_check::store::{MonitorSource, StateChange, StoredMonitor, WindowClose, WindowRecord};
use status_check_engine::monitor::{WindowLength, WindowState};

use super::{at, date, monitor};
use crate::harness::on_both_backends;
use crate::support::TestDb;

/// A span of robot 42's session of 2026-11-20 (08:00–22:00 Amsterdam = 07:00–21:00 UTC).
fn span(number: u32, start: &str, end: &str, ending: Option<WindowClose>) -> WindowRecord {
    WindowRecord {
        session_date: date(),
        session_start: at("2026-11-20T07:00:00Z"),
        session_end: at("2026-11-20T21:00:00Z"),
        subscription_id: Some(7),
        number,
        start: at(start),
        end: at(end),
        ending,
        reference_id: None,
        reset_event_id: None,
    }
}

/// The state write that leaves `open` open, keeping `windows`.
fn change(open: &WindowRecord, windows: Vec<WindowRecord>) -> StateChange {
    StateChange {
        window: Some(WindowState {
            session_date: open.session_date,
            session_end: open.session_end,
            window_number: open.number,
            window_start: open.start,
            window_end: open.end,
            window_length: WindowLength::parse("2h").unwrap(),
        }),
        subscription_id: open.subscription_id,
        due_at: open.end,
        release_lease: false,
        actions: Vec::new(),
        remove_subscription: None,
        windows,
    }
}

async fn stored(db: &TestDb, rule: &str) -> StoredMonitor {
    db.store.get_monitor(42, rule).await.unwrap().unwrap()
}

async fn history(db: &TestDb, rule: &str) -> Vec<WindowRecord> {
    db.store.monitor_windows(42, rule, date()).await.unwrap()
}

/// A state write keeps its spans; a later one ends the open span (same window start) in
/// place; a write that lost its compare-and-set keeps nothing; other days and monitors are
/// apart.
async fn a_state_write_keeps_its_windows(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    for rule in ["a", "b"] {
        db.store
            .put_monitor(&monitor(rule, json!({})), MonitorSource::Api, t0)
            .await
            .unwrap();
    }
    assert_eq!(history(db, "a").await, []);
    let first = span(1, "2026-11-20T07:00:00Z", "2026-11-20T09:00:00Z", None);
    let before = stored(db, "a").await;
    assert!(
        db.store
            .write_monitor_state(&before, None, &change(&first, vec![first.clone()]), t0)
            .await
            .unwrap()
    );
    assert_eq!(history(db, "a").await, std::slice::from_ref(&first));

    let mut reset = span(1, "2026-11-20T07:00:00Z", "2026-11-20T08:00:00Z", None);
    reset.ending = Some(WindowClose::Reset);
    reset.reset_event_id = Some(77);
    let restarted = span(1, "2026-11-20T08:00:00Z", "2026-11-20T10:00:00Z", None);
    let stale = change(&restarted, vec![reset.clone(), restarted.clone()]);
    assert!(
        !db.store
            .write_monitor_state(&before, None, &stale, t0)
            .await
            .unwrap(),
        "decided on an older state version"
    );
    assert_eq!(
        history(db, "a").await,
        [first],
        "a lost write keeps nothing"
    );

    let now = at("2026-11-20T08:00:00Z");
    assert!(
        db.store
            .write_monitor_state(&stored(db, "a").await, None, &stale, now)
            .await
            .unwrap()
    );
    let mut expired = span(1, "2026-11-20T08:00:00Z", "2026-11-20T10:00:00Z", None);
    expired.ending = Some(WindowClose::Expired);
    expired.reference_id = Some("status-check:42:a:2026-11-20:1".to_owned());
    let second = span(2, "2026-11-20T10:00:00Z", "2026-11-20T12:00:00Z", None);
    let later = at("2026-11-20T10:00:00Z");
    assert!(
        db.store
            .write_monitor_state(
                &stored(db, "a").await,
                None,
                &change(&second, vec![expired.clone(), second.clone()]),
                later
            )
            .await
            .unwrap()
    );
    assert_eq!(
        history(db, "a").await,
        [reset, expired, second],
        "each open span ended in place, in time order"
    );
    assert_eq!(history(db, "b").await, [], "another monitor's");
    let next_day = NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
    assert_eq!(
        db.store.monitor_windows(42, "a", next_day).await.unwrap(),
        []
    );
}

/// A session ended by a change of what the monitor watches, or by deleting it, ends its open
/// window there as `stopped`; a change of the window length alone does not.
async fn stopping_a_session_ends_its_open_window(db: &TestDb) {
    let source = MonitorSource::Api;
    let t0 = at("2026-11-20T07:00:00Z");
    db.store
        .put_monitor(&monitor("a", json!({})), source, t0)
        .await
        .unwrap();
    let open = span(1, "2026-11-20T07:00:00Z", "2026-11-20T09:00:00Z", None);
    let write = change(&open, vec![open.clone()]);
    assert!(
        db.store
            .write_monitor_state(&stored(db, "a").await, None, &write, t0)
            .await
            .unwrap()
    );
    let t1 = at("2026-11-20T07:30:00Z");
    db.store
        .put_monitor(&monitor("a", json!({"window": "3h"})), source, t1)
        .await
        .unwrap();
    assert_eq!(
        history(db, "a").await,
        std::slice::from_ref(&open),
        "still open"
    );

    let t2 = at("2026-11-20T07:45:00Z");
    db.store
        .put_monitor(&monitor("a", json!({"eventType": "BED_EXIT"})), source, t2)
        .await
        .unwrap();
    let mut stopped = span(1, "2026-11-20T07:00:00Z", "2026-11-20T07:45:00Z", None);
    stopped.ending = Some(WindowClose::Stopped);
    assert_eq!(history(db, "a").await, [stopped.clone()]);

    let reopened = span(1, "2026-11-20T08:00:00Z", "2026-11-20T10:00:00Z", None);
    let write = change(&reopened, vec![reopened.clone()]);
    assert!(
        db.store
            .write_monitor_state(&stored(db, "a").await, None, &write, t2)
            .await
            .unwrap()
    );
    let t3 = at("2026-11-20T08:20:00Z");
    db.store.delete_monitor(42, "a", t3).await.unwrap();
    let mut deleted = span(1, "2026-11-20T08:00:00Z", "2026-11-20T08:20:00Z", None);
    deleted.ending = Some(WindowClose::Stopped);
    assert_eq!(
        history(db, "a").await,
        [stopped, deleted],
        "the day's history outlives the monitor"
    );
}

/// Spans that ended before the cut-off go, oldest first, at most `limit` per call; later
/// ones stay.
async fn ended_windows_are_purged_in_batches(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    db.store
        .put_monitor(&monitor("a", json!({})), MonitorSource::Api, t0)
        .await
        .unwrap();
    let expired = |n: u32, start: &str, end: &str| {
        let mut s = span(n, start, end, Some(WindowClose::Expired));
        s.reference_id = Some(format!("status-check:42:a:2026-11-20:{n}"));
        s
    };
    let kept = vec![
        expired(1, "2026-11-20T07:00:00Z", "2026-11-20T09:00:00Z"),
        expired(2, "2026-11-20T09:00:00Z", "2026-11-20T11:00:00Z"),
        expired(3, "2026-11-20T11:00:00Z", "2026-11-20T13:00:00Z"),
        span(4, "2026-11-20T13:00:00Z", "2026-11-20T15:00:00Z", None),
    ];
    let write = change(&kept[3], kept.clone());
    assert!(
        db.store
            .write_monitor_state(&stored(db, "a").await, None, &write, t0)
            .await
            .unwrap()
    );
    let cut_off = at("2026-11-20T13:00:00Z");
    assert_eq!(db.store.purge_monitor_windows(cut_off, 1).await.unwrap(), 1);
    assert_eq!(history(db, "a").await, kept[1..]);
    assert_eq!(
        db.store.purge_monitor_windows(cut_off, 10).await.unwrap(),
        1
    );
    assert_eq!(
        history(db, "a").await,
        kept[2..],
        "one that ended at the cut-off stays"
    );
    assert_eq!(
        db.store.purge_monitor_windows(cut_off, 10).await.unwrap(),
        0
    );
}

on_both_backends!(
    databases:
    a_state_write_keeps_its_windows,
    stopping_a_session_ends_its_open_window,
    ended_windows_are_purged_in_batches,
);
