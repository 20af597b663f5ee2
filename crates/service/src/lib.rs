//! The status-check service: HTTP API, storage, upstream clients and workers around the
//! pure rules engine (`status-check-engine`).

#![forbid(unsafe_code)]

pub mod cli;
pub mod store;
pub mod template_files;
pub mod upstream;
