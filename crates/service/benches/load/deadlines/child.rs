//! (c) deadlines: the child process — set-up, the run, the checks and the figures it reports.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{DateTime, TimeDelta, Utc};
use status_check::dev::Stack;
use status_check::store::sqlite::SqliteStore;
use status_check::store::{CheckKey, Created, DynStore, NewCheck, Store};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::{CheckPhase, CheckResult};
use status_check_sim::megazord::NewIncoming;
use tokio_util::sync::CancellationToken;

use super::DeadlineReport;
use super::recording::{RobotQueues, TIMELINE_TRIGGERS, finalised_count, read_timeline};
use crate::raw::open;
use crate::stack::{build_stack_with, demo_step};
use crate::{
    CHILD_RESULT, Op, SCRIPT_VERSION_ID, SERVICE_POOL, Until, drive, env_or, mb, percentile,
    planned_at, proc_status_kb, sqlite_url,
};

/// Latencies in ms → (p50, p99, max).
fn spread_ms(mut values: Vec<f64>) -> [f64; 3] {
    values.sort_by(f64::total_cmp);
    [
        percentile(&values, 50.0),
        percentile(&values, 99.0),
        values.last().copied().unwrap_or(f64::NAN),
    ]
}

/// The child process of (c): prints progress, then one `CHILD_RESULT` line.
pub(crate) fn deadlines_child() -> anyhow::Result<()> {
    let rss_start_kb = proc_status_kb("VmRSS").unwrap_or(0);
    let n: usize = env_or("LOAD_DEADLINE_CHECKS", 200)?;
    let lead: i64 = env_or("LOAD_DEADLINE_LEAD_SECS", 2)?;
    let spread: i64 = env_or("LOAD_DEADLINE_SPREAD_SECS", 2)?;
    let reconcile: bool = env_or("LOAD_DEADLINE_RECONCILE", true)?;
    ensure!(n > 0, "LOAD_DEADLINE_CHECKS must be positive");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut report = runtime.block_on(deadlines_run(n, lead, spread, reconcile))?;
    report.rss_start_kb = rss_start_kb;
    report.hwm_kb = proc_status_kb("VmHWM").unwrap_or(0);
    println!("{CHILD_RESULT}{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Far enough that no check is due during set-up; moved to the real window afterwards.
const PARKED_FUTURE_SECONDS: i64 = 86_400;

/// Robots whose id is a multiple of this lose a delivery: their charging starts at Megazord
/// (after set-up, before the first deadline) but the event never reaches the queue — SPEC
/// §5.2's lost send. Only the read at the deadline finds it.
const LOSING_ROBOT_EVERY: i64 = 10;

/// The robot of set-up ticket `t` (1,000 robots).
fn robot_of(t: i64) -> i64 {
    1 + t % 1000
}

async fn deadlines_run(
    n: usize,
    lead: i64,
    spread: i64,
    reconcile: bool,
) -> anyhow::Result<DeadlineReport> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("deadlines.db");
    let store = SqliteStore::connect(&sqlite_url(&db)).await?;
    store.migrate().await?;
    let store: DynStore = Arc::new(store);
    let robot_queues = Arc::new(RobotQueues::default());
    let stack = build_stack_with(
        &sqlite_url(&db),
        "scheduler,relay",
        robot_queues.clone(),
        Some(store.clone()),
        None,
        &[(
            "DEADLINE_RECONCILE",
            if reconcile { "true" } else { "false" },
        )],
    )
    .await?;
    let step = demo_step(&stack, "robot-is-charging")?;
    let template_id = store
        .template_versions("robot-is-charging")
        .await?
        .first()
        .context("robot-is-charging is not loaded")?
        .id;
    let rss_before_setup_kb = proc_status_kb("VmRSS").unwrap_or(0);

    // Set-up through `Store::create_check` (the service's own insert path, one transaction per
    // check; the API would add 5 simulator round trips per check for nothing measured here):
    // robot-is-charging checks in FUTURE, 1000 robots, each with a (fake) subscription, their
    // deadlines a day out and spread evenly over `spread` seconds.
    let setup_start = Utc::now();
    let anchor_base = setup_start - TimeDelta::seconds(spread);
    let spread_millis = spread * 1000;
    let setup_store = store.clone();
    let op: Op = Arc::new(move |_, ticket| {
        let store = setup_store.clone();
        Box::pin(async move {
            let t = ticket as i64;
            let anchor = anchor_base + TimeDelta::milliseconds(spread_millis * t / n as i64);
            let new = NewCheck {
                key: CheckKey {
                    robot_id: robot_of(t),
                    step_id: step,
                    scheduled_id: t + 1,
                    planned_at: planned_at(),
                },
                script_version_id: SCRIPT_VERSION_ID,
                template_id,
                phase: CheckPhase::Future,
                result: CheckResult::Pending,
                next_step_id: None,
                subscription_id: Some(50_000_000 + t),
                windows: Windows::from_effective(anchor, 3600, PARKED_FUTURE_SECONDS),
                deadline: Windows::from_effective(anchor, 3600, PARKED_FUTURE_SECONDS).until,
                next_steps: NextSteps {
                    pass: step * 10 + 1,
                    fail: step * 10 + 2,
                    unknown: Some(step * 10 + 3),
                },
                records: Vec::new(),
                remove_subscription: false,
                subscribe_intent: None,
                now: Utc::now(),
            };
            match store.create_check(new).await {
                Ok(Created::New(_)) => Ok(()),
                Ok(Created::Existing(c)) => Err(format!("check {} existed already", c.id)),
                Err(e) => Err(e.to_string()),
            }
        })
    });
    let began = Instant::now();
    drive(SERVICE_POOL as usize, Until::Count(n as u64), op)
        .await
        .ensure_clean("set-up create_check")?;
    let setup_secs = began.elapsed().as_secs_f64();
    let rss_after_setup_kb = proc_status_kb("VmRSS").unwrap_or(0);
    println!(
        "set-up: {n} checks via Store::create_check, 8 concurrent: {setup_secs:.1} s ({:.0}/s)",
        n as f64 / setup_secs
    );

    // Move every deadline the same whole number of seconds earlier, so the first falls `lead`
    // seconds from now: future_seconds, deadline_at and the poller's `until` (whole seconds,
    // rounded up) stay consistent with each other.
    let first_deadline = anchor_base + TimeDelta::seconds(PARKED_FUTURE_SECONDS);
    let shift = (first_deadline - (Utc::now() + TimeDelta::seconds(lead))).num_seconds();
    let mut conn = open(&db)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let moved = tx.execute(
        "UPDATE status_check_ext SET future_seconds = future_seconds - ?1, \
         deadline_at = strftime('%Y-%m-%dT%H:%M:%fZ', deadline_at, '-' || ?1 || ' seconds') \
         WHERE deadline_at IS NOT NULL",
        [shift],
    )?;
    tx.execute(
        "UPDATE status_check_poller \
         SET `until` = strftime('%Y-%m-%dT%H:%M:%fZ', `until`, '-' || ?1 || ' seconds')",
        [shift],
    )?;
    tx.execute_batch(TIMELINE_TRIGGERS)?;
    tx.commit()?;
    ensure!(moved == n, "moved {moved} deadlines of {n}");
    let (first, last): (String, String) = conn.query_row(
        "SELECT MIN(deadline_at), MAX(deadline_at) FROM status_check_ext",
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let first_at: DateTime<Utc> = first.parse()?;
    println!(
        "deadlines moved {shift} s earlier in one UPDATE: now {first} … {last} ({:.1} s from now)",
        (first_at - Utc::now()).num_milliseconds() as f64 / 1e3
    );

    // The lost deliveries: each losing robot's charging starts now, at Megazord (the
    // simulator, in process: the robot's side), with no subscription there to fan it out. It
    // falls in the future window of every check of that robot.
    let losing: HashSet<i64> = (1..=1000)
        .filter(|robot| robot % LOSING_ROBOT_EVERY == 0)
        .collect();
    for &robot in &losing {
        let posted = stack
            .megazord
            .post_incoming(robot, NewIncoming::named("CHARGING_STARTED"))
            .await
            .map_err(|refused| anyhow::anyhow!("Megazord refused the event: {refused:?}"))?;
        ensure!(posted.outgoing_ids.is_empty(), "a lost event was delivered");
    }
    let missed = (0..n as i64)
        .filter(|t| losing.contains(&robot_of(*t)))
        .count();
    let expected_passed = if reconcile { missed } else { 0 };
    println!(
        "{missed} checks (those of {} robots) have a charging start Megazord never delivered; \
         the read at the deadline is {}",
        losing.len(),
        if reconcile { "on" } else { "off" }
    );

    // Run: the scheduler and the relay (`App::run`), until every check is final and its
    // notification sent.
    let Stack { app, sims, .. } = stack;
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run(shutdown.clone()));
    let timeout = Duration::from_secs((lead + spread) as u64 + 120 + n as u64 / 200);
    let began = Instant::now();
    let mut last_print = Instant::now();
    loop {
        let sent = robot_queues.sent.lock().unwrap().len();
        let timed_out = began.elapsed() >= timeout;
        let print_due = last_print.elapsed() >= Duration::from_secs(5);
        // Both counts must reach n; the database is counted only once every check is notified
        // (or to report), as each notification follows its check's final commit.
        if sent >= n || timed_out || print_due {
            let finalised = finalised_count(&conn)?;
            if finalised >= n && sent >= n {
                break;
            }
            ensure!(
                !timed_out,
                "after {timeout:?}: {finalised} of {n} finalised, {sent} notified"
            );
            if print_due {
                println!(
                    "… {:.0} s: {finalised} finalised, {sent} notified, RSS {:.1} MB",
                    began.elapsed().as_secs_f64(),
                    mb(proc_status_kb("VmRSS").unwrap_or(0))
                );
                last_print = Instant::now();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rss_end_kb = proc_status_kb("VmRSS").unwrap_or(0);
    shutdown.cancel();
    running.await??;
    sims.cancel();

    // Correctness: each check finalised exactly once — PASS when the read found its lost
    // charging start, else FAILED — in the database, notified.
    let timeline = read_timeline(&conn)?;
    let sent = std::mem::take(&mut *robot_queues.sent.lock().unwrap());
    let deadlines: HashMap<i64, DateTime<Utc>> = timeline
        .claims
        .iter()
        .map(|(id, deadline, _)| (*id, *deadline))
        .collect();
    let once: HashSet<i64> = timeline.finalised.iter().map(|(id, _)| *id).collect();
    ensure!(
        once.len() == n && timeline.finalised.len() == n,
        "{} finalisations of {} distinct checks, expected {n} once each",
        timeline.finalised.len(),
        once.len()
    );
    let failed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM status_check WHERE phase = 'FAILED'",
        [],
        |row| row.get(0),
    )?;
    let passed: i64 = conn.query_row(
        "SELECT COUNT(*) FROM status_check WHERE phase = 'COMPLETED' AND result = 'PASS'",
        [],
        |row| row.get(0),
    )?;
    ensure!(
        passed == expected_passed as i64 && failed == (n - expected_passed) as i64,
        "{passed} PASS and {failed} FAILED of {n} checks in the database, expected \
         {expected_passed} and {}",
        n - expected_passed
    );
    // The finalisation writes the raw limit makes include a subscription removal per check.
    let removals: i64 = conn.query_row(
        "SELECT COUNT(*) FROM status_check_subscription_removal",
        [],
        |row| row.get(0),
    )?;
    ensure!(
        removals == n as i64,
        "{removals} subscription removals queued for {n} finalised checks"
    );
    ensure!(
        store.notification_jobs().backlog().await? == 0,
        "notifications left unsent"
    );
    let notified: HashSet<i64> = sent.iter().map(|(id, _)| *id).collect();
    ensure!(
        notified.len() == n,
        "{} of {n} checks notified",
        notified.len()
    );
    drop(conn);

    let after = |at: &DateTime<Utc>, id: &i64| -> anyhow::Result<f64> {
        let deadline = deadlines
            .get(id)
            .with_context(|| format!("check {id} finalised without a claim"))?;
        Ok((*at - *deadline).num_microseconds().unwrap_or(i64::MAX) as f64 / 1e3)
    };
    let lateness = timeline
        .finalised
        .iter()
        .map(|(id, at)| after(at, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let claim_lateness = timeline
        .claims
        .iter()
        .map(|(_, at_deadline, claimed)| {
            (*claimed - *at_deadline).num_microseconds().unwrap_or(0) as f64 / 1e3
        })
        .collect();
    let notify_lateness = sent
        .iter()
        .map(|(id, at)| after(at, id))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let first_deadline = deadlines.values().min().copied().unwrap_or(setup_start);
    let last_final = timeline
        .finalised
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(first_deadline);
    let last_sent = sent
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(first_deadline);
    let finalise_span_secs = (last_final - first_deadline).num_milliseconds() as f64 / 1e3;
    // Throughput while busy: over consecutive commits (a batch's checks commit together, at
    // one instant) where the later commit's checks had all been claimed (were waiting) before
    // the earlier one committed — its checks over the time between the two.
    let claimed_at: HashMap<i64, DateTime<Utc>> = timeline
        .claims
        .iter()
        .map(|(id, _, at)| (*id, *at))
        .collect();
    let mut commits = timeline.finalised.clone();
    commits.sort_by_key(|(_, at)| *at);
    let instants: Vec<&[(i64, DateTime<Utc>)]> = commits.chunk_by(|a, b| a.1 == b.1).collect();
    let (mut busy_commits, mut busy_secs) = (0_u64, 0.0_f64);
    for pair in instants.windows(2) {
        let (previous, later) = (pair[0][0].1, pair[1]);
        let waiting = later.iter().all(|(id, _)| {
            claimed_at
                .get(id)
                .is_some_and(|claimed| *claimed <= previous)
        });
        if waiting {
            busy_commits += later.len() as u64;
            busy_secs += (later[0].1 - previous).num_microseconds().unwrap_or(0) as f64 / 1e6;
        }
    }
    let busy_rate = if busy_secs > 0.0 {
        busy_commits as f64 / busy_secs
    } else {
        0.0
    };
    let notify_span_secs = (last_sent - first_deadline).num_milliseconds() as f64 / 1e3;
    println!(
        "verified: {n} checks finalised exactly once each, {expected_passed} PASS (a lost \
         delivery found by the read) and {} FAILED in the database, {n} notifications sent, \
         outbox empty",
        n - expected_passed
    );
    Ok(DeadlineReport {
        checks: n,
        reconcile,
        found_by_read: expected_passed,
        setup_secs,
        shift_secs: shift,
        lateness_ms: spread_ms(lateness),
        claim_lateness_ms: spread_ms(claim_lateness),
        notify_lateness_ms: spread_ms(notify_lateness),
        finalise_rate: n as f64 / finalise_span_secs.max(1e-3),
        busy_rate,
        finalise_span_secs,
        notify_span_secs,
        rss_start_kb: 0,
        rss_before_setup_kb,
        rss_after_setup_kb,
        rss_end_kb,
        hwm_kb: 0,
    })
}
