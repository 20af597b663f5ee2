//! (c) deadlines: the parent side (starts the child process, prints its figures) and the
//! physical limit of the finalisation writes.

mod child;
mod recording;

pub(crate) use child::deadlines_child;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use status_check::store::sql::{CLAIM_DUE_SQLITE, LEASE_EXT, LEASE_POLLER};
use status_check_engine::CheckResult;

use super::*;
use crate::raw::{Limit, RawDb, execute};
use crate::summary::{Summary, num};
use crate::writes::{Ending, RawCheck, finalise_writes, raw_subscription};

/// How robot-is-charging ends at its deadline without a charging start.
const AT_DEADLINE: Ending = Ending {
    phase: "FAILED",
    result: CheckResult::Fail,
    next_step: 1032,
    release_lease: true,
};

/// What the child process of (c) measured.
#[derive(Debug, Serialize, Deserialize)]
struct DeadlineReport {
    checks: usize,
    /// Whether the read at the deadline (`DEADLINE_RECONCILE`) was on.
    reconcile: bool,
    /// Checks that passed on an event only the read found (a delivery Megazord lost).
    found_by_read: usize,
    setup_secs: f64,
    shift_secs: i64,
    /// ms after the deadline: written as final, noted just before its commit (p50, p99, max).
    lateness_ms: [f64; 3],
    /// ms after the deadline: claimed by the scheduler (p50, p99, max).
    claim_lateness_ms: [f64; 3],
    /// ms after the deadline: the robot's notification handed to the queue (p50, p99, max).
    notify_lateness_ms: [f64; 3],
    /// Finalisations per second from the first deadline to the last finalisation.
    finalise_rate: f64,
    /// Finalisations per second while the scheduler had work waiting: over each pair of
    /// consecutive commits (a batch commits at one instant) where the later one's checks had
    /// been claimed before the earlier commit. (0 when the scheduler never had work waiting.)
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

/// Runs the child process of (c) on `n` checks whose deadlines fall `lead`…`lead + spread`
/// seconds after set-up, the read at the deadline on or off; its figures.
fn run_child(n: usize, lead: u64, spread: u64, reconcile: bool) -> anyhow::Result<DeadlineReport> {
    println!(
        "\n-- {n} checks, deadlines {lead}–{} s after set-up ({:.0}/s), the read at the deadline \
         {} --",
        lead + spread,
        n as f64 / spread.max(1) as f64,
        if reconcile { "ON (the default)" } else { "OFF" }
    );
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg(CHILD_ARG)
        .env("LOAD_DEADLINE_CHECKS", n.to_string())
        .env("LOAD_DEADLINE_LEAD_SECS", lead.to_string())
        .env("LOAD_DEADLINE_SPREAD_SECS", spread.to_string())
        .env("LOAD_DEADLINE_RECONCILE", reconcile.to_string())
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
    ensure!(report.reconcile == reconcile, "the child ran the other way");
    Ok(report)
}

/// The lateness lines of one run (ms after the deadline: p50, p99, max).
fn print_lateness(report: &DeadlineReport, judged: bool) {
    let [p50, p99, max] = report.lateness_ms;
    let [c50, c99, cmax] = report.claim_lateness_ms;
    let [s50, s99, smax] = report.notify_lateness_ms;
    let read = if report.reconcile {
        "read ON "
    } else {
        "read OFF"
    };
    let verdict = if judged {
        format!(
            "   target ≤ {TARGET_LATENESS_MS:.0} for every check: {}",
            yes_no(max <= TARGET_LATENESS_MS)
        )
    } else {
        "   (reported)".to_owned()
    };
    println!("  {read}: claimed by the scheduler {c50:>9.0} {c99:>9.0} {cmax:>9.0}");
    println!("  {read}: finalised (written)      {p50:>9.0} {p99:>9.0} {max:>9.0}{verdict}");
    println!(
        "  {read}: robot notification sent {s50:>9.0} {s99:>9.0} {smax:>9.0}   (relay → queue)"
    );
}

/// The summary's fields of the run without the read, beside the one with it.
fn without_read_fields(off: &DeadlineReport) -> [(&'static str, Value); 4] {
    [
        ("off_per_s", num(deadline_rate(off))),
        ("off_p50_late_ms", num(off.lateness_ms[0])),
        ("off_p99_late_ms", num(off.lateness_ms[1])),
        ("off_max_late_ms", num(off.lateness_ms[2])),
    ]
}

/// (c′) SPEC §10's realistic peak: `LOAD_PEAK_RATE` deadlines a second (1,000) for
/// `LOAD_PEAK_SECS`, the read at the deadline on — every check within 1 s — and, beside it,
/// off.
pub(super) fn scenario_deadline_peak(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let (rate, secs) = (sizes.peak_rate, sizes.peak_secs);
    let n = rate * secs as usize;
    println!(
        "\n== (c′) the realistic peak: {n} open checks, {rate} deadlines a second for {secs} s, \
         with and without the read at the deadline; SQLite, robot-is-charging =="
    );
    let on = run_child(n, sizes.deadline_lead, secs, true)?;
    let off = run_child(n, sizes.deadline_lead, secs, false)?;
    println!("\nlateness after the deadline (ms)           p50       p99       max");
    print_lateness(&on, true);
    print_lateness(&off, false);
    println!(
        "the read found {} lost deliveries (their checks PASS; without it they FAIL)",
        on.found_by_read
    );
    let [_, p99, max] = on.lateness_ms;
    let [_, off_p99, off_max] = off.lateness_ms;
    rows.push(Row {
        scenario: "deadlines-peak",
        figure: format!("read on: p99 {p99:.0} ms, max {max:.0} ms ({rate}/s)"),
        target: format!("≤ {TARGET_LATENESS_MS:.0} ms each"),
        limit: format!("read off: p99 {off_p99:.0} ms, max {off_max:.0} ms"),
        ratio: format!("{:+.0} ms max", max - off_max),
        met: Some(max <= TARGET_LATENESS_MS),
    });
    let mut entry = json!({
        "per_s": num(deadline_rate(&on)),
        "p50_late_ms": num(on.lateness_ms[0]),
        "p99_late_ms": num(p99),
        "max_late_ms": num(max),
        "rate": rate,
        "checks": n,
        "found_by_read": on.found_by_read,
    });
    for (key, value) in without_read_fields(&off) {
        entry[key] = value;
    }
    summary.set("deadlines_peak", entry);
    Ok(())
}

pub(super) fn scenario_deadlines(
    sizes: &Sizes,
    runtime: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let n = sizes.deadline_checks;
    println!(
        "\n== (c) {n} open checks, deadlines {}–{} s after set-up: scheduler + relay, SQLite, \
         robot-is-charging, with the read at the deadline (the default) and without ==",
        sizes.deadline_lead,
        sizes.deadline_lead + sizes.deadline_spread
    );
    let (scan_ms, batch, concurrency) = scheduler_defaults();
    println!(
        "(runs in a child process of this binary, so VmHWM is the scenario's own; the scheduler \
         runs its `run` loop with the configuration defaults — scan every {scan_ms} ms, batch \
         {batch}, concurrency {concurrency} — as production does, so the lateness includes up to \
         one scan interval; the relay runs too, sending to a robot queue that drops the bodies; \
         the read at the deadline asks the Megazord simulator over local HTTP, one call per \
         check, as production asks Megazord)"
    );
    let report = run_child(n, sizes.deadline_lead, sizes.deadline_spread, true)?;
    let off = run_child(n, sizes.deadline_lead, sizes.deadline_spread, false)?;

    // Limit: the finalisation writes alone, on a fresh database with as many due checks, as
    // the scheduler makes them: claim a batch (lease the poller + ext rows) in one
    // transaction, then finalise it — one check per transaction, and the whole claimed batch
    // in one.
    let dir = tempfile::tempdir()?;
    let single = runtime.block_on(raw_finalise_rate(&dir.path().join("raw-1.db"), n, batch, 1))?;
    let grouped = runtime.block_on(raw_finalise_rate(
        &dir.path().join("raw-g.db"),
        n,
        batch,
        batch,
    ))?;
    let limit = Limit {
        single,
        grouped,
        group: batch,
        service_groups: FINALISATIONS_GROUPED,
    };
    let [p50, p99, max] = report.lateness_ms;
    let [_, s99, smax] = report.notify_lateness_ms;
    let [_, off_p99, off_max] = off.lateness_ms;
    let hwm_mb = mb(report.hwm_kb);
    println!("\nlateness after the deadline (ms)           p50       p99       max");
    print_lateness(&report, false);
    print_lateness(&off, true);
    println!(
        "the read found {} lost deliveries (their checks PASS; without it they FAIL)",
        report.found_by_read
    );
    let per_s = deadline_rate(&report);
    let off_per_s = deadline_rate(&off);
    println!(
        "read on: finalised {n} in {:.1} s from the first deadline ({:.0}/s overall; the \
         deadlines arrive at {:.0}/s); while work was waiting: {:.0} finalisations/s; last \
         notification {:.1} s after the first deadline. Read off: {:.1} s, while work was \
         waiting {:.0}/s",
        report.finalise_span_secs,
        report.finalise_rate,
        n as f64 / sizes.deadline_spread.max(1) as f64,
        report.busy_rate,
        report.notify_span_secs,
        off.finalise_span_secs,
        off.busy_rate,
    );
    println!(
        "raw SQLite finalisation writes (rusqlite, one connection, prepared statements; per check \
         UPDATE status_check, poller release, UPDATE ext, subscription removal row, 1.3 kB outbox \
         row; claims of {batch} as the scheduler's): {:.0}/s one check per transaction, {:.0}/s \
         the claimed batch of {batch} per transaction; the figures ({per_s:.0}/s read on, \
         {off_per_s:.0}/s read off) stand beside the {} limit → {:.3}× and {:.3}×",
        limit.single,
        limit.grouped,
        limit.shape(),
        per_s / limit.beside(),
        off_per_s / limit.beside()
    );
    println!(
        "resident memory (read on): {:.1} MB at child start, {:.1} MB before set-up, {:.1} MB \
         after set-up, {:.1} MB at the end; peak (VmHWM) {hwm_mb:.1} MB = +{:.1} MB over before \
         set-up; target ≤ {TARGET_RSS_MB:.0} MB: {}",
        mb(report.rss_start_kb),
        mb(report.rss_before_setup_kb),
        mb(report.rss_after_setup_kb),
        mb(report.rss_end_kb),
        mb(report.hwm_kb.saturating_sub(report.rss_before_setup_kb)),
        yes_no(hwm_mb <= TARGET_RSS_MB)
    );
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("read off: p99 {off_p99:.0} ms, max {off_max:.0} ms ({n})"),
        target: format!("≤ {TARGET_LATENESS_MS:.0} ms each"),
        limit: limit.describe("raw finalise"),
        ratio: format!("{off_per_s:.0}/s = {:.3}× raw", off_per_s / limit.beside()),
        met: Some(off_max <= TARGET_LATENESS_MS),
    });
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("read off: {off_per_s:.0} finalisations/s ({n})"),
        target: format!("≥ {TARGET_FINALISATIONS_PER_SEC:.0}/s, grouped"),
        limit: limit.describe("raw finalise"),
        ratio: format!("{:.3}× raw", off_per_s / limit.beside()),
        met: Some(off_per_s >= TARGET_FINALISATIONS_PER_SEC),
    });
    let [_, off_s99, off_smax] = off.notify_lateness_ms;
    rows.push(Row {
        scenario: "deadlines",
        figure: format!(
            "robot notified: max {off_smax:.0} ms read off, {smax:.0} ms read on ({n})"
        ),
        target: format!("≤ {TARGET_NOTIFY_LATENESS_MS:.0} ms each"),
        limit: format!("p99 {off_s99:.0} ms read off, {s99:.0} ms read on"),
        ratio: "—".to_owned(),
        met: Some(off_smax.max(smax) <= TARGET_NOTIFY_LATENESS_MS),
    });
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("read on: p99 {p99:.0} ms, max {max:.0} ms ({n})"),
        target: "reported (SPEC §10)".to_owned(),
        limit: limit.describe("raw finalise"),
        ratio: format!("{per_s:.0}/s = {:.3}× raw", per_s / limit.beside()),
        met: None,
    });
    rows.push(Row {
        scenario: "deadlines",
        figure: format!("peak RSS {hwm_mb:.1} MB ({n} open, read on)"),
        target: format!("≤ {TARGET_RSS_MB:.0} MB"),
        limit: format!("{:.1} MB before set-up", mb(report.rss_before_setup_kb)),
        ratio: format!(
            "+{:.1} MB",
            mb(report.hwm_kb.saturating_sub(report.rss_before_setup_kb))
        ),
        met: Some(hwm_mb <= TARGET_RSS_MB),
    });
    let mut entry = json!({
        "per_s": num(per_s),
        "p50_late_ms": num(p50),
        "p99_late_ms": num(p99),
        "max_late_ms": num(max),
        "peak_rss_mb": num(hwm_mb),
        "overall_per_s": num(report.finalise_rate),
        "busy_per_s": num(report.busy_rate),
        "notify_p99_late_ms": num(s99),
        "notify_max_late_ms": num(smax),
        "limit_per_s": num(limit.beside()),
        "limit_single_per_s": num(limit.single),
        "limit_grouped_per_s": num(limit.grouped),
        "group_size": batch,
        "service_groups": FINALISATIONS_GROUPED,
        "checks": n,
        "spread_s": sizes.deadline_spread,
        "found_by_read": report.found_by_read,
    });
    for (key, value) in without_read_fields(&off) {
        entry[key] = value;
    }
    summary.set("deadlines_burst", entry);
    Ok(())
}

