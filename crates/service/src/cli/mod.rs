//! The command line: `status-check templates …` for now.

pub mod templates;

use clap::{Parser, Subcommand};

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
    /// Validate, list and try out rule templates.
    #[command(subcommand)]
    Templates(templates::TemplatesCommand),
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    match cli.command {
        Command::Templates(command) => templates::run(command, &mut std::io::stdout()),
    }
}
