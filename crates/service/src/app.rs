//! Building and running the service: one `App::build` that production and tests enter the
//! same way, and one `run` that serves until the shutdown token fires, then drains within a
//! bounded time.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use status_check_engine::Limits;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::checks::{CheckSettings, Checks};
use crate::clock::{Clock, SkewGuard, SystemClock};
use crate::config::Config;
use crate::deliveries::Deliveries;
use crate::deps::Deps;
use crate::http::server::{self, ConnectionLimits};
use crate::http::{self, AppState, Readiness};
use crate::monitors::{MonitorSettings, Monitors};
use crate::store::OutboxHandoff;
use crate::telemetry;
use crate::templates::TemplateRegistry;
use crate::upstream::megazord::HttpMegazord;
use crate::upstream::micro_managers::HttpMicroManagers;
use crate::upstream::step_cache::CachedMicroManagers;
use crate::upstream::{MicroManagers, UpstreamConfig};
use crate::workers::consumer::{Consumer, ConsumerConfig};
use crate::workers::monitor::{MonitorWorker, MonitorWorkerConfig};
use crate::workers::relay::{Relay, RelayConfig};
use crate::workers::scheduler::Scheduler;
use crate::workers::supervisor::Supervisor;
use crate::{notify, queue::Queue, queue::SqsQueue};

/// A built, bound, not yet running service.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown_timeout: Duration,
    state: AppState,
    workers: Workers,
    /// Measures this replica's clock against the database's (MySQL; `App::build` only).
    clock_guard: Option<SkewGuard>,
}

/// The background workers this replica runs.
pub struct Workers {
    /// The status queue's consumer (checks' deliveries, and monitors' without a suffix).
    pub consumer: Option<Consumer>,
    /// The monitors' own queue's consumer (`MONITORS_QUEUE_SUFFIX`).
    pub monitors_consumer: Option<Consumer>,
    pub scheduler: Option<Scheduler>,
    pub relay: Option<Relay>,
    pub monitor: Option<MonitorWorker>,
    consumer_drain: Duration,
}

impl App {
    /// Checks the upstreams' addresses, connects to the configured database, migrates, syncs
    /// the templates and binds the listener.
    pub async fn build(config: &Config) -> anyhow::Result<App> {
        // The upstreams first: a replica that could not run touches no database.
        let upstream = |key: &str, address: &Option<String>| -> anyhow::Result<UpstreamConfig> {
            let base = address
                .clone()
                .with_context(|| format!("configuration key {key}: required by serve"))?;
            Ok(config.upstream(base))
        };
        // A monitoring-only replica on its own queue never reads a step: it runs with only
        // the job service's environment, which has no Micro-Managers address.
        let needs_steps = config.roles.api
            || config.roles.scheduler
            || config
                .roles
                .consumes_status_queue(config.monitors_queue_suffix.as_deref());
        let micro_managers: Arc<dyn MicroManagers> =
            if needs_steps || config.micro_managers_address.is_some() {
                Arc::new(HttpMicroManagers::new(&upstream(
                    "MICRO_MANAGERS_ADDRESS",
                    &config.micro_managers_address,
                )?)?)
            } else {
                Arc::new(crate::upstream::NotConfigured("MICRO_MANAGERS_ADDRESS"))
            };
        let megazord = HttpMegazord::new(&upstream(
            "MEGAZORD_EVENTS_ADDRESS",
            &config.megazord_events_address,
        )?)?;
        let store = config.database.open_store().await?;
        // On MySQL every "now" is the database's (SPEC §3.6): measured once here, then every
        // CLOCK_SKEW_INTERVAL_MS while running. SQLite's clock is this process's.
        let clock_guard = SkewGuard::start(store.clone(), config.clock_skew)
            .await
            .context("cannot read the database's clock")?;
        let clock: Arc<dyn Clock> = match &clock_guard {
            Some(guard) => guard.clock(),
            None => Arc::new(SystemClock),
        };
        let queue: Option<Arc<dyn Queue>> = if config.roles.consumer || config.roles.relay {
            Some(Arc::new(
                SqsQueue::new(config.aws_region.clone(), config.aws_endpoint.clone()).await,
            ))
        } else {
            None
        };
        let deps = Deps {
            store,
            micro_managers,
            megazord: Arc::new(megazord),
            clock,
            queue,
        };
        let mut app = App::build_with(config, deps).await?;
        app.clock_guard = clock_guard.map(|guard| guard.reporting_to(app.state.readiness.clone()));
        Ok(app)
    }

