//! The public API over real HTTP, on SQLite and on MariaDB, with upstreams stubbed by
//! wiremock: every status code of SPEC §2.2–2.3, Kong headers, idempotency, upstream failures.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check_engine::TemplateDefinition;
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::harness::on_both_backends;
use crate::harness::{
    Backend, SCRIPT_VERSION_ID, TestApp, create_body, incoming, robot_headers, spawn, spawn_with,
    step_json,
};

const ROBOT: i64 = 42;
const CHARGING: &[(&str, i64)] = &[("pass", 124), ("fail", 125)];

pub(crate) fn assert_problem(status: StatusCode, body: &Value, expected: StatusCode) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["status"], expected.as_u16(), "{body}");
    for key in ["type", "title", "detail", "requestId"] {
        assert!(body[key].is_string(), "{key} missing in {body}");
    }
}

/// The create of step 123 answered 502 (an upstream failed) and nothing saved; the problem.
pub(crate) async fn create_fails_upstream(app: &TestApp) -> Value {
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_problem(status, &body, StatusCode::BAD_GATEWAY);
    assert_eq!(app.check_count().await, 0);
    body
}

/// A charging check whose past says "charging now": completes at once.
async fn past_only_pass(app: &TestApp, step_id: i64) {
    app.given_step(
        ROBOT,
        step_id,
        step_json(step_id, "robot-is-charging", 0, 0, CHARGING),
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
}

pub async fn past_only_check_completes_at_once(backend: Backend) {
    let app = spawn(backend).await;
    past_only_pass(&app, 123).await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["phase"], "COMPLETED");
    assert_eq!(body["result"], "PASS");
    assert_eq!(body["nextStepId"], 124);
    assert_eq!(body["statusCheck"], "robot-is-charging");
    assert_eq!(body["templateVersion"], 1);
    assert_eq!(body["robotId"], ROBOT);
    assert_eq!(body["stepId"], 123);
    assert_eq!(body["scheduledId"], 456);
    assert_eq!(body["scriptVersionId"], SCRIPT_VERSION_ID);
    assert_eq!(body["plannedAt"], "2026-11-20T08:00:00.000Z");
    assert_eq!(body["pollingSince"], "2026-11-20T07:00:00.000Z");
    assert_eq!(body["history"].as_array().unwrap().len(), 1);
    assert_eq!(body["history"][0]["incomingEventId"], 5001);
    assert_eq!(body["history"][0]["phase"], "PAST");
    assert_eq!(body["history"][0]["result"], "PASS");
    assert_eq!(
        body["history"][0]["eventCreatedAt"],
        "2026-11-20T07:30:00.000Z"
    );
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 0);

    let id = body["id"].as_i64().unwrap();
    let (status, read) = app.get_check(ROBOT, &id.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read, body, "GET returns what POST returned");
}

pub async fn open_check_enters_future_with_window_and_subscription(backend: Backend) {
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(
        ROBOT,
        "CHARGING_STOPPED",
        json!([incoming(5001, "CHARGING_STOPPED", "2026-11-20T07:40:00Z")]),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_subscriptions(ROBOT, 991).await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["phase"], "FUTURE");
    assert_eq!(body["result"], "PENDING");
    assert_eq!(body["nextStepId"], Value::Null);
    assert_eq!(body["subscriptionId"], 991);
    assert_eq!(body["pollingSince"], "2026-11-20T07:00:00.000Z");
    assert_eq!(body["pollingUntil"], "2026-11-20T08:10:00.000Z");
    let requests = app.upstream.received_requests().await.unwrap();
    let subscribe = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .expect("subscribed");
    let sent: Value = serde_json::from_slice(&subscribe.body).unwrap();
    assert_eq!(sent["eventNames"], json!(["CHARGING_STARTED"]));
    assert_eq!(sent["until"], "2026-11-20T08:10:00Z");
    assert!(
        subscribe.headers.get("call-ref").is_some(),
        "Call-Ref propagated upstream"
    );
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions").await, 0);
}

