//! The monitoring job service's deployment, replaced (SPEC §12, issue #20): its own
//! `MONITORING_CONFIG` (the public Tinybots dev compose file's value, verbatim), its queue
//! suffix and its provider, against the Megazord simulator that plays the real one (unknown
//! events and providers refused, a level only when one is sent). On SQLite and MariaDB, with
//! the queues on the SQS emulator and one manual clock — the compose file's 00:01–23:59
//! Amsterdam session is driven by it, so the tests pass at any hour.

use serde_json::json;
use status_check::workers::consumer::Outcome;
use status_check_sim::megazord::NewIncoming;

use crate::harness::Backend;
use crate::harness::on_both_backends;
use crate::monitors::{MonitorStack, ROBOT, TOKEN, at, stack_with};

/// `MONITORING_CONFIG` of the monitoring job service in the public Tinybots dev compose file.
const COMPOSE: &str = r#"{"robots":[{"robotId":1,"timezone":"Europe/Amsterdam","enabled":true,"monitoringRules":[{"ruleId":"toilet-activity-2hr","eventName":"TOILET_ACTIVITY","windowDurationMinutes":1,"dailyWindow":{"startTime":"00:01","endTime":"23:59"},"actions":[{"type":"ALARM","config":{"eventName":"NO_TOILET_ACTIVITY_ALARM"}}]}]}]}"#;
const SUFFIX: &str = "azi-3-status-check-jobs";
const JOB_ROBOT: i64 = 1;

/// A stack configured as the job service is (plus the suffix), its monitors' queue made.
async fn job_stack(backend: Backend) -> Option<MonitorStack> {
    let stack = stack_with(
        backend,
        // 10:00 in Amsterdam: inside the compose file's session.
        at("2026-11-20T09:00:00Z"),
        &[
            ("MONITORING_CONFIG", COMPOSE),
            ("MONITORS_QUEUE_SUFFIX", SUFFIX),
        ],
    )
    .await?;
    let status_queue = stack.queues.status_url.rsplit('/').next().unwrap();
    let monitors_queue = stack
        .queues
        .sqs
        .create_queue(&format!("{status_queue}-{SUFFIX}"))
        .await
        .unwrap();
    assert_eq!(
        monitors_queue,
        format!("{}-{SUFFIX}", stack.queues.status_url)
    );
    Some(stack)
}

/// Receives from the monitors' queue until something comes.
async fn consume_monitors_queue(stack: &MonitorStack) -> Vec<Outcome> {
    let consumer = stack.first.workers.monitors_consumer.as_ref().unwrap();
    for _ in 0..10 {
        let outcomes = consumer.tick_once().await;
        if !outcomes.is_empty() {
            return outcomes;
        }
    }
    panic!("nothing arrived on the monitors' queue");
}

/// The compose file's monitor runs: it subscribes to `TOILET_ACTIVITY` with the queue suffix,
/// a delivery on the suffixed queue resets its window, and a quiet minute alarms
/// `NO_TOILET_ACTIVITY_ALARM` as `azi-3-status-jobs`, without a level (Megazord gives it the
/// schema's).
async fn the_compose_config_runs_on_its_own_queue(backend: Backend) {
    let Some(stack) = job_stack(backend).await else {
        return;
    };
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let subscriptions = stack.megazord.subscriptions(JOB_ROBOT);
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(
        subscriptions[0]["subscriptionDetails"][0]["eventName"],
        "TOILET_ACTIVITY"
    );
    let subscription = subscriptions[0]["id"].as_i64().unwrap();
    assert_eq!(
        stack.megazord.subscription_queue(subscription).as_deref(),
        Some(SUFFIX)
    );

    // A watched event half a minute in: delivered on the suffixed queue, it restarts the
    // window — nothing on the plain status queue.
    stack.set("2026-11-20T09:00:30Z");
    let posted = stack
        .megazord
        .post_incoming(JOB_ROBOT, NewIncoming::named("TOILET_ACTIVITY"))
        .await
        .expect("a known event");
    assert!(posted.lost.is_empty(), "{:?}", posted.lost);
    assert_eq!(consume_monitors_queue(&stack).await, [Outcome::Applied]);
    assert!(
        stack
            .first
            .workers
            .consumer
            .as_ref()
            .unwrap()
            .tick_once()
            .await
            .is_empty(),
        "the plain status queue got nothing"
    );
    let window = stack
        .store()
        .get_monitor(JOB_ROBOT, "toilet-activity-2hr")
        .await
        .unwrap()
        .unwrap()
        .state
        .window
        .unwrap();
    assert_eq!(window.window_end, at("2026-11-20T09:01:30Z"), "reset");

    // A quiet minute after it: one alarm, as the job service posted it.
    stack.set("2026-11-20T09:01:32.200Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(stack.tick_relay().await.alarms.done, 1);
    let alarms = stack
        .megazord
        .incomings(JOB_ROBOT, Some("NO_TOILET_ACTIVITY_ALARM"), None);
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["providerName"], "azi-3-status-jobs");
    assert_eq!(
        alarms[0]["level"], 10,
        "no level sent: the schema's, not the most urgent 1"
    );
    assert_eq!(
        alarms[0]["referenceId"],
        "status-check:1:toilet-activity-2hr:2026-11-20:1"
    );
}

