//! `HttpMicroManagers` against a wiremock Micro-Managers (SPEC §5.1).

use std::net::TcpListener;
use std::time::Duration;

use serde_json::json;
use status_check::upstream::micro_managers::HttpMicroManagers;
use status_check::upstream::{
    MicroManagers, NextCommand, ScriptStep, StepRef, UpstreamConfig, UpstreamError,
};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SERVICE: &str = "micro-managers";
const STEP_PATH: &str = "/internal/v5/scripts/robots/42/scripts/steps/123";
const CALL_REF: &str = "mm-call-ref-7f3a";
/// The step of `STEP_PATH`.
const STEP: StepRef = StepRef {
    robot_id: 42,
    step_id: 123,
};
const RETRIES: usize = 2;

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

fn client(server: &MockServer) -> HttpMicroManagers {
    HttpMicroManagers::new(&config(&server.uri())).expect("client builds")
}

/// A mock of the step route that only matches the right method, path and `Call-Ref`.
fn step_route() -> wiremock::MockBuilder {
    Mock::given(method("GET"))
        .and(path(STEP_PATH))
        .and(header("Call-Ref", CALL_REF))
}

fn spec_body() -> serde_json::Value {
    json!({
        "step": {"id": 123, "scriptVersionId": 789, "stepType": "statusCheck", "extra": true},
        "node": {"type": "statusCheck", "statusCheckName": "robot-is-charging",
                 "pastInterval": 3600, "futureInterval": 600, "somethingElse": [1, 2]},
        "next": {"type": "multipleChoice", "multipleChoice": [
            {"intentionType": "command", "primaryCommand": "pass", "commands": ["pass", "ok"],
             "nextStepId": 124},
            {"intentionType": "command", "primaryCommand": "fail", "commands": ["fail"],
             "nextStepId": 125}]},
        "unknownTopLevel": {"ignored": 1}
    })
}

fn expected_step() -> ScriptStep {
    ScriptStep {
        step_id: 123,
        script_version_id: 789,
        step_type: "statusCheck".into(),
        node_type: "statusCheck".into(),
        status_check_name: Some("robot-is-charging".into()),
        past_interval: 3600,
        future_interval: 600,
        next_type: "multipleChoice".into(),
        next: vec![
            NextCommand {
                command: "pass".into(),
                commands: vec!["pass".into(), "ok".into()],
                next_step_id: 124,
            },
            NextCommand {
                command: "fail".into(),
                commands: vec!["fail".into()],
                next_step_id: 125,
            },
        ],
    }
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.expect("recording").len()
}

#[tokio::test]
async fn parses_every_field_and_sends_call_ref() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(200).set_body_json(spec_body()))
        .expect(1)
        .mount(&server)
        .await;

    let step = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .expect("step");

    assert_eq!(step, expected_step());
    server.verify().await;
}

#[tokio::test]
async fn base_url_with_trailing_slash() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(200).set_body_json(spec_body()))
        .expect(1)
        .mount(&server)
        .await;
    let client = HttpMicroManagers::new(&config(&format!("{}/", server.uri()))).unwrap();

    let step = client.script_step(STEP, CALL_REF).await.expect("step");

    assert_eq!(step, expected_step());
    server.verify().await;
}

#[tokio::test]
async fn other_node_type_without_next_or_intervals() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "step": {"id": 123, "scriptVersionId": 789, "stepType": "say"},
            "node": {"type": "say", "text": "hello"}
        })))
        .mount(&server)
        .await;

    let step = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .expect("step");

    assert_eq!(step.node_type, "say");
    assert_eq!(step.status_check_name, None);
    assert_eq!((step.past_interval, step.future_interval), (0, 0));
    assert!(step.next.is_empty());
}

#[tokio::test]
async fn not_found_is_not_found_and_not_retried() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(404).set_body_string("no such step"))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .unwrap_err();

    assert_eq!(error, UpstreamError::NotFound { service: SERVICE });
    server.verify().await;
}

