//! A running service for API tests: real HTTP on port 0, a real database (SQLite file or a
//! fresh MariaDB database), upstreams stubbed with wiremock, and a manual clock.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sqs::config::{Credentials, Region, SharedCredentialsProvider};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::clock::ManualClock;
use status_check::queue::{Queue, SqsQueue};
use status_check::store::DynStore;
use status_check::upstream::UpstreamConfig;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::micro_managers::HttpMicroManagers;
use status_check::{App, Config, Deps};
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::support::{self, Neighbours};

/// Which database an API test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
}

impl Backend {
    /// A fresh database of this backend (production-shaped on MySQL); `None` when the MySQL
    /// tests are switched off.
    pub async fn database(self) -> Option<support::TestDb> {
        match self {
            Backend::Sqlite => Some(support::sqlite_db().await),
            Backend::Mysql => support::mysql_db().await,
        }
    }
}

/// The time every test's checks are created at.
pub fn anchor() -> DateTime<Utc> {
    "2026-11-20T08:00:00Z".parse().unwrap()
}

pub struct TestApp {
    pub base: String,
    pub upstream: MockServer,
    pub store: DynStore,
    /// The other services' rows: each stub of an upstream inserts what that service would.
    pub neighbours: Neighbours,
    pub clock: Arc<ManualClock>,
    shutdown: CancellationToken,
    /// The database this replica made for itself (none when the test handed it one).
    _db: Option<support::TestDb>,
}

impl TestApp {
    /// Direct SQL on the database this replica made for itself.
    pub fn raw(&self) -> &support::Raw {
        &self._db.as_ref().expect("the replica's own database").raw
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub async fn spawn(backend: Backend) -> TestApp {
    spawn_with(backend, &[]).await
}

/// Starts an API-only replica with extra configuration keys.
pub async fn spawn_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let mut keys = vec![("ROLES", "api")];
    keys.extend_from_slice(extra);
    let (app, _, _) = start(backend, None, None, &keys, true).await;
    app
}

/// Starts an API-only replica on a database the test made (e.g. through a proxy), which the
/// replica keeps until it goes.
pub async fn spawn_on(db: support::TestDb) -> TestApp {
    let (mut app, _, _) = start(
        Backend::Mysql,
        Some((db.store.clone(), db.neighbours.clone())),
        None,
        &[("ROLES", "api")],
        true,
    )
    .await;
    app._db = Some(db);
    app
}

/// The queues of a full stack: the shared status queue and the robots' queue prefix.
#[derive(Clone)]
pub struct Queues {
    pub queue: Arc<dyn Queue>,
    pub sqs: SqsQueue,
    pub status_url: String,
    pub robot_prefix: String,
}

/// SQS queues on the emulator (`TEST_SQS_ENDPOINT`), fresh per call; `None` when SQS tests
/// are switched off.
pub async fn sqs_queues() -> Option<Queues> {
    let endpoint = match std::env::var("TEST_SQS_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => endpoint,
        _ if std::env::var("STATUS_CHECK_TESTS_WITHOUT_SQS").is_ok_and(|v| v == "1") => {
            eprintln!("warning: SQS test skipped (STATUS_CHECK_TESTS_WITHOUT_SQS=1)");
            return None;
        }
        _ => panic!(
            "TEST_SQS_ENDPOINT is not set: run scripts/test, which starts the SQS emulator \
             (STATUS_CHECK_TESTS_WITHOUT_SQS=1 skips these tests)"
        ),
    };
    Some(sqs_queues_at(&endpoint).await)
}

/// Fresh queues on the SQS emulator at `endpoint`.
pub async fn sqs_queues_at(endpoint: &str) -> Queues {
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "tests",
        )))
        .build();
    let sqs = SqsQueue::from_sdk_config(&sdk, Some(endpoint));
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let status_url = sqs.create_queue(&format!("status-{tag}")).await.unwrap();
    let robot_prefix =
        status_url.replace(&format!("status-{tag}"), &format!("robot-{}-", &tag[..12]));
    Queues {
        queue: Arc::new(sqs.clone()),
        sqs,
        status_url,
        robot_prefix,
    }
}

impl Queues {
    /// Creates the status queue again (after the emulator lost it); the same URL.
    pub async fn recreate_status_queue(&self) {
        let name = self.status_url.rsplit('/').next().unwrap();
        let url = self.sqs.create_queue(name).await.unwrap();
        assert_eq!(url, self.status_url, "queue URL scheme");
    }

