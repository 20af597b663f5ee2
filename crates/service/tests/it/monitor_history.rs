//! The history of monitor sessions (SPEC §12 "History"), on SQLite and MariaDB: the store keeps
//! each window span with the state write that decided it (and only then), ends the open one
//! when the session is stopped, and purges ended spans after the retention in batches; end to
//! end, a session's reset, expired and cut windows read back through `GET …?date=`, and the
//! relay purges them after the outbox retention.

use chrono::{DateTime, NaiveDate, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::store::{StateChange, StoredMonitor, WindowClose, WindowRecord};
use status_check_engine::monitor::WindowState;
use status_check_sim::megazord::NewIncoming;

use crate::harness::Backend;
use crate::monitor_store::{at, monitor};
use crate::monitors::{MonitorStack, ROBOT, TOKEN, stack};
use crate::support::TestDb;

// ---- The store ----

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 20).unwrap()
}

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
            .put_monitor(
                &monitor(rule, json!({})),
                status_check::store::MonitorSource::Api,
                t0,
            )
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
    let source = status_check::store::MonitorSource::Api;
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
        .put_monitor(
            &monitor("a", json!({})),
            status_check::store::MonitorSource::Api,
            t0,
        )
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

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod store_sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let db = crate::support::sqlite_db().await;
                super::$name(&db).await;
            })*
        }
        mod store_mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(db) = crate::support::mysql_db().await else {
                    return;
                };
                super::$name(&db).await;
            })*
        }
    };
}

on_both_stores!(
    a_state_write_keeps_its_windows,
    stopping_a_session_ends_its_open_window,
    ended_windows_are_purged_in_batches,
);

// ---- End to end ----

impl MonitorStack {
    /// `GET /internal/v1/monitors/42/{rule}{query}` with the token.
    async fn read(&self, rule: &str, query: &str) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/internal/v1/monitors/{ROBOT}/{rule}{query}",
                self.first.base
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A watched event at Megazord now (fanned out to the status queue); its id.
    async fn activity(&self) -> i64 {
        let posted = self
            .megazord
            .post_incoming(ROBOT, NewIncoming::named("TOILET_ACTIVITY"))
            .await;
        assert!(posted.unsent.is_empty(), "{:?}", posted.unsent);
        posted.incoming["id"].as_i64().unwrap()
    }
}

fn window(number: u32, start: &str, end: &str) -> Value {
    json!({"windowNumber": number, "start": at(start), "end": at(end), "ending": null,
           "referenceId": null, "resetBy": null})
}

fn ended(number: u32, start: &str, end: &str, ending: &str) -> Value {
    let mut window = window(number, start, end);
    window["ending"] = json!(ending);
    window
}

/// The windows of a history without their subscription (checked once, on the session).
fn windows_of(history: &Value, subscription: i64) -> Vec<Value> {
    history["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["subscriptionId"], subscription, "{w}");
            let mut w = w.clone();
            w.as_object_mut().unwrap().remove("subscriptionId");
            w
        })
        .collect()
}

