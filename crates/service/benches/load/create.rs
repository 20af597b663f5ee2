//! (a) create: `POST /v1/status-check/check` against raw SQLite and a bare axum handler.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::ensure;
use axum::Json;
use axum::http::StatusCode;
use serde_json::{Value, json};
use sqlx::Row as _;
use status_check::dev::Stack;
use status_check::queue::MemoryQueue;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::raw::{raw_create_op, raw_database, serialised, service_like_pool};
use crate::stack::{build_stack, create_op, demo_step, http_client};

pub(super) async fn scenario_create(sizes: &Sizes, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    println!("\n== (a) create: POST /v1/status-check/check, SQLite, robot-is-charging ==");
    let dir = tempfile::tempdir()?;
    let stack = build_stack(
        &dir.path().join("create.db"),
        "api",
        Arc::new(MemoryQueue::new()),
        None,
    )
    .await?;
    let step = demo_step(&stack, "robot-is-charging")?;
    let username = stack.config.robot_consumer_username.clone();
    let Stack { app, sims, .. } = stack;
    let url = format!("http://127.0.0.1:{}/v1/status-check/check", app.port());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));

    let (raw_pool, raw_template) = raw_database(&dir.path().join("raw-create.db")).await?;
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
    let seconds = Duration::from_secs_f64(sizes.create_secs);
    println!(
        "each robot (client) posts one create after the other with a fresh scheduledId, {:.1} s \
         per measurement;\nservice path per create: 1 Micro-Managers GET + 3 Megazord GETs \
         (2 past names, 1 backfill) + 1 subscribe POST over local HTTP, 1 read + 1 write transaction.\n\
         limits, same client and concurrency: raw SQLite = the same 3 rows (status_check, _ext, \
         _poller) per BEGIN IMMEDIATE transaction via plain sqlx, pool of {SERVICE_POOL}, WAL, \
         synchronous=NORMAL; bare axum = a handler that parses the JSON body and answers 201 with \
         a check-sized JSON; raw SQLite runs two ways — the pool's 8 connections meeting in SQLite's \
         busy handler, and one writer at a time (an async mutex, as the service's store writes) — \
         the faster is the limit (raw SQL/s), the other is shown last (raw other/s).",
        seconds.as_secs_f64()
    );
    // Warm-up (not counted): connections, prepared statements, template caches.
    let warm = Until::Time(seconds.mul_f64(0.2).max(Duration::from_millis(100)));
    drive(16, warm, service_op(900_000_000))
        .await
        .ensure_clean("warm-up create")?;
    drive(
        16,
        warm,
        raw_create_op(raw_pool.clone(), raw_template, 900_000_000),
    )
    .await
    .ensure_clean("warm-up raw")?;
    drive(16, warm, bare_op(900_000_000))
        .await
        .ensure_clean("warm-up bare")?;

    println!(
        "\n{:>7} {:>9} {:>8} {:>8} {:>8} | {:>10} {:>8} {:>9} | {:>10} {:>8} {:>9} | {:>11} {:>8}",
        "robots",
        "create/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "raw SQL/s",
        "p99 ms",
        "create÷raw",
        "bare/s",
        "p99 ms",
        "create÷bare",
        "raw other/s",
        "p99 ms"
    );
    let mut last = None;
    for (level, &clients) in sizes.create_clients.iter().enumerate() {
        let base = (level as i64 + 1) * 100_000_000;
        let service = drive(clients, Until::Time(seconds), service_op(base)).await;
        service.ensure_clean("create")?;
        let raw = drive(
            clients,
            Until::Time(seconds),
            raw_create_op(raw_pool.clone(), raw_template, base),
        )
        .await;
        raw.ensure_clean("raw SQLite create")?;
        let bare = drive(clients, Until::Time(seconds), bare_op(base)).await;
        bare.ensure_clean("bare axum")?;
        let one_writer = drive(
            clients,
            Until::Time(seconds),
            serialised(raw_create_op(
                raw_pool.clone(),
                raw_template,
                base + 50_000_000,
            )),
        )
        .await;
        one_writer.ensure_clean("raw SQLite create, one writer")?;
        // The limit is the faster way of writing the same rows; the other is shown beside it.
        let (raw, one_writer) = if one_writer.rate() > raw.rate() {
            (one_writer, raw)
        } else {
            (raw, one_writer)
        };
        println!(
            "{:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2} | {:>10.0} {:>8.2} {:>9.3}× | {:>10.0} {:>8.2} {:>9.3}× | {:>11.0} {:>8.2}",
            clients,
            service.rate(),
            service.p(50.0),
            service.p(95.0),
            service.p(99.0),
            raw.rate(),
            raw.p(99.0),
            service.rate() / raw.rate(),
            bare.rate(),
            bare.p(99.0),
            service.rate() / bare.rate(),
            one_writer.rate(),
            one_writer.p(99.0),
        );
        last = Some((clients, service, raw, bare));
    }

    // Correctness: every 201 is a distinct check in the database, in FUTURE, subscribed.
    let created = std::mem::take(&mut *ids.lock().unwrap());
    let check_pool = service_like_pool(&dir.path().join("create.db")).await?;
    let stored: HashSet<i64> = sqlx::query("SELECT id FROM status_check")
        .fetch_all(&check_pool)
        .await?
        .iter()
        .map(|row| row.get::<i64, _>("id"))
        .collect();
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
    check_pool.close().await;
    shutdown.cancel();
    server.await??;
    sims.cancel();

    if let Some((clients, service, raw, bare)) = last {
        let note = if clients == 64 {
            String::new()
        } else {
            format!(" (SPEC says 64; ran {clients})")
        };
        rows.push(Row {
            scenario: "create",
            figure: format!("{:.0} checks/s @{clients}{note}", service.rate()),
            target: format!("≥ {TARGET_CREATE_PER_SEC:.0}/s"),
            limit: format!("raw {:.0}/s, bare axum {:.0}/s", raw.rate(), bare.rate()),
            ratio: format!(
                "{:.3}× raw, {:.3}× bare",
                service.rate() / raw.rate(),
                service.rate() / bare.rate()
            ),
            met: Some(service.rate() >= TARGET_CREATE_PER_SEC),
        });
        rows.push(Row {
            scenario: "create",
            figure: format!("p99 {:.1} ms @{clients}", service.p(99.0)),
            target: format!("≤ {TARGET_CREATE_P99_MS:.0} ms"),
            limit: format!("raw {:.1} ms, bare {:.1} ms", raw.p(99.0), bare.p(99.0)),
            ratio: format!("{:.1}× raw p99", service.p(99.0) / raw.p(99.0)),
            met: Some(service.p(99.0) <= TARGET_CREATE_P99_MS),
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
