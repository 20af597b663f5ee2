//! (c) deadlines: the parent side (starts the child process, prints its figures) and the raw
//! finalisation limit.

mod child;
mod recording;

pub(crate) use child::deadlines_child;

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;
use status_check::store::sql::{
    CLAIM_DUE_SQLITE as CLAIM_DUE, INSERT_OUTBOX, LEASE_EXT, LEASE_POLLER, RELEASE_POLLER,
    UPDATE_CHECK_STATE, UPDATE_EXT_STATE,
};

use super::*;
use crate::raw::{RawCheck, raw_database, seed_raw_checks, serialised};

/// What the child process of (c) measured.
#[derive(Debug, Serialize, Deserialize)]
struct DeadlineReport {
    checks: usize,
    setup_secs: f64,
    shift_secs: i64,
    /// ms after the deadline: committed as final (p50, p99, max).
    lateness_ms: [f64; 3],
    /// ms after the deadline: claimed by the scheduler (p50, p99, max).
    claim_lateness_ms: [f64; 3],
    /// ms after the deadline: the robot's notification handed to the queue (p50, p99, max).
    notify_lateness_ms: [f64; 3],
    /// Finalisations per second from the first deadline to the last finalisation.
    finalise_rate: f64,
    /// Finalisations per second while the scheduler had work waiting: over each pair of
    /// consecutive commits where the later check had been claimed before the earlier commit.
    /// (0 when the scheduler never had work waiting.)
    busy_rate: f64,
    /// Seconds from the first deadline to the last finalisation / notification.
    finalise_span_secs: f64,
    notify_span_secs: f64,
    rss_start_kb: u64,
    rss_before_setup_kb: u64,
    rss_after_setup_kb: u64,
    rss_end_kb: u64,
    hwm_kb: u64,
}

pub(super) fn scenario_deadlines(
    sizes: &Sizes,
    runtime: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
) -> anyhow::Result<()> {
    let n = sizes.deadline_checks;
    println!(
        "\n== (c) {n} open checks, deadlines {}–{} s after set-up: scheduler + relay, SQLite, \
         robot-is-charging ==",
        sizes.deadline_lead,
        sizes.deadline_lead + sizes.deadline_spread
    );
    let (scan_ms, batch, concurrency) = scheduler_defaults();
    println!(
        "(runs in a child process of this binary, so VmHWM is the scenario's own; the scheduler \
         runs its `run` loop with the configuration defaults — scan every {scan_ms} ms, batch \
         {batch}, concurrency {concurrency} — as production does, so the lateness includes up to \
         one scan interval; the relay runs too, sending to a robot queue that drops the bodies)"
    );
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(CHILD_ARG)
        .env("LOAD_DEADLINE_CHECKS", n.to_string())
        .env("LOAD_DEADLINE_LEAD_SECS", sizes.deadline_lead.to_string())
        .env(
            "LOAD_DEADLINE_SPREAD_SECS",
            sizes.deadline_spread.to_string(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the child process")?;
    let stdout = child.stdout.take().context("no child stdout")?;
    let mut report = None;
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        match line.strip_prefix(CHILD_RESULT) {
            Some(json) => report = Some(serde_json::from_str::<DeadlineReport>(json)?),
            None => println!("  {line}"),
        }
    }
    let status = child.wait()?;
    ensure!(status.success(), "the child process failed ({status})");
    let report = report.context("the child reported no figures")?;

    // Limit: the finalisation writes alone, on a fresh database with as many due checks, as
    // the scheduler makes them: claim a batch (lease the poller + ext rows) in one transaction,
    // then per check one transaction (status_check, poller release, ext, outbox row), with the
    // scheduler's concurrency.
    let dir = tempfile::tempdir()?;
    let raw_rate = runtime.block_on(raw_finalise_rate(
        &dir.path().join("raw-deadlines.db"),
        n,
        batch,
        concurrency,
        false,
    ))?;
    let one_writer_rate = runtime.block_on(raw_finalise_rate(
        &dir.path().join("raw-deadlines-1w.db"),
        n,
        batch,
        concurrency,
        true,
    ))?;

    // The limit is the faster way of writing the same rows.
    let (raw_rate, one_writer_rate) =
        (raw_rate.max(one_writer_rate), raw_rate.min(one_writer_rate));
    let [p50, p99, max] = report.lateness_ms;
    let [c50, c99, cmax] = report.claim_lateness_ms;
    let [s50, s99, smax] = report.notify_lateness_ms;
    let hwm_mb = mb(report.hwm_kb);
    println!("\nlateness after the deadline (ms)      p50       p99       max");
    println!("  claimed by the scheduler       {c50:>9.0} {c99:>9.0} {cmax:>9.0}");
    println!(
        "  finalised (committed)          {p50:>9.0} {p99:>9.0} {max:>9.0}   target ≤ {TARGET_LATENESS_MS:.0} for every check: {}",
        yes_no(max <= TARGET_LATENESS_MS)
    );
    println!("  robot notification sent       {s50:>9.0} {s99:>9.0} {smax:>9.0}   (relay → queue)");
    println!(
        "finalised {n} in {:.1} s from the first deadline ({:.0}/s overall; the deadlines arrive \
         at {:.0}/s); while work was waiting: {:.0} finalisations/s; raw SQLite finalisation \
         writes (the faster of pool / one writer): {raw_rate:.0}/s → {:.3}× raw (the other way: \
         {one_writer_rate:.0}/s); last notification {:.1} s after the first deadline",
        report.finalise_span_secs,
        report.finalise_rate,
        n as f64 / sizes.deadline_spread.max(1) as f64,
        report.busy_rate,
        report.busy_rate / raw_rate,
        report.notify_span_secs
    );
    println!(
        "resident memory: {:.1} MB at child start, {:.1} MB before set-up, {:.1} MB after set-up, \
         {:.1} MB at the end; peak (VmHWM) {hwm_mb:.1} MB = +{:.1} MB over before set-up; target ≤ \
         {TARGET_RSS_MB:.0} MB: {}",
        mb(report.rss_start_kb),
        mb(report.rss_before_setup_kb),
        mb(report.rss_after_setup_kb),
        mb(report.rss_end_kb),
        mb(report.hwm_kb.saturating_sub(report.rss_before_setup_kb)),
        yes_no(hwm_mb <= TARGET_RSS_MB)
    );
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("lateness p99 {p99:.0} ms, max {max:.0} ms ({n})"),
        target: format!("≤ {TARGET_LATENESS_MS:.0} ms each"),
        limit: format!("raw finalise {raw_rate:.0}/s"),
        ratio: format!(
            "busy {:.0}/s = {:.3}× raw",
            report.busy_rate,
            report.busy_rate / raw_rate
        ),
        met: Some(max <= TARGET_LATENESS_MS),
    });
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("peak RSS {hwm_mb:.1} MB ({n} open)"),
        target: format!("≤ {TARGET_RSS_MB:.0} MB"),
        limit: format!("{:.1} MB before set-up", mb(report.rss_before_setup_kb)),
        ratio: format!(
            "+{:.1} MB",
            mb(report.hwm_kb.saturating_sub(report.rss_before_setup_kb))
        ),
        met: Some(hwm_mb <= TARGET_RSS_MB),
    });
    Ok(())
}

