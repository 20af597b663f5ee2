//! Connection hygiene over real TCP (SPEC §13, resource bounds): the header read timeout, the
//! connection cap, the request timeout and HTTP/2 prior knowledge.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::time::Instant;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, ResponseTemplate};

use crate::harness::{Backend, TestApp, create_body, robot_headers, spawn_with, step_json};

const LIVE: &[u8] = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n";

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connects")
}

/// Reads until a whole response head arrived (within `within`); its text.
async fn response_head(stream: &mut TcpStream, within: Duration) -> String {
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.expect("reads");
            assert!(n > 0, "closed before a response: {seen:?}");
            seen.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("a response in time");
    String::from_utf8_lossy(&seen).into_owned()
}

/// Waits until the server closes `stream` (EOF or reset; data before that, such as the rest
/// of a response, is skipped); how long that took.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> Duration {
    let started = Instant::now();
    let mut chunk = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("the server closes the connection in time");
    started.elapsed()
}

#[tokio::test]
async fn a_request_head_not_sent_in_time_closes_the_connection() {
    let app = spawn_with(Backend::Sqlite, &[("HTTP_HEADER_READ_TIMEOUT_SECS", "1")]).await;

    // Half a request head, and nothing more.
    let mut slow = connect(&app).await;
    slow.write_all(b"GET /health/live HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A connection that sends nothing at all.
    let mut silent = connect(&app).await;

    // Meanwhile a complete request on another connection is answered.
    let mut good = connect(&app).await;
    good.write_all(LIVE).await.unwrap();
    let head = response_head(&mut good, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    let waited = closed_within(&mut slow, Duration::from_secs(5)).await;
    assert!(waited < Duration::from_secs(4), "closed after {waited:?}");
    closed_within(&mut silent, Duration::from_secs(5)).await;
    // A kept-alive connection waiting for its next request head is closed too.
    closed_within(&mut good, Duration::from_secs(5)).await;

    // The server still answers.
    let response = reqwest::get(format!("{}/health/live", app.base))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = spawn_with(Backend::Sqlite, &[("HTTP_MAX_CONNECTIONS", "2")]).await;

    // Two connections, each answered once and then left open and idle.
    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    for stream in [&mut first, &mut second] {
        stream.write_all(LIVE).await.unwrap();
        let head = response_head(stream, Duration::from_secs(5)).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }

    // A third connects (the listen backlog takes it) but is not served while they are open.
    let mut third = connect(&app).await;
    third.write_all(LIVE).await.unwrap();
    let mut chunk = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(700), third.read(&mut chunk)).await;
    assert!(early.is_err(), "the third connection was served: {early:?}");

    // One closes: the third is answered.
    drop(first);
    let head = response_head(&mut third, Duration::from_secs(5)).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    drop(second);
}

/// A replica whose requests time out after 1 s (its upstream calls after 10 s), and robot 42's
/// charging step: its id and Micro-Managers' answer.
async fn slow_request_app() -> (TestApp, i64, Value) {
    let app = spawn_with(
        Backend::Sqlite,
        &[
            ("HTTP_REQUEST_TIMEOUT_SECS", "1"),
            // Slow upstream answers must not time out first.
            ("UPSTREAM_TIMEOUT_MS", "10000"),
        ],
    )
    .await;
    let step_id = 123;
    let step = step_json(
        step_id,
        "robot-is-charging",
        3600,
        600,
        &[("pass", 124), ("fail", 125)],
    );
    (app, step_id, step)
}

#[tokio::test]
async fn a_request_running_past_the_request_timeout_answers_503_problem_json() {
    let (app, step_id, step) = slow_request_app().await;
    app.given_step(42, step_id, step.clone()).await;
    no_events_and_subscriptions(&app).await;
    // The same answer, slower than the request timeout (and preferred over the one above).
    Mock::given(method("GET"))
        .and(path(format!(
            "/internal/v5/scripts/robots/42/scripts/steps/{step_id}"
        )))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(step)
                .set_delay(Duration::from_secs(4)),
        )
        .with_priority(1)
        .mount(&app.upstream)
        .await;

    let started = Instant::now();
    let mut request = app
        .client()
        .post(format!("{}/v1/status-check/check", app.base))
        .header("call-ref", "slow-create-1")
        .json(&create_body(step_id));
    for (name, value) in robot_headers(42) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    let waited = started.elapsed();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(waited < Duration::from_secs(3), "answered after {waited:?}");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(response.headers()["call-ref"], "slow-create-1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], 503, "{body}");
    assert_eq!(body["requestId"], "slow-create-1", "{body}");
    assert!(body["detail"].as_str().unwrap().contains("1 s"), "{body}");
    // Nothing was stored by then; the create runs on, and once the step came its check is
    // stored: the robot's retry finds it.
    assert_eq!(app.check_count().await, 0);
    stored_within(&app, 1, Duration::from_secs(15)).await;
    let (status, check) = app.post_check(42, &create_body(step_id)).await;
    assert_eq!(status, StatusCode::OK, "{check}");
}

/// Megazord holds no charging event of robot 42 and subscribes it as 991.
async fn no_events_and_subscriptions(app: &TestApp) {
    for name in ["CHARGING_STARTED", "CHARGING_STOPPED"] {
        app.given_incomings(42, name, serde_json::json!([])).await;
    }
    app.given_subscriptions(42, 991).await;
}

/// Polls until `count` checks are stored, within `within`.
async fn stored_within(app: &TestApp, count: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while app.check_count().await != count {
        assert!(
            Instant::now() < deadline,
            "{count} checks not stored in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A create answered 503 at the request timeout after it subscribed at Megazord: the
/// subscription must not be left behind with nothing to remove it (SPEC §2.2, §13). The
/// create runs to its end and stores its check with that subscription.
#[tokio::test]
async fn a_create_timed_out_after_subscribing_keeps_its_subscription_in_a_check() {
    let (app, step_id, step) = slow_request_app().await;
    app.given_step(42, step_id, step).await;
    no_events_and_subscriptions(&app).await;
    // The backfill after subscribing (events since the anchor) answers after the timeout.
    Mock::given(method("GET"))
        .and(path("/internal/v1/events/robots/42/incomings"))
        .and(query_param(
            "created_since",
            crate::harness::anchor().timestamp().to_string(),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([]))
                .set_delay(Duration::from_secs(3)),
        )
        .with_priority(1)
        .mount(&app.upstream)
        .await;

    let (status, problem) = app.post_check(42, &create_body(step_id)).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{problem}");
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 1);
    stored_within(&app, 1, Duration::from_secs(15)).await;
    let (status, check) = app.post_check(42, &create_body(step_id)).await;
    assert_eq!(status, StatusCode::OK, "{check}");
    assert_eq!(check["subscriptionId"], 991, "{check}");
    assert_eq!(check["phase"], "FUTURE", "{check}");
    assert_eq!(app.upstream_calls("POST", "/subscriptions").await, 1);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions").await, 0);
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_answered() {
    let app = spawn_with(Backend::Sqlite, &[]).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    for route in ["/health/live", "/health/ready"] {
        let response = client
            .get(format!("{}{route}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), reqwest::Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK, "{route}");
    }
    // An unknown route over HTTP/2 is problem+json like over HTTP/1.
    let response = client
        .get(format!("{}/nowhere", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_with(Backend::Sqlite, &[("HTTP_IDLE_TIMEOUT_SECS", "1")]).await;
    let stream = connect(&app).await;
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    let connection = tokio::spawn(connection);
    let request = axum::http::Request::get(format!("{}/health/live", app.base))
        .body(axum::body::Body::empty())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), axum::http::Version::HTTP_2);
    let idle_since = Instant::now();

    // The server closes it (GOAWAY), and the client's connection ends.
    tokio::time::timeout(Duration::from_secs(5), connection)
        .await
        .expect("the server closes the idle connection in time")
        .unwrap()
        .expect("closed cleanly");
    let idled = idle_since.elapsed();
    assert!(
        idled >= Duration::from_millis(500),
        "closed after {idled:?}"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_lets_the_request_in_flight_finish() {
    let app = spawn_with(Backend::Sqlite, &[]).await;
    let step_id = 321;
    app.neighbours.robot(42).await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/internal/v5/scripts/robots/42/scripts/steps/{step_id}"
        )))
        .respond_with(ResponseTemplate::new(404).set_delay(Duration::from_millis(800)))
        .mount(&app.upstream)
        .await;
    let mut request = app
        .client()
        .post(format!("{}/v1/status-check/check", app.base))
        .json(&create_body(step_id));
    for (name, value) in robot_headers(42) {
        request = request.header(name, value);
    }
    let in_flight = tokio::spawn(request.send());
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.upstream_calls("GET", "/scripts/steps/").await == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    app.stop();
    // New connections are refused once the listener is gone...
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .is_ok()
    {
        assert!(
            Instant::now() < deadline,
            "still accepting after the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...while the request in flight gets its answer (the step is unknown: 404).
    let response = in_flight.await.unwrap().expect("answered during the drain");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}
