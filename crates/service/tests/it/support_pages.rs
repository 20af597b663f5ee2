//! The support pages and the internal check read (SPEC §15) over real HTTP, on SQLite and
//! MariaDB: only the internal token opens them (bearer, or the password of HTTP Basic; else
//! 401 with a Basic challenge), any robot's check with its notifications, the pages' HTML,
//! the list's filters and paging, and problem+json on every error.

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use status_check::jobs::{JobFailure, Lease};
use status_check::store::{BatchedUpdate, CheckUpdate, Fence, Notifications, UpdateOutcome};
use status_check_engine::{CheckPhase, CheckResult};

use crate::harness::on_both_backends;
use crate::harness::{Backend, TestApp, create_body, incoming, spawn, spawn_with, step_json};

const TOKEN: &str = "support-token-for-tests";
const ROBOT: i64 = 42;
const OTHER_ROBOT: i64 = 7;
const CHARGING: &[(&str, i64)] = &[("pass", 124), ("fail", 125)];

/// How a request presents itself.
#[derive(Debug, Clone, Copy)]
enum Auth<'a> {
    None,
    Bearer(&'a str),
    Basic(&'a str, &'a str),
}

async fn get(app: &TestApp, path: &str, auth: Auth<'_>) -> (StatusCode, HeaderMap, String) {
    let mut request = reqwest::Client::new().get(format!("{}{path}", app.base));
    request = match auth {
        Auth::None => request,
        Auth::Bearer(token) => request.bearer_auth(token),
        Auth::Basic(user, password) => request.basic_auth(user, Some(password)),
    };
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn assert_problem(
    status: StatusCode,
    headers: &HeaderMap,
    body: &str,
    expected: StatusCode,
) -> Value {
    assert_eq!(status, expected, "{body}");
    assert_eq!(headers[CONTENT_TYPE], "application/problem+json", "{body}");
    let body: Value = serde_json::from_str(body).unwrap();
    assert_eq!(body["status"], expected.as_u16());
    assert!(body["requestId"].is_string(), "{body}");
    body
}

/// Robot 42's check that passed at once, and robot 7's check that is still open.
async fn two_checks(app: &TestApp) -> (i64, i64) {
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_step(
        OTHER_ROBOT,
        321,
        step_json(321, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(
        ROBOT,
        "CHARGING_STARTED",
        json!([incoming(5001, "CHARGING_STARTED", "2026-11-20T07:30:00Z")]),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    app.given_incomings(
        OTHER_ROBOT,
        "CHARGING_STOPPED",
        json!([incoming(6001, "CHARGING_STOPPED", "2026-11-20T07:40:00Z")]),
    )
    .await;
    app.given_incomings(OTHER_ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_subscriptions(OTHER_ROBOT, 991).await;
    let (status, passed) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{passed}");
    let (status, open) = app.post_check(OTHER_ROBOT, &create_body(321)).await;
    assert_eq!(status, StatusCode::CREATED, "{open}");
    assert_eq!(open["phase"], "FUTURE");
    (passed["id"].as_i64().unwrap(), open["id"].as_i64().unwrap())
}

async fn only_the_token_opens_the_pages_and_the_internal_check(backend: Backend) {
    let app = spawn_with(backend, &[("INTERNAL_API_TOKEN", TOKEN)]).await;
    let (passed, _) = two_checks(&app).await;
    let basic_wrong = base64::engine::general_purpose::STANDARD.encode(format!("anyone:{TOKEN}x"));
    for path in [
        format!("/internal/ui/checks/{passed}"),
        "/internal/ui/".to_owned(),
        "/internal/ui/monitors/42/no-toilet".to_owned(),
        format!("/internal/v1/checks/{passed}"),
    ] {
        for auth in [
            Auth::None,
            Auth::Bearer("wrong"),
            Auth::Basic("anyone", "wrong"),
            Auth::Basic(TOKEN, ""),
            Auth::Bearer(&basic_wrong),
        ] {
            let (status, headers, body) = get(&app, &path, auth).await;
            assert_problem(status, &headers, &body, StatusCode::UNAUTHORIZED);
            let challenge = headers[WWW_AUTHENTICATE].to_str().unwrap();
            if path.starts_with("/internal/ui/") {
                assert!(challenge.starts_with("Basic realm="), "{path}: {challenge}");
            } else {
                assert!(challenge.starts_with("Bearer"), "{path}: {challenge}");
            }
        }
    }
    // Pages: the bearer header, or Basic with any user name.
    for auth in [
        Auth::Bearer(TOKEN),
        Auth::Basic("anyone", TOKEN),
        Auth::Basic("", TOKEN),
    ] {
        let (status, headers, body) =
            get(&app, &format!("/internal/ui/checks/{passed}"), auth).await;
        assert_eq!(status, StatusCode::OK, "{auth:?}: {body}");
        assert_eq!(headers[CONTENT_TYPE], "text/html; charset=utf-8");
        let policy = headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
    }
    // The internal API itself takes the bearer token only, like the monitors' API.
    let (status, _, _) = get(
        &app,
        &format!("/internal/v1/checks/{passed}"),
        Auth::Basic("a", TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Without INTERNAL_API_TOKEN the pages and the internal API do not exist.
    let closed = spawn(backend).await;
    for path in [
        format!("/internal/ui/checks/{passed}"),
        format!("/internal/v1/checks/{passed}"),
    ] {
        let (status, headers, body) = get(&closed, &path, Auth::Bearer(TOKEN)).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    }
}

async fn any_robots_check_with_its_notifications(backend: Backend) {
    let app = spawn_with(backend, &[("INTERNAL_API_TOKEN", TOKEN)]).await;
    let (passed, open) = two_checks(&app).await;
    let (status, _, body) = get(
        &app,
        &format!("/internal/v1/checks/{passed}"),
        Auth::Bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let check: Value = serde_json::from_str(&body).unwrap();
    let (_, robots_view) = app.get_check(ROBOT, &passed.to_string()).await;
    let mut without = check.clone();
    without.as_object_mut().unwrap().remove("notifications");
    assert_eq!(without, robots_view, "the robot's view plus notifications");
    assert_eq!(
        check["notifications"],
        json!([]),
        "the create answered; nothing was sent"
    );

    // The open check of robot 7 passes later: one notification in the outbox.
    let current = app.store.get_check(open).await.unwrap().unwrap();
    let update = CheckUpdate {
        phase: CheckPhase::Completed,
        result: CheckResult::Pass,
        next_step_id: Some(124),
        new_records: Vec::new(),
        deadline: None,
        release_lease: false,
        notify: true,
        remove_subscription: false,
    };
    let render = |check: &status_check::store::StoredCheck, seq: i64| {
        status_check::notify::render(check, seq, "test-host")
    };
    let outcome = app
        .store
        .update_check(
            BatchedUpdate {
                current: &current,
                fence: Fence::None,
                update,
                call_ref: "call-ref",
            },
            &Notifications::rendered_by(&render),
            app.clock_now(),
        )
        .await
        .unwrap();
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    let (status, _, body) = get(
        &app,
        &format!("/internal/v1/checks/{open}"),
        Auth::Bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let check: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(check["robotId"], OTHER_ROBOT);
    let notifications = check["notifications"].as_array().unwrap();
    assert_eq!(notifications.len(), 1, "{check}");
    assert_eq!(notifications[0]["notificationSeq"], 1);
    assert_eq!(notifications[0]["phase"], "COMPLETED");
    assert_eq!(notifications[0]["result"], "PASS");
    assert_eq!(notifications[0]["nextStepId"], 124);
    assert_eq!(notifications[0]["sentAt"], Value::Null, "no relay ran");
    assert_eq!(notifications[0]["givenUp"], false);

    // The robot's queue refuses it for good: dead-lettered, and both views say so — not "not
    // sent yet" (SPEC §13, §15).
    let queue = app.store.notification_jobs();
    let lease = Lease::parse("support-pages-test").unwrap();
    let now = app.clock_now() + chrono::TimeDelta::seconds(1);
    let claimed = queue
        .claim(now, &lease, now + chrono::TimeDelta::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let failure = JobFailure {
        id: claimed[0].id,
        retry_at: None,
        error: "the queue does not exist".to_owned(),
    };
    assert_eq!(queue.fail(&[failure], &lease).await.unwrap(), 1);
    let (_, _, body) = get(
        &app,
        &format!("/internal/v1/checks/{open}"),
        Auth::Bearer(TOKEN),
    )
    .await;
    let check: Value = serde_json::from_str(&body).unwrap();
    let given_up = &check["notifications"][0];
    assert_eq!(given_up["givenUp"], true, "{check}");
    assert_eq!(given_up["sentAt"], Value::Null);
    assert_eq!(given_up["lastError"], "the queue does not exist");

    // The page shows the same facts as text.
    let (status, _, page) = get(
        &app,
        &format!("/internal/ui/checks/{open}?tz=Europe/Amsterdam"),
        Auth::Bearer(TOKEN),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("COMPLETED · PASS · next step 124"), "{page}");
    assert_eq!(page.matches("class=\"event-mark\"").count(), 1);
    assert_eq!(page.matches("class=\"notification-mark\"").count(), 1);
    assert!(page.contains("times in Europe/Amsterdam"));
    assert!(page.contains("CHARGING_STOPPED"));
    assert_eq!(
        page.matches("given up after 1 attempt: the queue does not exist")
            .count(),
        2,
        "in the picture's title and in the table: {page}"
    );
    assert!(!page.contains("not yet"), "{page}");
}

async fn errors_are_problems(backend: Backend) {
    let app = spawn_with(backend, &[("INTERNAL_API_TOKEN", TOKEN)]).await;
    let (passed, _) = two_checks(&app).await;
    let auth = Auth::Bearer(TOKEN);
    for path in [
        "/internal/v1/checks/999999",
        "/internal/ui/checks/999999",
        "/internal/ui/monitors/42/no-such-rule",
    ] {
        let (status, headers, body) = get(&app, path, auth).await;
        assert_problem(status, &headers, &body, StatusCode::NOT_FOUND);
    }
    for (path, field) in [
        ("/internal/v1/checks/abc".to_owned(), "id"),
        ("/internal/v1/checks/0".to_owned(), "id"),
        ("/internal/ui/checks/012".to_owned(), "id"),
        (
            format!("/internal/ui/checks/{passed}?tz=Mars/Olympus"),
            "tz",
        ),
        ("/internal/ui/?robot=-1".to_owned(), "robot"),
        ("/internal/ui/?result=MAYBE".to_owned(), "result"),
        ("/internal/ui/?from=yesterday".to_owned(), "from"),
        // chrono reads any number of digits for a year; the day's bounds cannot be made of one
        // beyond 9999 (this was a panic: the connection dropped with no answer).
        ("/internal/ui/?from=-12000-01-01".to_owned(), "from"),
        ("/internal/ui/?to=12000-01-01".to_owned(), "to"),
        ("/internal/ui/?limit=100000".to_owned(), "limit"),
        ("/internal/ui/monitors/x/no-toilet".to_owned(), "robotId"),
        ("/internal/ui/monitors/42/NO_TOILET".to_owned(), "ruleId"),
    ] {
        let (status, headers, body) = get(&app, &path, auth).await;
        let problem = assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
}

async fn the_list_filters_and_pages_newest_first(backend: Backend) {
    let app = spawn_with(backend, &[("INTERNAL_API_TOKEN", TOKEN)]).await;
    let (passed, open) = two_checks(&app).await;
    let auth = Auth::Basic("support", TOKEN);
    let link = |id: i64| format!("href=\"/internal/ui/checks/{id}\"");
    let (status, _, all) = get(&app, "/internal/ui/", auth).await;
    assert_eq!(status, StatusCode::OK);
    let (first, second) = (
        all.find(&link(open)).unwrap(),
        all.find(&link(passed)).unwrap(),
    );
    assert!(first < second, "newest first");
    for (query, shown, hidden) in [
        ("robot=42", passed, open),
        ("robot=7", open, passed),
        ("result=PASS", passed, open),
        ("result=PENDING", open, passed),
        (
            "template=robot-is-charging&from=2026-11-20&to=2026-11-20&robot=42",
            passed,
            open,
        ),
    ] {
        let (status, _, page) = get(&app, &format!("/internal/ui/?{query}"), auth).await;
        assert_eq!(status, StatusCode::OK, "{query}: {page}");
        assert!(page.contains(&link(shown)), "{query}");
        assert!(!page.contains(&link(hidden)), "{query}");
    }
    // A check the Node service left open may hold no result at all: listed as PENDING, and
    // found by that filter.
    app.raw()
        .execute_for("UPDATE status_check SET result = NULL WHERE id = ?", open)
        .await;
    let (_, _, page) = get(&app, "/internal/ui/?result=PENDING", auth).await;
    assert!(page.contains(&link(open)), "{page}");
    for query in [
        "template=another",
        "from=2026-11-21",
        "to=2026-11-19",
        "robot=43",
    ] {
        let (_, _, page) = get(&app, &format!("/internal/ui/?{query}"), auth).await;
        assert!(page.contains("No check matches."), "{query}");
    }
    // One a page: the newest, and a link to the next older.
    let (_, _, page) = get(&app, "/internal/ui/?limit=1", auth).await;
    assert!(page.contains(&link(open)) && !page.contains(&link(passed)));
    let older = format!("href=\"/internal/ui/?limit=1&amp;before={open}\"");
    assert!(page.contains(&older), "{page}");
    let (_, _, page) = get(&app, &format!("/internal/ui/?limit=1&before={open}"), auth).await;
    assert!(page.contains(&link(passed)) && !page.contains("Older checks"));
}

/// A monitor whose windows 1 and 2 expired (alarms posted) and whose window 3 is open.
async fn a_monitors_day_shows_its_alarms_and_open_window(backend: Backend) {
    use chrono::{DateTime, NaiveDate, Utc};
    use status_check::store::{NewAction, StateChange, WindowClose, WindowRecord};
    use status_check_engine::monitor::{WindowLength, WindowState};
    let at = |t: &str| DateTime::parse_from_rfc3339(t).unwrap().to_utc();
    let app = spawn_with(backend, &[("INTERNAL_API_TOKEN", TOKEN)]).await;
    let created = reqwest::Client::new()
        .put(format!("{}/internal/v1/monitors/42/no-toilet", app.base))
        .bearer_auth(TOKEN)
        .json(&json!({
            "eventType": "TOILET_ACTIVITY", "window": "2h", "timezone": "Europe/Amsterdam",
            "daily": {"start": "08:00", "end": "22:00"},
            "actions": [{"type": "alarm", "eventName": "NO_TOILET_ACTIVITY_ALARM"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let stored = app
        .store
        .get_monitor(42, "no-toilet")
        .await
        .unwrap()
        .unwrap();
    let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let ends: [(u32, DateTime<Utc>); 2] = [
        (1, at("2026-11-20T10:30:00Z")),
        (2, at("2026-11-20T12:30:00Z")),
    ];
    let change = StateChange {
        window: Some(WindowState {
            session_date: date,
            session_end: at("2026-11-20T21:00:00Z"),
            window_number: 3,
            window_start: at("2026-11-20T12:30:00Z"),
            window_end: at("2026-11-20T14:30:00Z"),
            window_length: WindowLength::parse("2h").unwrap(),
        }),
        subscription_id: Some(7001),
        due_at: at("2026-11-20T14:30:00Z"),
        release_lease: false,
        actions: ends
            .iter()
            .flat_map(|(n, end)| {
                stored
                    .monitor
                    .alarms(date, *n)
                    .into_iter()
                    .map(|alarm| NewAction {
                        session_date: date,
                        window_number: *n,
                        window_end: *end,
                        alarm,
                    })
            })
            .collect(),
        remove_subscription: None,
        // The day as the service keeps it: window 1 reset by an event at 09:30 local, then
        // windows 1 and 2 expired; 3 is open.
        windows: [
            (
                1,
                "2026-11-20T07:00:00Z",
                "2026-11-20T08:30:00Z",
                Some(WindowClose::Reset),
            ),
            (
                1,
                "2026-11-20T08:30:00Z",
                "2026-11-20T10:30:00Z",
                Some(WindowClose::Expired),
            ),
            (
                2,
                "2026-11-20T10:30:00Z",
                "2026-11-20T12:30:00Z",
                Some(WindowClose::Expired),
            ),
            (3, "2026-11-20T12:30:00Z", "2026-11-20T14:30:00Z", None),
        ]
        .into_iter()
        .map(|(number, start, end, ending)| WindowRecord {
            session_date: date,
            session_start: at("2026-11-20T07:00:00Z"),
            session_end: at("2026-11-20T21:00:00Z"),
            subscription_id: Some(7001),
            number,
            start: at(start),
            end: at(end),
            ending,
            reference_id: (ending == Some(WindowClose::Expired))
                .then(|| stored.monitor.reference_id(date, number)),
            reset_event_id: (ending == Some(WindowClose::Reset)).then_some(6001),
        })
        .collect(),
    };
    let now = at("2026-11-20T12:30:00Z");
    assert!(
        app.store
            .write_monitor_state(&stored, None, &change, now)
            .await
            .unwrap()
    );

    let auth = Auth::Basic("support", TOKEN);
    let (status, _, page) = get(
        &app,
        "/internal/ui/monitors/42/no-toilet?date=2026-11-20",
        auth,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page.matches("class=\"window-bar expired\"").count(),
        2,
        "{page}"
    );
    assert_eq!(
        page.matches("class=\"window-bar open\"").count(),
        1,
        "{page}"
    );
    assert_eq!(page.matches("class=\"alarm-mark\"").count(), 2, "{page}");
    assert_eq!(
        page.matches("class=\"window-bar reset\"").count(),
        1,
        "{page}"
    );
    assert_eq!(page.matches("class=\"event-mark\"").count(), 1, "{page}");
    for n in [1, 2] {
        assert!(
            page.contains(&format!("status-check:42:no-toilet:2026-11-20:{n}")),
            "{page}"
        );
    }
    // Window 1 as kept: restarted at 09:30 local by the event, expired at 11:30.
    assert!(page.contains("2026-11-20 09:30:00 CET"), "{page}");
    assert!(
        page.contains("2026-11-20 (24 h) · session 14 h · 2 alarms"),
        "{page}"
    );

    // The session cannot open any more: the page says why.
    let lease = Lease::parse("support-pages-test").unwrap();
    let later = at("2026-11-21T00:00:00Z");
    let claimed = app
        .store
        .claim_due_monitors(later, &lease, later, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let problem = "Megazord knows no event named TOILET_ACTIVITY";
    assert!(
        app.store
            .release_monitor(claimed[0].id, &lease, later, Some(problem), later)
            .await
            .unwrap()
    );
    // A day whose session should have run and of which nothing is kept: not "no alarm", which
    // nobody can know.
    let (status, _, page) = get(
        &app,
        "/internal/ui/monitors/42/no-toilet?date=2026-11-19",
        auth,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(!page.contains("class=\"window-bar"), "{page}");
    assert!(!page.contains("No alarm that day."), "{page}");
    assert!(page.contains("Nothing kept for this day"), "{page}");
    assert!(page.contains("nothing kept of it"), "{page}");
    assert!(page.contains(problem), "{page}");
    let (status, headers, body) = get(
        &app,
        "/internal/ui/monitors/42/no-toilet?date=20261120",
        auth,
    )
    .await;
    let problem = assert_problem(status, &headers, &body, StatusCode::BAD_REQUEST);
    assert_eq!(problem["errors"][0]["field"], "date");
}

on_both_backends!(
    only_the_token_opens_the_pages_and_the_internal_check,
    any_robots_check_with_its_notifications,
    errors_are_problems,
    the_list_filters_and_pages_newest_first,
    a_monitors_day_shows_its_alarms_and_open_window,
);
