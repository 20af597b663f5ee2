//! `status-check dev`: the service on a fresh SQLite file, in-memory queues, and simulators of
//! Micro-Managers and Megazord, seeded with a demo script and a demo monitor; prints how to try
//! them with `curl`.

use std::io::Write as _;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{SecondsFormat, TimeDelta, Utc};
use status_check_engine::monitor::{ActionDefinition, DailyDefinition, MonitorDefinition};
use status_check_sim::megazord::{NewIncoming, ROBOT_PROVIDER};
use tokio_util::sync::CancellationToken;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::dev::{
    DEV_INTERNAL_API_TOKEN, DEV_ROBOT_QUEUE_PREFIX, MemoryMailbox, Stack, StackOptions,
    dev_database_dir, dev_env,
};
use crate::queue::MemoryQueue;
use crate::telemetry;

/// The robot the printed commands act as.
pub const DEMO_ROBOT: i64 = 42;
/// The template the printed walk-through uses.
const DEMO_TEMPLATE: &str = "robot-is-charging";
/// The demo monitor of robot 42: this rule, watching this event in windows this long, all day.
pub const DEMO_MONITOR: &str = "demo-no-activity";
const DEMO_WATCHED: &str = "TOILET_ACTIVITY";
const DEMO_ALARM: &str = "NO_TOILET_ACTIVITY_ALARM";
const DEMO_WINDOW: &str = "20s";

#[derive(Debug, clap::Args)]
pub struct DevArgs {
    /// Port of the service; the Micro-Managers and Megazord simulators take the next two
    /// (0: free ports for all three). Default: `PORT` of the environment or `CONFIG_FILE`,
    /// else 8080.
    #[arg(long, env = "PORT")]
    pub port: Option<u16>,
}

pub async fn run(args: DevArgs) -> anyhow::Result<i32> {
    let dir = dev_database_dir()?;
    let database = dir.join("status-check.db");
    let mut env = dev_env(&database)?;
    if let Some(port) = args.port {
        env.insert("PORT".into(), port.to_string());
    }
    let probe = Config::from_sources(env.clone())?;
    telemetry::init_logging(&probe.database.log_level, probe.database.log_format);

    let queue = Arc::new(MemoryQueue::new());
    let sim_ports = match probe.port {
        0 => (0, 0),
        port => (
            port.checked_add(1).unwrap_or(0),
            port.checked_add(2).unwrap_or(0),
        ),
    };
    let stack = Stack::build(StackOptions {
        env,
        store: None,
        queue: queue.clone(),
        clock: Arc::new(SystemClock),
        mailbox: Some(Arc::new(MemoryMailbox {
            queue,
            prefix: DEV_ROBOT_QUEUE_PREFIX.into(),
        })),
        sim_ports,
        megazord_rows: None,
    })
    .await?;
    // The demo robot stopped charging 20 minutes ago: its check has to wait for a start.
    stack
        .megazord
        .post_incoming(
            DEMO_ROBOT,
            NewIncoming::named("CHARGING_STOPPED").at(Utc::now() - TimeDelta::minutes(20)),
        )
        .await
        .context("the simulated Megazord refused the demo's event")?;
    seed_monitor(&stack).await?;
    let mut text = walkthrough(&stack, &database.display().to_string());
    text.push_str(&monitor_walkthrough(&stack));
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    drop(out);

    let shutdown = CancellationToken::new();
    tokio::spawn(super::cancel_on_signal(shutdown.clone()));
    let Stack { app, sims, .. } = stack;
    let result = app.run(shutdown).await;
    sims.cancel();
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        tracing::warn!(error = %e, dir = %dir.display(), "cannot remove the dev database");
    }
    result.map(|()| 0)
}

/// The demo monitor: robot 42, an alarm after every quiet 20 s, all day (UTC).
async fn seed_monitor(stack: &Stack) -> anyhow::Result<()> {
    let definition = MonitorDefinition {
        event_type: Some(DEMO_WATCHED.to_owned()),
        window: Some(DEMO_WINDOW.to_owned()),
        daily: Some(DailyDefinition {
            start: Some("00:00".to_owned()),
            end: Some("24:00".to_owned()),
        }),
        actions: Some(vec![ActionDefinition {
            kind: Some("alarm".to_owned()),
            event_name: Some(DEMO_ALARM.to_owned()),
            level: None,
        }]),
        ..MonitorDefinition::default()
    };
    stack
        .app
        .state()
        .monitors
        .put(DEMO_ROBOT, DEMO_MONITOR, definition)
        .await
        .map(drop)
        .context("cannot seed the demo monitor")
}

