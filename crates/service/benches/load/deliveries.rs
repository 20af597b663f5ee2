//! (b) deliveries: the consumer draining the status queue, against the raw delivery writes.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;
use status_check::dev::{DEV_STATUS_QUEUE, Stack};
use status_check::queue::MemoryQueue;
use status_check::store::sql::{
    INSERT_OUTBOX, INSERT_RECORD, INSERT_RECORD_EVENT, UPDATE_CHECK_STATE, UPDATE_EXT_STATE,
};
use status_check_engine::{CheckResult, RecordPhase};
use status_check_sim::megazord::NewIncoming;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::raw::{RawCheck, raw_database, seed_raw_checks, serialised, service_like_pool};
use crate::stack::{CreatedDto, build_stack, create_op, demo_step, http_client};

/// toilet-activity (pollUntilEnd): the result after `visits` visits, and how many
/// notifications the visits so far caused (PENDING → PASS at 1, PASS → FAIL at 4).
fn toilet_expected(visits: usize) -> (CheckResult, i64) {
    match visits {
        0 => (CheckResult::Pending, 0),
        1..=3 => (CheckResult::Pass, 1),
        _ => (CheckResult::Fail, 2),
    }
}

pub(super) async fn scenario_deliveries(sizes: &Sizes, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    println!("\n== (b) queue deliveries: evaluate + commit + outbox, SQLite, toilet-activity ==");
    let n = sizes.delivery_checks;
    let k = sizes.delivery_events;
    let m = n * k;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("deliveries.db");
    let queue = Arc::new(MemoryQueue::new());
    let stack = build_stack(&db, "api,consumer", queue.clone(), None).await?;
    let step = demo_step(&stack, "toilet-activity")?;
    let username = stack.config.robot_consumer_username.clone();
    let megazord = stack.megazord.clone();
    let store = stack.app.state().checks.store().clone();
    let Stack { mut app, sims, .. } = stack;
    let consumer = app
        .take_workers()
        .consumer
        .context("the stack has no consumer")?;
    let url = format!("http://127.0.0.1:{}/v1/status-check/check", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    // Set-up: n open checks through the API, one robot each.
    let client = http_client()?;
    let created = Arc::new(Mutex::new(Vec::new()));
    let robot_of: fn(usize, u64) -> i64 = |_, ticket| 100_000 + ticket as i64;
    let began = Instant::now();
    drive(
        16,
        Until::Count(n as u64),
        create_op(
            client.clone(),
            url,
            username,
            step,
            1,
            robot_of,
            created.clone(),
        ),
    )
    .await
    .ensure_clean("set-up create")?;
    let checks: Vec<(i64, CreatedDto)> = std::mem::take(&mut *created.lock().unwrap());
    ensure!(checks.len() == n, "{} of {n} checks created", checks.len());
    for (_, check) in &checks {
        ensure!(
            check.phase == "FUTURE" && check.subscription_id.is_some(),
            "check {} is not open and subscribed",
            check.id
        );
    }
    println!(
        "set-up: {n} open checks (one robot each) created through the API in {:.2} s",
        began.elapsed().as_secs_f64()
    );

    // Fan-out: k TOILET_VISIT events per robot, round by round, through the Megazord
    // simulator (in process), each onto the memory status queue.
    let began = Instant::now();
    for _ in 0..k {
        for (robot, _) in &checks {
            let posted = megazord
                .post_incoming(*robot, NewIncoming::named("TOILET_VISIT"))
                .await;
            ensure!(
                posted.outgoing_ids.len() == 1 && posted.unsent.is_empty(),
                "robot {robot}: the event fanned out to {:?} (unsent {:?})",
                posted.outgoing_ids,
                posted.unsent
            );
        }
    }
    ensure!(
        queue.len(DEV_STATUS_QUEUE) == m,
        "the status queue holds {} of {m}",
        queue.len(DEV_STATUS_QUEUE)
    );
    println!(
        "fan-out: {m} deliveries ({k} per check) on the memory status queue in {:.2} s (not timed below)",
        began.elapsed().as_secs_f64()
    );

    // Measured: the consumer's `run` loop (default concurrency {CONSUMER_CONCURRENCY}) until
    // the queue is empty — a message is deleted only after its change committed.
    let stop = CancellationToken::new();
    let began = Instant::now();
    let running = tokio::spawn(consumer.run(stop.clone(), Duration::from_secs(10)));
    let limit = Duration::from_secs(60 + (m as u64) / 100);
    while !queue.is_empty(DEV_STATUS_QUEUE) {
        ensure!(
            began.elapsed() < limit,
            "deliveries not processed after {limit:?}: {} left",
            queue.len(DEV_STATUS_QUEUE)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = began.elapsed();
    stop.cancel();
    running.await?;
    let rate = m as f64 / elapsed.as_secs_f64();

    // Correctness: every check took every one of its events, with the right result and
    // notifications.
    let (result, notifications) = toilet_expected(k);
    for (_, check) in &checks {
        let stored = store
            .get_check(check.id)
            .await?
            .with_context(|| format!("check {} vanished", check.id))?;
        let future = stored
            .records
            .iter()
            .filter(|r| r.phase == RecordPhase::Future)
            .count();
        ensure!(
            future == k && stored.result == result && stored.notification_seq == notifications,
            "check {}: {future} future records, result {}, notification seq {} — expected {k}, {result}, {notifications}",
            check.id,
            stored.result,
            stored.notification_seq
        );
    }
    let backlog = store.outbox_backlog().await?;
    ensure!(
        backlog == n as i64 * notifications,
        "outbox holds {backlog} notifications, expected {}",
        n as i64 * notifications
    );
    let check_pool = service_like_pool(&db).await?;
    let payload_len: f64 = sqlx::query(
        "SELECT COALESCE(AVG(LENGTH(payload)), 1000.0) AS len FROM status_check_outbox",
    )
    .fetch_one(&check_pool)
    .await?
    .get::<f64, _>("len");
    check_pool.close().await;
    println!(
        "verified: all {m} deliveries processed (queue empty), every check holds its {k} FUTURE \
         records with result {result}, {backlog} outbox rows"
    );
    shutdown.cancel();
    server.await??;
    sims.cancel();

    // Limit: the same writes per delivery on a fresh database, same concurrency and order.
    let payload = "x".repeat(payload_len.round() as usize);
    let raw = raw_deliveries(&dir.path().join("raw-deliveries.db"), n, k, &payload, false).await?;
    let one_writer = raw_deliveries(
        &dir.path().join("raw-deliveries-1w.db"),
        n,
        k,
        &payload,
        true,
    )
    .await?;

    let (raw_rate, other_rate) = (
        raw.rate().max(one_writer.rate()),
        raw.rate().min(one_writer.rate()),
    );
    println!(
        "\n{:>11} {:>11} {:>14} {:>14} {:>14} {:>14}",
        "deliveries", "seconds", "service/s", "raw SQL/s", "service÷raw", "raw other/s"
    );
    println!(
        "{:>11} {:>11.2} {:>14.0} {:>14.0} {:>13.3}× {:>14.0}",
        m,
        elapsed.as_secs_f64(),
        rate,
        raw_rate,
        rate / raw_rate,
        other_rate
    );
    println!(
        "(raw limit: per delivery one BEGIN IMMEDIATE transaction — UPDATE status_check, UPDATE \
         status_check_ext, INSERT record + record_event, and the outbox row (avg {payload_len:.0} \
         bytes) on the deliveries where the service wrote one — {CONSUMER_CONCURRENCY} concurrent, \
         pool of {SERVICE_POOL}; the service also reads the check twice and renders the payload; \
         run through the pool and one writer at a time: the faster is the limit, the other is \
         raw other)"
    );
    rows.push(Row {
        scenario: "deliveries",
        figure: format!("{rate:.0} deliveries/s ({m})"),
        target: format!("≥ {TARGET_DELIVERIES_PER_SEC:.0}/s"),
        limit: format!("raw SQLite {raw_rate:.0}/s"),
        ratio: format!("{:.3}× raw", rate / raw_rate),
        met: Some(rate >= TARGET_DELIVERIES_PER_SEC),
    });
    Ok(())
}

/// The raw delivery writes for `n` checks × `k` events on a fresh database, round by round,
/// `CONSUMER_CONCURRENCY` at once (one writer at a time when `serial`).
async fn raw_deliveries(
    path: &Path,
    n: usize,
    k: usize,
    payload: &str,
    serial: bool,
) -> anyhow::Result<Load> {
    let (pool, template_id) = raw_database(path).await?;
    let ids = seed_raw_checks(
        &pool,
        template_id,
        (0..n).map(|i| {
            let anchor = Utc::now();
            RawCheck {
                robot: 100_000 + i as i64,
                scheduled: i as i64,
                anchor,
                future_seconds: 3600,
                deadline: Some(anchor + TimeDelta::seconds(3600)),
            }
        }),
    )
    .await?;
    let payload: Arc<str> = payload.into();
    let ids = Arc::new(ids);
    let mut op: Op = Arc::new(move |_, ticket| {
        let pool = pool.clone();
        let ids = ids.clone();
        let payload = payload.clone();
        Box::pin(async move {
            let ticket = ticket as usize;
            let (round, index) = (ticket / ids.len(), ticket % ids.len());
            raw_delivery(
                &pool,
                ids[index],
                100_000 + index as i64,
                round,
                ticket,
                &payload,
            )
            .await
            .map_err(|e| e.to_string())
        })
    });
    if serial {
        op = serialised(op);
    }
    let raw = drive(CONSUMER_CONCURRENCY, Until::Count((n * k) as u64), op).await;
    raw.ensure_clean("raw deliveries")?;
    Ok(raw)
}

/// One delivery's writes, as `update_check` makes them for a toilet-activity visit.
async fn raw_delivery(
    pool: &SqlitePool,
    id: i64,
    robot: i64,
    round: usize,
    ticket: usize,
    payload: &str,
) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let (now_ms, now_s) = (text_time(now), text_time(floor_seconds(now)));
    let (result, seq) = toilet_expected(round + 1);
    let notify = toilet_expected(round).0 != result;
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(UPDATE_CHECK_STATE)
        .bind("FUTURE")
        .bind(Some(result.as_str()))
        .bind(None::<i64>)
        .bind(&now_s)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(UPDATE_EXT_STATE)
        .bind(seq)
        .bind(Some(text_time(now + TimeDelta::seconds(3600))))
        .bind(false)
        .bind(&now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let event_id = 5_000_000 + ticket as i64;
    let record = sqlx::query(INSERT_RECORD)
        .bind(id)
        .bind(Some(event_id))
        .bind(Some(event_id + 1_000_000))
        .bind("TOILET_VISIT")
        .bind(round as i64 + 1)
        .bind("FUTURE")
        .bind(result.as_str())
        .bind(&now_s)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
    sqlx::query(INSERT_RECORD_EVENT)
        .bind(record)
        .bind("FUTURE")
        .bind(id)
        .bind(event_id)
        .bind(&now_ms)
        .bind(Some(1_i64))
        .bind(None::<String>)
        .execute(&mut *tx)
        .await?;
    if notify {
        sqlx::query(INSERT_OUTBOX)
            .bind(id)
            .bind(robot)
            .bind(seq)
            .bind(payload)
            .bind("00000000-0000-0000-0000-000000000000")
            .bind(&now_ms)
            .bind(&now_ms)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}
