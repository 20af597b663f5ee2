//! `HttpMegazord` against a wiremock Megazord Events (SPEC §5.2).

use std::net::TcpListener;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::{
    Megazord, PostedEvent, Subscription, SubscriptionRequest, UpstreamConfig, UpstreamError,
};
use status_check_engine::Event;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockBuilder, MockServer, ResponseTemplate};

const SERVICE: &str = "megazord";
const INCOMINGS_PATH: &str = "/internal/v1/events/robots/42/incomings";
const SUBSCRIPTIONS_PATH: &str = "/internal/v1/events/robots/42/subscriptions";
const SUBSCRIPTION_PATH: &str = "/internal/v1/events/robots/42/subscriptions/991";
const CALL_REF: &str = "mz-call-ref-19c4";
const RETRIES: usize = 2;
/// 2026-11-20T08:00:00Z.
const SINCE_SECS: i64 = 1_795_161_600;

/// A timeout a loaded machine's wiremock always answers within, and the slow answers'
/// 3 s delay always exceeds.
fn config(base_url: &str) -> UpstreamConfig {
    UpstreamConfig {
        base_url: base_url.to_owned(),
        timeout: Duration::from_secs(1),
        connect_timeout: Duration::from_secs(1),
        retries: RETRIES,
    }
}

fn client(server: &MockServer) -> HttpMegazord {
    HttpMegazord::new(&config(&server.uri())).expect("client builds")
}

/// 2026-11-20T08:00:00.750Z: the query must carry the floor in seconds.
fn since() -> DateTime<Utc> {
    Utc.timestamp_opt(SINCE_SECS, 750_000_000).unwrap()
}

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).unwrap().to_utc()
}

fn incomings_route(event_name: &str) -> MockBuilder {
    Mock::given(method("GET"))
        .and(path(INCOMINGS_PATH))
        .and(query_param("event_name", event_name))
        .and(query_param("created_since", SINCE_SECS.to_string()))
        .and(header("Call-Ref", CALL_REF))
}

fn subscribe_route() -> MockBuilder {
    Mock::given(method("POST"))
        .and(path(SUBSCRIPTIONS_PATH))
        .and(header("Call-Ref", CALL_REF))
}

fn unsubscribe_route() -> MockBuilder {
    Mock::given(method("DELETE"))
        .and(path(SUBSCRIPTION_PATH))
        .and(header("Call-Ref", CALL_REF))
}

fn one_incoming() -> serde_json::Value {
    json!([{"id": 5001, "robotId": 42, "eventName": "CHARGING_STARTED", "level": 1,
            "referenceId": null, "providerName": "robot", "createdAt": "2026-11-20T07:59:00Z"}])
}

fn names() -> Vec<String> {
    vec!["CHARGING_STARTED".to_owned(), "CHARGING_STOPPED".to_owned()]
}

/// A subscription to `names` until [`until`], on the status queue.
fn request(names: &[String]) -> SubscriptionRequest<'_> {
    SubscriptionRequest {
        event_names: names,
        until: until(),
        queue: None,
    }
}

fn until() -> DateTime<Utc> {
    at("2026-11-20T08:10:00Z")
}

async fn requests(server: &MockServer) -> Vec<wiremock::Request> {
    server.received_requests().await.expect("recording")
}

async fn closed_port_client() -> HttpMegazord {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    HttpMegazord::new(&config(&format!("http://127.0.0.1:{port}/"))).unwrap()
}

