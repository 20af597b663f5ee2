//! What the fault tests (`faults*`) build on besides the replicas of `faults`: servers of the
//! test's own to freeze, kill and restart — a MariaDB and an SQS emulator (the shared ones of
//! `scripts/test` must not be touched) — the simulators upstream, the replica's environment, and
//! requests that report their status, content type and time.

use std::collections::BTreeMap;
use std::net::TcpListener as StdTcpListener;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::ConnectOptions as _;
use sqlx::Connection as _;
use sqlx::mysql::MySqlConnectOptions;
use status_check::dev::QueueSink;
use status_check_sim::{MegazordSim, MicroManagersSim, StatusSink};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::faults::free_port;
use crate::harness::{Queues, robot_headers};

/// Sends `signal` (`STOP`, `CONT`, `KILL`, …) to a process.
fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// A MariaDB server of this test's own, on 127.0.0.1 and a free port, in a temporary folder.
///
/// It starts on an empty data folder with `--skip-grant-tables` (no `mariadb-install-db`,
/// which takes ≈ 5 s): anyone may connect as `root` without a password, and the system tables
/// the service does not use are missing. Ready in about half a second. Stopped (and thawed
/// first) when dropped.
pub struct PrivateMariadb {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    /// How it keeps its binary log.
    binlog: &'static [&'static str],
}

impl PrivateMariadb {
    /// The `mariadbd` of Debian's `mariadb-server` (which `scripts/mariadb` installs).
    const SERVER: &str = "/usr/sbin/mariadbd";

    pub async fn start() -> PrivateMariadb {
        PrivateMariadb::start_with(&["--skip-log-bin"]).await
    }

    /// [`start`](PrivateMariadb::start) with the binary log on, statements logged as
    /// statements (`binlog_format=STATEMENT`): InnoDB refuses writes at READ COMMITTED there.
    pub async fn start_logging_statements() -> PrivateMariadb {
        PrivateMariadb::start_with(&[
            "--log-bin=binlog",
            "--binlog-format=STATEMENT",
            "--server-id=1",
        ])
        .await
    }

    async fn start_with(binlog: &'static [&'static str]) -> PrivateMariadb {
        assert!(
            Path::new(Self::SERVER).exists(),
            "{} is missing: install mariadb-server (scripts/test does)",
            Self::SERVER
        );
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("data")).unwrap();
        // Run as root, mariadbd drops to user `mysql`, which must own every path it writes.
        if dir.path().metadata().unwrap().uid() == 0 {
            let owned = Command::new("chown")
                .args(["-R", "mysql:mysql"])
                .arg(dir.path())
                .status()
                .expect("chown runs");
            assert!(owned.success(), "cannot hand the folder to user mysql");
            let opened = Command::new("chmod")
                .arg("755")
                .arg(dir.path())
                .status()
                .expect("chmod runs");
            assert!(opened.success());
        }
        let mut server = PrivateMariadb {
            dir,
            port: free_port(),
            child: None,
            binlog,
        };
        server.spawn().await;
        // A tablespace created by this run is not yet on disk in a form crash recovery can
        // read: one clean shutdown makes a later SIGKILL survivable.
        if let Some(mut child) = server.child.take() {
            signal(child.id(), "TERM");
            let _ = child.wait();
        }
        server.spawn().await;
        server
    }

    /// A URL of the server (no database): `root`, no password.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server runs").id()
    }

    /// SIGSTOP: the server keeps its connections and its port but answers nothing, until the
    /// guard is dropped or [`Frozen::thaw`]ed (SIGCONT). A test that fails while the server is
    /// frozen thaws it as it unwinds, before its test database is dropped (a `DROP DATABASE`
    /// on a frozen server would wait forever).
    #[must_use = "the server is thawed when the guard is dropped"]
    pub fn freeze(&self) -> Frozen<'_> {
        signal(self.pid(), "STOP");
        Frozen { server: self }
    }

    /// SIGKILL (a crash: no clean shutdown); the port refuses connections until [`start_again`].
    ///
    /// [`start_again`]: PrivateMariadb::start_again
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same data folder and port (after [`kill`]); InnoDB
    /// recovers what was committed.
    ///
    /// [`kill`]: PrivateMariadb::kill
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let dir = self.dir.path();
        let log = dir.join("error.log");
        let child = Command::new(Self::SERVER)
            .arg("--no-defaults")
            .arg("--user=mysql")
            .arg(format!("--datadir={}", dir.join("data").display()))
            .arg(format!("--socket={}", dir.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", dir.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", log.display()))
            .arg(format!("--port={}", self.port))
            .args([
                "--bind-address=127.0.0.1",
                "--skip-grant-tables",
                "--skip-name-resolve",
                "--innodb-flush-log-at-trx-commit=2",
                "--innodb-log-file-size=8M",
                "--innodb-buffer-pool-size=32M",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_unicode_ci",
            ])
            .args(self.binlog)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mariadbd starts");
        self.child = Some(child);
        let options = MySqlConnectOptions::from_str(&self.url()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let connected = tokio::time::timeout(Duration::from_secs(1), options.connect()).await;
            if let Ok(Ok(conn)) = connected {
                let _ = conn.close().await;
                return;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("the private mariadbd did not start ({exited:?}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateMariadb {
    fn drop(&mut self) {
        if let Some(child) = &self.child {
            // A stopped process does not die of SIGKILL until it is continued on some systems.
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(child.id().to_string())
                .status();
        }
        self.kill();
    }
}

/// A [`PrivateMariadb`] stopped with SIGSTOP; continued (SIGCONT) when dropped.
pub struct Frozen<'a> {
    server: &'a PrivateMariadb,
}

impl Frozen<'_> {
    /// SIGCONT.
    pub fn thaw(self) {}
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        // No assertion: this may run while a failed test unwinds.
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.server.pid().to_string())
            .status();
    }
}

