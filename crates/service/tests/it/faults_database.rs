//! The database frozen and crashed under a running replica (SPEC §13): a private MariaDB
//! (created from the live schema) is stopped with SIGSTOP for 10 s while deliveries wait on the
//! status queue and deadlines pass, then continued; later it is killed and started again on its
//! data folder. While frozen, requests answer 503 problem+json within the operation timeout
//! (not the 30 s request timeout) and readiness is 503; afterwards readiness is 200 again
//! without a restart of the replica, every check has ended once with the outcome its events
//! imply, within 30 s of its deadline, every robot was told, and no subscription is left.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use status_check::dev::QueueSink;
use status_check_sim::megazord::NewIncoming;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim};

use crate::fault_stack::{
    GatedSink, PrivateMariadb, Upstreams, assert_all_end, assert_all_told,
    assert_no_subscription_left, assert_unavailable_within, await_readiness, call, create,
    replica_env, within,
};
use crate::faults::{free_port, start};
use crate::harness::sqs_queues;
use crate::support;

/// `DB_OPERATION_TIMEOUT_SECS` of the replica.
const DB_TIMEOUT: Duration = Duration::from_secs(2);
/// What an answer may take beyond the operation timeout (a create also asks Micro-Managers
/// nothing before its first read; the margin is for a loaded machine).
const MARGIN: Duration = Duration::from_secs(2);

fn step(micro_managers: &MicroManagersSim, future_interval: i64) -> i64 {
    micro_managers.add_step(DemoStep {
        step_id: None,
        status_check_name: "robot-is-charging".into(),
        past_interval: 0,
        future_interval,
        next: [("pass".to_owned(), 9001), ("fail".to_owned(), 9002)].into(),
    })
}

/// The most the whole test may take: its own waits' deadlines add up to about 4 min; a run
/// takes about 30 s.
const TEST_DEADLINE: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_then_crashed_database_is_answered_503_quickly_and_loses_nothing() {
    within(
        TEST_DEADLINE,
        "a_frozen_then_crashed_database_is_answered_503_quickly_and_loses_nothing",
        frozen_then_crashed(),
    )
    .await;
}