/// Finalisations per second: while the scheduler had work waiting (its capacity), or —
/// when it never had (it kept up with the deadlines) — overall.
fn deadline_rate(report: &DeadlineReport) -> f64 {
    if report.busy_rate > 0.0 {
        report.busy_rate
    } else {
        report.finalise_rate
    }
}

/// The scheduler's scan interval (ms), batch and concurrency: the configuration defaults
/// (`SCHEDULER_CONCURRENCY` counts as 1 where the service has no such key).
fn scheduler_defaults() -> (u64, usize, usize) {
    let default = |key: &str, fallback: u64| {
        config_default(key)
            .and_then(|value| value.parse().ok())
            .unwrap_or(fallback)
    };
    (
        default("SCHEDULER_SCAN_INTERVAL_MS", 250),
        default("SCHEDULER_BATCH", 200) as usize,
        default("SCHEDULER_CONCURRENCY", 1).max(1) as usize,
    )
}

/// The raw finalisation writes of `n` due checks on a fresh database: claims of `batch`
/// (CLAIM_DUE, then the poller and ext leases, one transaction), each claimed batch finalised
/// `group` checks per transaction; finalisations per second, claims included.
async fn raw_finalise_rate(
    path: &Path,
    n: usize,
    batch: usize,
    group: usize,
) -> anyhow::Result<f64> {
    let mut db = RawDb::create(path).await?;
    let due = Utc::now() - TimeDelta::seconds(1);
    let template_id = db.template_id;
    let checks = (0..n).map(|i| RawCheck {
        robot: 1 + (i % 1000) as i64,
        scheduled: i as i64,
        template_id,
        step: 103,
        subscription: Some(raw_subscription(i as i64)),
        anchor: due - TimeDelta::seconds(600) + TimeDelta::microseconds(i as i64),
        future_seconds: 600,
        deadline: Some(due + TimeDelta::microseconds(i as i64)),
        subscribe_intent: None,
    });
    let owners: HashMap<i64, (i64, i64)> = db
        .seed(checks.clone())?
        .into_iter()
        .zip(checks.map(|c| (c.robot, c.subscription.unwrap_or(0))))
        .collect();
    let payload = "x".repeat(1_300);
    let began = Instant::now();
    let finalised = tokio::task::block_in_place(|| -> anyhow::Result<usize> {
        let mut finalised = 0;
        loop {
            let now = Utc::now();
            let tx = db.begin()?;
            let claimed: Vec<i64> = tx
                .prepare_cached(CLAIM_DUE_SQLITE)?
                .query_map(params![text_time(now), batch as i64], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &claimed {
                tx.prepare_cached(LEASE_POLLER)?.execute(params![
                    "raw-lease",
                    text_time(floor_seconds(now)),
                    id
                ])?;
                tx.prepare_cached(LEASE_EXT)?
                    .execute(params![text_time(now), id])?;
            }
            tx.commit()?;
            if claimed.is_empty() {
                return Ok(finalised);
            }
            db.run_grouped(claimed.len(), group, |tx, index| {
                let id = claimed[index];
                let (robot, subscription) = owners.get(&id).copied().unwrap_or_default();
                execute(
                    tx,
                    &finalise_writes(
                        id,
                        (robot, subscription),
                        &AT_DEADLINE,
                        &payload,
                        Utc::now(),
                    ),
                )
            })?;
            finalised += claimed.len();
        }
    })?;
    ensure!(finalised == n, "raw finalisation did {finalised} of {n}");
    let failed: i64 = db.conn.query_row(
        "SELECT COUNT(*) FROM status_check WHERE phase = 'FAILED'",
        [],
        |row| row.get(0),
    )?;
    ensure!(
        failed == n as i64,
        "raw finalisation left {failed} of {n} FAILED"
    );
    Ok(n as f64 / began.elapsed().as_secs_f64())
}
