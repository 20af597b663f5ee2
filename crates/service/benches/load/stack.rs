//! The stack and its clients: the service and simulators on a fresh database, and the HTTP
//! client that creates checks through the API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use status_check::clock::SystemClock;
use status_check::dev::{DEV_ROBOT_QUEUE_PREFIX, DEV_STATUS_QUEUE, Stack, StackOptions};
use status_check::queue::DynQueue;
use status_check::store::DynStore;
use status_check_sim::megazord::MegazordRows;

use super::*;

/// The service with `roles` and its simulators, on the database `database_url` names (a
/// fresh SQLite file, or a MySQL database that `megazord_rows` keeps the other services' rows
/// of).
pub(super) async fn build_stack(
    database_url: &str,
    roles: &str,
    queue: DynQueue,
    store: Option<DynStore>,
    megazord_rows: Option<Arc<dyn MegazordRows>>,
) -> anyhow::Result<Stack> {
    build_stack_with(database_url, roles, queue, store, megazord_rows, &[]).await
}

/// [`build_stack`] with configuration keys of the scenario's own.
pub(super) async fn build_stack_with(
    database_url: &str,
    roles: &str,
    queue: DynQueue,
    store: Option<DynStore>,
    megazord_rows: Option<Arc<dyn MegazordRows>>,
    extra: &[(&str, &str)],
) -> anyhow::Result<Stack> {
    let mut env: BTreeMap<String, String> = [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("DATABASE_URL", database_url.to_owned()),
        ("TEMPLATES_DIR", templates_dir().display().to_string()),
        ("ROLES", roles.to_owned()),
        // The load's robots open many checks at one step each: not what the per-robot cap
        // (SPEC §13) is for.
        ("OPEN_CHECKS_PER_STEP", "1000000000".to_owned()),
        ("STATUS_QUEUE_ADDRESS", DEV_STATUS_QUEUE.to_owned()),
        ("ROBOT_QUEUE_ADDRESS", DEV_ROBOT_QUEUE_PREFIX.to_owned()),
        ("CONSUMER_WAIT_SECS", "1".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The consumer's batch is the raw delivery limit's group (LOAD_GROUP_SIZE may set both).
    if let Some((key, _)) = consumer_batch_key() {
        env.insert(key.to_owned(), consumer_group()?.size.to_string());
    }
    for (key, value) in extra {
        env.insert((*key).to_owned(), (*value).to_owned());
    }
    Stack::build(StackOptions {
        env,
        store,
        queue,
        clock: Arc::new(SystemClock),
        mailbox: None,
        sim_ports: (0, 0),
        megazord_rows,
    })
    .await
}

/// The demo step (at the Micro-Managers simulator) that runs `template`.
pub(super) fn demo_step(stack: &Stack, template: &str) -> anyhow::Result<i64> {
    stack
        .demo_steps
        .iter()
        .find(|s| s.status_check_name == template)
        .and_then(|s| s.step_id)
        .with_context(|| format!("no demo step runs {template}"))
}

pub(super) fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()?)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct CreatedDto {
    pub(super) id: i64,
    pub(super) phase: String,
    pub(super) subscription_id: Option<i64>,
}

/// `POST /v1/status-check/check` as robot `robot`; the check when the answer is 201.
async fn post_check(
    client: &reqwest::Client,
    url: &str,
    username: &str,
    robot: i64,
    step: i64,
    scheduled: i64,
) -> Result<CreatedDto, String> {
    let response = client
        .post(url)
        .header("x-consumer-id", "1")
        .header("x-consumer-username", username)
        .header("x-authenticated-userid", robot.to_string())
        .json(&json!({
            "stepId": step, "scheduledId": scheduled,
            "scriptVersionId": SCRIPT_VERSION_ID, "plannedAt": PLANNED_AT,
        }))
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("POST body: {e}"))?;
    if status != StatusCode::CREATED {
        return Err(format!(
            "POST answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("POST answer: {e}"))
}

/// Creates (robot = `robot_of(client, ticket)`, scheduledId = `scheduled_base + ticket`) and
/// keeps the ids.
pub(super) fn create_op(
    client: reqwest::Client,
    url: String,
    username: String,
    step: i64,
    scheduled_base: i64,
    robot_of: fn(usize, u64) -> i64,
    ids: Arc<Mutex<Vec<(i64, CreatedDto)>>>,
) -> Op {
    Arc::new(move |c, ticket| {
        let client = client.clone();
        let url = url.clone();
        let username = username.clone();
        let ids = ids.clone();
        Box::pin(async move {
            let robot = robot_of(c, ticket);
            let scheduled = scheduled_base + ticket as i64;
            let created = post_check(&client, &url, &username, robot, step, scheduled).await?;
            ids.lock().unwrap().push((robot, created));
            Ok(())
        })
    })
}