    /// Builds with the given collaborators (the database must be migrated).
    pub async fn build_with(config: &Config, deps: Deps) -> anyhow::Result<App> {
        // The recorder first: what start-up counts (legacy or renumbered templates) is kept.
        let metrics = telemetry::metrics_handle();
        let limits = Limits {
            history_cap: config.history_cap,
            cost_budget: config.rule_cost_budget,
            ..Limits::default()
        };
        let templates = Arc::new(TemplateRegistry::new(
            deps.store.clone(),
            limits,
            config.template_cache_ttl,
        ));
        let readiness = Arc::new(Readiness::default());
        let count = templates
            .sync(&config.templates)
            .await
            .context("cannot load the shipped templates")?;
        readiness.set_templates_loaded();
        tracing::info!(count, from = %config.templates, "templates loaded");
        let deps = Deps {
            micro_managers: CachedMicroManagers::wrap(deps.micro_managers, config.step_cache),
            ..deps
        };
        let monitors = Arc::new(Monitors::new(
            &deps,
            MonitorSettings {
                stale_after: config.scheduler.stale_after,
                retention: config.outbox_retention,
                provider_name: config.alarm_provider_name.clone(),
                queue_suffix: config.monitors_queue_suffix.clone(),
                ..MonitorSettings::default()
            },
        ));
        if let Some(configured) = crate::monitors::files::load(&config.monitor_sources)? {
            let synced = monitors
                .sync_files(&configured)
                .await
                .context("cannot sync the monitors files")?;
            tracing::info!(
                created = synced.created,
                changed = synced.changed,
                unchanged = synced.unchanged,
                disabled = synced.disabled,
                "monitors synced"
            );
        }
        // A replica that relays takes the notifications its own writes commit in memory. (The
        // same condition as the relay's in `Workers::build`: rows handed to no relay would wait
        // out their lease.)
        let handoff = (config.roles.relay && config.robot_queue_address.is_some())
            .then(|| Relay::handoff_for(&notify::hostname()));
        let checks = Arc::new(
            Checks::new(
                &deps,
                templates,
                CheckSettings {
                    limits,
                    open_checks_per_step: config.open_checks_per_step,
                    hostname: notify::hostname().into(),
                    reconcile: config.reconcile,
                },
            )
            .with_handoff(handoff.clone()),
        );
        let state = AppState {
            checks: checks.clone(),
            monitors: monitors.clone(),
            internal_api_token: config
                .internal_api_token
                .as_ref()
                .map(|token| Arc::from(token.expose().as_str())),
            robot_consumer_username: config.robot_consumer_username.as_str().into(),
            metrics,
            readiness: readiness.clone(),
            request_timeout: config.http_request_timeout,
            docs_enabled: config.docs_enabled,
        };
        let workers = Workers::build(config, &checks, &monitors, deps.queue, &readiness, handoff)?;
        // Every replica listens: without the `api` role for `/health/*` and `/metrics` only.
        let router = if config.roles.api {
            http::router(state.clone())
        } else {
            http::ops_router(state.clone())
        };
        let listener = TcpListener::bind((config.host, config.port))
            .await
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        Ok(App {
            listener,
            router,
            limits: config.connection_limits,
            shutdown_timeout: config.shutdown_timeout,
            state,
            workers,
            clock_guard: None,
        })
    }

    /// Where the HTTP server listens (every replica does; see `http::ops_router`).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The HTTP port.
    pub fn port(&self) -> u16 {
        self.local_addr().map_or(0, |addr| addr.port())
    }

    /// The workers, for tests that drive them step by step (`tick_once`) instead of `run`.
    pub fn take_workers(&mut self) -> Workers {
        std::mem::replace(
            &mut self.workers,
            Workers {
                consumer: None,
                monitors_consumer: None,
                scheduler: None,
                relay: None,
                monitor: None,
                consumer_drain: producers_budget(self.shutdown_timeout),
            },
        )
    }

