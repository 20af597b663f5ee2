//! (e) deliveries on MariaDB (`TEST_MYSQL_URL`): two replicas — two service stacks on one
//! database, sharing the in-memory status queue — against the same grouped writes through a
//! plain client. Skipped, with a note, without a server.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, ensure};
use mysql::prelude::Queryable as _;
use serde_json::json;
use sqlx::mysql::MySqlPool;
use status_check::queue::{
    MemoryQueue, OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange,
};
use status_check_sim::megazord::MegazordRows;

use super::*;
use crate::deliveries::{
    TOILET, deliveries_through, delivery_checks, delivery_robot, nth_delivery,
};
use crate::raw::Limit;
use crate::raw_mysql::{
    BenchDatabase, insert_robots, insert_rows, insert_script_steps, insert_template, run_grouped,
    seed, server_url, server_variable,
};
use crate::stack::build_stack;
use crate::summary::{Summary, num};
use crate::writes::{create_writes, delivery_writes, raw_subscription};

/// The Megazord simulator's rows (subscriptions, incoming and outgoing events), written as it
/// creates them, so the status-check rows' foreign keys hold.
struct MegazordTables(MySqlPool);

impl MegazordTables {
    async fn insert(&self, sql: &'static str, values: &[i64]) {
        let mut query = sqlx::query(sql);
        for value in values {
            query = query.bind(*value);
        }
        if let Err(e) = query.execute(&self.0).await {
            eprintln!("warning: Megazord row not written ({sql} {values:?}): {e}");
        }
    }
}

#[async_trait::async_trait]
impl MegazordRows for MegazordTables {
    async fn subscription(&self, id: i64, robot_id: i64) {
        self.insert(
            "INSERT IGNORE INTO event_subscription (id, robot_id) VALUES (?, ?)",
            &[id, robot_id],
        )
        .await;
    }

    async fn incoming(&self, id: i64, robot_id: i64) {
        self.insert(
            "INSERT IGNORE INTO incoming_event (id, robot_id) VALUES (?, ?)",
            &[id, robot_id],
        )
        .await;
    }

    async fn outgoing(&self, id: i64, source_event_id: i64, subscription_id: i64, _robot: i64) {
        self.insert(
            "INSERT IGNORE INTO outgoing_event (id, source_event_id, subscription_id) \
             VALUES (?, ?, ?)",
            &[id, source_event_id, subscription_id],
        )
        .await;
    }
}

/// One replica's view of the shared memory queue, counting the messages it deleted (the
/// deliveries it applied).
struct ReplicaQueue {
    shared: Arc<MemoryQueue>,
    deleted: AtomicUsize,
}

#[async_trait::async_trait]
impl Queue for ReplicaQueue {
    async fn receive_checked(
        &self,
        queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        self.shared.receive_checked(queue_url, request).await
    }

    async fn delete(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        self.deleted.fetch_add(1, Ordering::Relaxed);
        self.shared.delete(queue_url, receipt).await
    }

    async fn extend_visibility_checked(
        &self,
        queue_url: &str,
        change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        self.shared
            .extend_visibility_checked(queue_url, change)
            .await
    }

    async fn send_checked(
        &self,
        queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        self.shared.send_checked(queue_url, message).await
    }
}

