//! The service wired to the upstream simulators (`status-check-sim`): what `status-check dev`
//! runs, and what the end-to-end tests and the load benchmarks build on.
//!
//! A [`Stack`] is the service (any store, any queue) plus a Micro-Managers and a Megazord
//! simulator on their own ports, seeded with one demo step per shipped template. The service
//! reaches the simulators over HTTP with its production clients; Megazord puts its envelopes
//! on the status queue through [`QueueSink`], so the queue can be in memory or SQS.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use status_check_engine::Limits;
use status_check_sim::megazord::{
    DEFAULT_LEVEL, JOBS_PROVIDER, MegazordRows, REAL_EVENT_SCHEMAS, ROBOT_PROVIDER,
};
use status_check_sim::{DemoStep, MegazordSim, MicroManagersSim, Now, RobotMailbox, StatusSink};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::clock::Clock;
use crate::config::{Config, MYSQL_KEYS};
use crate::deps::Deps;
use crate::queue::{DynQueue, MemoryQueue};
use crate::store::DynStore;
use crate::template_files::TemplateSource;
use crate::upstream::megazord::HttpMegazord;
use crate::upstream::micro_managers::HttpMicroManagers;

/// The status queue's address in the dev stack (in memory: any unique name would do).
pub const DEV_STATUS_QUEUE: &str = "http://memory.queue/status-check";
/// The robot queues' prefix in the dev stack.
pub const DEV_ROBOT_QUEUE_PREFIX: &str = "http://memory.queue/robot-";
/// The internal API's token in the dev stack, unless INTERNAL_API_TOKEN says another.
pub const DEV_INTERNAL_API_TOKEN: &str = "dev-internal-token";

/// Megazord's side of the status queue: sends each envelope to `url` on `queue`, or to
/// `${url}-${suffix}` for a subscription made with a queue suffix (an in-memory queue is made
/// on first use; on SQS the suffixed queue must exist, as in production).
pub struct QueueSink {
    pub queue: DynQueue,
    pub url: String,
}