/// Runs a fault test's `body`, failing the test if it is not done within `deadline`: an
/// await that never ends (a hang) fails fast, with a message, instead of blocking the suite.
/// The body's servers and replicas are dropped — thawed, killed — as its future is.
pub async fn within<T>(
    deadline: Duration,
    test: &str,
    body: impl std::future::Future<Output = T>,
) -> T {
    match tokio::time::timeout(deadline, body).await {
        Ok(value) => value,
        Err(_) => panic!(
            "{test} did not finish within {deadline:?}: something it awaited has no bound \
             (each of the test's own waits has a deadline)"
        ),
    }
}

/// The SQS emulator (moto) of this test's own, on a free port. moto keeps its queues in
/// memory: a restart loses them, as a region outage would not — tests create them again.
pub struct PrivateMoto {
    python: PathBuf,
    port: u16,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
}

impl PrivateMoto {
    /// The Python with moto: `TEST_SQS_EMULATOR_PYTHON` (`scripts/sqs-emulator` exports it),
    /// else the venv it creates, `.tmp/venv-moto`, if there is one.
    pub fn python_available() -> Option<PathBuf> {
        if let Ok(python) = std::env::var("TEST_SQS_EMULATOR_PYTHON")
            && !python.is_empty()
        {
            return Some(PathBuf::from(python));
        }
        let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tmp/venv-moto/bin/python");
        venv.exists().then_some(venv)
    }

    fn python() -> PathBuf {
        PrivateMoto::python_available().expect(
            "no Python with moto: run scripts/test (it creates .tmp/venv-moto), or set \
             TEST_SQS_EMULATOR_PYTHON to one",
        )
    }