/// The scheduler's scan interval (ms), batch and concurrency: the configuration defaults
/// (`SCHEDULER_CONCURRENCY` counts as 1 where the service has no such key).
fn scheduler_defaults() -> (u64, usize, usize) {
    let default = |key: &str, fallback: u64| {
        status_check::config::KEYS
            .iter()
            .find(|(k, _, _)| *k == key)
            .and_then(|(_, value, _)| value.parse().ok())
            .unwrap_or(fallback)
    };
    (
        default("SCHEDULER_SCAN_INTERVAL_MS", 250),
        default("SCHEDULER_BATCH", 200) as usize,
        default("SCHEDULER_CONCURRENCY", 1).max(1) as usize,
    )
}

async fn raw_finalise_rate(
    path: &Path,
    n: usize,
    batch: usize,
    concurrency: usize,
    serial: bool,
) -> anyhow::Result<f64> {
    let (pool, template_id) = raw_database(path).await?;
    let due = Utc::now() - TimeDelta::seconds(1);
    seed_raw_checks(
        &pool,
        template_id,
        (0..n).map(|i| RawCheck {
            robot: 1 + (i % 1000) as i64,
            scheduled: i as i64,
            anchor: due - TimeDelta::seconds(600) + TimeDelta::microseconds(i as i64),
            future_seconds: 600,
            deadline: Some(due + TimeDelta::microseconds(i as i64)),
        }),
    )
    .await?;
    let payload: Arc<str> = "x".repeat(1_300).into();
    let began = Instant::now();
    let mut finalised = 0;
    loop {
        let now = Utc::now();
        let (now_ms, now_s) = (text_time(now), text_time(floor_seconds(now)));
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let claimed: Vec<i64> = sqlx::query(CLAIM_DUE)
            .bind(&now_ms)
            .bind(batch as i64)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| row.get::<i64, _>("id"))
            .collect();
        for id in &claimed {
            sqlx::query(LEASE_POLLER)
                .bind("raw-lease")
                .bind(&now_s)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query(LEASE_EXT)
                .bind(&now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if claimed.is_empty() {
            break;
        }
        let count = claimed.len();
        let claimed = Arc::new(claimed);
        let (pool, payload) = (pool.clone(), payload.clone());
        let mut op: Op = Arc::new(move |_, ticket| {
            let id = claimed[ticket as usize];
            let (pool, payload) = (pool.clone(), payload.clone());
            Box::pin(async move {
                raw_finalise(&pool, id, &payload)
                    .await
                    .map_err(|e| e.to_string())
            })
        });
        if serial {
            op = serialised(op);
        }
        let done = drive(concurrency, Until::Count(count as u64), op).await;
        done.ensure_clean("raw finalisation")?;
        finalised += done.ok as usize;
    }
    ensure!(finalised == n, "raw finalisation did {finalised} of {n}");
    Ok(n as f64 / began.elapsed().as_secs_f64())
}

/// One finalisation's writes, as `update_check` makes them at a deadline.
async fn raw_finalise(pool: &SqlitePool, id: i64, payload: &str) -> Result<(), sqlx::Error> {
    let now = Utc::now();
    let (now_ms, now_s) = (text_time(now), text_time(floor_seconds(now)));
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(UPDATE_CHECK_STATE)
        .bind("FAILED")
        .bind(Some("FAIL"))
        .bind(Some(1032_i64))
        .bind(&now_s)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(RELEASE_POLLER)
        .bind(&now_s)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(UPDATE_EXT_STATE)
        .bind(1_i64)
        .bind(None::<String>)
        .bind(true)
        .bind(&now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(INSERT_OUTBOX)
        .bind(id)
        .bind(1_i64)
        .bind(1_i64)
        .bind(payload)
        .bind("00000000-0000-0000-0000-000000000000")
        .bind(&now_ms)
        .bind(&now_ms)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
