//! (b) deliveries: the consumer draining the status queue, against the physical limit of the
//! same writes. The run itself ([`deliveries_through`]) is shared with the MariaDB scenario.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use chrono::{TimeDelta, Utc};
use serde_json::json;
use status_check::dev::{DEV_STATUS_QUEUE, Stack};
use status_check::queue::MemoryQueue;
use status_check_engine::{CheckResult, RecordPhase};
use status_check_sim::megazord::NewIncoming;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::raw::{Limit, RawDb, execute, open};
use crate::stack::{CreatedDto, build_stack, build_stack_with, create_op, demo_step, http_client};
use crate::summary::{Summary, num};
use crate::writes::{
    RawCheck, RawDelivery, Write, deciding_delivery_writes, delivery_writes, raw_subscription,
};

/// toilet-activity (pollUntilEnd): the result after `visits` visits, and how many
/// notifications the visits so far caused (PENDING → PASS at 1, PASS → FAIL at 4).
pub(super) fn toilet_expected(visits: usize) -> (CheckResult, i64) {
    match visits {
        0 => (CheckResult::Pending, 0),
        1..=3 => (CheckResult::Pass, 1),
        _ => (CheckResult::Fail, 2),
    }
}

/// What the checks of a deliveries run are, what each delivery brings, and what they end as.
#[derive(Clone, Copy)]
pub(super) struct Workload {
    pub(super) template: &'static str,
    pub(super) event: &'static str,
    /// After `k` events: the result, the notifications so far and the future records.
    pub(super) expected: fn(usize) -> (CheckResult, i64, usize),
}

/// toilet-activity (pollUntilEnd): every visit is recorded; decided at the deadline.
pub(super) const TOILET: Workload = Workload {
    template: "toilet-activity",
    event: "TOILET_VISIT",
    expected: toilet_workload,
};

/// medication-box-opened: its first opening ends it (PASS, one notification), a decision the
/// delivery's read of Megazord confirms before it is written (SPEC §3.4: its future rules are
/// two, PASS on an opening and UNKNOWN on the box going offline last, so order can matter).
pub(super) const MEDICATION: Workload = Workload {
    template: "medication-box-opened",
    event: "MEDICATION_BOX_OPENED",
    expected: deciding_workload,
};

fn toilet_workload(k: usize) -> (CheckResult, i64, usize) {
    let (result, notifications) = toilet_expected(k);
    (result, notifications, k)
}

fn deciding_workload(k: usize) -> (CheckResult, i64, usize) {
    match k {
        0 => (CheckResult::Pending, 0, 0),
        _ => (CheckResult::Pass, 1, 1),
    }
}

/// The robot of the `index`-th check of (b).
pub(super) fn delivery_robot(index: usize) -> i64 {
    100_000 + index as i64
}

/// What [`deliveries_through`] measured.
pub(super) struct DeliveryRun {
    pub(super) deliveries: usize,
    pub(super) elapsed: Duration,
    pub(super) outbox_rows: i64,
}

impl DeliveryRun {
    pub(super) fn rate(&self) -> f64 {
        self.deliveries as f64 / self.elapsed.as_secs_f64()
    }
}

