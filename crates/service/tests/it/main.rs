//! The service's one integration-test binary: real HTTP, real SQLite and MariaDB, real
//! processes. Shared helpers live in `support`.

mod api;
mod backtest;
mod backtest_cli;
mod batching;
mod database_cli;
mod dev_command;
mod dropping_store;
mod fault_stack;
mod faults;
mod faults_database;
mod faults_queue;
mod faults_upstream;
mod harness;
mod http_limits;
mod journeys;
mod lifecycle;
mod megazord_client;
mod micro_managers_client;
mod monitor_api;
mod monitor_faults;
mod monitor_store;
mod monitors;
mod openapi;
mod queue;
mod schemas;
mod store;
mod store_timeouts;
mod support;
mod support_pages;
mod takeover;
mod templates_cli;
