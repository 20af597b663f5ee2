//! A monitoring replica killed with SIGKILL mid-window and restarted (SPEC §12 "Exactly once",
//! §13): the real binary as `status-check job` on MariaDB (created from the live schema) and
//! the status queue on the SQS emulator, the simulators in this process, real time. The
//! windows that ended while it was down alarm after the restart (after the backfill), none is
//! skipped, none alarms under two references, and the references stay contiguous.

use std::collections::BTreeMap;
use std::net::TcpListener as StdTcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use status_check::dev::QueueSink;
use status_check_sim::{MegazordSim, MicroManagersSim};
use tokio_util::sync::CancellationToken;

use crate::harness::sqs_queues;
use crate::support;

const ROBOT: i64 = 77;
const ALARM: &str = "NO_ACTIVITY_ALARM";

/// A `status-check job` process; killed when dropped.
struct Job {
    child: Child,
}

impl Drop for Job {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

async fn start(env: &BTreeMap<String, String>, port: u16, log: &Path) -> Job {
    let log = std::fs::File::create(log).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_status-check"))
        .arg("job")
        .env_clear()
        .envs(env)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary starts");
    let job = Job { child };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/health/live");
    while reqwest::get(&url).await.is_err() {
        assert!(Instant::now() < deadline, "job on {port} never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    job
}

/// The window numbers of the alarms Megazord holds, per session date, in arrival order.
fn alarms(megazord: &MegazordSim) -> BTreeMap<String, Vec<u32>> {
    let mut by_date: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for event in megazord.incomings(ROBOT, Some(ALARM), None) {
        let reference = event["referenceId"].as_str().unwrap().to_owned();
        let parts: Vec<&str> = reference.split(':').collect();
        assert_eq!(
            parts[..3],
            ["status-check", "77", "quiet"],
            "reference {reference}"
        );
        assert_eq!(event["providerName"], "azi-3-status-jobs");
        by_date
            .entry(parts[3].to_owned())
            .or_default()
            .push(parts[4].parse().unwrap());
    }
    by_date
}

fn alarm_count(megazord: &MegazordSim) -> usize {
    alarms(megazord).values().map(Vec::len).sum()
}

async fn wait_for_alarms(megazord: &MegazordSim, at_least: usize, logs: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while alarm_count(megazord) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {:?} alarms; logs in {}",
            alarms(megazord),
            logs.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_killed_mid_window_alarms_every_window_once_after_restart() {
    if support::mysql_skipped() {
        return;
    }
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let db = support::mysql_db().await.unwrap();
    let logs = tempfile::tempdir().unwrap();

    let sink = QueueSink {
        queue: queues.queue.clone(),
        url: queues.status_url.clone(),
    };
    let megazord = crate::fault_stack::seeded(
        MegazordSim::new(Arc::new(sink), status_check_sim::system_now())
            .with_rows(Arc::new(db.neighbours.clone())),
    );
    // This test's own alarm, which Megazord has to know to accept it.
    megazord.add_event_schemas([(ALARM, 10)]);
    let sims = CancellationToken::new();
    let _stop_sims = sims.clone().drop_guard();
    let listener = || {
        let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        tokio::net::TcpListener::from_std(l).unwrap()
    };
    let mm_addr =
        status_check_sim::spawn(listener(), MicroManagersSim::new().router(), sims.clone())
            .unwrap();
    let mz_addr = status_check_sim::spawn(listener(), megazord.router(), sims.clone()).unwrap();

    // Robot 77 is watched for ACTIVITY in 2-second windows, all day (UTC).
    let file = logs.path().join("monitors.yaml");
    std::fs::write(
        &file,
        format!(
            "- robotId: {ROBOT}\n  ruleId: quiet\n  eventType: ACTIVITY\n  window: 2s\n  \
             daily: {{start: \"00:00\", end: \"24:00\"}}\n  \
             actions: [{{type: alarm, eventName: {ALARM}}}]\n"
        ),
    )
    .unwrap();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let env: BTreeMap<String, String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOST", "127.0.0.1".into()),
        ("DATABASE_URL", db.url.clone().unwrap()),
        ("MICRO_MANAGERS_ADDRESS", format!("http://{mm_addr}")),
        ("MEGAZORD_EVENTS_ADDRESS", format!("http://{mz_addr}")),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.clone()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.clone()),
        ("AWS_ENDPOINT", std::env::var("TEST_SQS_ENDPOINT").unwrap()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("TEMPLATES_DIR", templates.display().to_string()),
        ("MONITORS_FILE", file.display().to_string()),
        ("MONITOR_SCAN_INTERVAL_MS", "100".into()),
        ("RELAY_POLL_INTERVAL_MS", "100".into()),
        ("SCHEDULER_STALE_LOCK_SECS", "2".into()),
        ("CONSUMER_WAIT_SECS", "1".into()),
        ("LOG_LEVEL", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let port = free_port();
    let mut job = start(&env, port, &logs.path().join("job.log")).await;

    // Two quiet windows alarm; then SIGKILL, one second into the third.
    wait_for_alarms(&megazord, 2, logs.path()).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    job.child.kill().unwrap();
    job.child.wait().unwrap();
    drop(job);
    let before = alarm_count(&megazord);
    // The fault is the time it is down (not a wait for a condition): 5 s, at least two window
    // ends pass unwatched.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let job = start(&env, port, &logs.path().join("job-restarted.log")).await;
    // The windows that ended meanwhile alarm at once after the restart, then two more.
    wait_for_alarms(&megazord, before + 4, logs.path()).await;
    drop(job);

    let by_date = alarms(&megazord);
    for (date, numbers) in &by_date {
        let mut distinct = numbers.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // A post the kill interrupted before it was marked may come again, with the same
        // reference id; never under another one.
        assert!(
            numbers.len() - distinct.len() <= 1,
            "{date}: posted twice: {numbers:?}"
        );
        let expected: Vec<u32> = (1..=distinct.len() as u32).collect();
        assert_eq!(distinct, expected, "{date}: references contiguous from 1");
    }
    // The session is still open (all day): exactly one subscription is live, the one its
    // state holds — the restart reused it rather than leaking a second.
    let stored = db.store.get_monitor(ROBOT, "quiet").await.unwrap().unwrap();
    let live = megazord.undeleted_subscriptions();
    assert_eq!(
        live,
        stored.state.subscription_id.into_iter().collect::<Vec<_>>(),
        "one subscription, the session's"
    );
}
