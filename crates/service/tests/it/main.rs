//! The service's one integration-test binary: real HTTP, real SQLite and MariaDB, real
//! processes. Shared helpers live in `support`.

mod megazord_client;
mod micro_managers_client;
mod store;
mod support;
mod templates_cli;