    /// Creates robot `robot_id`'s queue and returns its URL.
    pub async fn robot_queue(&self, robot_id: i64) -> String {
        let prefix_name = self.robot_prefix.rsplit('/').next().unwrap();
        let url = self
            .sqs
            .create_queue(&format!("{prefix_name}{robot_id}"))
            .await
            .unwrap();
        assert_eq!(
            url,
            format!("{}{robot_id}", self.robot_prefix),
            "queue URL scheme"
        );
        url
    }
}

/// A replica running every role, its workers handed to the test to drive with `tick_once`.
pub async fn spawn_stack(
    backend: Backend,
    store: Option<(DynStore, Neighbours)>,
    queues: &Queues,
) -> (TestApp, Workers) {
    spawn_stack_with(backend, store, queues, &[]).await
}

/// A replica running every role with extra configuration keys.
pub async fn spawn_stack_with(
    backend: Backend,
    store: Option<(DynStore, Neighbours)>,
    queues: &Queues,
    extra: &[(&str, &str)],
) -> (TestApp, Workers) {
    let mut keys = vec![
        ("STATUS_QUEUE_ADDRESS", queues.status_url.as_str()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.as_str()),
        ("CONSUMER_WAIT_SECS", "1"),
        ("CONSUMER_VISIBILITY_SECS", "10"),
    ];
    keys.extend_from_slice(extra);
    let (app, workers, _) = start(backend, store, Some(queues.queue.clone()), &keys, true).await;
    (app, workers.expect("a full stack has workers"))
}

/// A replica running every role itself, nothing handed to the test, and the handle of its
/// run, which returns once it has shut down (`TestApp::stop`) and drained.
pub async fn spawn_running(
    backend: Backend,
    queues: &Queues,
    extra: &[(&str, &str)],
) -> (TestApp, tokio::task::JoinHandle<anyhow::Result<()>>) {
    let mut keys = vec![
        ("STATUS_QUEUE_ADDRESS", queues.status_url.as_str()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.as_str()),
        ("CONSUMER_WAIT_SECS", "1"),
    ];
    keys.extend_from_slice(extra);
    let (app, _, running) = start(backend, None, Some(queues.queue.clone()), &keys, false).await;
    (app, running)
}

/// Starts a replica; with `hand_workers` its workers are the test's to drive, else they run
/// in the replica.
async fn start(
    backend: Backend,
    store: Option<(DynStore, Neighbours)>,
    queue: Option<Arc<dyn Queue>>,
    extra: &[(&str, &str)],
    hand_workers: bool,
) -> (
    TestApp,
    Option<Workers>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (store, neighbours, db) = match store {
        Some((store, neighbours)) => (store, neighbours, None),
        None => {
            let db = backend
                .database()
                .await
                .expect("a test database (MySQL tests check `mysql_skipped` first)");
            (db.store.clone(), db.neighbours.clone(), Some(db))
        }
    };
    let upstream = MockServer::start().await;
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut values: Vec<(String, String)> = vec![
        ("HOST".into(), "127.0.0.1".into()),
        ("PORT".into(), "0".into()),
        ("TEMPLATES_DIR".into(), templates.display().to_string()),
        ("MICRO_MANAGERS_ADDRESS".into(), upstream.uri()),
        ("MEGAZORD_EVENTS_ADDRESS".into(), upstream.uri()),
        ("UPSTREAM_TIMEOUT_MS".into(), "1000".into()),
        ("UPSTREAM_RETRIES".into(), "1".into()),
        ("SHUTDOWN_TIMEOUT_SECS".into(), "5".into()),
    ];
    values.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let config = Config::from_sources(values.into_iter().collect()).expect("test config");
    let upstream_config = |base: String| config.upstream(base);
    let clock = Arc::new(ManualClock::new(anchor()));
    let deps = Deps {
        store: store.clone(),
        micro_managers: Arc::new(HttpMicroManagers::new(&upstream_config(upstream.uri())).unwrap()),
        megazord: Arc::new(HttpMegazord::new(&upstream_config(upstream.uri())).unwrap()),
        clock: clock.clone(),
        queue,
    };
    let mut app = App::build_with(&config, deps).await.expect("app builds");
    let workers = hand_workers.then(|| app.take_workers());
    let has_workers = workers
        .as_ref()
        .is_some_and(|w| w.consumer.is_some() || w.scheduler.is_some());
    let base = format!("http://127.0.0.1:{}", app.port());
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let app = TestApp {
        base,
        upstream,
        store,
        neighbours,
        clock,
        shutdown,
        _db: db,
    };
    (app, workers.filter(|_| has_workers), running)
}

