//! (a) create: `POST /v1/status-check/check` against the physical limit of its writes and a
//! bare axum handler.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::ensure;
use axum::Json;
use axum::http::StatusCode;
use rusqlite::OptionalExtension as _;
use serde_json::{Map, Value, json};
use status_check::dev::Stack;
use status_check::queue::MemoryQueue;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::create_floor::spawn_floor;
use crate::raw::{Limit, RawCreateWriter, RawDb, open};
use crate::stack::{build_stack, create_op, demo_step, http_client};
use crate::summary::{Summary, num};

/// `clients` robots creating through a raw writer that commits up to `group` waiting creates
/// per transaction, for `until`, on the database at `path`.
async fn raw_creates(
    path: &std::path::Path,
    clients: usize,
    group: usize,
    until: Until,
    scheduled_base: i64,
) -> anyhow::Result<Load> {
    let db = RawDb::open_existing(path)?;
    let template_id = db.template_id;
    let writer = RawCreateWriter::spawn(db, group);
    let load = drive(clients, until, writer.op(template_id, scheduled_base)).await;
    writer.stop()?;
    Ok(load)
}

/// `clients` robots posting creates to the floor ([`crate::create_floor`]), whose writes go
/// through a raw writer grouping up to `group` on the database at `path`.
async fn floor_creates(
    path: &std::path::Path,
    clients: usize,
    group: usize,
    until: Until,
    op: impl Fn(String) -> Op,
) -> anyhow::Result<Load> {
    let db = RawDb::open_existing(path)?;
    let template_id = db.template_id;
    let intents_before = subscribe_intents_made(&db.conn)?;
    let writer = RawCreateWriter::spawn(db, group);
    let floor = spawn_floor(writer.creates(), template_id).await?;
    let load = drive(
        clients,
        until,
        op(format!("http://{}/v1/status-check/check", floor.addr)),
    )
    .await;
    drop(floor);
    writer.stop()?;
    // Every create answered recorded its subscribe, and its write deleted that record.
    let db = RawDb::open_existing(path)?;
    let made = subscribe_intents_made(&db.conn)? - intents_before;
    let left: i64 = db.conn.query_row(
        "SELECT COUNT(*) FROM status_check_subscribe_intent",
        [],
        |row| row.get(0),
    )?;
    ensure!(
        made >= load.ok as i64 && left == 0,
        "floor: {made} subscribes recorded for {} creates, {left} records left",
        load.ok
    );
    Ok(load)
}

/// How many subscribe records the database has ever made (its AUTOINCREMENT sequence).
fn subscribe_intents_made(conn: &rusqlite::Connection) -> anyhow::Result<i64> {
    let made: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'status_check_subscribe_intent'",
            [],
            |row| row.get(0),
        )
        .optional()?;
    Ok(made.unwrap_or(0))
}

