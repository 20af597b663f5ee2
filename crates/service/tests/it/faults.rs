//! Faults made to happen (SPEC §13): the real binary as child processes — two replicas on one
//! MariaDB (created from the live schema) and one status queue on the SQS emulator, with the
//! simulators upstream in this process — and a replica killed with SIGKILL while deliveries are
//! in flight, then restarted, the other killed at the first deadlines, Megazord refusing
//! unsubscribes for 10 s meanwhile. Afterwards every check has ended once with the outcome its events
//! imply, every robot was told, no event is recorded twice, and no subscription is left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener as StdTcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use status_check::dev::QueueSink;
use status_check_sim::megazord::NewIncoming;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim};
use tokio_util::sync::CancellationToken;

use crate::harness::{Queues, robot_headers, sqs_queues};
use crate::support;

/// A replica process; killed when dropped.
pub(crate) struct Replica {
    pub(crate) child: Child,
    pub(crate) port: u16,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Starts `status-check serve` with `env` on `port`, and waits until it answers.
pub(crate) async fn start(env: &BTreeMap<String, String>, port: u16, log: &Path) -> Replica {
    let log = std::fs::File::create(log).expect("a log file");
    let child = Command::new(env!("CARGO_BIN_EXE_status-check"))
        .arg("serve")
        .env_clear()
        .envs(env)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the binary starts");
    let replica = Replica { child, port };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = format!("http://127.0.0.1:{port}/health/live");
    while reqwest::get(&url).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "replica on {port} never answered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica
}

pub(crate) async fn get_check(port: u16, robot: i64, id: i64) -> Value {
    let mut request = reqwest::Client::new().get(format!(
        "http://127.0.0.1:{port}/v1/status-check/check/{id}"
    ));
    for (name, value) in robot_headers(robot) {
        request = request.header(name, value);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// Every message on a robot's queue, deleted as read.
pub(crate) async fn messages(queues: &Queues, robot: i64) -> Vec<Value> {
    let url = format!("{}{robot}", queues.robot_prefix);
    let mut out = Vec::new();
    loop {
        let batch = queues
            .queue
            .receive(&url, 10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .unwrap();
        if batch.is_empty() {
            return out;
        }
        for message in batch {
            queues.queue.delete(&url, &message.receipt).await.unwrap();
            out.push(serde_json::from_str(&message.body).unwrap());
        }
    }
}

/// Where a seed puts the faults of [`replicas_killed_lose_nothing`]: which robots' checks a
/// delivery decides (the others end at their deadline), after how many of those events
/// replica A is killed, and whether B is killed at the first deadline or the first delivered
/// outcome. A small linear congruential generator: the same seed, the same run.
struct Faults {
    charging: BTreeSet<usize>,
    kill_a_after: usize,
    kill_b_at_first_deadline: bool,
}

impl Faults {
    fn of(seed: u64, checks: usize) -> Faults {
        let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let mut next = move || {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            state >> 33
        };
        let mut charging: BTreeSet<usize> = (0..checks).filter(|_| next() % 2 == 0).collect();
        // At least one of each kind.
        charging.insert(0);
        charging.remove(&(checks - 1));
        let kill_a_after = usize::try_from(next()).unwrap() % charging.len();
        Faults {
            charging,
            kill_a_after,
            kill_b_at_first_deadline: next() % 2 == 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_lose_nothing_seed_1() {
    replicas_killed_lose_nothing(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_lose_nothing_seed_2() {
    replicas_killed_lose_nothing(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_killed_lose_nothing_seed_3() {
    replicas_killed_lose_nothing(3).await;
}

/// Two replicas on one MariaDB and one status queue. A is killed with SIGKILL while
/// deliveries are in flight and restarted; Megazord refuses unsubscribes for 10 s; B is
/// killed (holding scheduler leases, or with notifications in the relay) and restarted. Every
/// check ends once with the outcome its events imply, each robot is told (a repeated
/// `notificationSeq` the same), no event is recorded twice, no subscription is left.
async fn replicas_killed_lose_nothing(seed: u64) {
    if support::mysql_skipped() {
        return;
    }
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let db = support::mysql_db().await.unwrap();
    let logs = tempfile::tempdir().unwrap();

    // Micro-Managers: one step with an 8-second future window.
    let micro_managers = MicroManagersSim::new();
    let step = micro_managers.add_step(DemoStep {
        step_id: None,
        status_check_name: "robot-is-charging".into(),
        past_interval: 0,
        future_interval: 8,
        next: [("pass".to_owned(), 9001), ("fail".to_owned(), 9002)].into(),
    });
    db.neighbours
        .script_steps(SCRIPT_VERSION_ID, &[step, 9001, 9002])
        .await;
    // Megazord: envelopes to the status queue on the emulator; its rows into the database.
    let sink = QueueSink {
        queue: queues.queue.clone(),
        url: queues.status_url.clone(),
    };
    let megazord = crate::fault_stack::seeded(
        MegazordSim::new(Arc::new(sink), status_check_sim::system_now())
            .with_rows(Arc::new(db.neighbours.clone())),
    );
    let sims = CancellationToken::new();
    let _stop_sims = sims.clone().drop_guard();
    let listener = |_: ()| {
        tokio::net::TcpListener::from_std({
            let l = StdTcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            l
        })
        .unwrap()
    };
    let mm_addr =
        status_check_sim::spawn(listener(()), micro_managers.router(), sims.clone()).unwrap();
    let mz_addr = status_check_sim::spawn(listener(()), megazord.router(), sims.clone()).unwrap();

    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    let endpoint = std::env::var("TEST_SQS_ENDPOINT").unwrap();
    let env: BTreeMap<String, String> = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOST", "127.0.0.1".into()),
        ("DATABASE_URL", db.url.clone().unwrap()),
        ("MICRO_MANAGERS_ADDRESS", format!("http://{mm_addr}")),
        ("MEGAZORD_EVENTS_ADDRESS", format!("http://{mz_addr}")),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.clone()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.clone()),
        ("AWS_ENDPOINT", endpoint),
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
    let (port_a, port_b) = (free_port(), free_port());
    let a = start(&env, port_a, &logs.path().join("a.log")).await;
    let mut b = start(&env, port_b, &logs.path().join("b.log")).await;

    // One check per robot (so each event reaches one check), created on either replica.
    const CHECKS: usize = 12;
    let faults = Faults::of(seed, CHECKS);
    let robots: Vec<i64> = (0..CHECKS as i64).map(|n| 300 + n).collect();
    let mut ids = BTreeMap::new();
    for (n, &robot) in robots.iter().enumerate() {
        db.neighbours.robot(robot).await;
        queues.robot_queue(robot).await;
        let port = if n % 2 == 0 { port_a } else { port_b };
        let mut request = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/v1/status-check/check"))
            .json(
                &json!({"stepId": step, "scheduledId": 1, "scriptVersionId": SCRIPT_VERSION_ID,
                          "plannedAt": "2026-11-20T08:00:00Z"}),
            );
        for (name, value) in robot_headers(robot) {
            request = request.header(name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["phase"], "FUTURE", "{body}");
        ids.insert(robot, body["id"].as_i64().unwrap());
    }
    // Some robots start charging; A is killed while those deliveries are on their way.
    let mut a = Some(a);
    for (posted, &n) in faults.charging.iter().enumerate() {
        if posted == faults.kill_a_after
            && let Some(mut a) = a.take()
        {
            a.child.kill().unwrap();
            a.child.wait().unwrap();
        }
        megazord
            .post_incoming(robots[n], NewIncoming::named("CHARGING_STARTED"))
            .await
            .expect("a known event");
    }
    drop(a);
    // Megazord refuses unsubscribes for a while, from before the first deadline on.
    megazord.refuse_unsubscribes_until(chrono::Utc::now() + chrono::TimeDelta::seconds(10));
    let a = start(&env, port_a, &logs.path().join("a-restarted.log")).await;

    // Every check ends: a delivery decides the charging ones, the deadline the others. B is
    // killed at the first deadline (holding scheduler leases, maybe) or at the first decided
    // delivery (its notification maybe between the relay's send and its mark), and restarted.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut ended = BTreeMap::new();
    let mut b_killed = false;
    while ended.len() < robots.len() {
        assert!(Instant::now() < deadline, "ended only {ended:?}");
        for (&robot, &id) in &ids {
            if ended.contains_key(&robot) {
                continue;
            }
            let check = get_check(a.port, robot, id).await;
            if check["phase"] == "COMPLETED" || check["phase"] == "FAILED" {
                ended.insert(robot, check);
            }
        }
        let first = if faults.kill_b_at_first_deadline {
            "FAILED"
        } else {
            "COMPLETED"
        };
        if ended.values().any(|c| c["phase"] == first) && !b_killed {
            b.child.kill().unwrap();
            b.child.wait().unwrap();
            drop(b);
            b = start(&env, port_b, &logs.path().join("b-restarted.log")).await;
            b_killed = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(b_killed);
    for (n, robot) in robots.iter().enumerate() {
        let check = &ended[robot];
        let expected = if faults.charging.contains(&n) {
            ("COMPLETED", "PASS", 9001)
        } else {
            ("FAILED", "FAIL", 9002)
        };
        assert_eq!(
            (
                check["phase"].as_str().unwrap(),
                check["result"].as_str().unwrap(),
                check["nextStepId"].as_i64().unwrap()
            ),
            expected,
            "robot {robot}: {check}"
        );
        let events: Vec<i64> = check["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["incomingEventId"].as_i64().unwrap())
            .collect();
        let unique: BTreeSet<i64> = events.iter().copied().collect();
        assert_eq!(unique.len(), events.len(), "robot {robot}: an event twice");
    }
    // Every robot is told its outcome; a repeated notification carries the same state.
    let deadline = Instant::now() + Duration::from_secs(30);
    for robot in &robots {
        let mut by_seq: BTreeMap<i64, Value> = BTreeMap::new();
        loop {
            for message in messages(&queues, *robot).await {
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
            let told = by_seq.values().any(|p| {
                p["phase"] == ended[robot]["phase"] && p["nextStepId"] == ended[robot]["nextStepId"]
            });
            if told {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "robot {robot} never told: {by_seq:?}"
            );
        }
    }
    // No subscription left behind at Megazord.
    let deadline = Instant::now() + Duration::from_secs(45);
    while !megazord.undeleted_subscriptions().is_empty() {
        assert!(
            Instant::now() < deadline,
            "left at Megazord: {:?}",
            megazord.undeleted_subscriptions()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