fn assert_unavailable(result: Result<impl std::fmt::Debug, UpstreamError>) -> String {
    match result {
        Err(UpstreamError::Unavailable { service, reason }) => {
            assert_eq!(service, SERVICE);
            reason
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

fn assert_invalid(result: Result<impl std::fmt::Debug, UpstreamError>) -> String {
    match result {
        Err(UpstreamError::Invalid { service, reason }) => {
            assert_eq!(service, SERVICE);
            reason
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

// ---- incomings ----

#[tokio::test]
async fn incomings_parse_every_field_with_numeric_and_string_reference_ids() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            {"id": 5001, "robotId": 42, "eventName": "CHARGING_STARTED", "level": 1,
             "referenceId": 991, "providerName": "robot", "createdAt": "2026-11-20T07:59:00Z"},
            {"id": 5002, "robotId": 42, "eventName": "CHARGING_STARTED", "level": null,
             "referenceId": "ref-abc", "providerName": "robot",
             "createdAt": "2026-11-20T08:00:01.250+01:00", "somethingNew": {"x": 1}},
            {"id": 5003, "robotId": 42, "eventName": "CHARGING_STARTED", "level": 3,
             "referenceId": null, "providerName": null, "createdAt": "2026-11-20T08:00:02Z"},
            {"id": 5004, "robotId": 42, "eventName": "CHARGING_STARTED",
             "createdAt": "2026-11-20T08:00:03Z"}
        ])))
        .expect(1)
        .mount(&server)
        .await;

    let events = client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await
        .expect("events");

    let event = |id, created_at: &str, level, reference_id: Option<&str>| Event {
        id,
        name: "CHARGING_STARTED".into(),
        created_at: at(created_at),
        level,
        reference_id: reference_id.map(str::to_owned),
    };
    assert_eq!(
        events,
        vec![
            event(5001, "2026-11-20T07:59:00Z", Some(1), Some("991")),
            event(5002, "2026-11-20T07:00:01.250Z", None, Some("ref-abc")),
            event(5003, "2026-11-20T08:00:02Z", Some(3), None),
            event(5004, "2026-11-20T08:00:03Z", None, None),
        ]
    );
    server.verify().await;
}

#[tokio::test]
async fn incomings_query_string_is_exact() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(200).set_body_json(one_incoming()))
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await
        .expect("events");

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].url.path(), INCOMINGS_PATH);
    assert_eq!(
        received[0].url.query(),
        Some("event_name=CHARGING_STARTED&created_since=1795161600")
    );
}

#[tokio::test]
async fn incomings_event_name_is_url_encoded() {
    let name = "A B&c=d/é?#";
    let server = MockServer::start().await;
    incomings_route(name)
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(1)
        .mount(&server)
        .await;

    let events = client(&server)
        .incomings(42, name, since(), CALL_REF)
        .await
        .expect("events");

    assert!(events.is_empty());
    let received = requests(&server).await;
    assert_eq!(
        received[0].url.query(),
        Some("event_name=A+B%26c%3Dd%2F%C3%A9%3F%23&created_since=1795161600")
    );
    server.verify().await;
}

#[tokio::test]
async fn incomings_not_found() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    let result = client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await;

    assert_eq!(result, Err(UpstreamError::NotFound { service: SERVICE }));
    server.verify().await;
}

#[tokio::test]
async fn incomings_500_then_200_succeeds_after_retry() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(200).set_body_json(one_incoming()))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;

    let events = client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await
        .expect("events after retry");

    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id, 5001);
    assert_eq!(requests(&server).await.len(), 2);
    server.verify().await;
}

#[tokio::test]
async fn incomings_persistent_503_is_unavailable_after_all_retries() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(ResponseTemplate::new(503))
        .expect(1 + RETRIES as u64)
        .mount(&server)
        .await;

    let result = client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await;

    assert_unavailable(result);
    assert_eq!(requests(&server).await.len(), 1 + RETRIES);
    server.verify().await;
}