/// Builds (without running) an API-only app on `store` with the templates of `dir`.
pub async fn build_on(store: DynStore, dir: &Path) -> anyhow::Result<App> {
    let config = Config::from_sources(
        [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("ROLES", "api"),
            ("TEMPLATES_DIR", dir.to_str().unwrap()),
            ("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9"),
            ("MEGAZORD_EVENTS_ADDRESS", "http://127.0.0.1:9"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
    )?;
    let upstream = UpstreamConfig::new("http://127.0.0.1:9");
    let deps = Deps {
        store,
        micro_managers: Arc::new(HttpMicroManagers::new(&upstream)?),
        megazord: Arc::new(HttpMegazord::new(&upstream)?),
        clock: Arc::new(ManualClock::new(anchor())),
        queue: None,
    };
    App::build_with(&config, deps).await
}

/// The Kong headers of a robot.
pub fn robot_headers(robot_id: i64) -> Vec<(&'static str, String)> {
    vec![
        ("x-consumer-id", "consumer-1".to_owned()),
        ("x-consumer-username", "tinybots-robots".to_owned()),
        ("x-authenticated-userid", robot_id.to_string()),
        ("x-authenticated-scope", "robot".to_owned()),
    ]
}

/// The script version of every step `step_json` describes and every body `create_body` sends.
pub const SCRIPT_VERSION_ID: i64 = 789;

/// A step body for Micro-Managers.
pub fn step_json(
    step_id: i64,
    template: &str,
    past: i64,
    future: i64,
    commands: &[(&str, i64)],
) -> Value {
    json!({
        "step": {"id": step_id, "scriptVersionId": SCRIPT_VERSION_ID, "stepType": "statusCheck"},
        "node": {"type": "statusCheck", "statusCheckName": template,
                 "pastInterval": past, "futureInterval": future},
        "next": {"type": "multipleChoice", "multipleChoice": commands.iter().map(|(c, next)| json!({
            "intentionType": "command", "primaryCommand": c, "commands": [c], "nextStepId": next
        })).collect::<Vec<_>>()}
    })
}

pub fn create_body(step_id: i64) -> Value {
    json!({"stepId": step_id, "scheduledId": 456, "scriptVersionId": SCRIPT_VERSION_ID,
           "plannedAt": "2026-11-20T08:00:00Z"})
}

pub fn incoming(id: i64, name: &str, at: &str) -> Value {
    json!({"id": id, "robotId": 42, "eventName": name, "level": 1, "referenceId": null,
           "providerName": "test", "createdAt": at})
}

impl TestApp {
    /// An upstream route (Micro-Managers or Megazord, one path) answering `status` from now
    /// on, without a body: the upstream failing.
    pub async fn given_status(&self, verb: &str, route: &str, status: u16) {
        Mock::given(method(verb))
            .and(path(route))
            .respond_with(ResponseTemplate::new(status))
            .mount(&self.upstream)
            .await;
    }

    /// Micro-Managers answers this step for robot `robot_id`.
    pub async fn given_step(&self, robot_id: i64, step_id: i64, body: Value) {
        // The script is Micro-Managers' (and the robot its account service's) before any
        // step of it is asked for.
        self.neighbours.robot(robot_id).await;
        if let Some(version) = body["step"]["scriptVersionId"].as_i64() {
            let mut steps = vec![step_id];
            if let Some(choices) = body["next"]["multipleChoice"].as_array() {
                steps.extend(choices.iter().filter_map(|c| c["nextStepId"].as_i64()));
            }
            self.neighbours.script_steps(version, &steps).await;
        }
        Mock::given(method("GET"))
            .and(path(format!(
                "/internal/v5/scripts/robots/{robot_id}/scripts/steps/{step_id}"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(body))
            .mount(&self.upstream)
            .await;
    }

    /// Megazord holds these incoming events of `name` (whatever `created_since`).
    pub async fn given_incomings(&self, robot_id: i64, name: &str, events: Value) {
        for event in events.as_array().into_iter().flatten() {
            if let Some(id) = event["id"].as_i64() {
                self.neighbours.incoming_event(id, robot_id).await;
            }
        }
        Mock::given(method("GET"))
            .and(path(format!(
                "/internal/v1/events/robots/{robot_id}/incomings"
            )))
            .and(query_param("event_name", name))
            .respond_with(ResponseTemplate::new(200).set_body_json(events))
            .mount(&self.upstream)
            .await;
    }

    /// Megazord answers the incomings of `name` with none, only after `delay`, ahead of any
    /// other answer for that name (a slow read at a deadline).
    pub async fn given_slow_incomings(&self, robot_id: i64, name: &str, delay: Duration) {
        Mock::given(method("GET"))
            .and(path(format!(
                "/internal/v1/events/robots/{robot_id}/incomings"
            )))
            .and(query_param("event_name", name))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(json!([]))
                    .set_delay(delay),
            )
            .with_priority(1)
            .mount(&self.upstream)
            .await;
    }

    /// Megazord accepts subscriptions (id `subscription_id`) and unsubscriptions.
    pub async fn given_subscriptions(&self, robot_id: i64, subscription_id: i64) {
        self.mount_subscriptions(robot_id, subscription_id, None)
            .await;
    }

    /// Megazord answers the next subscription (only) with `subscription_id`, so successive
    /// checks get distinct ids.
    pub async fn given_next_subscription(&self, robot_id: i64, subscription_id: i64) {
        self.mount_subscriptions(robot_id, subscription_id, Some(1))
            .await;
    }

    async fn mount_subscriptions(&self, robot_id: i64, subscription_id: i64, times: Option<u64>) {
        // Megazord stores the subscription before it answers with its id.
        self.neighbours
            .subscription(subscription_id, robot_id)
            .await;
        let mut subscribe = Mock::given(method("POST"))
            .and(path(format!(
                "/internal/v1/events/robots/{robot_id}/subscriptions"
            )))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({
                "id": subscription_id, "robotId": robot_id, "subscriptionDetails": [],
                "isActive": true, "subscriptionType": 1,
                "createdAt": "2026-11-20T08:00:00Z", "updatedAt": "2026-11-20T08:00:00Z"
            })));
        if let Some(times) = times {
            subscribe = subscribe.up_to_n_times(times);
        }
        subscribe.mount(&self.upstream).await;
        Mock::given(method("DELETE"))
            .and(path_regex(format!(
                "^/internal/v1/events/robots/{robot_id}/subscriptions/[0-9]+$"
            )))
            .respond_with(ResponseTemplate::new(204))
            .mount(&self.upstream)
            .await;
    }

    /// The rows Megazord stores before it puts `body` on the status queue: the incoming and
    /// outgoing events of an envelope (SPEC §5.3); nothing for a message of another shape.
    pub async fn megazord_stored(&self, body: &str) {
        let Ok(mut envelope) = serde_json::from_str::<Value>(body) else {
            return;
        };
        if envelope["Type"] == "Notification"
            && let Some(inner) = envelope["Message"].as_str()
        {
            let Ok(inner) = serde_json::from_str(inner) else {
                return;
            };
            envelope = inner;
        }
        let payload = &envelope["payload"];
        if let (Some(outgoing), Some(source), Some(subscription), Some(robot)) = (
            payload["id"].as_i64(),
            payload["sourceEventId"].as_i64(),
            payload["subscriptionId"].as_i64(),
            payload["sourceEvent"]["robotId"].as_i64(),
        ) {
            self.neighbours
                .outgoing_event(outgoing, source, subscription, robot)
                .await;
        }
    }

    /// How many requests of `verb` reached a path containing `fragment`.
    pub async fn upstream_calls(&self, verb: &str, fragment: &str) -> usize {
        self.upstream
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .filter(|r| r.method.as_str() == verb && r.url.path().contains(fragment))
            .count()
    }

    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub async fn post_check(&self, robot_id: i64, body: &Value) -> (StatusCode, Value) {
        let mut request = self
            .client()
            .post(format!("{}/v1/status-check/check", self.base))
            .json(body);
        for (name, value) in robot_headers(robot_id) {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get_check(&self, robot_id: i64, id: &str) -> (StatusCode, Value) {
        let mut request = self
            .client()
            .get(format!("{}/v1/status-check/check/{id}", self.base));
        for (name, value) in robot_headers(robot_id) {
            request = request.header(name, value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub fn clock_now(&self) -> chrono::DateTime<Utc> {
        use status_check::clock::Clock;
        self.clock.now()
    }

    /// Stops this replica's HTTP server (its workers belong to the test).
    pub fn stop(&self) {
        self.shutdown.cancel();
    }

    /// How many checks exist in the database (any robot).
    pub async fn check_count(&self) -> usize {
        let mut count = 0;
        for id in 1..=50 {
            if self.store.get_check(id).await.unwrap().is_some() {
                count += 1;
            }
        }
        count
    }
}

/// Generates `sqlite::NAME` and `mysql::NAME` for each behaviour: `NAME(Backend)`, or with
/// `databases:` first, `NAME(&TestDb)` on a fresh migrated database of each backend. The
/// MySQL half returns early when MySQL tests are switched off.
macro_rules! on_both_backends {
    (databases: $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::sqlite_db().await;
                    super::$name(&db).await;
                }
            )*
        }

        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::support::mysql_db().await else {
                        return;
                    };
                    super::$name(&db).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(crate::harness::Backend::Sqlite).await;
                }
            )*
        }

        mod mysql {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if crate::support::mysql_skipped() {
                        return;
                    }
                    super::$name(crate::harness::Backend::Mysql).await;
                }
            )*
        }
    };
}
pub(crate) use on_both_backends;