    pub async fn start() -> PrivateMoto {
        let mut moto = PrivateMoto {
            python: PrivateMoto::python(),
            port: free_port(),
            child: None,
            log: tempfile::NamedTempFile::new().unwrap(),
        };
        moto.spawn().await;
        moto
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// SIGKILL; its queues and messages are gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new(&self.python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .stdout(self.log.reopen().unwrap())
            .stderr(self.log.reopen().unwrap())
            .spawn()
            .expect("moto starts");
        self.child = Some(child);
        let url = format!("{}/moto-api/", self.endpoint());
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(&url).send().await.is_err() {
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
                panic!("the private moto did not start ({exited:?}):\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for PrivateMoto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An envelope held back, with the queue suffix it was sent to.
type Held = (Option<String>, String);

/// A status queue Megazord's envelopes go to only once opened: until then they are held, so a
/// test decides when deliveries reach the service (e.g. only once its database is frozen).
pub struct GatedSink {
    inner: QueueSink,
    held: Mutex<Option<Vec<Held>>>,
}

impl GatedSink {
    pub fn closed(inner: QueueSink) -> Arc<GatedSink> {
        Arc::new(GatedSink {
            inner,
            held: Mutex::new(Some(Vec::new())),
        })
    }

    /// Sends what was held, and from now on everything at once.
    pub async fn open(&self) {
        let held = self.held.lock().unwrap().take().unwrap_or_default();
        for (queue, body) in held {
            self.inner
                .send(queue.as_deref(), body)
                .await
                .expect("the status queue takes it");
        }
    }
}

#[async_trait]
impl StatusSink for GatedSink {
    async fn send(&self, queue: Option<&str>, body: String) -> Result<(), String> {
        if let Some(held) = self.held.lock().unwrap().as_mut() {
            held.push((queue.map(str::to_owned), body));
            return Ok(());
        }
        self.inner.send(queue, body).await
    }
}

/// `megazord` knowing the shipped templates' events and the providers, as the dev stack's does.
pub fn seeded(megazord: MegazordSim) -> MegazordSim {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let templates = status_check::template_files::TemplateSource::Dir(templates);
    status_check::dev::seed_megazord(megazord, &templates).expect("the shipped templates load")
}

/// Micro-Managers and Megazord simulators served in this process; stopped when dropped.
pub struct Upstreams {
    pub megazord: MegazordSim,
    pub micro_managers_url: String,
    pub megazord_url: String,
    _stop: DropGuard,
}

impl Upstreams {
    pub fn serve(micro_managers: MicroManagersSim, megazord: MegazordSim) -> Upstreams {
        let stop = CancellationToken::new();
        let listener = || {
            let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            tokio::net::TcpListener::from_std(l).unwrap()
        };
        let mm =
            status_check_sim::spawn(listener(), micro_managers.router(), stop.clone()).unwrap();
        let mz = status_check_sim::spawn(listener(), megazord.router(), stop.clone()).unwrap();
        Upstreams {
            megazord,
            micro_managers_url: format!("http://{mm}"),
            megazord_url: format!("http://{mz}"),
            _stop: stop.drop_guard(),
        }
    }
}

/// The environment of a replica (`status-check serve`) on database `database_url`, the
/// queues of `queues` at `sqs_endpoint`, and `upstreams`; `extra` overrides.
pub fn replica_env(
    database_url: &str,
    queues: &Queues,
    sqs_endpoint: &str,
    upstreams: &Upstreams,
    extra: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let mut env: BTreeMap<String, String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOST", "127.0.0.1".into()),
        ("DATABASE_URL", database_url.to_owned()),
        (
            "MICRO_MANAGERS_ADDRESS",
            upstreams.micro_managers_url.clone(),
        ),
        ("MEGAZORD_EVENTS_ADDRESS", upstreams.megazord_url.clone()),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.clone()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.clone()),
        ("AWS_ENDPOINT", sqs_endpoint.to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("TEMPLATES_DIR", templates.display().to_string()),
        ("CONSUMER_WAIT_SECS", "1".into()),
        ("CONSUMER_VISIBILITY_SECS", "5".into()),
        ("SCHEDULER_STALE_LOCK_SECS", "5".into()),
        ("LOG_LEVEL", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    env
}

/// An answer, with how long it took.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub content_type: String,
    pub body: Value,
    pub took: Duration,
}

/// `method` `path` on the replica at `port`, as robot `robot` (Kong's headers) when given.
pub async fn call(
    port: u16,
    method: reqwest::Method,
    path: &str,
    robot: Option<i64>,
    body: Option<&Value>,
) -> Answer {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut request = client.request(method, format!("http://127.0.0.1:{port}{path}"));
    for (name, value) in robot.map(robot_headers).unwrap_or_default() {
        request = request.header(name, value);
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    let started = Instant::now();
    let response = request.send().await.expect("the replica answers");
    let status = response.status();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        content_type,
        body,
        took: started.elapsed(),
    }
}

/// The `/metrics` page of the replica at `port` (a process of its own: its metrics are its
/// own, not the test process's shared recorder).
pub async fn metrics_of(port: u16) -> String {
    reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The value of the unlabelled series `name` on a metrics page, when it is there.
pub fn metric_value(metrics: &str, name: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

/// Polls `GET /health/ready` until it answers `status`, for at most `within`.
pub async fn await_readiness(port: u16, status: StatusCode, within: Duration) -> Answer {
    let deadline = Instant::now() + within;
    loop {
        let answer = call(port, reqwest::Method::GET, "/health/ready", None, None).await;
        if answer.status == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "/health/ready still {} after {within:?}: {}",
            answer.status,
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST /v1/status-check/check` for `robot` at `step`.
pub async fn create(port: u16, robot: i64, step: i64) -> Answer {
    let body = serde_json::json!({"stepId": step, "scheduledId": 1,
        "scriptVersionId": status_check_sim::micro_managers::SCRIPT_VERSION_ID,
        "plannedAt": "2026-11-20T08:00:00Z"});
    call(
        port,
        reqwest::Method::POST,
        "/v1/status-check/check",
        Some(robot),
        Some(&body),
    )
    .await
}

/// What a check ended as: phase, result, next step.
pub type Outcome = (&'static str, &'static str, i64);

/// Waits until every check of `ids` (robot → check id) has ended, for at most `within`; then
/// asserts each ended as `expected` says, with no event recorded twice. Returns the checks.
pub async fn assert_all_end(
    port: u16,
    ids: &BTreeMap<i64, i64>,
    expected: impl Fn(i64) -> Outcome,
    within: Duration,
) -> BTreeMap<i64, Value> {
    let deadline = Instant::now() + within;
    let mut ended = BTreeMap::new();
    while ended.len() < ids.len() {
        assert!(Instant::now() < deadline, "ended only {ended:?}");
        for (&robot, &id) in ids {
            if let std::collections::btree_map::Entry::Vacant(entry) = ended.entry(robot) {
                let check = crate::faults::get_check(port, robot, id).await;
                if check["phase"] == "COMPLETED" || check["phase"] == "FAILED" {
                    entry.insert(check);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (robot, check) in &ended {
        let got = (
            check["phase"].as_str().unwrap_or_default(),
            check["result"].as_str().unwrap_or_default(),
            check["nextStepId"].as_i64().unwrap_or_default(),
        );
        assert_eq!(got, expected(*robot), "robot {robot}: {check}");
        let events: Vec<i64> = check["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["incomingEventId"].as_i64().unwrap())
            .collect();
        let unique: std::collections::BTreeSet<i64> = events.iter().copied().collect();
        assert_eq!(unique.len(), events.len(), "robot {robot}: an event twice");
    }
    ended
}

/// Waits until each robot of `ended` has been told its check's final state (phase and next
/// step), for at most `within`; a repeated `notificationSeq` must carry the same state.
pub async fn assert_all_told(queues: &Queues, ended: &BTreeMap<i64, Value>, within: Duration) {
    let deadline = Instant::now() + within;
    for (robot, check) in ended {
        let mut by_seq: BTreeMap<i64, Value> = BTreeMap::new();
        loop {
            for message in crate::faults::messages(queues, *robot).await {
                let payload = message["payload"].clone();
                let seq = payload["notificationSeq"].as_i64().unwrap();
                if let Some(earlier) = by_seq.get(&seq) {
                    assert_eq!(
                        earlier, &payload,
                        "robot {robot}: seq {seq} told twice, differently"
                    );
                }
                by_seq.insert(seq, payload);
            }
            let told = by_seq
                .values()
                .any(|p| p["phase"] == check["phase"] && p["nextStepId"] == check["nextStepId"]);
            if told {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "robot {robot} never told: {by_seq:?}"
            );
        }
    }
}

/// Waits until Megazord holds no subscription that was never deleted, for at most `within`.
pub async fn assert_no_subscription_left(megazord: &MegazordSim, within: Duration) {
    let deadline = Instant::now() + within;
    while !megazord.undeleted_subscriptions().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left at Megazord: {:?}",
            megazord.undeleted_subscriptions()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A 503 problem+json with a request id, answered within `bound`.
pub fn assert_unavailable_within(answer: &Answer, bound: Duration, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{what}: {answer:?}"
    );
    assert_eq!(
        answer.content_type, "application/problem+json",
        "{what}: {answer:?}"
    );
    assert_eq!(answer.body["status"], 503, "{what}: {answer:?}");
    assert!(
        answer.body["requestId"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{what}: {answer:?}"
    );
    assert!(answer.took < bound, "{what} took {:?}", answer.took);
}