#[tokio::test]
async fn incomings_slow_answer_is_unavailable() {
    let server = MockServer::start().await;
    incomings_route("CHARGING_STARTED")
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(one_incoming())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let result = client(&server)
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await;

    let reason = assert_unavailable(result);
    assert!(reason.contains("timed out"), "{reason}");
    // Not retried (SPEC §5: connection errors and 5xx are): 502 after one timeout.
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn incomings_malformed_body_is_invalid() {
    for body in [
        json!({"id": 1}),
        json!([{"id": 1, "eventName": "X", "createdAt": "yesterday"}]),
        json!([{"id": 1, "eventName": "X", "createdAt": "2026-11-20T08:00:00Z",
                "referenceId": {"nested": true}}]),
        json!([{"eventName": "X", "createdAt": "2026-11-20T08:00:00Z"}]),
        // A year chrono reads but no Megazord TIMESTAMP holds.
        json!([{"id": 1, "eventName": "X", "createdAt": "+262142-12-31T23:59:59Z"}]),
    ] {
        let server = MockServer::start().await;
        incomings_route("CHARGING_STARTED")
            .respond_with(ResponseTemplate::new(200).set_body_json(body.clone()))
            .expect(1)
            .mount(&server)
            .await;

        let result = client(&server)
            .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
            .await;

        let reason = assert_invalid(result);
        assert!(reason.contains("malformed"), "{body}: {reason}");
        server.verify().await;
    }
}

#[tokio::test]
async fn incomings_connection_refused_is_unavailable() {
    let result = closed_port_client()
        .await
        .incomings(42, "CHARGING_STARTED", since(), CALL_REF)
        .await;

    let reason = assert_unavailable(result);
    assert!(reason.contains("connect"), "{reason}");
}

// ---- subscribe ----

#[tokio::test]
async fn subscribe_sends_the_exact_body_and_reads_the_id() {
    let server = MockServer::start().await;
    subscribe_route()
        .and(body_json(json!({
            "eventNames": ["CHARGING_STARTED", "CHARGING_STOPPED"],
            "until": "2026-11-20T08:10:00Z"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 991, "robotId": 42,
            "subscriptionDetails": [{"eventTypeId": 7, "eventName": "CHARGING_STARTED"},
                                    {"eventTypeId": 8, "eventName": "CHARGING_STOPPED"}],
            "isActive": true, "subscriptionType": 1,
            "createdAt": "2026-11-20T08:00:00.000Z", "updatedAt": "2026-11-20T08:00:00.000Z"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let subscription = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await
        .expect("subscription");

    assert_eq!(subscription, Subscription { id: 991 });
    server.verify().await;
}

/// Monitors' subscriptions name their queue suffix; Megazord routes their deliveries there.
#[tokio::test]
async fn subscribe_sends_the_queue_suffix_when_there_is_one() {
    let server = MockServer::start().await;
    subscribe_route()
        .and(body_json(json!({
            "eventNames": ["TOILET_ACTIVITY"],
            "until": "2026-11-20T08:10:00Z",
            "queue": "azi-3-status-check-jobs"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 993, "robotId": 42, "isActive": true, "subscriptionType": 1
        })))
        .expect(1)
        .mount(&server)
        .await;
    let names = ["TOILET_ACTIVITY".to_owned()];

    let subscription = client(&server)
        .subscribe(
            42,
            SubscriptionRequest {
                queue: Some("azi-3-status-check-jobs"),
                ..request(&names)
            },
            CALL_REF,
        )
        .await
        .expect("subscription");

    assert_eq!(subscription, Subscription { id: 993 });
    server.verify().await;
}

/// Megazord refuses an event name it has no schema for with 404.
#[tokio::test]
async fn subscribe_to_an_unknown_event_is_not_found() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await
        .unwrap_err();

    assert!(matches!(error, UpstreamError::NotFound { .. }), "{error:?}");
    server.verify().await;
}

#[tokio::test]
async fn subscribe_accepts_any_2xx() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 992})))
        .expect(1)
        .mount(&server)
        .await;

    let subscription = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await
        .expect("subscription");

    assert_eq!(subscription.id, 992);
    server.verify().await;
}

#[tokio::test]
async fn subscribe_is_not_retried_on_500() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;

    let result = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await;

    assert_unavailable(result);
    assert_eq!(requests(&server).await.len(), 1);
    server.verify().await;
}

#[tokio::test]
async fn subscribe_timeout_is_unavailable_without_retry() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(json!({"id": 991}))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let result = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await;

    let reason = assert_unavailable(result);
    assert!(reason.contains("timed out"), "{reason}");
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn subscribe_malformed_answer_is_invalid() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"subscriptionId": 991})))
        .expect(1)
        .mount(&server)
        .await;

    let result = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await;

    assert_invalid(result);
    server.verify().await;
}

#[tokio::test]
async fn subscribe_4xx_is_invalid() {
    let server = MockServer::start().await;
    subscribe_route()
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"error": "bad names"})))
        .expect(1)
        .mount(&server)
        .await;

    let result = client(&server)
        .subscribe(42, request(&names()), CALL_REF)
        .await;

    let reason = assert_invalid(result);
    assert!(reason.contains("422"), "{reason}");
    server.verify().await;
}

#[tokio::test]
async fn subscribe_connection_refused_is_unavailable() {
    let result = closed_port_client()
        .await
        .subscribe(42, request(&names()), CALL_REF)
        .await;

    assert_unavailable(result);
}

// ---- unsubscribe ----

#[tokio::test]
async fn unsubscribe_deletes_with_call_ref() {
    let server = MockServer::start().await;
    unsubscribe_route()
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .unsubscribe(42, 991, CALL_REF)
        .await
        .expect("unsubscribed");

    server.verify().await;
}

#[tokio::test]
async fn unsubscribe_404_is_ok() {
    let server = MockServer::start().await;
    unsubscribe_route()
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .unsubscribe(42, 991, CALL_REF)
        .await
        .expect("already gone is fine");

    server.verify().await;
}

#[tokio::test]
async fn unsubscribe_500_then_204_succeeds_after_retry() {
    let server = MockServer::start().await;
    unsubscribe_route()
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .with_priority(1)
        .expect(1)
        .mount(&server)
        .await;
    unsubscribe_route()
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .unsubscribe(42, 991, CALL_REF)
        .await
        .expect("unsubscribed after retry");

    assert_eq!(requests(&server).await.len(), 2);
    server.verify().await;
}