async fn frozen_then_crashed() {
    if support::mysql_skipped() {
        return;
    }
    let Some(queues) = sqs_queues().await else {
        return;
    };
    let mut server = PrivateMariadb::start().await;
    let db = support::mysql_db_at(&server.url()).await;
    let logs = tempfile::tempdir().unwrap();

    // Odd robots: a short window, whose deadline passes while the database is frozen. Even
    // robots: a long one, decided by a delivery that arrives while it is frozen.
    let micro_managers = MicroManagersSim::new();
    let short = step(&micro_managers, 8);
    let long = step(&micro_managers, 60);
    db.neighbours
        .script_steps(SCRIPT_VERSION_ID, &[short, long, 9001, 9002])
        .await;
    let gate = GatedSink::closed(QueueSink {
        queue: queues.queue.clone(),
        url: queues.status_url.clone(),
    });
    let megazord = crate::fault_stack::seeded(
        MegazordSim::new(gate.clone(), status_check_sim::system_now())
            .with_rows(Arc::new(db.neighbours.clone())),
    );
    let upstreams = Upstreams::serve(micro_managers, megazord);
    let endpoint = std::env::var("TEST_SQS_ENDPOINT").unwrap();
    let timeout_secs = DB_TIMEOUT.as_secs().to_string();
    let env = replica_env(
        db.url.as_deref().unwrap(),
        &queues,
        &endpoint,
        &upstreams,
        &[("DB_OPERATION_TIMEOUT_SECS", &timeout_secs)],
    );
    let replica = start(&env, free_port(), &logs.path().join("replica.log")).await;
    let port = replica.port;
    await_readiness(port, StatusCode::OK, Duration::from_secs(10)).await;

    let robots: Vec<i64> = (400..406).collect();
    let expected = |robot: i64| {
        if robot % 2 == 0 {
            ("COMPLETED", "PASS", 9001)
        } else {
            ("FAILED", "FAIL", 9002)
        }
    };
    let mut ids = BTreeMap::new();
    for &robot in &robots {
        db.neighbours.robot(robot).await;
        queues.robot_queue(robot).await;
        let at = if robot % 2 == 0 { long } else { short };
        let created = create(port, robot, at).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        ids.insert(robot, created.body["id"].as_i64().unwrap());
    }
    let short_deadline = Instant::now() + Duration::from_secs(8);
    // The even robots start charging: Megazord stores the events now; their deliveries reach
    // the status queue only once the database is frozen.
    for &robot in robots.iter().filter(|r| *r % 2 == 0) {
        upstreams
            .megazord
            .post_incoming(robot, NewIncoming::named("CHARGING_STARTED"))
            .await
            .expect("a known event");
    }

    let frozen_server = server.freeze();
    let frozen = Instant::now();
    gate.open().await;
    let bound = DB_TIMEOUT + MARGIN;
    let newcomer = 410;
    while frozen.elapsed() < Duration::from_secs(10) {
        let path = format!("/v1/status-check/check/{}", ids[&400]);
        let (created, read, ready, live) = tokio::join!(
            create(port, newcomer, long),
            call(port, Method::GET, &path, Some(400), None),
            call(port, Method::GET, "/health/ready", None, None),
            call(port, Method::GET, "/health/live", None, None),
        );
        assert_unavailable_within(&created, bound, "a create while frozen");
        assert_unavailable_within(&read, bound, "a read while frozen");
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{ready:?}");
        assert!(ready.took < bound, "readiness took {:?}", ready.took);
        assert!(
            ready.body["failing"]
                .as_array()
                .is_some_and(|f| f.contains(&"database".into())),
            "{ready:?}"
        );
        assert_eq!(live.status, StatusCode::OK, "{live:?}");
    }
    // The workers met the freeze too, and gave up on each operation at the bound: a delivery
    // was left for redelivery, the scheduler's steps failed.
    let metrics = crate::fault_stack::metrics_of(port).await;
    for series in [
        "queue_messages_processed_total{queue=\"status\",outcome=\"failed\"}",
        "db_operation_timeouts_total{operation=\"find_by_subscription\"}",
        "db_operation_timeouts_total{operation=\"release_stale_leases\"}",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    frozen_server.thaw();
    let thawed = chrono::Utc::now() - chrono::TimeDelta::seconds(1);

    // Ready again by itself; every check ends as its events say, the short ones within 30 s
    // of their deadline; nothing of the refused create was stored.
    await_readiness(port, StatusCode::OK, Duration::from_secs(15)).await;
    let ended = assert_all_end(port, &ids, expected, Duration::from_secs(40)).await;
    // The fault met the deadlines: no short check was decided before the thaw (had the
    // set-up outrun their 8 s, they would have ended before the freeze).
    let decided_before_thaw = format!(
        "SELECT COUNT(*) FROM status_check WHERE robot_id IN (401, 403, 405) \
         AND updated_at < '{}'",
        db.raw.time_text(thawed)
    );
    assert_eq!(db.raw.count(&decided_before_thaw).await, 0);
    assert!(
        short_deadline.elapsed() < Duration::from_secs(30),
        "deadlines ended {:?} late",
        short_deadline.elapsed()
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check WHERE robot_id = 410")
            .await,
        0
    );
    assert_all_told(&queues, &ended, Duration::from_secs(30)).await;
    assert_no_subscription_left(&upstreams.megazord, Duration::from_secs(30)).await;

    // A crash of the database: refused at once while down; after the restart on the same data
    // folder the same replica creates and decides checks again.
    server.kill();
    let path = format!("/v1/status-check/check/{}", ids[&400]);
    let read = call(port, Method::GET, &path, Some(400), None).await;
    assert_unavailable_within(&read, bound, "a read while the database is down");
    await_readiness(port, StatusCode::SERVICE_UNAVAILABLE, bound).await;
    server.start_again().await;
    await_readiness(port, StatusCode::OK, Duration::from_secs(15)).await;
    let robot = 406;
    db.neighbours.robot(robot).await;
    queues.robot_queue(robot).await;
    let created = create(port, robot, long).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    upstreams
        .megazord
        .post_incoming(robot, NewIncoming::named("CHARGING_STARTED"))
        .await
        .expect("a known event");
    let after_restart = BTreeMap::from([(robot, created.body["id"].as_i64().unwrap())]);
    let ended = assert_all_end(port, &after_restart, expected, Duration::from_secs(30)).await;
    assert_all_told(&queues, &ended, Duration::from_secs(30)).await;
    assert_no_subscription_left(&upstreams.megazord, Duration::from_secs(30)).await;
    drop(replica);
}