#[tokio::test]
async fn other_4xx_is_invalid_without_leaking_the_body() {
    let server = MockServer::start().await;
    let secret_tail = "SECRET-INTERNAL-DETAIL";
    let body = format!("{}{secret_tail}", "x".repeat(5_000));
    step_route()
        .respond_with(ResponseTemplate::new(400).set_body_string(body))
        .expect(1)
        .mount(&server)
        .await;

    let error = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .unwrap_err();

    let UpstreamError::Invalid { service, reason } = error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(service, SERVICE);
    assert!(reason.contains("400"), "{reason}");
    assert!(!reason.contains(secret_tail), "{reason}");
    assert!(reason.chars().count() < 200, "reason too long: {reason}");
    server.verify().await;
}

#[tokio::test]
async fn malformed_body_is_invalid_and_not_retried() {
    for body in [
        "not json at all".to_owned(),
        json!({"step": {"id": "123", "scriptVersionId": 789, "stepType": "statusCheck"},
               "node": {"type": "statusCheck"}})
        .to_string(),
        json!({"node": {"type": "statusCheck"}}).to_string(),
        json!({"step": {"id": 1, "scriptVersionId": 2, "stepType": "statusCheck"},
               "node": {"type": "statusCheck"},
               "next": {"type": "multipleChoice", "multipleChoice": [{"primaryCommand": 5}]}})
        .to_string(),
    ] {
        let server = MockServer::start().await;
        step_route()
            .respond_with(ResponseTemplate::new(200).set_body_string(body.clone()))
            .expect(1)
            .mount(&server)
            .await;

        let error = client(&server)
            .script_step(STEP, CALL_REF)
            .await
            .unwrap_err();

        assert!(
            matches!(
                error,
                UpstreamError::Invalid {
                    service: SERVICE,
                    ..
                }
            ),
            "{body}: {error:?}"
        );
        server.verify().await;
    }
}

#[tokio::test]
async fn a_500_then_200_succeeds_after_one_retry() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .expect(1)
        .with_priority(1)
        .mount(&server)
        .await;
    step_route()
        .respond_with(ResponseTemplate::new(200).set_body_json(spec_body()))
        .expect(1)
        .with_priority(2)
        .mount(&server)
        .await;

    let step = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .expect("step after retry");

    assert_eq!(step, expected_step());
    assert_eq!(requests(&server).await, 2);
    server.verify().await;
}

#[tokio::test]
async fn persistent_503_is_unavailable_after_all_retries() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(ResponseTemplate::new(503).set_body_string("down"))
        .expect(1 + RETRIES as u64)
        .mount(&server)
        .await;

    let error = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .unwrap_err();

    assert!(
        matches!(
            error,
            UpstreamError::Unavailable {
                service: SERVICE,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(requests(&server).await, 1 + RETRIES);
    server.verify().await;
}

#[tokio::test]
async fn slow_answer_times_out_as_unavailable() {
    let server = MockServer::start().await;
    step_route()
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(spec_body())
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;

    let error = client(&server)
        .script_step(STEP, CALL_REF)
        .await
        .unwrap_err();

    let UpstreamError::Unavailable { service, reason } = error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert_eq!(service, SERVICE);
    assert!(reason.contains("timed out"), "{reason}");
    // Not retried (SPEC §5: connection errors and 5xx are): 502 after one timeout.
    assert_eq!(requests(&server).await, 1);
}

#[tokio::test]
async fn connection_refused_is_unavailable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = HttpMicroManagers::new(&config(&format!("http://127.0.0.1:{port}"))).unwrap();

    let error = client.script_step(STEP, CALL_REF).await.unwrap_err();

    assert!(
        matches!(
            error,
            UpstreamError::Unavailable {
                service: SERVICE,
                ..
            }
        ),
        "{error:?}"
    );
}