#[tokio::test]
async fn unsubscribe_persistent_503_is_unavailable_after_all_retries() {
    let server = MockServer::start().await;
    unsubscribe_route()
        .respond_with(ResponseTemplate::new(503))
        .expect(1 + RETRIES as u64)
        .mount(&server)
        .await;

    let result = client(&server).unsubscribe(42, 991, CALL_REF).await;

    assert_unavailable(result);
    assert_eq!(requests(&server).await.len(), 1 + RETRIES);
    server.verify().await;
}

#[tokio::test]
async fn unsubscribe_connection_refused_is_unavailable() {
    let result = closed_port_client()
        .await
        .unsubscribe(42, 991, CALL_REF)
        .await;

    assert_unavailable(result);
}

/// An answer larger than the cap is refused as invalid, not read into memory (SPEC §13); one
/// just under it is read.
#[tokio::test]
async fn oversized_answers_are_refused() {
    use status_check::upstream::http::MAX_BODY_BYTES;
    let server = MockServer::start().await;
    let event = json!({"id": 1, "robotId": 42, "eventName": "A", "level": 1,
                       "referenceId": "r", "providerName": "p",
                       "createdAt": "2026-11-20T08:00:00Z"})
    .to_string();
    let padding = |target: usize| {
        // `[event, event, …]` padded with spaces to `target` bytes.
        let mut body = format!("[{event}]");
        body.insert_str(1, &" ".repeat(target - body.len()));
        body
    };
    incomings_route("BIG")
        .respond_with(ResponseTemplate::new(200).set_body_string(padding(MAX_BODY_BYTES + 1)))
        .mount(&server)
        .await;
    incomings_route("FITS")
        .respond_with(ResponseTemplate::new(200).set_body_string(padding(MAX_BODY_BYTES)))
        .mount(&server)
        .await;
    let client = client(&server);
    let error = client
        .incomings(42, "BIG", since(), CALL_REF)
        .await
        .unwrap_err();
    let UpstreamError::Invalid { reason, .. } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert!(reason.contains("larger than"), "{reason}");
    let events = client
        .incomings(42, "FITS", since(), CALL_REF)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
}

fn alarm() -> PostedEvent {
    PostedEvent {
        provider_name: "azi-3-status-jobs".to_owned(),
        event_name: "NO_TOILET_ACTIVITY_ALARM".to_owned(),
        level: Some(3),
        reference_id: "status-check:42:no-toilet:2026-11-20:2".to_owned(),
    }
}

/// A monitor's alarm (SPEC §5.2, §12): the exact body, as the configured provider.
#[tokio::test]
async fn post_incoming_sends_the_alarm_and_reads_the_event_id() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INCOMINGS_PATH))
        .and(header("Call-Ref", CALL_REF))
        .and(body_json(json!({
            "providerName": "azi-3-status-jobs", "eventName": "NO_TOILET_ACTIVITY_ALARM",
            "level": 3, "referenceId": "status-check:42:no-toilet:2026-11-20:2"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({
            "id": 5010, "robotId": 42, "eventName": "NO_TOILET_ACTIVITY_ALARM", "level": 3,
            "referenceId": "status-check:42:no-toilet:2026-11-20:2",
            "providerName": "azi-3-status-jobs", "createdAt": "2026-11-20T10:00:00Z"
        })))
        .expect(1)
        .mount(&server)
        .await;

    let id = client(&server)
        .post_incoming(42, &alarm(), CALL_REF)
        .await
        .expect("posted");

    assert_eq!(id, 5010);
    server.verify().await;
}

/// Without a level the body has none: Megazord's event schema decides (a level nobody chose
/// is never sent).
#[tokio::test]
async fn post_incoming_without_a_level_sends_none() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INCOMINGS_PATH))
        .and(body_json(json!({
            "providerName": "azi-3-status-jobs", "eventName": "NO_TOILET_ACTIVITY_ALARM",
            "referenceId": "status-check:42:no-toilet:2026-11-20:2"
        })))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5011})))
        .expect(1)
        .mount(&server)
        .await;
    let alarm = PostedEvent {
        level: None,
        ..alarm()
    };

    let id = client(&server)
        .post_incoming(42, &alarm, CALL_REF)
        .await
        .expect("posted");

    assert_eq!(id, 5011);
    server.verify().await;
}

/// Not idempotent at the HTTP level: one attempt; the monitors' outbox retries it.
#[tokio::test]
async fn post_incoming_is_not_retried_on_503() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(INCOMINGS_PATH))
        .respond_with(ResponseTemplate::new(503))
        .expect(1)
        .mount(&server)
        .await;

    let result = client(&server).post_incoming(42, &alarm(), CALL_REF).await;

    assert_unavailable(result);
    server.verify().await;
}