#[async_trait]
impl StatusSink for QueueSink {
    async fn send(&self, suffix: Option<&str>, body: String) -> Result<(), String> {
        let url = match suffix {
            Some(suffix) => format!("{}-{suffix}", self.url),
            None => self.url.clone(),
        };
        self.queue
            .send(&url, &body, &BTreeMap::new())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

/// The robots' queues of an in-memory queue, read without taking messages off them.
pub struct MemoryMailbox {
    pub queue: Arc<MemoryQueue>,
    pub prefix: String,
}

#[async_trait]
impl RobotMailbox for MemoryMailbox {
    async fn messages(&self, robot_id: i64) -> Result<Vec<serde_json::Value>, String> {
        Ok(self
            .queue
            .messages(&format!("{}{robot_id}", self.prefix))
            .into_iter()
            .map(|m| serde_json::from_str(&m.body).unwrap_or(serde_json::Value::String(m.body)))
            .collect())
    }
}

/// What a [`Stack`] is built from.
pub struct StackOptions {
    /// Configuration keys (as in the environment). The upstream addresses are set to the
    /// simulators; everything else not given takes its default.
    pub env: BTreeMap<String, String>,
    /// The store (migrated); `None` connects to `DATABASE_URL` and migrates.
    pub store: Option<DynStore>,
    pub queue: DynQueue,
    pub clock: Arc<dyn Clock>,
    /// Where robots' notifications can be read, for the Megazord simulator's `/sim` route.
    pub mailbox: Option<Arc<dyn RobotMailbox>>,
    /// Ports of the Micro-Managers and Megazord simulators (0 picks free ones).
    pub sim_ports: (u16, u16),
    /// Where the Megazord simulator writes its own rows (a production-shaped test database).
    pub megazord_rows: Option<Arc<dyn MegazordRows>>,
}

/// The service and the simulators, built and bound; the service is not running yet.
pub struct Stack {
    pub app: App,
    pub config: Config,
    /// The service's store, for what a harness reads or checks behind the service's back.
    pub store: DynStore,
    pub micro_managers: MicroManagersSim,
    pub megazord: MegazordSim,
    pub micro_managers_addr: SocketAddr,
    pub megazord_addr: SocketAddr,
    /// One per shipped template (`TEMPLATES_DIR`, else built in), in name order (ids 101, 102, …).
    pub demo_steps: Vec<DemoStep>,
    /// Stops the simulators (the service stops with the token given to `App::run`).
    pub sims: CancellationToken,
}

impl Stack {
    /// Starts the simulators, then builds the service against them.
    pub async fn build(options: StackOptions) -> anyhow::Result<Stack> {
        let StackOptions {
            mut env,
            store,
            queue,
            clock,
            mailbox,
            sim_ports,
            megazord_rows,
        } = options;
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let bind = |port: u16| async move {
            TcpListener::bind((loopback, port))
                .await
                .with_context(|| format!("cannot listen on {loopback}:{port} for a simulator"))
        };
        let micro_managers_listener = bind(sim_ports.0).await?;
        let megazord_listener = bind(sim_ports.1).await?;
        let micro_managers_addr = micro_managers_listener.local_addr()?;
        let megazord_addr = megazord_listener.local_addr()?;
        env.insert(
            "MICRO_MANAGERS_ADDRESS".into(),
            format!("http://{micro_managers_addr}"),
        );
        env.insert(
            "MEGAZORD_EVENTS_ADDRESS".into(),
            format!("http://{megazord_addr}"),
        );
        let config = Config::from_sources(env)?;

        let templates = template_names(&config.templates)?;
        let micro_managers = MicroManagersSim::new();
        let demo_steps = micro_managers.seed_demo(templates.iter().map(String::as_str));
        let status_url = config
            .status_queue_address
            .clone()
            .unwrap_or_else(|| DEV_STATUS_QUEUE.to_string());
        let sink = QueueSink {
            queue: queue.clone(),
            url: status_url,
        };
        let sim_clock = clock.clone();
        let now: Now = Arc::new(move || sim_clock.now());
        let mut megazord = seed_megazord(MegazordSim::new(Arc::new(sink), now), &config.templates)?;
        if let Some(mailbox) = mailbox {
            megazord = megazord.with_mailbox(mailbox);
        }
        if let Some(rows) = megazord_rows {
            megazord = megazord.with_rows(rows);
        }
        let sims = CancellationToken::new();
        status_check_sim::spawn(
            micro_managers_listener,
            micro_managers.router(),
            sims.clone(),
        )?;
        status_check_sim::spawn(megazord_listener, megazord.router(), sims.clone())?;

        let store = match store {
            Some(store) => store,
            None => config.database.open_store().await?,
        };
        let upstream =
            |address: &Option<String>| config.upstream(address.clone().unwrap_or_default());
        let deps = Deps {
            store: store.clone(),
            micro_managers: Arc::new(HttpMicroManagers::new(&upstream(
                &config.micro_managers_address,
            ))?),
            megazord: Arc::new(HttpMegazord::new(&upstream(
                &config.megazord_events_address,
            ))?),
            clock,
            queue: Some(queue),
        };
        let app = App::build_with(&config, deps).await?;
        Ok(Stack {
            app,
            config,
            store,
            micro_managers,
            megazord,
            micro_managers_addr,
            megazord_addr,
            demo_steps,
            sims,
        })
    }
}

/// The simulated Megazord knowing what the real one knows that this service needs: the real
/// event schemas (NOTES.md), every event the shipped templates (`TEMPLATES_DIR`, or those
/// built in) depend on (level 10), and the providers of the job service's alarms and of a
/// robot's own events.
pub fn seed_megazord(
    megazord: MegazordSim,
    templates: &TemplateSource,
) -> anyhow::Result<MegazordSim> {
    let loaded = templates
        .load(&Limits::default())
        .with_context(|| format!("cannot read {templates}"))?;
    let dependencies = loaded.templates.iter().flat_map(|(_, template)| {
        let phases = [&template.past, &template.future];
        phases
            .into_iter()
            .flatten()
            .flat_map(|phase| phase.depends_on.clone())
            .collect::<Vec<_>>()
    });
    Ok(megazord
        .with_event_schemas(REAL_EVENT_SCHEMAS.iter().copied())
        .with_event_schemas(dependencies.map(|name| (name, DEFAULT_LEVEL)))
        .with_providers([JOBS_PROVIDER, ROBOT_PROVIDER]))
}

/// The names of the valid templates in `dir`, sorted, each once.
fn template_names(source: &TemplateSource) -> anyhow::Result<Vec<String>> {
    let loaded = source
        .load(&Limits::default())
        .with_context(|| format!("cannot read the templates folder {source}"))?;
    let mut names: Vec<String> = loaded
        .templates
        .iter()
        .map(|(_, template)| template.name.to_string())
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// Keys the dev stack sets itself, whatever the environment or `CONFIG_FILE` says: every
/// role, its own SQLite file (no MySQL key applies either), the in-memory queues and the
/// simulators' addresses.
const DEV_OWN_KEYS: [&str; 8] = [
    "CONFIG_FILE",
    "ROLES",
    "DATABASE_URL",
    "AWS_ENDPOINT",
    "STATUS_QUEUE_ADDRESS",
    "ROBOT_QUEUE_ADDRESS",
    "MICRO_MANAGERS_ADDRESS",
    "MEGAZORD_EVENTS_ADDRESS",
];

/// The configuration of `status-check dev`: the process environment over `CONFIG_FILE`, with
/// the database, the queues and the roles the dev stack needs in place of what they may say,
/// and the dev stack's defaults where neither says anything.
pub fn dev_env(database: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    // The file is read here, once: read again later, it would bring back what is set aside.
    let mut env = crate::config::merged(std::env::vars().collect())?;
    // Empty values count as unset, so the defaults below apply to them too.
    env.retain(|key, value| {
        let own = DEV_OWN_KEYS.contains(&key.as_str()) || MYSQL_KEYS.contains(&key.as_str());
        !own && !value.trim().is_empty()
    });
    env.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}", database.display()),
    );
    env.insert("STATUS_QUEUE_ADDRESS".into(), DEV_STATUS_QUEUE.into());
    env.insert("ROBOT_QUEUE_ADDRESS".into(), DEV_ROBOT_QUEUE_PREFIX.into());
    env.entry("HOST".into())
        .or_insert_with(|| "127.0.0.1".into());
    env.entry("LOG_FORMAT".into())
        .or_insert_with(|| "pretty".into());
    env.entry("INTERNAL_API_TOKEN".into())
        .or_insert_with(|| DEV_INTERNAL_API_TOKEN.into());
    // The in-memory queue answers at once; a short long-poll keeps shutdown quick.
    env.entry("CONSUMER_WAIT_SECS".into())
        .or_insert_with(|| "1".into());
    Ok(env)
}

/// Where the dev stack keeps its SQLite file: a fresh temporary folder per run, since the
/// simulators and the in-memory queues start empty too.
pub fn dev_database_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("status-check-dev-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    Ok(dir)
}