pub async fn repeating_a_request_returns_the_existing_check(backend: Backend) {
    let app = spawn(backend).await;
    past_only_pass(&app, 123).await;
    let (first, created) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(first, StatusCode::CREATED);
    let (second, again) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(second, StatusCode::OK);
    assert_eq!(again["id"], created["id"]);
    // Another scheduled run of the same step, an hour later, is another check, with windows
    // anchored at its own creation time.
    app.clock.advance(chrono::TimeDelta::hours(1));
    // The charging start at 07:30 is now outside the past hour: the check waits for events.
    app.given_subscriptions(ROBOT, 996).await;
    let mut other = create_body(123);
    other["scheduledId"] = json!(457);
    let (third, another) = app.post_check(ROBOT, &other).await;
    assert_eq!(third, StatusCode::CREATED);
    assert_ne!(another["id"], created["id"]);
    assert_eq!(created["pollingSince"], "2026-11-20T07:00:00.000Z");
    assert_eq!(another["pollingSince"], "2026-11-20T08:00:00.000Z");
    assert_eq!(another["phase"], "FUTURE");
    assert_eq!(app.check_count().await, 2);
}

pub async fn concurrent_identical_requests_make_one_check(backend: Backend) {
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    // Megazord gives each subscribe its own id.
    app.given_next_subscription(ROBOT, 993).await;
    app.given_next_subscription(ROBOT, 994).await;
    let body = create_body(123);
    let (a, b) = tokio::join!(app.post_check(ROBOT, &body), app.post_check(ROBOT, &body));
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CREATED],
        "one created it, the other was answered with it"
    );
    assert_eq!(a.1["id"], b.1["id"]);
    assert_eq!(app.check_count().await, 1);
    // A request that lost the race removed the subscription it made.
    let subscribed = app.upstream_calls("POST", "/subscriptions").await;
    let removed = app.upstream_calls("DELETE", "/subscriptions").await;
    assert_eq!(subscribed - removed, 1, "exactly one live subscription");
}

/// Creates that arrive together share their commits (group commit): twelve different requests
/// and three repeats of the first, all at once — twelve checks, each request answered with
/// its own, the repeats with the first's.
pub async fn concurrent_creates_are_each_their_own_check(backend: Backend) {
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    // Megazord gives each of the fifteen subscribes its own id.
    for subscription in 1001..=1015 {
        app.given_next_subscription(ROBOT, subscription).await;
    }
    let bodies: Vec<Value> = (1..=12)
        .chain([1, 1, 1])
        .map(|scheduled| {
            let mut body = create_body(123);
            body["scheduledId"] = json!(scheduled);
            body
        })
        .collect();
    let answers =
        futures_util::future::join_all(bodies.iter().map(|body| app.post_check(ROBOT, body))).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    let answered_with_it = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    assert_eq!(
        (created, answered_with_it),
        (12, 3),
        "each check created once, the repeats answered with it"
    );
    let mut ids = BTreeMap::new();
    for (body, (_, answer)) in bodies.iter().zip(&answers) {
        assert_eq!(answer["scheduledId"], body["scheduledId"], "{answer}");
        let id = answer["id"].as_i64().unwrap();
        assert_eq!(
            *ids.entry(body["scheduledId"].as_i64().unwrap())
                .or_insert(id),
            id
        );
    }
    assert_eq!(ids.len(), 12);
    assert_eq!(ids.values().collect::<BTreeSet<_>>().len(), 12, "{ids:?}");
    assert_eq!(app.check_count().await, 12);
}

pub async fn another_robots_check_is_not_found(backend: Backend) {
    let app = spawn(backend).await;
    past_only_pass(&app, 123).await;
    let (_, created) = app.post_check(ROBOT, &create_body(123)).await;
    let id = created["id"].as_i64().unwrap().to_string();
    let (status, body) = app.get_check(ROBOT + 1, &id).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND);
    let (status, body) = app.get_check(ROBOT, "999999").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND);
    for bad in ["0", "-1", "abc", "1.5", "99999999999999999999"] {
        let (status, body) = app.get_check(ROBOT, bad).await;
        assert_problem(status, &body, StatusCode::BAD_REQUEST);
        assert_eq!(body["errors"][0]["field"], "statusCheckId");
    }
}