    /// The shared state, for tests that look behind the API.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and runs the workers until `shutdown` fires. Then, within the shutdown timeout:
    /// the consumer stops receiving and finishes (or leaves for redelivery) what it holds,
    /// HTTP stops accepting and drains, the scheduler and the monitor worker finish their
    /// current step — and only then the relay stops, having sent the notifications they
    /// committed (alarms and removals they queued are any relay's next claim).
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        // Fired by the caller, or by a worker that failed (`Supervisor`).
        let shutdown = shutdown.child_token();
        let supervisor = Supervisor::new(shutdown.clone());
        let tasks = tokio_util::task::TaskTracker::new();
        // The relay outlives the workers that write notifications while they drain: what
        // they commit is handed to it (leased to it) and sent before this replica exits,
        // rather than waiting out its lease for another replica's relay.
        let relay_tasks = tokio_util::task::TaskTracker::new();
        let relay_stop = CancellationToken::new();
        let Workers {
            consumer,
            monitors_consumer,
            scheduler,
            relay,
            monitor,
            consumer_drain,
        } = self.workers;
        for consumer in [consumer, monitors_consumer].into_iter().flatten() {
            let readiness = self.state.readiness.clone();
            let token = shutdown.clone();
            let queue = consumer.queue_label();
            readiness.set_consumer_running(queue, true);
            supervisor.spawn(&tasks, "consumer", async move {
                consumer.run(token, consumer_drain).await;
                readiness.set_consumer_running(queue, false);
            });
        }
        if let Some(scheduler) = scheduler {
            supervisor.spawn(&tasks, "scheduler", scheduler.run(shutdown.clone()));
        }
        if let Some(relay) = relay {
            supervisor.spawn(&relay_tasks, "relay", relay.run(relay_stop.clone()));
        }
        relay_tasks.close();
        if let Some(monitor) = monitor {
            supervisor.spawn(&tasks, "monitor", monitor.run(shutdown.clone()));
        }
        if let Some(guard) = self.clock_guard {
            supervisor.spawn(&tasks, "clock_guard", guard.run(shutdown.clone()));
        }
        // Histograms keep their samples until drained: drain them now and then, whoever scrapes.
        let metrics = self.state.metrics.clone();
        let upkeep = shutdown.clone();
        tasks.spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                tokio::select! {
                    _ = every.tick() => metrics.run_upkeep(),
                    () = upkeep.cancelled() => return,
                }
            }
        });
        tasks.close();
        // One shutdown budget for everything: HTTP and the workers drain at the same time,
        // from the moment the token fires.
        let fired = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                shutdown.cancelled().await;
                Instant::now()
            })
        };
        tracing::info!(addr = ?self.listener.local_addr().ok(), "serving");
        // Returns once `shutdown` fired and the connections drained (or were dropped after
        // the shutdown timeout).
        // The relay's last step gets the last tenth of the budget, whatever the others take:
        // HTTP, the consumer and the other workers drain within the rest.
        let producers_budget = producers_budget(self.shutdown_timeout);
        server::serve(
            self.listener,
            self.router,
            self.limits,
            shutdown.clone(),
            producers_budget,
        )
        .await;
        let fired = fired.await.unwrap_or_else(|_| Instant::now());
        let left = producers_budget.saturating_sub(fired.elapsed());
        let checks = self.state.checks.clone();
        let stopped = async { tokio::join!(tasks.wait(), checks.creates_finished()) };
        if tokio::time::timeout(left, stopped).await.is_err() {
            tracing::warn!("workers and creates did not finish within the shutdown timeout");
        }
        relay_stop.cancel();
        let left = self.shutdown_timeout.saturating_sub(fired.elapsed());
        if tokio::time::timeout(left, relay_tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("the relay did not finish within the shutdown timeout");
        }
        tracing::info!("stopped");
        let failed = supervisor.failed();
        if !failed.is_empty() {
            anyhow::bail!("stopped because a worker failed: {}", failed.join(", "));
        }
        Ok(())
    }
}

impl Workers {
    fn build(
        config: &Config,
        checks: &Arc<Checks>,
        monitors: &Arc<Monitors>,
        queue: Option<Arc<dyn Queue>>,
        readiness: &Arc<Readiness>,
        handoff: Option<Arc<OutboxHandoff>>,
    ) -> anyhow::Result<Workers> {
        let hostname: Arc<str> = notify::hostname().into();
        let queue_for = |role: &str| {
            queue
                .clone()
                .with_context(|| format!("the {role} role needs a queue"))
        };
        let suffix = config.monitors_queue_suffix.as_deref();
        // A delivery no check owns goes to the monitors' sessions.
        let deliveries = Arc::new(Deliveries::new(checks.clone(), monitors.clone()));
        let consumer_of = |consumer: ConsumerConfig| -> anyhow::Result<Consumer> {
            readiness.expect_consumer(consumer.queue_label);
            readiness.set_receive_failure_grace(config.consumer_unready_after);
            Ok(Consumer::new(
                queue_for("consumer")?,
                deliveries.clone(),
                consumer,
                readiness.clone(),
            ))
        };
        let status_queue = config.status_queue_address.as_deref();
        let consumer = match status_queue {
            Some(url) if config.roles.consumes_status_queue(suffix) => {
                Some(consumer_of(ConsumerConfig::from_config(url, config))?)
            }
            _ => None,
        };
        let monitors_consumer = match (status_queue, suffix) {
            (Some(url), Some(suffix)) if config.roles.consumes_monitors_queue(Some(suffix)) => {
                Some(consumer_of(ConsumerConfig::monitors_queue(
                    url, suffix, config,
                ))?)
            }
            _ => None,
        };
        let scheduler = config
            .roles
            .scheduler
            .then(|| Scheduler::new(checks.clone(), config.scheduler.clone(), &hostname));
        // Without a robot queue (a monitoring-only replica, as config allows) the relay still
        // removes subscriptions and posts alarms; it sends no notifications.
        let relay = if config.roles.relay {
            Some(
                Relay::new(
                    checks.clone(),
                    monitors.clone(),
                    queue_for("relay")?,
                    RelayConfig::from_config(config.robot_queue_address.clone(), config),
                    &hostname,
                )
                .with_handoff(handoff),
            )
        } else {
            None
        };
        let monitor = config.roles.monitor.then(|| {
            MonitorWorker::new(
                monitors.clone(),
                MonitorWorkerConfig {
                    scan_interval: config.monitor_scan_interval,
                },
                &hostname,
            )
        });
        Ok(Workers {
            consumer,
            monitors_consumer,
            scheduler,
            relay,
            monitor,
            consumer_drain: producers_budget(config.shutdown_timeout),
        })
    }
}

/// What of the shutdown budget HTTP, the consumer and the other workers drain within: all
/// but the last tenth, which is the relay's (it sends what they committed).
fn producers_budget(shutdown_timeout: Duration) -> Duration {
    shutdown_timeout.saturating_sub(shutdown_timeout / 10)
}