pub(super) async fn scenario_create(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    println!("\n== (a) create: POST /v1/status-check/check, SQLite, robot-is-charging ==");
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("create.db");
    let stack = build_stack(
        &sqlite_url(&db),
        "api",
        Arc::new(MemoryQueue::new()),
        None,
        None,
    )
    .await?;
    let step = demo_step(&stack, "robot-is-charging")?;
    let username = stack.config.robot_consumer_username.clone();
    let Stack { app, sims, .. } = stack;
    let url = format!("http://127.0.0.1:{}/v1/status-check/check", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let raw_db = dir.path().join("raw-create.db");
    drop(RawDb::create(&raw_db).await?);
    let bare_url = format!("http://{}/v1/status-check/check", spawn_bare_axum().await?);
    let client = http_client()?;
    let ids = Arc::new(Mutex::new(Vec::new()));
    let robot_of: fn(usize, u64) -> i64 = |client, _| client as i64 + 1;
    let service_op = |base| {
        create_op(
            client.clone(),
            url.clone(),
            username.clone(),
            step,
            base,
            robot_of,
            ids.clone(),
        )
    };
    let bare_op = |base| {
        create_op(
            client.clone(),
            bare_url.clone(),
            username.clone(),
            step,
            base,
            robot_of,
            Arc::new(Mutex::new(Vec::new())),
        )
    };
    let floor_op = |base| {
        let client = client.clone();
        let username = username.clone();
        move |url: String| {
            create_op(
                client.clone(),
                url,
                username.clone(),
                step,
                base,
                robot_of,
                Arc::new(Mutex::new(Vec::new())),
            )
        }
    };
    let seconds = Duration::from_secs_f64(sizes.create_secs);
    println!(
        "each robot (client) posts one create after the other with a fresh scheduledId, {:.1} s \
         per measurement;\nservice path per create: 1 Micro-Managers GET (cached per robot and \
         step after the first) + 3 Megazord GETs (2 past names, 1 backfill) + 1 subscribe POST over \
         local HTTP, 2 read transactions (the request key; the open checks at the step) and the write, shared with the creates waiting beside it.\n\
         limits at the same concurrency: raw SQLite = a create's writes as the service makes \
         them — the subscribe's record in a transaction of its own, then the 3 rows \
         (status_check, _ext, _poller) and that record's deletion — through the SQLite C library \
         (rusqlite: one writer thread on one connection, prepared statements, WAL, \
         synchronous=NORMAL), the robots' creates queued to it in process — the create's write one \
         per BEGIN IMMEDIATE transaction (raw 1/tx), and grouped: every create waiting when a \
         transaction starts, up to {CREATE_GROUP_MAX} as the service's writer (raw grp); floor = a bare handler making the same 4 Megazord calls to bare \
         handlers over local HTTP, recording the subscribe in its own transaction before it as \
         the service does, then the same 3 rows and that record's deletion through that grouped \
         writer — a create's round trips and writes with nothing of the service between them; bare \
         axum = a handler that parses the JSON body and answers 201 with a check-sized JSON, \
         same HTTP client. The figure stands beside the {} limit.",
        seconds.as_secs_f64(),
        if CREATES_GROUPED {
            "grouped"
        } else {
            "one-per-transaction"
        }
    );
    // Warm-up (not counted): connections, prepared statements, template caches.
    let warm = Until::Time(seconds.mul_f64(0.2).max(Duration::from_millis(100)));
    drive(16, warm, service_op(900_000_000))
        .await
        .ensure_clean("warm-up create")?;
    raw_creates(&raw_db, 16, 1, warm, 900_000_000)
        .await?
        .ensure_clean("warm-up raw")?;
    drive(16, warm, bare_op(900_000_000))
        .await
        .ensure_clean("warm-up bare")?;
    floor_creates(&raw_db, 16, 16, warm, floor_op(950_000_000))
        .await?
        .ensure_clean("warm-up floor")?;

    println!(
        "\n{:>7} {:>9} {:>8} {:>8} {:>8} | {:>10} {:>8} | {:>10} {:>8} | {:>9} | {:>9} {:>8} {:>8} | {:>10} {:>8} {:>11}",
        "robots",
        "create/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "raw 1/tx/s",
        "p99 ms",
        "raw grp/s",
        "p99 ms",
        "create÷",
        "floor/s",
        "p50 ms",
        "p99 ms",
        "bare/s",
        "p99 ms",
        "create÷bare",
    );
    let mut levels = Vec::new();
    for (level, &clients) in sizes.create_clients.iter().enumerate() {
        let base = (level as i64 + 1) * 100_000_000;
        let service = drive(clients, Until::Time(seconds), service_op(base)).await;
        service.ensure_clean("create")?;
        let single = raw_creates(&raw_db, clients, 1, Until::Time(seconds), base).await?;
        single.ensure_clean("raw SQLite create, one per transaction")?;
        let group = clients.min(CREATE_GROUP_MAX);
        let grouped = raw_creates(
            &raw_db,
            clients,
            group,
            Until::Time(seconds),
            base + 50_000_000,
        )
        .await?;
        grouped.ensure_clean("raw SQLite create, grouped")?;
        let floor = floor_creates(
            &raw_db,
            clients,
            group,
            Until::Time(seconds),
            floor_op(base + 70_000_000),
        )
        .await?;
        floor.ensure_clean("floor")?;
        let bare = drive(clients, Until::Time(seconds), bare_op(base)).await;
        bare.ensure_clean("bare axum")?;
        let limit = Limit {
            single: single.rate(),
            grouped: grouped.rate(),
            group,
            service_groups: CREATES_GROUPED,
        };
        let beside = if CREATES_GROUPED { &grouped } else { &single };
        println!(
            "{:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} | {:>10.0} {:>8.2} | {:>8.3}× | {:>9.0} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>10.3}×",
            clients,
            service.rate(),
            service.p(50.0),
            service.p(95.0),
            service.p(99.0),
            single.rate(),
            single.p(99.0),
            grouped.rate(),
            grouped.p(99.0),
            service.rate() / limit.beside(),
            floor.rate(),
            floor.p(50.0),
            floor.p(99.0),
            bare.rate(),
            bare.p(99.0),
            service.rate() / bare.rate(),
        );
        let beside_p99 = beside.p(99.0);
        levels.push((clients, service, limit, beside_p99, floor, bare));
    }

    // Correctness: every 201 is a distinct check in the database, in FUTURE, subscribed.
    let created = std::mem::take(&mut *ids.lock().unwrap());
    let stored: HashSet<i64> = open(&db)?
        .prepare("SELECT id FROM status_check")?
        .query_map([], |row| row.get::<_, i64>(0))?
        .collect::<Result<_, _>>()?;
    let distinct: HashSet<i64> = created.iter().map(|(_, c)| c.id).collect();
    ensure!(
        distinct.len() == created.len(),
        "create answered the same id twice"
    );
    ensure!(
        stored.len() == created.len(),
        "{} creates answered 201 but the database holds {} checks",
        created.len(),
        stored.len()
    );
    for (_, check) in &created {
        ensure!(stored.contains(&check.id), "check {} is missing", check.id);
        ensure!(
            check.phase == "FUTURE" && check.subscription_id.is_some(),
            "check {} answered phase {} / subscription {:?}, expected FUTURE with one",
            check.id,
            check.phase,
            check.subscription_id
        );
    }
    println!(
        "verified: {} creates answered 201, each a distinct check in the database, in FUTURE with a subscription",
        created.len()
    );
    shutdown.cancel();
    server.await??;
    sims.cancel();

    let mut by_robots = Map::new();
    for (clients, service, limit, beside_p99, floor, _) in &levels {
        by_robots.insert(
            clients.to_string(),
            json!({
                "per_s": num(service.rate()),
                "p50_ms": num(service.p(50.0)),
                "p99_ms": num(service.p(99.0)),
                "limit_per_s": num(limit.beside()),
                "limit_single_per_s": num(limit.single),
                "limit_grouped_per_s": num(limit.grouped),
                "limit_p99_ms": num(*beside_p99),
                "floor_per_s": num(floor.rate()),
                "floor_p50_ms": num(floor.p(50.0)),
                "floor_p99_ms": num(floor.p(99.0)),
            }),
        );
        if *clients == 64 {
            summary.set("create_64", by_robots[&clients.to_string()].clone());
        }
    }
    summary.set("create_by_robots", Value::Object(by_robots));
    if let Some((clients, service, limit, beside_p99, floor, bare)) = levels.pop() {
        let note = if clients == 64 {
            String::new()
        } else {
            format!(" (SPEC says 64; ran {clients})")
        };
        rows.push(Row {
            scenario: "create",
            figure: format!("{:.0} checks/s @{clients}{note}", service.rate()),
            target: format!("≥ {TARGET_CREATE_OF_FLOOR}× floor"),
            limit: format!(
                "floor {:.0}/s; {}, bare axum {:.0}/s",
                floor.rate(),
                limit.describe("raw SQLite"),
                bare.rate()
            ),
            ratio: format!(
                "{:.3}× floor, {:.3}× raw, {:.3}× bare",
                service.rate() / floor.rate(),
                service.rate() / limit.beside(),
                service.rate() / bare.rate()
            ),
            met: Some(service.rate() >= TARGET_CREATE_OF_FLOOR * floor.rate()),
        });
        rows.push(Row {
            scenario: "create",
            figure: format!("p99 {:.1} ms @{clients}", service.p(99.0)),
            target: format!("≤ {TARGET_CREATE_P99_OF_FLOOR}× floor p99"),
            limit: format!(
                "floor (same HTTP calls + grouped writes, no service) p99 {:.1} ms at {:.0}/s; raw {} {beside_p99:.1} ms; bare {:.1} ms",
                floor.p(99.0),
                floor.rate(),
                limit.shape(),
                bare.p(99.0)
            ),
            ratio: format!(
                "{:.2}× floor p99, {:.1}× raw p99",
                service.p(99.0) / floor.p(99.0),
                service.p(99.0) / beside_p99
            ),
            met: Some(service.p(99.0) <= TARGET_CREATE_P99_OF_FLOOR * floor.p(99.0)),
        });
    }
    Ok(())
}

/// A bare axum server: parses the create body and answers 201 with a check-sized JSON.
async fn spawn_bare_axum() -> anyhow::Result<SocketAddr> {
    let answer = Arc::new(json!({
        "id": 1, "robotId": 1, "statusCheck": "robot-is-charging", "templateVersion": 1,
        "stepId": 103, "scheduledId": 1, "scriptVersionId": SCRIPT_VERSION_ID,
        "plannedAt": "2026-11-20T08:00:00.000Z", "phase": "FUTURE", "result": "PENDING",
        "nextStepId": null, "pollingSince": "2026-11-20T07:00:00.000Z",
        "pollingUntil": "2026-11-20T08:10:00.000Z", "subscriptionId": 991, "history": [],
        "createdAt": "2026-11-20T08:00:00.000Z", "updatedAt": "2026-11-20T08:00:00.000Z",
    }));
    let router = axum::Router::new().route(
        "/v1/status-check/check",
        axum::routing::post(move |Json(body): Json<Value>| {
            let answer = answer.clone();
            async move {
                let mut answer = (*answer).clone();
                answer["scheduledId"] = body["scheduledId"].clone();
                (StatusCode::CREATED, Json(answer))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok(addr)
}
