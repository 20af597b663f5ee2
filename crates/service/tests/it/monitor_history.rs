//! The history of monitor sessions (SPEC §12 "History") end to end, on SQLite and MariaDB with
//! the SQS emulator and the Megazord simulator: a session's reset, expired and cut windows read
//! back through `GET …?date=` with how each ended and why, a bad date is refused naming it, and
//! the relay purges the windows after the outbox retention. (The store's part is in the store
//! behaviour suite, `monitor_store/history.rs`.)

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_sim::megazord::NewIncoming;

use crate::harness::Backend;
use crate::harness::on_both_backends;
use crate::monitors::{MonitorStack, ROBOT, TOKEN, at, stack};

impl MonitorStack {
    /// `GET /internal/v1/monitors/42/{rule}{query}` with the token.
    async fn read(&self, rule: &str, query: &str) -> (StatusCode, Value) {
        self.read_at("monitors", rule, query).await
    }

    /// `GET /internal/v1/monitor-history/42/{rule}{query}` with the token.
    async fn read_history(&self, rule: &str, query: &str) -> (StatusCode, Value) {
        self.read_at("monitor-history", rule, query).await
    }

    async fn read_at(&self, collection: &str, rule: &str, query: &str) -> (StatusCode, Value) {
        let response = reqwest::Client::new()
            .get(format!(
                "{}/internal/v1/{collection}/{ROBOT}/{rule}{query}",
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
            .await
            .expect("a known event");
        assert!(posted.lost.is_empty(), "{:?}", posted.lost);
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
    stack.set("2026-11-20T08:15:02Z");
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
    stack.set("2026-11-20T08:25:02Z");
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

    // The history route answers the same day alone — and still once the monitor is deleted
    // (SPEC §12: kept at least the retention, readable by date).
    let (_, body) = stack.read("no-toilet", "?date=2026-11-20").await;
    let kept = body["history"].clone();
    let (status, alone) = stack.read_history("no-toilet", "?date=2026-11-20").await;
    assert_eq!((status, &alone), (StatusCode::OK, &kept));
    let deleted = reqwest::Client::new()
        .delete(format!(
            "{}/internal/v1/monitors/{ROBOT}/no-toilet",
            stack.first.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (status, _) = stack.read("no-toilet", "?date=2026-11-20").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the monitor is gone");
    let (status, alone) = stack.read_history("no-toilet", "?date=2026-11-20").await;
    assert_eq!(
        (status, &alone),
        (StatusCode::OK, &kept),
        "its history is not"
    );
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
    // The history route needs its date.
    for query in ["", "?date=today"] {
        let (status, body) = stack.read_history("no-toilet", query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query:?}: {body}");
        assert_eq!(body["errors"][0]["field"], "date", "{query:?}: {body}");
    }
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
    stack.set("2026-11-20T08:25:02Z");
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

on_both_backends!(
    a_days_session_reads_back_with_how_each_window_ended,
    a_bad_date_is_refused_naming_the_field,
    the_relay_purges_windows_after_the_retention,
);
