//! The internal API of monitors (SPEC §12) over real HTTP, on SQLite and MariaDB: bearer-token
//! auth (401 otherwise, 404 when disabled), create (201), replace (200), list, read with the
//! current session and window, delete (the subscription is removed), and an invalid monitor
//! refused naming each field (422 when well-formed, 400 when unreadable); and the monitors file
//! synced at start.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::on_both_backends;
use crate::harness::{Backend, spawn};
use crate::monitors::{MonitorStack, ROBOT, TOKEN, at, stack, stack_with};

fn body() -> Value {
    json!({
        "eventType": "TOILET_ACTIVITY", "window": "10m", "timezone": "Europe/Amsterdam",
        "daily": {"start": "09:00", "end": "10:00"},
        "actions": [{"type": "alarm", "eventName": "NO_TOILET_ACTIVITY_ALARM"}]
    })
}

/// A request to the internal API with `token` (none: no Authorization header).
async fn call(
    base: &str,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.request(method, format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    )
}

impl MonitorStack {
    async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let (status, body, _) = call(&self.first.base, method, path, Some(TOKEN), body).await;
        (status, body)
    }
}

fn is_problem(headers: &reqwest::header::HeaderMap, body: &Value) -> bool {
    headers[reqwest::header::CONTENT_TYPE] == "application/problem+json"
        && body["requestId"].is_string()
}

async fn only_the_token_opens_the_internal_api(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T07:00:00Z")).await else {
        return;
    };
    let base = &stack.first.base;
    for token in [None, Some("wrong-token"), Some("")] {
        let (status, body, headers) = call(
            base,
            reqwest::Method::GET,
            "/internal/v1/monitors",
            token,
            None,
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}: {body}");
        assert!(is_problem(&headers, &body), "{body}");
        assert!(
            headers[reqwest::header::WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
    }
    let (status, _, _) = call(
        base,
        reqwest::Method::PUT,
        "/internal/v1/monitors/42/no-toilet",
        Some("wrong-token"),
        Some(&body()),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        stack.store().list_monitors().await.unwrap().is_empty(),
        "nothing written"
    );
    let (status, body) = stack
        .api(reqwest::Method::GET, "/internal/v1/monitors", None)
        .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"monitors": []})));
}