pub async fn kong_headers_are_enforced(backend: Backend) {
    let app = spawn(backend).await;
    let url = format!("{}/v1/status-check/check/1", app.base);
    let send = |headers: Vec<(&'static str, String)>| {
        let mut request = app.client().get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    for missing in [
        "x-consumer-id",
        "x-consumer-username",
        "x-authenticated-userid",
    ] {
        let headers = robot_headers(ROBOT)
            .into_iter()
            .filter(|(name, _)| *name != missing)
            .collect();
        let response = send(headers).await.unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "without {missing}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains(missing));
    }
    let with = |name: &'static str, value: &str| {
        let mut headers = robot_headers(ROBOT);
        headers.retain(|(n, _)| *n != name);
        headers.push((name, value.to_owned()));
        headers
    };
    let cases = [
        (with("x-consumer-id", ""), StatusCode::UNAUTHORIZED),
        (
            with("x-authenticated-userid", "0"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-authenticated-userid", "robot-1"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-consumer-username", "dashboard"),
            StatusCode::FORBIDDEN,
        ),
        (with("x-authenticated-scope", "user"), StatusCode::FORBIDDEN),
        // Ids are canonical: no sign, no leading zero, no inner space, no overflow.
        (
            with("x-authenticated-userid", "+42"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-authenticated-userid", "042"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-authenticated-userid", "4 2"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-authenticated-userid", "9223372036854775808"),
            StatusCode::UNAUTHORIZED,
        ),
        // A repeated identity header is not Kong's.
        (
            {
                let mut headers = robot_headers(ROBOT);
                headers.push(("x-authenticated-userid", "7".to_owned()));
                headers
            },
            StatusCode::UNAUTHORIZED,
        ),
        // The scope too: its first value must not decide alone.
        (
            {
                let mut headers = with("x-authenticated-scope", "robot");
                headers.push(("x-authenticated-scope", "admin".to_owned()));
                headers
            },
            StatusCode::UNAUTHORIZED,
        ),
        // A robot id is an INT UNSIGNED in the live schema: a larger one names no robot.
        (
            with("x-authenticated-userid", "4294967296"),
            StatusCode::UNAUTHORIZED,
        ),
        (
            with("x-authenticated-userid", "4294967295"),
            StatusCode::NOT_FOUND,
        ),
    ];
    for (headers, expected) in cases {
        let response = send(headers.clone()).await.unwrap();
        assert_eq!(response.status(), expected, "{headers:?}");
        // Every 401 carries a challenge (RFC 9110 §15.5.2); a 403 none.
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            (expected == StatusCode::UNAUTHORIZED).then_some("Key realm=\"status-check\""),
            "{headers:?}"
        );
        let body: Value = response.json().await.unwrap();
        assert_problem(expected, &body, expected);
    }
    // Without a scope header the robot is still accepted (it is optional).
    let mut headers = robot_headers(ROBOT);
    headers.retain(|(n, _)| *n != "x-authenticated-scope");
    assert_eq!(send(headers).await.unwrap().status(), StatusCode::NOT_FOUND);
}