/// `n` open checks of the workload's template created through the first stack's API (robot
/// [`delivery_robot`] each), `k` of its events per check fanned out by its Megazord simulator
/// onto the shared memory queue, then every stack's consumer (`run` loop) until the queue is
/// empty — timed — and the result verified. Every stack is stopped at the end.
pub(super) async fn deliveries_through(
    stacks: Vec<Stack>,
    queue: Arc<MemoryQueue>,
    (n, k): (usize, usize),
    workload: Workload,
) -> anyhow::Result<DeliveryRun> {
    let m = n * k;
    let first = stacks.first().context("no stack")?;
    let step = demo_step(first, workload.template)?;
    let username = first.config.robot_consumer_username.clone();
    let megazord = first.megazord.clone();
    let store = first.store.clone();
    let url = format!(
        "http://127.0.0.1:{}/v1/status-check/check",
        first.app.port()
    );
    let shutdown = CancellationToken::new();
    let (mut consumers, mut servers, mut sims) = (Vec::new(), Vec::new(), Vec::new());
    for stack in stacks {
        let Stack {
            mut app, sims: s, ..
        } = stack;
        consumers.push(
            app.take_workers()
                .consumer
                .context("the stack has no consumer")?,
        );
        servers.push(tokio::spawn(app.run(shutdown.clone())));
        sims.push(s);
    }

    // Set-up: n open checks through the API, one robot each.
    let client = http_client()?;
    let created = Arc::new(Mutex::new(Vec::new()));
    let robot_of: fn(usize, u64) -> i64 = |_, ticket| delivery_robot(ticket as usize);
    let began = Instant::now();
    drive(
        16,
        Until::Count(n as u64),
        create_op(client, url, username, step, 1, robot_of, created.clone()),
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

    // Fan-out: k of the workload's events per robot, round by round, through the Megazord
    // simulator (in process), each onto the memory status queue.
    let began = Instant::now();
    for _ in 0..k {
        for (robot, _) in &checks {
            let posted = megazord
                .post_incoming(*robot, NewIncoming::named(workload.event))
                .await?;
            ensure!(
                posted.outgoing_ids.len() == 1 && posted.lost.is_empty(),
                "robot {robot}: the event fanned out to {:?} (lost {:?})",
                posted.outgoing_ids,
                posted.lost
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

    // Measured: the consumers' `run` loops (configuration defaults) until the queue is
    // empty — a message is deleted only after its change committed.
    let stop = CancellationToken::new();
    let began = Instant::now();
    let running: Vec<_> = consumers
        .into_iter()
        .map(|consumer| tokio::spawn(consumer.run(stop.clone(), Duration::from_secs(10))))
        .collect();
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
    for consumer in running {
        consumer.await?;
    }

    // Correctness: every check took every one of its events, with the right result and
    // notifications.
    let (result, notifications, records) = (workload.expected)(k);
    let mut handed_out = 0;
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
        // Several deliveries of a check applied in one batch are one decision and one
        // notification (PASS then FAIL may reach the robot as FAIL alone): at least one, at
        // most one per change.
        let told = match notifications {
            0 => stored.notification_seq == 0,
            most => (1..=most).contains(&stored.notification_seq),
        };
        ensure!(
            future == records && stored.result == result && told,
            "check {}: {future} future records, result {}, notification seq {} — expected {records}, {result}, 1 to {notifications}",
            check.id,
            stored.result,
            stored.notification_seq
        );
        handed_out += stored.notification_seq;
    }
    // Every notification a check handed out is in the outbox, once: as many as their
    // sequence numbers (fewer than one per change where a batch took changes together).
    let backlog = store.notification_jobs().backlog().await?;
    ensure!(
        backlog == handed_out,
        "outbox holds {backlog} notifications, the checks handed out {handed_out}"
    );
    println!(
        "verified: all {m} deliveries processed (queue empty), every check holds its {records} \
         FUTURE records with result {result}, {backlog} outbox rows"
    );
    shutdown.cancel();
    for server in servers {
        server.await??;
    }
    for s in sims {
        s.cancel();
    }
    Ok(DeliveryRun {
        deliveries: m,
        elapsed,
        outbox_rows: backlog,
    })
}

/// The `ticket`-th delivery of (b) (round by round over the checks, as the queue holds them)
/// to the checks `ids` (check `i` is robot [`delivery_robot`]`(i)`).
pub(super) fn nth_delivery(ids: &[i64], ticket: usize) -> RawDelivery {
    let (round, index) = (ticket / ids.len(), ticket % ids.len());
    RawDelivery {
        check: ids[index],
        robot: delivery_robot(index),
        round,
        event_id: 5_000_000 + ticket as i64,
        outgoing_id: 6_000_000 + ticket as i64,
    }
}

/// The checks of a raw delivery limit, as (b) creates them.
pub(super) fn delivery_checks(n: usize, template_id: i64, step: i64) -> Vec<RawCheck> {
    let anchor = Utc::now();
    (0..n)
        .map(|i| RawCheck {
            robot: delivery_robot(i),
            scheduled: i as i64,
            template_id,
            step,
            subscription: Some(raw_subscription(i as i64)),
            anchor,
            future_seconds: 3600,
            deadline: Some(anchor + TimeDelta::seconds(3600)),
            subscribe_intent: None,
        })
        .collect()
}

pub(super) async fn scenario_deliveries(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    println!("\n== (b) queue deliveries: evaluate + commit + outbox, SQLite, toilet-activity ==");
    let (n, k) = (sizes.delivery_checks, sizes.delivery_events);
    let group = consumer_group()?;
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("deliveries.db");
    let queue = Arc::new(MemoryQueue::new());
    let stack = build_stack(&sqlite_url(&db), "api,consumer", queue.clone(), None, None).await?;
    let run = deliveries_through(vec![stack], queue, (n, k), TOILET).await?;
    let payload_len: f64 = open(&db)?.query_row(
        "SELECT COALESCE(AVG(LENGTH(payload)), 1000.0) FROM status_check_outbox",
        [],
        |row| row.get(0),
    )?;

    // Limit: the same writes per delivery on a fresh database, in the queue's order.
    let payload = "x".repeat(payload_len.round() as usize);
    let single = raw_deliveries(&dir.path().join("raw-1.db"), n, k, &payload, 1).await?;
    let grouped = raw_deliveries(&dir.path().join("raw-g.db"), n, k, &payload, group.size).await?;
    let limit = Limit {
        single,
        grouped,
        group: group.size,
        service_groups: group.service_groups,
    };
    let rate = run.rate();
    println!(
        "\n{:>11} {:>9} {:>11} {:>14} {:>16} {:>10}",
        "deliveries", "seconds", "service/s", "raw 1 per tx/s", "raw grouped/s", "service÷"
    );
    println!(
        "{:>11} {:>9.2} {:>11.0} {:>14.0} {:>16.0} {:>9.3}×",
        run.deliveries,
        run.elapsed.as_secs_f64(),
        rate,
        limit.single,
        limit.grouped,
        rate / limit.beside()
    );
    println!(
        "(raw limit: per delivery UPDATE status_check, UPDATE status_check_ext, INSERT record + \
         record_event, and the outbox row (avg {payload_len:.0} bytes) where the service wrote \
         one ({} of {}) — rusqlite, one connection, prepared statements, WAL, synchronous=NORMAL; \
         one delivery per BEGIN IMMEDIATE transaction, and grouped: {} per transaction ({}); \
         the figure stands beside the {} limit; the service also reads each check and renders \
         the payload)",
        run.outbox_rows,
        run.deliveries,
        group.size,
        group.source,
        limit.shape()
    );
    let target_met =
        rate >= TARGET_DELIVERIES_PER_SEC && rate >= TARGET_SHARE_OF_LIMIT * limit.grouped;
    rows.push(Row {
        scenario: "deliveries",
        figure: format!("{rate:.0} deliveries/s ({})", run.deliveries),
        target: format!("≥ {TARGET_DELIVERIES_PER_SEC:.0}/s, ≥ {TARGET_SHARE_OF_LIMIT}× grouped"),
        limit: limit.describe("raw SQLite"),
        ratio: format!("{:.3}× raw", rate / limit.beside()),
        met: Some(target_met),
    });
    summary.set(
        "deliveries",
        json!({
            "per_s": num(rate),
            "limit_per_s": num(limit.beside()),
            "limit_single_per_s": num(limit.single),
            "limit_grouped_per_s": num(limit.grouped),
            "group_size": group.size,
            "service_groups": group.service_groups,
            "count": run.deliveries,
        }),
    );
    Ok(())
}

/// The raw delivery writes for `n` checks × `k` events on a fresh database, round by round,
/// `group` deliveries per transaction; deliveries per second.
async fn raw_deliveries(
    path: &Path,
    n: usize,
    k: usize,
    payload: &str,
    group: usize,
) -> anyhow::Result<f64> {
    let (rate, db) = raw_delivery_rate(path, (n, n * k), group, |ids, ticket| {
        delivery_writes(&nth_delivery(ids, ticket), payload, Utc::now())
    })
    .await?;
    let records: i64 =
        db.conn
            .query_row("SELECT COUNT(*) FROM status_check_record", [], |row| {
                row.get(0)
            })?;
    ensure!(
        records == (n * k) as i64,
        "the raw delivery loop wrote {records} records of {}",
        n * k
    );
    Ok(rate)
}

/// `units` deliveries' raw writes (`writes` of the checks' ids and the delivery's ticket) to `n`
/// checks made as (b) makes them, on a fresh database, `group` per transaction: deliveries per
/// second, and the database, for the caller to verify what was written.
async fn raw_delivery_rate(
    path: &Path,
    (n, units): (usize, usize),
    group: usize,
    writes: impl Fn(&[i64], usize) -> Vec<Write>,
) -> anyhow::Result<(f64, RawDb)> {
    let mut db = RawDb::create(path).await?;
    let ids = db.seed(delivery_checks(n, db.template_id, 103).into_iter())?;
    let rate = tokio::task::block_in_place(|| {
        db.run_grouped(units, group, |tx, ticket| {
            execute(tx, &writes(&ids, ticket))
        })
    })?;
    Ok((rate, db))
}

/// (b′) Deliveries that end their checks (medication-box-opened, one opening each): each
/// decision is confirmed by a read of Megazord before it is written (SPEC §3.4), a call to the
/// simulator over local HTTP. Run twice on fresh databases, with the read (the default) and
/// without (`DEADLINE_RECONCILE=false`): the figure stands beside the same deliveries without
/// the read, measured in the same run.
pub(super) async fn scenario_deciding_deliveries(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    println!(
        "\n== (b′) deliveries that end their checks: medication-box-opened, one opening each, \
         SQLite, the confirming read on and off =="
    );
    let n = sizes.delivery_checks;
    let group = consumer_group()?;
    let dir = tempfile::tempdir()?;
    let mut rates = Vec::new();
    let mut payload_len: f64 = 1000.0;
    for (label, extra) in [
        ("on", &[][..]),
        ("off", &[("DEADLINE_RECONCILE", "false")][..]),
    ] {
        println!("-- the confirming read {label} --");
        let db = dir.path().join(format!("deciding-{label}.db"));
        let queue = Arc::new(MemoryQueue::new());
        let stack = build_stack_with(
            &sqlite_url(&db),
            "api,consumer",
            queue.clone(),
            None,
            None,
            extra,
        )
        .await?;
        let reads_before = confirming_reads();
        let run = deliveries_through(vec![stack], queue, (n, 1), MEDICATION).await?;
        let reads = confirming_reads() - reads_before;
        let expected = if label == "on" { n as u64 } else { 0 };
        ensure!(
            reads == expected,
            "the confirming read {label}: {reads} complete reads, expected {expected}"
        );
        println!("verified: {reads} confirming reads of Megazord completed");
        rates.push(run.rate());
        payload_len = open(&db)?.query_row(
            "SELECT COALESCE(AVG(LENGTH(payload)), 1000.0) FROM status_check_outbox",
            [],
            |row| row.get(0),
        )?;
    }
    let (on, off) = (rates[0], rates[1]);

    // Limit: the same writes per delivery on a fresh database — the record and its event
    // row, then the check ended (state, ext, removal row, notification; a delivery holds no
    // lease to release).
    let payload = "x".repeat(payload_len.round() as usize);
    let (one, grouped) = (dir.path().join("raw-1.db"), dir.path().join("raw-g.db"));
    let limit = Limit {
        single: raw_deciding_deliveries(&one, n, &payload, 1).await?,
        grouped: raw_deciding_deliveries(&grouped, n, &payload, group.size).await?,
        group: group.size,
        service_groups: group.service_groups,
    };
    println!(
        "\n{:>11} {:>12} {:>13} {:>8}\n{n:>11} {on:>12.0} {off:>13.0} {:>7.3}×",
        "deliveries",
        "read on/s",
        "read off/s",
        "on÷off",
        on / off
    );
    println!(
        "(each delivery ends its check: with the read, one GET …/incomings per check to the \
         Megazord simulator before the batch's write — one bounded read per consumer batch)"
    );
    println!(
        "raw limit (rusqlite, one connection, prepared statements): per delivery INSERT record + \
         record_event, UPDATE status_check (COMPLETED, PASS, next step), UPDATE \
         ext, the subscription removal row, the outbox row (avg {payload_len:.0} bytes): \
         {:.0}/s one delivery per transaction, {:.0}/s {} per transaction ({}); read on \
         {:.3}×, read off {:.3}× the {} limit",
        limit.single,
        limit.grouped,
        group.size,
        group.source,
        on / limit.beside(),
        off / limit.beside(),
        limit.shape()
    );
    let met = on >= TARGET_DELIVERIES_PER_SEC && on >= TARGET_SHARE_OF_LIMIT * limit.grouped;
    rows.push(Row {
        scenario: "deciding deliveries",
        figure: format!("{on:.0} deliveries/s ({n}, read on)"),
        target: format!("≥ {TARGET_DELIVERIES_PER_SEC:.0}/s, ≥ {TARGET_SHARE_OF_LIMIT}× grouped"),
        limit: format!("{}; read off {off:.0}/s", limit.describe("raw SQLite")),
        ratio: format!("{:.3}× raw, {:.3}× read off", on / limit.beside(), on / off),
        met: Some(met),
    });
    summary.set(
        "deciding_deliveries",
        json!({
            "per_s": num(on),
            "read_off_per_s": num(off),
            "limit_per_s": num(limit.beside()),
            "limit_single_per_s": num(limit.single),
            "limit_grouped_per_s": num(limit.grouped),
            "count": n,
        }),
    );
    Ok(())
}

/// The raw writes of `n` deliveries that each end their check, on a fresh database, `group`
/// per transaction; deliveries per second.
async fn raw_deciding_deliveries(
    path: &Path,
    n: usize,
    payload: &str,
    group: usize,
) -> anyhow::Result<f64> {
    let (rate, db) = raw_delivery_rate(path, (n, n), group, |ids, ticket| {
        let owner = (MEDICATION.event, raw_subscription(ticket as i64));
        deciding_delivery_writes(&nth_delivery(ids, ticket), owner, payload, Utc::now())
    })
    .await?;
    let ended: i64 = db.conn.query_row(
        "SELECT COUNT(*) FROM status_check WHERE phase = 'COMPLETED' AND result = 'PASS'",
        [],
        |row| row.get(0),
    )?;
    ensure!(
        ended == n as i64,
        "the raw deciding loop ended {ended} checks of {n}"
    );
    Ok(rate)
}

/// `decision_reads_total{end="complete"}` of this process so far.
fn confirming_reads() -> u64 {
    status_check::telemetry::metrics_handle()
        .render()
        .lines()
        .find(|line| line.starts_with("decision_reads_total{end=\"complete\"}"))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}
