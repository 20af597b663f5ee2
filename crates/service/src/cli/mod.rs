//! The command line: `serve`, `job`, `migrate`, `dev`, `templates …`.

pub mod dev;
mod replay_svg;
pub mod templates;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::App;
use crate::config::{Config, ConfigError, DatabaseConfig};

#[derive(Debug, Parser)]
#[command(
    name = "status-check",
    version,
    about = "Status checks for care robots"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (configuration from the environment; see docs/configuration.md).
    Serve,
    /// Run a monitoring-only replica (roles monitor, consumer, relay).
    ///
    /// `serve` with ROLES=monitor,consumer,relay: monitors' sessions and window ends, the
    /// status queue, alarms and subscription removals (docs/monitors.md). Configured like
    /// `serve`; ROLES is ignored.
    Job,
    /// Apply the database migrations and exit.
    Migrate,
    /// Try it out: the service with simulated upstreams and in-memory queues, seeded with a
    /// demo script and a demo monitor; prints `curl` lines to start a check and complete it,
    /// and to watch the monitor alarm.
    Dev(dev::DevArgs),
    /// Validate, list, try out and backtest rule templates.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
    /// Tooling for monitors files.
    #[command(subcommand)]
    Monitors(MonitorsCommand),
}

#[derive(Debug, Subcommand)]
pub enum MonitorsCommand {
    /// Print the JSON Schema of a monitors file (committed as docs/monitors.schema.json).
    Schema,
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Templates(command) => templates::run(command, &mut std::io::stdout()),
        Command::Monitors(MonitorsCommand::Schema) => {
            let schema = status_check_engine::monitor::files::file_schema();
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(0)
        }
        Command::Serve => runtime()?.block_on(serve(Config::from_sources)),
        Command::Job => runtime()?.block_on(serve(Config::for_job)),
        Command::Migrate => runtime()?.block_on(migrate()),
        Command::Dev(args) => runtime()?.block_on(dev::run(args)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Serves with the configuration `configure` makes of the environment (`job` sets its roles
/// and queue suffix).
async fn serve(configure: fn(Env) -> Result<Config, ConfigError>) -> anyhow::Result<i32> {
    let config = configure(std::env::vars().collect())?;
    config.database.start_logging();
    let app = App::build(&config).await?;
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    app.run(shutdown).await?;
    Ok(0)
}

type Env = std::collections::BTreeMap<String, String>;

/// Needs only the database (and logging) keys: no upstream or queue address.
async fn migrate() -> anyhow::Result<i32> {
    let config = DatabaseConfig::from_env()?;
    config.start_logging();
    config.open_store().await?;
    tracing::info!("migrations applied");
    Ok(0)
}

/// Cancels `token` on SIGTERM or SIGINT.
pub(crate) async fn cancel_on_signal(token: CancellationToken) {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
    token.cancel();
}