pub(super) async fn scenario_mariadb_deliveries(
    sizes: &Sizes,
    rows: &mut Vec<Row>,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    println!("\n== (e) queue deliveries on MariaDB, two replicas, toilet-activity ==");
    let Some(server) = server_url() else {
        println!(
            "skipped: TEST_MYSQL_URL is not set (a MariaDB server; scripts/test starts one) — \
             no MariaDB figures in this run"
        );
        return Ok(());
    };
    let (n, k) = (sizes.mariadb_checks, sizes.delivery_events);
    let group = consumer_group()?;
    let db = BenchDatabase::create(&server).await?;
    let mut conn = db.conn()?;
    let version = server_variable(&mut conn, "version")?;
    let flush = server_variable(&mut conn, "innodb_flush_log_at_trx_commit")?;
    println!(
        "server: MariaDB {version}, innodb_flush_log_at_trx_commit={flush} (1: every commit \
         flushed to disk; 2: written at commit, flushed once a second); a fresh database from \
         the production schema, migrated by the service"
    );

    // Two replicas: the first serves the API and consumes, the second only consumes; both
    // read the one memory queue. The first's Megazord simulator holds the subscriptions
    // and writes their rows.
    let queue = Arc::new(MemoryQueue::new());
    let replica_queues: Vec<Arc<ReplicaQueue>> = (0..2)
        .map(|_| {
            Arc::new(ReplicaQueue {
                shared: queue.clone(),
                deleted: AtomicUsize::new(0),
            })
        })
        .collect();
    let rows_writer: Arc<dyn MegazordRows> = Arc::new(MegazordTables(db.pool().await?));
    let first = build_stack(
        &db.url,
        "api,consumer",
        replica_queues[0].clone(),
        None,
        Some(rows_writer),
    )
    .await?;
    let second = build_stack(&db.url, "consumer", replica_queues[1].clone(), None, None).await?;
    let mut steps = Vec::new();
    for step in &first.demo_steps {
        steps.extend(step.next.values().copied());
        steps.extend(step.step_id);
    }
    insert_script_steps(&mut conn, &steps)?;
    insert_robots(&mut conn, (0..n).map(delivery_robot))?;
    let run = deliveries_through(vec![first, second], queue, (n, k), TOILET).await?;
    let applied: Vec<usize> = replica_queues
        .iter()
        .map(|q| q.deleted.load(Ordering::Relaxed))
        .collect();
    println!(
        "replicas: the first applied {} deliveries, the second {}",
        applied[0], applied[1]
    );
    // With a handful of messages one replica may take them all into flight at once.
    ensure!(
        run.deliveries < 1_000 || applied.iter().all(|&a| a > 0),
        "one replica applied no delivery: {applied:?}"
    );
    let payload_len: f64 = conn
        .query_first::<Option<f64>, _>(
            "SELECT CAST(AVG(LENGTH(payload)) AS DOUBLE) FROM status_check_outbox",
        )?
        .flatten()
        .unwrap_or(1000.0);
    drop(conn);
    drop(db);

    // Limit: the same writes per delivery through a plain client on a fresh database.
    let payload = "x".repeat(payload_len.round() as usize);
    // The limit is the server's, not the service's pool size: the grouped writes on several
    // numbers of connections around the two replicas' pools, the best kept.
    let mut counts = [
        (sizes.mariadb_writers / 4).max(1),
        (sizes.mariadb_writers / 2).max(1),
        sizes.mariadb_writers,
        sizes.mariadb_writers * 2,
    ]
    .to_vec();
    counts.dedup();
    let mut by_count = Vec::new();
    for &count in &counts {
        let rate = raw_mysql_deliveries(&server, n, k, &payload, group.size, count).await?;
        by_count.push((count, rate));
    }
    println!(
        "raw grouped writes by connections at once: {}",
        by_count
            .iter()
            .map(|(count, rate)| format!("{count}: {rate:.0}/s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let (writers, grouped) =
        by_count.into_iter().fold(
            (0, 0.0),
            |best, next| if next.1 > best.1 { next } else { best },
        );
    let single = raw_mysql_deliveries(&server, n, k, &payload, 1, writers).await?;
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
        "(2 replicas, each with the configuration defaults; raw limit: the same writes per \
         delivery as on SQLite, through the `mysql` crate with prepared statements on {writers} \
         connections at once (the best of the counts above, around LOAD_MARIADB_WRITERS; each \
         check's deliveries in order on one), \
         on a database made the same way — one delivery per transaction, and {} per \
         transaction ({}); the figure stands beside the {} limit)",
        group.size,
        group.source,
        limit.shape()
    );
    rows.push(Row {
        scenario: "mariadb deliveries",
        figure: format!("{rate:.0} deliveries/s ({}, 2 replicas)", run.deliveries),
        target: format!("≥ {TARGET_SHARE_OF_LIMIT}× grouped"),
        limit: format!("{} on {writers} connections", limit.describe("raw MariaDB")),
        ratio: format!("{:.3}× raw", rate / limit.beside()),
        met: Some(rate >= TARGET_SHARE_OF_LIMIT * limit.grouped),
    });
    summary.set(
        "mariadb_deliveries",
        json!({
            "per_s": num(rate),
            "limit_per_s": num(limit.beside()),
            "limit_single_per_s": num(limit.single),
            "limit_grouped_per_s": num(limit.grouped),
            "group_size": group.size,
            "service_groups": group.service_groups,
            "replicas": 2,
            "raw_connections": writers,
            "count": run.deliveries,
            "innodb_flush_log_at_trx_commit": flush,
        }),
    );
    Ok(())
}

/// The raw delivery writes for `n` checks × `k` events on a fresh MariaDB database, round by
/// round, on `writers` connections, `group` per transaction; deliveries per second.
async fn raw_mysql_deliveries(
    server: &str,
    n: usize,
    k: usize,
    payload: &str,
    group: usize,
    writers: usize,
) -> anyhow::Result<f64> {
    let db = BenchDatabase::create(server).await?;
    tokio::task::block_in_place(|| {
        let mut conn = db.conn()?;
        // The other services' rows: robots, the script, subscriptions, events.
        let step = 103;
        insert_script_steps(
            &mut conn,
            &[step, step * 10 + 1, step * 10 + 2, step * 10 + 3],
        )?;
        insert_robots(&mut conn, (0..n).map(delivery_robot))?;
        insert_rows(
            &mut conn,
            "event_subscription",
            &["id", "robot_id"],
            (0..n).map(|i| vec![raw_subscription(i as i64), delivery_robot(i)]),
        )?;
        let template_id = insert_template(&mut conn)?;
        let now = chrono::Utc::now();
        let creates: Vec<_> = delivery_checks(n, template_id, step)
            .iter()
            .map(|check| create_writes(check, now))
            .collect();
        let ids = seed(&mut conn, &creates)?;
        let deliveries: Vec<_> = (0..n * k).map(|t| nth_delivery(&ids, t)).collect();
        insert_rows(
            &mut conn,
            "incoming_event",
            &["id", "robot_id"],
            deliveries.iter().map(|d| vec![d.event_id, d.robot]),
        )?;
        let subscription_of =
            |d: &crate::writes::RawDelivery| raw_subscription(d.robot - delivery_robot(0));
        insert_rows(
            &mut conn,
            "outgoing_event",
            &["id", "source_event_id", "subscription_id"],
            deliveries
                .iter()
                .map(|d| vec![d.outgoing_id, d.event_id, subscription_of(d)]),
        )?;
        // Each check's deliveries on one connection, in order (as a check's changes are
        // serialised by its row lock in the service).
        let rate = run_grouped(
            &db,
            writers,
            n * k,
            group,
            |ticket| ticket % n,
            |ticket| delivery_writes(&deliveries[ticket], payload, chrono::Utc::now()),
        )?;
        let records: Option<i64> = conn.query_first("SELECT COUNT(*) FROM status_check_record")?;
        ensure!(
            records == Some((n * k) as i64),
            "the raw MariaDB delivery loop wrote {records:?} records of {}",
            n * k
        );
        Ok(rate)
    })
    .context("raw MariaDB deliveries")
}