async fn create_replace_read_list_and_delete(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T07:59:00Z")).await else {
        return;
    };
    let path = "/internal/v1/monitors/42/no-toilet";
    let (status, created) = stack.api(reqwest::Method::PUT, path, Some(&body())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["robotId"], ROBOT);
    assert_eq!(created["ruleId"], "no-toilet");
    assert_eq!(created["window"], "10m");
    assert_eq!(
        created["actions"],
        json!([{"type": "alarm", "eventName": "NO_TOILET_ACTIVITY_ALARM"}]),
        "no level unless the monitor sets one"
    );
    assert_eq!(created["problem"], Value::Null);
    assert_eq!(
        (created["version"].clone(), created["source"].clone()),
        (json!(1), json!("api"))
    );
    assert_eq!(created["sessionDate"], Value::Null);

    // 09:00 in Amsterdam is 08:00 UTC: the worker opens the session; the API shows it.
    stack.set("2026-11-20T08:00:00Z");
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let (status, read) = stack.api(reqwest::Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["sessionDate"], "2026-11-20");
    assert_eq!(read["windowNumber"], 1);
    assert_eq!(read["alarmsSent"], 0);
    assert_eq!(read["windowStart"], "2026-11-20T08:00:00Z");
    assert_eq!(read["windowEnd"], "2026-11-20T08:10:00Z");
    assert_eq!(
        read["nextDueAt"], "2026-11-20T08:10:02Z",
        "decided 2 s after the window's end"
    );
    let subscription = read["subscriptionId"].as_i64().expect("subscribed");
    assert_eq!(stack.megazord.undeleted_subscriptions(), [subscription]);

    // Replaced with a longer window (200), the same again (200, unchanged).
    let mut longer = body();
    longer["window"] = json!("15m");
    let (status, replaced) = stack.api(reqwest::Method::PUT, path, Some(&longer)).await;
    assert_eq!(
        (status, replaced["version"].clone()),
        (StatusCode::OK, json!(2))
    );
    assert_eq!(
        replaced["windowEnd"], "2026-11-20T08:10:00Z",
        "the open window keeps its end"
    );
    let (status, same) = stack.api(reqwest::Method::PUT, path, Some(&longer)).await;
    assert_eq!(
        (status, same["version"].clone()),
        (StatusCode::OK, json!(2))
    );

    let (status, other) = stack
        .api(
            reqwest::Method::PUT,
            "/internal/v1/monitors/43/night",
            Some(&body()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{other}");
    let (status, list) = stack
        .api(reqwest::Method::GET, "/internal/v1/monitors", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let keys: Vec<(i64, &str)> = list["monitors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["robotId"].as_i64().unwrap(),
                m["ruleId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [(42, "no-toilet"), (43, "night")]);

    // Deleted: its session ends and the relay removes its subscription at Megazord.
    let (status, _) = stack.api(reqwest::Method::DELETE, path, None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(stack.tick_relay().await.removals.done, 1);
    assert!(stack.megazord.undeleted_subscriptions().is_empty());
    assert_eq!(
        stack.api(reqwest::Method::GET, path, None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stack.api(reqwest::Method::DELETE, path, None).await.0,
        StatusCode::NOT_FOUND
    );
}

/// The fields an `application/problem+json` answer names, after checking that it is one.
fn problem_fields(headers: &reqwest::header::HeaderMap, body: &Value) -> Vec<String> {
    assert!(is_problem(headers, body), "not problem+json: {body}");
    body["errors"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_owned())
        .collect()
}

/// A well-formed monitor refused for what it says — values out of range, a field missing, a
/// body that contradicts its path — is 422; a body that cannot be read as a monitor (wrong JSON
/// type, unknown field, malformed JSON) or an invalid path is 400. Each names its fields, and
/// nothing is written.
async fn an_invalid_monitor_is_refused_naming_each_field(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T07:00:00Z")).await else {
        return;
    };
    let put = |path: &'static str, body: Value| {
        let base = stack.first.base.clone();
        async move {
            let (status, problem, headers) =
                call(&base, reqwest::Method::PUT, path, Some(TOKEN), Some(&body)).await;
            (status, problem_fields(&headers, &problem))
        }
    };
    let with = |changes: Value| {
        let mut body = body();
        for (field, value) in changes.as_object().unwrap() {
            if value.is_null() {
                body.as_object_mut().unwrap().remove(field);
            } else {
                body[field] = value.clone();
            }
        }
        body
    };
    let unprocessable = |fields: &[&str]| {
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            fields.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
        )
    };
    let bad_request = |fields: &[&str]| {
        (
            StatusCode::BAD_REQUEST,
            fields.iter().map(|f| (*f).to_owned()).collect::<Vec<_>>(),
        )
    };
    let path = "/internal/v1/monitors/42/a";

    let semantic = with(json!({
        "window": "2 days",
        "daily": {"start": "09:00", "end": "08:00"},
        "actions": [{"type": "alarm"}],
    }));
    assert_eq!(
        put(path, semantic).await,
        unprocessable(&["window", "daily.end", "actions[0].eventName"])
    );
    assert_eq!(
        put(path, with(json!({"timezone": "Mars/Olympus_Mons"}))).await,
        unprocessable(&["timezone"])
    );
    assert_eq!(
        put(path, with(json!({"actions": []}))).await,
        unprocessable(&["actions"])
    );
    assert_eq!(
        put(path, with(json!({"window": "25h"}))).await,
        unprocessable(&["window"])
    );
    assert_eq!(
        put(path, with(json!({"eventType": null}))).await,
        unprocessable(&["eventType"]),
        "a required field left out"
    );
    assert_eq!(
        put(path, with(json!({"robotId": 43}))).await,
        unprocessable(&["robotId"]),
        "another robot than the path's"
    );
    assert_eq!(
        put(path, with(json!({"robotId": 43, "ruleId": "b"}))).await,
        unprocessable(&["robotId", "ruleId"]),
        "another monitor than the path's"
    );

    let (status, mut named) = put(path, with(json!({"windw": "10m", "enabled": "yes"}))).await;
    named.sort();
    assert_eq!((status, named), bad_request(&["enabled", "windw"]));
    assert_eq!(
        put(path, with(json!({"robotId": "42"}))).await,
        bad_request(&["robotId"]),
        "the schema says an integer"
    );
    assert_eq!(
        put(
            path,
            with(json!({"daily": {"start": "09:00", "end": "10:00", "tz": "UTC"}}))
        )
        .await,
        bad_request(&["daily"])
    );
    assert_eq!(
        put("/internal/v1/monitors/042/No_Rule", body()).await,
        bad_request(&["robotId", "ruleId"])
    );
    let malformed = reqwest::Client::new()
        .put(format!("{}{path}", stack.first.base))
        .bearer_auth(TOKEN)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(r#"{"eventType": "TOILET_ACTIVITY","#)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.headers()[reqwest::header::CONTENT_TYPE],
        "application/problem+json"
    );
    assert!(
        stack.store().list_monitors().await.unwrap().is_empty(),
        "nothing written"
    );

    // JSON Schema's integers include 42.0: read as 42, not refused as the wrong type.
    let integral = with(json!({
        "robotId": 42.0,
        "actions": [{"type": "alarm", "eventName": "NO_TOILET_ACTIVITY_ALARM", "level": 3.0}],
    }));
    let (status, created) = stack.api(reqwest::Method::PUT, path, Some(&integral)).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["actions"][0]["level"], 3);

    // A large one too, read exactly: serde_json's default float parsing rounded
    // 4164624493445986.0 to 4164624493445985.5 and refused it (the fuzzer found it).
    let large = "/internal/v1/monitors/4164624493445986/a";
    let integral = with(json!({"robotId": 4_164_624_493_445_986.0}));
    let (status, created) = stack
        .api(reqwest::Method::PUT, large, Some(&integral))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["robotId"], 4_164_624_493_445_986_u64);
}

/// The monitors file is synced at start: created, changed, and disabled once no file names
/// it; monitors the API created are left alone. An invalid file stops start-up naming it.
async fn the_monitors_file_is_synced_at_start(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monitors.yaml");
    let entry = |rule: &str, window: &str| {
        format!(
            "- robotId: 42\n  ruleId: {rule}\n  eventType: TOILET_ACTIVITY\n  window: {window}\n  \
             daily: {{start: \"08:00\", end: \"09:00\"}}\n  actions: [{{type: alarm, eventName: A}}]\n"
        )
    };
    std::fs::write(&file, entry("from-file", "10m") + &entry("dropped", "10m")).unwrap();
    let path = file.to_str().unwrap();
    let Some(stack) = stack_with(
        backend,
        at("2026-11-20T07:00:00Z"),
        &[("MONITORS_FILE", path)],
    )
    .await
    else {
        return;
    };
    let stored = stack
        .store()
        .get_monitor(ROBOT, "from-file")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.monitor.enabled());
    assert_eq!(stored.source, status_check::store::MonitorSource::File);
    let (status, _) = stack
        .api(
            reqwest::Method::PUT,
            "/internal/v1/monitors/42/by-api",
            Some(&body()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    // A replica starts with a changed file that no longer names `dropped`.
    std::fs::write(&file, entry("from-file", "20m")).unwrap();
    let _replica = stack
        .replica_with(&[("MONITORS_FILE", path)])
        .await
        .unwrap();
    let changed = stack
        .store()
        .get_monitor(ROBOT, "from-file")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (changed.monitor.window().as_seconds(), changed.version),
        (1200, 2)
    );
    let dropped = stack
        .store()
        .get_monitor(ROBOT, "dropped")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !dropped.monitor.enabled(),
        "no longer in the file: disabled"
    );
    let by_api = stack
        .store()
        .get_monitor(ROBOT, "by-api")
        .await
        .unwrap()
        .unwrap();
    assert!(by_api.monitor.enabled(), "the API's monitor is left alone");

    std::fs::write(&file, entry("from-file", "25h")).unwrap();
    let error = stack
        .replica_with(&[("MONITORS_FILE", path)])
        .await
        .err()
        .expect("an invalid file stops start-up")
        .to_string();
    assert!(
        error.contains("monitors.yaml: monitor [0] (robot 42, rule from-file): window:"),
        "{error}"
    );
}

/// Without INTERNAL_API_TOKEN the internal routes do not exist (404 problem+json).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_internal_api_is_404() {
    let app = spawn(Backend::Sqlite).await;
    // Whatever the method, and before anything else (a redirect, "method not allowed").
    for (method, path) in [
        (reqwest::Method::GET, "/internal/v1/monitors"),
        (reqwest::Method::GET, "/internal/v1/monitors/42/a"),
        (reqwest::Method::DELETE, "/internal/v1/monitors"),
        (reqwest::Method::GET, "/internal/ui"),
        (reqwest::Method::POST, "/internal/ui/"),
        (reqwest::Method::OPTIONS, "/internal/v1/checks/1"),
    ] {
        let (status, body, headers) =
            call(&app.base, method.clone(), path, Some("anything"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(is_problem(&headers, &body), "{method} {path}: {body}");
        assert!(body["requestId"].is_string(), "{body}");
    }
}

on_both_backends!(
    only_the_token_opens_the_internal_api,
    create_replace_read_list_and_delete,
    an_invalid_monitor_is_refused_naming_each_field,
    the_monitors_file_is_synced_at_start,
);