/// What the router answers by itself is problem+json too, and invented methods cannot grow the
/// metrics (SPEC §13).
pub async fn hostile_requests_get_problems_and_bounded_metrics(backend: Backend) {
    let app = spawn(backend).await;
    let request = |method: &str, path: &str| {
        let mut request = app.client().request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", app.base),
        );
        for (name, value) in robot_headers(ROBOT) {
            request = request.header(name, value);
        }
        request
    };
    for (method, path, expected) in [
        ("GET", "/v1/status-check/check/%FF", StatusCode::BAD_REQUEST),
        ("GET", "/v1/status-check/check/042", StatusCode::BAD_REQUEST),
        ("GET", "/v1/status-check/check/+1", StatusCode::BAD_REQUEST),
        (
            "DELETE",
            "/v1/status-check/check/1",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            "PUT",
            "/v1/status-check/check",
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        ("GET", "/v1/nowhere", StatusCode::NOT_FOUND),
        // The documentation's own router answers an unknown page with a bare 404 by itself.
        ("GET", "/docs/nope", StatusCode::NOT_FOUND),
    ] {
        let response = request(method, path).send().await.unwrap();
        assert_eq!(response.status(), expected, "{method} {path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert_problem(expected, &body, expected);
    }
    for n in 0..200 {
        let junk = format!("M{n}XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        request(&junk, "/health/live").send().await.unwrap();
    }
    let metrics = app
        .client()
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !metrics.contains("XXXXXXXX"),
        "a junk method became a label"
    );
    assert!(metrics.contains("method=\"other\""), "{metrics}");
    assert!(
        metrics.len() < 200_000,
        "{} bytes of metrics",
        metrics.len()
    );
}

/// A robot has at most `OPEN_CHECKS_PER_STEP` open checks at one step: the next create is a
/// 429 problem and makes no subscription; ended checks do not count, nor other steps.
pub async fn open_checks_per_step_are_capped(backend: Backend) {
    let app = spawn_with(backend, &[("OPEN_CHECKS_PER_STEP", "2")]).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_step(
        ROBOT,
        124,
        step_json(124, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    let open = |step: i64, scheduled: i64, subscription: i64| {
        let app = &app;
        async move {
            app.given_next_subscription(ROBOT, subscription).await;
            let mut body = create_body(step);
            body["scheduledId"] = json!(scheduled);
            app.post_check(ROBOT, &body).await
        }
    };
    for scheduled in [1, 2] {
        let (status, body) = open(123, scheduled, 990 + scheduled).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(body["phase"], "FUTURE");
    }
    let subscribes = app.upstream_calls("POST", "/subscriptions").await;
    let (status, body) = open(123, 3, 993).await;
    assert_problem(status, &body, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body["detail"].as_str().unwrap().contains("step 123"),
        "{body}"
    );
    assert_eq!(
        app.upstream_calls("POST", "/subscriptions").await,
        subscribes,
        "no subscription for a refused create"
    );
    // Another step of the same robot is not capped by this one.
    let (status, body) = open(124, 3, 994).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The same request as an existing check still answers that check.
    let mut again = create_body(123);
    again["scheduledId"] = json!(1);
    assert_eq!(app.post_check(ROBOT, &again).await.0, StatusCode::OK);
}

pub async fn invalid_bodies_are_refused_and_change_nothing(backend: Backend) {
    let app = spawn(backend).await;
    let url = format!("{}/v1/status-check/check", app.base);
    let post = |content_type: &'static str, body: Vec<u8>| {
        let mut request = app
            .client()
            .post(&url)
            .header("content-type", content_type)
            .body(body);
        for (name, value) in robot_headers(ROBOT) {
            request = request.header(name, value);
        }
        request.send()
    };
    let response = post("application/json", b"{not json".to_vec())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = post("text/plain", b"{}".to_vec()).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70 * 1024));
    let response = post("application/json", big.into_bytes()).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_problem(
        StatusCode::PAYLOAD_TOO_LARGE,
        &body,
        StatusCode::PAYLOAD_TOO_LARGE,
    );

    let (status, body) = app
        .post_check(
            ROBOT,
            &json!({"stepId": -1, "scheduledId": "x", "plannedAt": "yesterday"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["stepId", "scheduledId", "scriptVersionId", "plannedAt"]
    );
    assert_eq!(app.upstream_calls("GET", "/").await, 0, "no upstream call");
    assert_eq!(app.check_count().await, 0);
}

/// schemathesis: ids are integers by the published schema, `2.0` included; a `plannedAt`
/// outside the published pattern is refused before any upstream call.
pub async fn integers_written_as_floats_are_accepted(backend: Backend) {
    let app = spawn(backend).await;
    past_only_pass(&app, 123).await;
    let (status, body) = app
        .post_check(
            ROBOT,
            &json!({"stepId": 123.0, "scheduledId": 456.0, "scriptVersionId": 789.0,
                    "plannedAt": "2026-11-20T08:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["scheduledId"], 456);
    let (status, body) = app
        .post_check(
            ROBOT,
            &json!({"stepId": 123, "scheduledId": 2.5, "scriptVersionId": 789,
                    "plannedAt": "0606-02-03T11:49:06.4Z"}),
        )
        .await;
    assert_problem(status, &body, StatusCode::BAD_REQUEST);
    assert_eq!(body["errors"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(app.check_count().await, 1);
}

pub async fn unknown_step_is_not_found(backend: Backend) {
    let app = spawn(backend).await;
    app.given_status(
        "GET",
        "/internal/v5/scripts/robots/42/scripts/steps/123",
        404,
    )
    .await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_problem(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(app.check_count().await, 0);
}

pub async fn unusable_steps_are_unprocessable(backend: Backend) {
    let app = spawn(backend).await;
    let mut not_status_check = step_json(1, "robot-is-charging", 0, 0, CHARGING);
    not_status_check["node"]["type"] = json!("say");
    let cases = [
        (1, not_status_check, "not a statusCheck node"),
        (
            2,
            step_json(2, "no-such-template", 0, 0, CHARGING),
            "no active template",
        ),
        (
            3,
            step_json(3, "robot-is-charging", 0, 0, &[("fail", 125)]),
            "'pass'",
        ),
        (
            4,
            step_json(4, "robot-is-charging", 0, 0, &[("pass", 124)]),
            "'fail'",
        ),
        (
            5,
            step_json(5, "robot-is-charging", -7, 0, CHARGING),
            "pastInterval",
        ),
    ];
    for (step_id, step, reason) in cases {
        app.given_step(ROBOT, step_id, step).await;
        let (status, body) = app.post_check(ROBOT, &create_body(step_id)).await;
        assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains(reason), "{detail} should say {reason}");
    }
    assert_eq!(app.check_count().await, 0);
}

/// Megazord refuses a subscription to an event it has no schema for (404): the template is at
/// fault, not an outage, so the create answers 422 naming the events (not 502, which a robot
/// would retry), and leaves nothing: no check, no subscription, no record of the subscribe.
pub async fn a_subscription_megazord_refuses_is_unprocessable(backend: Backend) {
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    for name in ["CHARGING_STOPPED", "CHARGING_STARTED"] {
        app.given_incomings(ROBOT, name, json!([])).await;
    }
    Mock::given(method("POST"))
        .and(path(format!(
            "/internal/v1/events/robots/{ROBOT}/subscriptions"
        )))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Event schema not found"
        })))
        .expect(1)
        .mount(&app.upstream)
        .await;

    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("Megazord knows no event named CHARGING_STARTED"),
        "{detail}"
    );
    assert!(
        !detail.contains("Event schema not found"),
        "no upstream body: {detail}"
    );
    assert_eq!(app.check_count().await, 0);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions").await, 0);
    assert_eq!(
        app.store
            .purge_subscribe_intents("2100-01-01T00:00:00Z".parse().unwrap(), 100)
            .await
            .unwrap(),
        0,
        "a definite refusal leaves no record of the subscribe"
    );
}

/// The body's `scriptVersionId` must be the step's: otherwise 422 naming the field, and
/// nothing stored or subscribed — though the step would otherwise open a future window.
pub async fn a_script_version_that_is_not_the_steps_is_unprocessable(backend: Backend) {
    let app = spawn(backend).await;
    let mut step = step_json(123, "robot-is-charging", 0, 0, CHARGING);
    step["step"]["scriptVersionId"] = json!(SCRIPT_VERSION_ID + 1);
    app.given_step(ROBOT, 123, step).await;
    app.given_incomings(
        ROBOT,
        "CHARGING_STOPPED",
        json!([incoming(5001, "CHARGING_STOPPED", "2026-11-20T07:40:00Z")]),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_subscriptions(ROBOT, 991).await;

    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
    let errors = body["errors"].as_array().expect("errors listed");
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["field"], "scriptVersionId", "{body}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(
        message.contains(&(SCRIPT_VERSION_ID + 1).to_string()),
        "{message} names the step's version"
    );
    assert_eq!(app.check_count().await, 0);
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 0);
    assert_eq!(app.upstream_calls("GET", "/incomings").await, 0);

    // The same request with the step's version is created.
    let mut body = create_body(123);
    body["scriptVersionId"] = json!(SCRIPT_VERSION_ID + 1);
    let (status, created) = app.post_check(ROBOT, &body).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["scriptVersionId"], SCRIPT_VERSION_ID + 1);
}

