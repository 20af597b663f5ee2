//! The SQS emulator killed and restarted under a running replica (SPEC §13): a private moto
//! holds the status queue and the robots' queues. While it is down, readiness turns 503 once
//! receives have failed for `CONSUMER_UNREADY_AFTER_SECS`, creates and deadlines go on, and the
//! notifications they cause wait in the outbox. moto comes back empty — its queues are gone,
//! as if someone deleted them — and the service neither creates queues (they are the
//! deployment's, with their redrive policies and permissions) nor gives up: once the queues
//! exist again it is ready by itself, deliveries sent from then on are applied, and the
//! notifications held back are sent.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use status_check::dev::QueueSink;
use status_check_sim::megazord::NewIncoming;
use status_check_sim::micro_managers::SCRIPT_VERSION_ID;
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim};

use crate::fault_stack::{
    PrivateMoto, Upstreams, assert_all_end, assert_all_told, assert_no_subscription_left,
    await_readiness, create, replica_env,
};
use crate::faults::{free_port, get_check, start};
use crate::harness::sqs_queues_at;
use crate::support;

/// `CONSUMER_UNREADY_AFTER_SECS` of the replica.
const UNREADY_AFTER: Duration = Duration::from_secs(2);

fn step(micro_managers: &MicroManagersSim, future_interval: i64) -> i64 {
    micro_managers.add_step(DemoStep {
        step_id: None,
        status_check_name: "robot-is-charging".into(),
        past_interval: 0,
        future_interval,
        next: [("pass".to_owned(), 9001), ("fail".to_owned(), 9002)].into(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_queue_restarted_empty_is_waited_for_and_nothing_of_ours_is_lost() {
    // The switch skips it only where there is no emulator to start (as for the other SQS
    // tests: an emulator at hand is used).
    if PrivateMoto::python_available().is_none()
        && std::env::var("STATUS_CHECK_TESTS_WITHOUT_SQS").is_ok_and(|v| v == "1")
    {
        eprintln!("warning: SQS fault test skipped (STATUS_CHECK_TESTS_WITHOUT_SQS=1)");
        return;
    }
    let Some(db) = support::mysql_db().await else {
        return;
    };
    let mut moto = PrivateMoto::start().await;
    let queues = sqs_queues_at(&moto.endpoint()).await;
    let logs = tempfile::tempdir().unwrap();

    // Robots 500, 501: a short window, whose deadline passes while the queue is down; the
    // others a long one, decided by deliveries sent after it is back.
    let micro_managers = MicroManagersSim::new();
    let short = step(&micro_managers, 6);
    let long = step(&micro_managers, 60);
    db.neighbours
        .script_steps(SCRIPT_VERSION_ID, &[short, long, 9001, 9002])
        .await;
    let sink = QueueSink {
        queue: queues.queue.clone(),
        url: queues.status_url.clone(),
    };
    let megazord = crate::fault_stack::seeded(
        MegazordSim::new(Arc::new(sink), status_check_sim::system_now())
            .with_rows(Arc::new(db.neighbours.clone())),
    );
    let upstreams = Upstreams::serve(micro_managers, megazord);
    let unready_after = UNREADY_AFTER.as_secs().to_string();
    let env = replica_env(
        db.url.as_deref().unwrap(),
        &queues,
        &moto.endpoint(),
        &upstreams,
        &[("CONSUMER_UNREADY_AFTER_SECS", &unready_after)],
    );
    let replica = start(&env, free_port(), &logs.path().join("replica.log")).await;
    let port = replica.port;
    await_readiness(port, StatusCode::OK, Duration::from_secs(10)).await;

    let expected = |robot: i64| {
        if robot < 502 {
            ("FAILED", "FAIL", 9002)
        } else {
            ("COMPLETED", "PASS", 9001)
        }
    };
    let mut ids = BTreeMap::new();
    for robot in 500..504 {
        db.neighbours.robot(robot).await;
        queues.robot_queue(robot).await;
        let created = create(port, robot, if robot < 502 { short } else { long }).await;
        assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
        ids.insert(robot, created.body["id"].as_i64().unwrap());
    }

    moto.kill();
    let down = Instant::now();
    let unready = await_readiness(
        port,
        StatusCode::SERVICE_UNAVAILABLE,
        UNREADY_AFTER + Duration::from_secs(8),
    )
    .await;
    assert!(
        down.elapsed() >= UNREADY_AFTER,
        "unready after {:?}",
        down.elapsed()
    );
    assert_eq!(
        unready.body["failing"],
        serde_json::json!(["status queue receives failing"]),
        "{unready:?}"
    );
    // The API does not need the queue: a create is answered as ever.
    let robot = 504;
    db.neighbours.robot(robot).await;
    let created = create(port, robot, long).await;
    assert_eq!(created.status, StatusCode::CREATED, "{created:?}");
    ids.insert(robot, created.body["id"].as_i64().unwrap());
    // Deadlines too: the short checks end while the queue is down (their notifications wait).
    for robot in [500, 501] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while get_check(port, robot, ids[&robot]).await["phase"] != "FAILED" {
            assert!(Instant::now() < deadline, "robot {robot} not finalised");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Back, empty; the deployment creates its queues again.
    moto.start_again().await;
    assert!(
        await_readiness(port, StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO)
            .await
            .body["failing"]
            .to_string()
            .contains("status queue"),
        "receives fail while the queue is missing"
    );
    queues.recreate_status_queue().await;
    for robot in ids.keys() {
        queues.robot_queue(*robot).await;
    }
    await_readiness(port, StatusCode::OK, Duration::from_secs(15)).await;
    for robot in 502..505 {
        upstreams
            .megazord
            .post_incoming(robot, NewIncoming::named("CHARGING_STARTED"))
            .await
            .expect("a known event");
    }
    let ended = assert_all_end(port, &ids, expected, Duration::from_secs(30)).await;
    assert_all_told(&queues, &ended, Duration::from_secs(40)).await;
    assert_no_subscription_left(&upstreams.megazord, Duration::from_secs(30)).await;
    drop(replica);
}
