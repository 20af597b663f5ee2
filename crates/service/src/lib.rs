//! The status-check service. For now: loading the shipped templates and the `templates`
//! command; the HTTP service, storage and workers build on these.

#![forbid(unsafe_code)]

pub mod cli;
pub mod template_files;
