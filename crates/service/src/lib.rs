//! The status-check service: HTTP API, storage, upstream clients and workers around the
//! pure rules engine (`status-check-engine`).

#![forbid(unsafe_code)]

pub mod app;
pub mod backtest;
pub mod checks;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deliveries;
pub mod deps;
pub mod dev;
pub mod http;
pub mod jobs;
pub mod monitors;
pub mod notify;
pub mod queue;
pub mod readiness;
pub mod status_message;
pub mod store;
pub mod subscriptions;
pub mod support;
pub mod telemetry;
pub mod template_files;
pub mod templates;
pub mod timeline;
pub mod upstream;
pub mod workers;

pub use app::App;
pub use config::Config;
pub use deps::Deps;