/// How to watch the demo monitor alarm and how to keep it quiet.
fn monitor_walkthrough(stack: &Stack) -> String {
    let service = format!("http://127.0.0.1:{}", stack.app.port());
    let megazord = format!("http://{}", stack.megazord_addr);
    let token = shown_token(stack);
    format!(
        "A monitor watches robot {DEMO_ROBOT} for {DEMO_WATCHED} in rolling {DEMO_WINDOW} windows, all day (UTC);\n\
         each window that passes without one posts {DEMO_ALARM} to Megazord (docs/monitors.md):\n\n\
         5. Watch the alarms arrive, one per quiet {DEMO_WINDOW} (referenceId status-check:{DEMO_ROBOT}:{DEMO_MONITOR}:DATE:N):\n\
         curl -s '{megazord}/internal/v1/events/robots/{DEMO_ROBOT}/incomings?event_name={DEMO_ALARM}'\n\n\
         6. Keep it quiet: post the watched event (the window restarts from it):\n\
         curl -s {megazord}/internal/v1/events/robots/{DEMO_ROBOT}/incomings -H 'content-type: application/json' \\\n  \
         -d '{{\"providerName\": \"{ROBOT_PROVIDER}\", \"eventName\": \"{DEMO_WATCHED}\"}}'\n\n\
         7. The monitor with its session and open window (internal API):\n\
         curl -s {service}/internal/v1/monitors/{DEMO_ROBOT}/{DEMO_MONITOR} -H 'Authorization: Bearer {token}'\n\n\
         Its day as a picture (any user name, password {token}): {service}/internal/ui/monitors/{DEMO_ROBOT}/{DEMO_MONITOR}\n\
         Every check and monitor: {service}/internal/ui/\n\n\
         Without step 6 an alarm is posted every {DEMO_WINDOW}.\n\n"
    )
}

/// The internal token as the walk-through shows it: the dev default, or a placeholder for one
/// set in the environment (never printed).
fn shown_token(stack: &Stack) -> &'static str {
    match &stack.config.internal_api_token {
        Some(token) if token.expose() == DEV_INTERNAL_API_TOKEN => DEV_INTERNAL_API_TOKEN,
        _ => "$INTERNAL_API_TOKEN",
    }
}

/// What to paste, with this run's addresses.
fn walkthrough(stack: &Stack, database: &str) -> String {
    let service = format!("http://127.0.0.1:{}", stack.app.port());
    let micro_managers = format!("http://{}", stack.micro_managers_addr);
    let megazord = format!("http://{}", stack.megazord_addr);
    let robot_headers = format!(
        "-H 'x-consumer-id: 1' -H 'x-consumer-username: {}' -H 'x-authenticated-userid: {DEMO_ROBOT}'",
        stack.config.robot_consumer_username
    );
    let steps: Vec<String> = stack
        .demo_steps
        .iter()
        .map(|s| {
            let step = s.step_id.unwrap_or_default();
            format!("    step {step}: {}", s.status_check_name)
        })
        .collect();
    let mut text = format!(
        "\nstatus-check dev is running (Ctrl-C stops it).\n\
         \x20 service         {service}   (Swagger UI: {service}/docs)\n\
         \x20 Micro-Managers  {micro_managers}   (steps: GET /sim/steps, add one: POST /sim/steps)\n\
         \x20 Megazord        {megazord}\n\
         \x20 database        {database} (removed on exit)\n\
         \x20 demo script (every robot runs it):\n{}\n",
        steps.join("\n")
    );
    let planned = Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true);
    let Some(step) = stack
        .demo_steps
        .iter()
        .find(|s| s.status_check_name == DEMO_TEMPLATE)
        .and_then(|s| s.step_id)
    else {
        text.push_str(&format!(
            "\nStart a check as robot {DEMO_ROBOT} with a step above:\n\
             curl -s {service}/v1/status-check/check -H 'content-type: application/json' {robot_headers} \\\n  \
             -d '{{\"stepId\": STEP, \"scheduledId\": 1, \"scriptVersionId\": 789, \"plannedAt\": \"{planned}\"}}'\n"
        ));
        return text;
    };
    text.push_str(&format!(
        "\nRobot {DEMO_ROBOT} stopped charging 20 minutes ago. Try it:\n\n\
         1. Start a check at step {step} ({DEMO_TEMPLATE}) — it answers phase FUTURE, waiting up to 10 minutes:\n\
         curl -s {service}/v1/status-check/check -H 'content-type: application/json' {robot_headers} \\\n  \
         -d '{{\"stepId\": {step}, \"scheduledId\": 1, \"scriptVersionId\": 789, \"plannedAt\": \"{planned}\"}}'\n\n\
         2. The robot starts charging (the event goes to the simulated Megazord):\n\
         curl -s {megazord}/internal/v1/events/robots/{DEMO_ROBOT}/incomings -H 'content-type: application/json' \\\n  \
         -d '{{\"providerName\": \"{ROBOT_PROVIDER}\", \"eventName\": \"CHARGING_STARTED\"}}'\n\n\
         3. The check (id 1: the first of this run) is COMPLETED with result PASS:\n\
         curl -s {service}/v1/status-check/check/1 {robot_headers}\n\n\
         4. The robot was told its next step ({}, for pass):\n\
         curl -s {megazord}/sim/robots/{DEMO_ROBOT}/messages\n\n\
         The check as a picture (any user name, password {token}): {service}/internal/ui/checks/1\n\n\
         Without step 2 the check fails at its deadline and the robot is sent the fail step.\n\n",
        step * 10 + 1,
        token = shown_token(stack),
    ));
    text
}
