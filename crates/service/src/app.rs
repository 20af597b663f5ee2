//! Building and running the service: one `App::build` that production and tests enter the
//! same way, and one `run` that serves until the shutdown token fires, then drains within a
//! bounded time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use status_check_engine::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::checks::Checks;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::http::{self, AppState, Readiness};
use crate::store::{self, DynStore};
use crate::telemetry;
use crate::templates::TemplateRegistry;
use crate::upstream::megazord::HttpMegazord;
use crate::upstream::micro_managers::HttpMicroManagers;
use crate::upstream::{Megazord, MicroManagers, UpstreamConfig};

/// The collaborators of an app; tests put in their own.
pub struct Deps {
    pub store: DynStore,
    pub micro_managers: Arc<dyn MicroManagers>,
    pub megazord: Arc<dyn Megazord>,
    pub clock: Arc<dyn Clock>,
}

/// A built, bound, not yet running service.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    shutdown_timeout: Duration,
    state: AppState,
}

impl App {
    /// Connects to the configured database and upstreams, migrates, syncs the templates and
    /// binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        let store = store::connect(config.database_url.expose())
            .await
            .context("cannot connect to the database")?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        let upstream = |key: &str, address: &Option<String>| -> anyhow::Result<UpstreamConfig> {
            let base = address
                .clone()
                .with_context(|| format!("configuration key {key}: required by serve"))?;
            let mut upstream = UpstreamConfig::new(base);
            upstream.timeout = config.upstream_timeout;
            upstream.retries = config.upstream_retries;
            Ok(upstream)
        };
        let micro_managers = HttpMicroManagers::new(&upstream(
            "MICRO_MANAGERS_ADDRESS",
            &config.micro_managers_address,
        )?)?;
        let megazord = HttpMegazord::new(&upstream(
            "MEGAZORD_EVENTS_ADDRESS",
            &config.megazord_events_address,
        )?)?;
        let deps = Deps {
            store,
            micro_managers: Arc::new(micro_managers),
            megazord: Arc::new(megazord),
            clock: Arc::new(SystemClock),
        };
        App::build_with(config, deps).await
    }

    /// Builds with the given collaborators (the database must be migrated).
    pub async fn build_with(config: &Config, deps: Deps) -> anyhow::Result<App> {
        let limits = Limits {
            history_cap: config.history_cap,
            ..Limits::default()
        };
        let templates = Arc::new(TemplateRegistry::new(
            deps.store.clone(),
            limits,
            config.template_cache_ttl,
        ));
        let readiness = Arc::new(Readiness::default());
        let count = templates
            .sync_dir(&config.templates_dir)
            .await
            .context("cannot load the shipped templates")?;
        readiness.set_templates_loaded();
        tracing::info!(count, dir = %config.templates_dir.display(), "templates loaded");
        let checks = Arc::new(Checks {
            store: deps.store,
            templates,
            micro_managers: deps.micro_managers,
            megazord: deps.megazord,
            clock: deps.clock,
            limits,
        });
        let state = AppState {
            checks,
            robot_consumer_username: config.robot_consumer_username.as_str().into(),
            metrics: telemetry::metrics_handle(),
            readiness,
        };
        let router = http::router(state.clone());
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        Ok(App {
            listener,
            router,
            shutdown_timeout: config.shutdown_timeout,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// The shared state, for tests that look behind the API.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` fires, then stops accepting and drains in-flight requests for at
    /// most the configured shutdown timeout.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "serving");
        let token = shutdown.clone();
        let server = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { token.cancelled().await });
        let server = server.into_future();
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result.context("the HTTP server failed")?,
            () = shutdown.cancelled() => {
                match tokio::time::timeout(self.shutdown_timeout, &mut server).await {
                    Ok(result) => result.context("the HTTP server failed")?,
                    Err(_) => tracing::warn!(
                        timeout_secs = self.shutdown_timeout.as_secs(),
                        "drain timed out; dropping the remaining connections"
                    ),
                }
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}