pub async fn upstream_failures_are_bad_gateway_and_leave_nothing(backend: Backend) {
    // Micro-Managers failing.
    let app = spawn(backend).await;
    app.given_status(
        "GET",
        "/internal/v5/scripts/robots/42/scripts/steps/123",
        503,
    )
    .await;
    let (status, body) = app.post_check(ROBOT, &create_body(123)).await;
    assert_problem(status, &body, StatusCode::BAD_GATEWAY);
    assert!(
        !body.to_string().contains("503 Service"),
        "no upstream body leaked"
    );

    // Megazord timing out on the past fetch (the step from Micro-Managers answered in time,
    // even on a loaded machine).
    let app = spawn_with(backend, &[("UPSTREAM_TIMEOUT_MS", "1000")]).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    Mock::given(method("GET"))
        .and(path("/internal/v1/events/robots/42/incomings"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(3)))
        .mount(&app.upstream)
        .await;
    let body = create_fails_upstream(&app).await;
    assert!(
        body["detail"].as_str().unwrap().contains("megazord"),
        "{body}"
    );
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 0);

    // Megazord answering 5xx on the past fetch.
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "resident-activity", 0, 0, CHARGING),
    )
    .await;
    app.given_status("GET", "/internal/v1/events/robots/42/incomings", 500)
        .await;
    create_fails_upstream(&app).await;
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 0);

    // Subscription failing with a 5xx: nothing persisted.
    let app = spawn(backend).await;
    app.given_step(
        ROBOT,
        123,
        step_json(123, "robot-is-charging", 0, 0, CHARGING),
    )
    .await;
    app.given_incomings(ROBOT, "CHARGING_STOPPED", json!([]))
        .await;
    app.given_incomings(ROBOT, "CHARGING_STARTED", json!([]))
        .await;
    app.given_status("POST", "/internal/v1/events/robots/42/subscriptions", 500)
        .await;
    create_fails_upstream(&app).await;
}