/// `status-check job` with the suffix: the monitors' queue only (the plain one is the
/// status-check service's), and no robot queue needed.
async fn a_monitoring_only_replica_consumes_only_the_monitors_queue(backend: Backend) {
    let Some(stack) = job_stack(backend).await else {
        return;
    };
    let job = stack
        .replica_with(&[
            ("ROLES", "monitor,consumer,relay"),
            ("ROBOT_QUEUE_ADDRESS", ""),
        ])
        .await
        .expect("a job replica needs no robot queue");
    assert!(job.workers.consumer.is_none(), "not the plain status queue");
    assert!(job.workers.monitors_consumer.is_some());
    assert!(job.workers.monitor.is_some() && job.workers.relay.is_some());
    // Its workers are the test's to drive, so readiness waits for the one consumer it has.
    let ready: serde_json::Value = reqwest::get(format!("{}/health/ready", job.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["failing"],
        json!(["monitors queue consumer"]),
        "{ready}"
    );
    // The job service's probe, `GET /health`, answers as it did: up.
    let health = reqwest::get(format!("{}/health", job.base)).await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    assert_eq!(
        health.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );
}

/// A monitor watching an event Megazord has no schema for cannot subscribe: said clearly (the
/// monitor's `problem` in the internal API, a metric) and tried again minutes later, not
/// every few seconds.
async fn a_monitor_of_an_unknown_event_reports_it(backend: Backend) {
    let Some(stack) = job_stack(backend).await else {
        return;
    };
    stack
        .monitor(
            "no-such",
            json!({"eventType": "NO_SUCH_EVENT", "daily": {"start": "00:00", "end": "24:00"}}),
        )
        .await;
    stack.set("2026-11-20T09:00:01Z");
    let tick = stack.tick_monitor().await;
    assert_eq!(tick.failed, 1, "{tick:?}");
    assert!(stack.megazord.subscriptions(ROBOT).is_empty());
    let stored = stack
        .store()
        .get_monitor(ROBOT, "no-such")
        .await
        .unwrap()
        .unwrap();
    let problem = stored.state.problem.expect("the problem is kept");
    assert!(problem.contains("NO_SUCH_EVENT"), "{problem}");
    assert_eq!(
        stored.state.due_at,
        at("2026-11-20T09:05:01Z"),
        "minutes later"
    );
    stack.set("2026-11-20T09:00:30Z");
    assert_eq!(stack.tick_monitor().await.claimed, 0, "not retried at once");

    let read = reqwest::Client::new()
        .get(format!(
            "{}/internal/v1/monitors/{ROBOT}/no-such",
            stack.first.base
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    let read: serde_json::Value = read.json().await.unwrap();
    assert!(
        read["problem"]
            .as_str()
            .is_some_and(|p| p.contains("NO_SUCH_EVENT")),
        "{read}"
    );
    let metrics = reqwest::get(format!("{}/metrics", stack.first.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("monitor_failures_total") && l.contains("unknown_event")),
        "{metrics}"
    );
}

/// A job-service rule whose window outlasts its session (two hours, 10:00–11:00 Amsterdam)
/// loads as that service ran it: its window is cut at the session's end, which closes it
/// without an alarm and removes the subscription; the store reads it back each time.
async fn a_window_longer_than_its_session_runs_as_the_job_service_ran_it(backend: Backend) {
    let long = COMPOSE
        .replace(
            r#""windowDurationMinutes":1"#,
            r#""windowDurationMinutes":120"#,
        )
        .replace(r#""startTime":"00:01""#, r#""startTime":"10:00""#)
        .replace(r#""endTime":"23:59""#, r#""endTime":"11:00""#);
    let Some(stack) = stack_with(
        backend,
        at("2026-11-20T09:00:00Z"),
        &[("MONITORING_CONFIG", long.as_str())],
    )
    .await
    else {
        return;
    };
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let window = |stored: Option<status_check::store::StoredMonitor>| {
        let window = stored.expect("stored").state.window?;
        Some((window.window_number, window.window_start, window.window_end))
    };
    let read = || stack.store().get_monitor(JOB_ROBOT, "toilet-activity-2hr");
    assert_eq!(
        window(read().await.unwrap()),
        Some((1, at("2026-11-20T09:00:00Z"), at("2026-11-20T10:00:00Z"))),
        "cut at the session's end"
    );
    assert_eq!(stack.megazord.subscriptions(JOB_ROBOT).len(), 1);

    stack.set("2026-11-20T10:00:02.200Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    let tick = stack.tick_relay().await;
    assert_eq!(
        (tick.alarms.claimed, tick.removals.done),
        (0, 1),
        "{tick:?}"
    );
    assert!(
        stack
            .megazord
            .incomings(JOB_ROBOT, Some("NO_TOILET_ACTIVITY_ALARM"), None)
            .is_empty(),
        "closed by the session's end: no alarm"
    );
    assert_eq!(window(read().await.unwrap()), None, "the session is over");
    assert!(stack.megazord.undeleted_subscriptions().is_empty());
}

on_both_backends!(
    a_window_longer_than_its_session_runs_as_the_job_service_ran_it,
    the_compose_config_runs_on_its_own_queue,
    a_monitoring_only_replica_consumes_only_the_monitors_queue,
    a_monitor_of_an_unknown_event_reports_it,
);