fn time(value: &Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

/// A session (08:00–08:25 UTC, 10 min windows) whose first window is reset by a delivered
/// event, then expires and alarms, whose second is reset by an event the backfill found, and
/// whose last is cut by the session's end: `?date=` answers all of it, how each ended and why.
async fn a_days_session_reads_back_with_how_each_window_ended(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack
        .monitor(
            "no-toilet",
            json!({"daily": {"start": "08:00", "end": "08:25"}}),
        )
        .await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let subscription = stack.megazord.subscriptions(ROBOT)[0]["id"]
        .as_i64()
        .unwrap();

    stack.set("2026-11-20T08:05:00Z");
    let delivered = stack.activity().await;
    assert_eq!(
        stack.consume().await,
        [status_check::workers::consumer::Outcome::Applied]
    );
    stack.set("2026-11-20T08:15:00Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    stack.tick_relay().await;

    // Mid-session: the open window is the last, with its planned end.
    let (status, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["ruleId"], "no-toilet",
        "the monitor, as without a date"
    );
    assert_eq!(body["windowNumber"], 2);
    let history = &body["history"];
    let mut reset = ended(1, "2026-11-20T08:00:00Z", "2026-11-20T08:05:00Z", "reset");
    reset["resetBy"] = json!({"eventId": delivered, "at": at("2026-11-20T08:05:00Z")});
    let mut expired = ended(1, "2026-11-20T08:05:00Z", "2026-11-20T08:15:00Z", "expired");
    expired["referenceId"] = json!("status-check:42:no-toilet:2026-11-20:1");
    assert_eq!(
        windows_of(history, subscription),
        [
            reset.clone(),
            expired.clone(),
            window(2, "2026-11-20T08:15:00Z", "2026-11-20T08:25:00Z"),
        ]
    );

    // An event at 08:18 nobody consumes: the worker's backfill at the session's end finds it.
    stack.set("2026-11-20T08:18:00Z");
    let backfilled = stack.activity().await;
    stack.set("2026-11-20T08:25:00Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    stack.tick_relay().await;
    assert_eq!(
        stack.references(),
        ["status-check:42:no-toilet:2026-11-20:1"],
        "the one expired window alarmed, under the reference the history shows"
    );

    let (status, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["sessionDate"], Value::Null, "no session open now");
    let history = &body["history"];
    assert_eq!(history["sessionDate"], "2026-11-20");
    assert_eq!(time(&history["sessionStart"]), at("2026-11-20T08:00:00Z"));
    assert_eq!(time(&history["sessionEnd"]), at("2026-11-20T08:25:00Z"));
    assert_eq!(history["subscriptionId"], subscription);
    assert_eq!(history["alarmsSent"], 1);
    let mut second_reset = ended(2, "2026-11-20T08:15:00Z", "2026-11-20T08:18:00Z", "reset");
    second_reset["resetBy"] = json!({"eventId": backfilled, "at": at("2026-11-20T08:18:00Z")});
    assert_eq!(
        windows_of(history, subscription),
        [
            reset,
            expired,
            second_reset,
            ended(
                2,
                "2026-11-20T08:18:00Z",
                "2026-11-20T08:25:00Z",
                "sessionEnded"
            ),
        ]
    );

    // Another day: nothing kept, said plainly.
    let (status, body) = stack.read("no-toilet", "?date=2026-11-19").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["history"],
        json!({"sessionDate": "2026-11-19", "sessionStart": null, "sessionEnd": null,
               "subscriptionId": null, "alarmsSent": 0, "windows": []})
    );
    // Without a date: as before, no history.
    let (status, body) = stack.read("no-toilet", "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.get("history").is_none(), "{body}");
}

/// A date that is not `YYYY-MM-DD` is a 400 problem naming `date`; an unknown monitor is
/// still a 404.
async fn a_bad_date_is_refused_naming_the_field(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    for bad in [
        "2026-13-01",
        "2026-02-30",
        "20261120",
        "2026-1-5",
        "2026-11-20T08:00",
        "",
        "today",
    ] {
        let (status, body) = stack.read("no-toilet", &format!("?date={bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["status"], 400);
        assert_eq!(body["errors"][0]["field"], "date", "{bad:?}: {body}");
    }
    let (status, _) = stack.read("other", "?date=2026-11-20").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// After the outbox retention (7 days by default) the relay purges the windows that ended
/// before it and keeps the later ones.
async fn the_relay_purges_windows_after_the_retention(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack
        .monitor(
            "no-toilet",
            json!({"daily": {"start": "08:00", "end": "08:25"}}),
        )
        .await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.set("2026-11-20T08:25:00Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    stack.tick_relay().await;
    let endings = |body: &Value| -> Vec<(String, String)> {
        body["history"]["windows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| {
                (
                    w["end"].as_str().unwrap().to_owned(),
                    w["ending"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (_, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    let all = endings(&body);
    assert_eq!(
        all.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
        ["expired", "expired", "sessionEnded"]
    );

    // 7 days after 08:15: the window that ended at 08:10 goes, the later two stay.
    stack.set("2026-11-27T08:15:00Z");
    stack.tick_relay().await;
    let (_, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    assert_eq!(endings(&body), all[1..]);

    stack.set("2026-11-27T08:26:00Z");
    stack.tick_relay().await;
    let (_, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    assert_eq!(body["history"]["windows"], json!([]));
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await;
            })*
        }
        mod mysql {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if crate::support::mysql_skipped() {
                    return;
                }
                super::$name(super::Backend::Mysql).await;
            })*
        }
    };
}

on_both_backends!(
    a_days_session_reads_back_with_how_each_window_ended,
    a_bad_date_is_refused_naming_the_field,
    the_relay_purges_windows_after_the_retention,
);
