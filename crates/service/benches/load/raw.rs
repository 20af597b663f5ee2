//! Raw SQLite: the limits. Plain sqlx on a pool with the service's settings, writing the rows
//! the service writes; shared by (a), (b) and (c).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use status_check::store::Store as _;
use status_check::store::sql::{INSERT_CHECK, INSERT_CHECK_EXT, INSERT_POLLER};
use status_check::store::sqlite::SqliteStore;

use super::*;

/// A pool with the service's SQLite settings (store/sqlite/): WAL, synchronous NORMAL, a 5 s
/// busy timeout, foreign keys on; 8 connections, like the service's readers (its writes go
/// through one connection — the "one writer" runs model that).
pub(super) async fn service_like_pool(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(5))
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    Ok(SqlitePoolOptions::new()
        .max_connections(SERVICE_POOL)
        .connect_with(options)
        .await?)
}

/// A fresh database migrated by the service, opened as the service opens it, with one template
/// row for the checks to reference; returns the pool and the template id.
pub(super) async fn raw_database(path: &Path) -> anyhow::Result<(SqlitePool, i64)> {
    let store = SqliteStore::connect(&sqlite_url(path)).await?;
    store.migrate().await?;
    drop(store);
    let pool = service_like_pool(path).await?;
    let description = sqlx::query(
        "INSERT INTO status_check_description (name, description) VALUES ('raw-limit', '')",
    )
    .execute(&pool)
    .await?
    .last_insert_rowid();
    let template = sqlx::query(
        "INSERT INTO status_check_template (template_description_id, past_event_dependencies, \
         future_event_dependencies) VALUES (?, '[]', '[]')",
    )
    .bind(description)
    .execute(&pool)
    .await?
    .last_insert_rowid();
    Ok((pool, template))
}

/// What a raw check row holds.
pub(super) struct RawCheck {
    pub(super) robot: i64,
    pub(super) scheduled: i64,
    pub(super) anchor: DateTime<Utc>,
    pub(super) future_seconds: i64,
    /// The exact deadline (`None`: no pending deadline).
    pub(super) deadline: Option<DateTime<Utc>>,
}

/// Inserts one check's rows (status_check, ext, poller) as `create_check` does.
async fn insert_raw_check(
    tx: &mut sqlx::SqliteConnection,
    template_id: i64,
    check: &RawCheck,
    now: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    let now_ms = text_time(now);
    let now_s = text_time(floor_seconds(now));
    let planned = planned_at();
    let id = sqlx::query(INSERT_CHECK)
        .bind(check.robot)
        .bind(template_id)
        .bind("FUTURE")
        .bind(Some(70_000_000 + check.scheduled))
        .bind(Some("PENDING"))
        .bind(103_i64)
        .bind(None::<i64>)
        .bind(SCRIPT_VERSION_ID)
        .bind(check.scheduled)
        .bind(text_time(planned))
        .bind(&now_s)
        .bind(&now_s)
        .execute(&mut *tx)
        .await?
        .last_insert_rowid();
    sqlx::query(INSERT_CHECK_EXT)
        .bind(id)
        .bind(check.robot)
        .bind(103_i64)
        .bind(check.scheduled)
        .bind(text_time(planned))
        .bind(text_time(check.anchor))
        .bind(3600_i64)
        .bind(check.future_seconds)
        .bind(1031_i64)
        .bind(1032_i64)
        .bind(Some(1033_i64))
        .bind(&now_ms)
        .bind(&now_ms)
        .bind(check.deadline.map(text_time))
        .bind(None::<String>)
        .bind(None::<String>)
        .execute(&mut *tx)
        .await?;
    let until = check.anchor + TimeDelta::seconds(check.future_seconds);
    sqlx::query(INSERT_POLLER)
        .bind(id)
        .bind(text_time(floor_seconds(check.anchor - TimeDelta::hours(1))))
        .bind(text_time(floor_seconds(until) + TimeDelta::seconds(1)))
        .bind(&now_s)
        .bind(&now_s)
        .execute(&mut *tx)
        .await?;
    Ok(id)
}

/// Bulk-inserts checks in large transactions (set-up, not measured); returns their ids.
pub(super) async fn seed_raw_checks(
    pool: &SqlitePool,
    template_id: i64,
    checks: impl Iterator<Item = RawCheck>,
) -> anyhow::Result<Vec<i64>> {
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    for check in checks {
        ids.push(insert_raw_check(&mut tx, template_id, &check, now).await?);
        if ids.len() % 10_000 == 0 {
            tx.commit().await?;
            tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        }
    }
    tx.commit().await?;
    Ok(ids)
}

/// `op` with one writer at a time: each operation holds an async mutex (what a store that
/// funnels write transactions through one writer would do), so the pool's connections never
/// wait for SQLite's write lock in its busy handler (which sleeps 1, 2, 5, 10, … ms per try).
pub(super) fn serialised(op: Op) -> Op {
    let writer = Arc::new(tokio::sync::Mutex::new(()));
    Arc::new(move |client, ticket| {
        let (op, writer) = (op.clone(), writer.clone());
        Box::pin(async move {
            let _turn = writer.lock().await;
            op(client, ticket).await
        })
    })
}

/// (a)(i): one create's rows in one `BEGIN IMMEDIATE` transaction.
pub(super) fn raw_create_op(pool: SqlitePool, template_id: i64, scheduled_base: i64) -> Op {
    Arc::new(move |client, ticket| {
        let pool = pool.clone();
        Box::pin(async move {
            let now = Utc::now();
            let check = RawCheck {
                robot: client as i64 + 1,
                scheduled: scheduled_base + ticket as i64,
                anchor: now,
                future_seconds: 600,
                deadline: Some(now + TimeDelta::seconds(600)),
            };
            let mut tx = pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| e.to_string())?;
            insert_raw_check(&mut tx, template_id, &check, now)
                .await
                .map_err(|e| e.to_string())?;
            tx.commit().await.map_err(|e| e.to_string())
        })
    })
}