/// A replica without the `api` role still answers `/health/*` and `/metrics` (SPEC §13: every
/// replica is observable), and nothing else.
pub async fn a_replica_without_the_api_role_is_observable(backend: Backend) {
    let app = spawn_with(backend, &[("ROLES", "scheduler")]).await;
    let get = |path: &str| app.client().get(format!("{}{path}", app.base)).send();
    assert_eq!(get("/health/live").await.unwrap().status(), StatusCode::OK);
    assert_eq!(get("/health/ready").await.unwrap().status(), StatusCode::OK);
    let metrics = get("/metrics").await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let (status, body) = app.get_check(ROBOT, "1").await;
    assert_problem(status, &body, StatusCode::NOT_FOUND);
    assert_eq!(
        get("/openapi.json").await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

/// `DOCS_ENABLED=false` switches Swagger UI off; the OpenAPI document stays.
pub async fn the_docs_can_be_switched_off(backend: Backend) {
    let app = spawn_with(backend, &[("DOCS_ENABLED", "false")]).await;
    let get = |path: &str| app.client().get(format!("{}{path}", app.base)).send();
    assert_eq!(get("/docs/").await.unwrap().status(), StatusCode::NOT_FOUND);
    let openapi = get("/openapi.json").await.unwrap();
    assert_eq!(openapi.status(), StatusCode::OK);
    let openapi: Value = openapi.json().await.unwrap();
    assert!(openapi["paths"]["/v1/status-check/check"]["post"].is_object());
}

pub async fn operational_endpoints_answer(backend: Backend) {
    let app = spawn(backend).await;
    let get = |path: &str| app.client().get(format!("{}{path}", app.base)).send();
    let live = get("/health/live").await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let ready = get("/health/ready").await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ok");
    // A create first, so the HTTP and evaluation metrics have a sample.
    past_only_pass(&app, 123).await;
    let (status, _) = app.post_check(ROBOT, &create_body(123)).await;
    assert_eq!(status, StatusCode::CREATED);
    let _ = app.get_check(ROBOT, "1").await;
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    // Evaluation latency by template (SPEC §9), in buckets fine enough for microseconds.
    assert!(
        metrics.contains(
            "rule_evaluation_seconds_bucket{template=\"robot-is-charging\",le=\"0.000001\"}"
        ),
        "{metrics}"
    );
    // Creates written together, counted in buckets up to the writer's batch (not seconds).
    assert!(
        metrics.contains("create_batch_size_bucket{le=\"64\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("route=\"/v1/status-check/check/{statusCheckId}\""));
    let openapi: Value = get("/openapi.json").await.unwrap().json().await.unwrap();
    assert!(openapi["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(openapi["paths"]["/v1/status-check/check"]["post"].is_object());
    let docs = get("/docs/").await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(docs.text().await.unwrap().contains("swagger"));
    // Unknown routes are problems too, with the request id echoed.
    let response = app
        .client()
        .get(format!("{}/nope", app.base))
        .header("Call-Ref", "trace-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.headers()["call-ref"], "trace-123");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["requestId"], "trace-123");
}

fn definition(name: &str, version: i64, pass: &str) -> TemplateDefinition {
    TemplateDefinition {
        name: name.to_owned(),
        version,
        description: "added by another tool".to_owned(),
        is_active: true,
        poll_until_end: false,
        poller: PollerDefaults {
            past_interval: 3600,
            future_interval: 0,
        },
        past: Some(PhaseDefinition {
            depends_on: vec!["DOOR_OPENED".to_owned()],
            pass: Some(pass.to_owned()),
            fail: None,
            unknown: None,
        }),
        future: None,
    }
}

pub async fn a_template_only_in_the_database_is_loaded_on_demand(backend: Backend) {
    let app = spawn(backend).await;
    // Another tool adds a template (two versions; the highest active one is used).
    let now = crate::harness::anchor();
    app.store
        .sync_template(&definition("door-check", 1, "false"), &|_| true, now)
        .await
        .unwrap();
    app.store
        .sync_template(
            &definition("door-check", 2, "past.size() > 0"),
            &|_| true,
            now,
        )
        .await
        .unwrap();
    app.given_step(ROBOT, 300, step_json(300, "door-check", 0, 0, CHARGING))
        .await;
    app.given_incomings(
        ROBOT,
        "DOOR_OPENED",
        json!([incoming(9001, "DOOR_OPENED", "2026-11-20T07:59:00Z")]),
    )
    .await;
    let (status, body) = app.post_check(ROBOT, &create_body(300)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["statusCheck"], "door-check");
    assert_eq!(body["templateVersion"], 2);
    assert_eq!(body["result"], "PASS");

    // An invalid template in the database is treated as missing: 422, not a crash.
    app.store
        .sync_template(
            &definition("broken-check", 1, "evnts.size() > 0"),
            &|_| true,
            now,
        )
        .await
        .unwrap();
    app.given_step(ROBOT, 301, step_json(301, "broken-check", 0, 0, CHARGING))
        .await;
    let (status, body) = app.post_check(ROBOT, &create_body(301)).await;
    assert_problem(status, &body, StatusCode::UNPROCESSABLE_ENTITY);
}

pub async fn a_changed_template_under_an_existing_version_stops_start_up(backend: Backend) {
    let app = spawn(backend).await;
    // The database holds robot-is-charging v1 from the shipped file; a changed text under
    // the same version must be refused when a replica starts.
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../templates/robot-is-charging.v1.yaml"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("robot-is-charging.v1.yaml"),
        text.replace("futureInterval: 600", "futureInterval: 900"),
    )
    .unwrap();
    let Err(error) = crate::harness::build_on(app.store.clone(), dir.path()).await else {
        panic!("a changed version must not start");
    };
    let message = format!("{error:#}");
    assert!(message.contains("robot-is-charging version 1"), "{message}");
    assert!(message.contains("new version"), "{message}");
    // The identical shipped files start fine on the same database.
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    assert!(
        crate::harness::build_on(app.store.clone(), &shipped)
            .await
            .is_ok()
    );
}

on_both_backends!(
    past_only_check_completes_at_once,
    open_check_enters_future_with_window_and_subscription,
    repeating_a_request_returns_the_existing_check,
    concurrent_identical_requests_make_one_check,
    concurrent_creates_are_each_their_own_check,
    another_robots_check_is_not_found,
    kong_headers_are_enforced,
    hostile_requests_get_problems_and_bounded_metrics,
    open_checks_per_step_are_capped,
    invalid_bodies_are_refused_and_change_nothing,
    integers_written_as_floats_are_accepted,
    unknown_step_is_not_found,
    unusable_steps_are_unprocessable,
    a_script_version_that_is_not_the_steps_is_unprocessable,
    a_subscription_megazord_refuses_is_unprocessable,
    upstream_failures_are_bad_gateway_and_leave_nothing,
    operational_endpoints_answer,
    a_replica_without_the_api_role_is_observable,
    the_docs_can_be_switched_off,
    a_template_only_in_the_database_is_loaded_on_demand,
    a_changed_template_under_an_existing_version_stops_start_up,
);
