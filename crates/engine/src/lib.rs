//! The rules engine of status-check: templates, CEL rules, every lifecycle decision and the
//! monitors' sessions and windows, as pure code. Nothing here does I/O or reads a clock: the
//! service passes in the time and the events, and carries out the effects this library
//! returns.

#![forbid(unsafe_code)]

pub mod history;
pub mod lifecycle;
pub mod model;
pub mod monitor;
pub mod replay;
pub mod rules;
pub mod template;

pub use history::History;
pub use model::{CheckPhase, CheckResult, Event, Record, RecordPhase};
pub use rules::Limits;
pub use template::{Template, TemplateDefinition, TemplateError, TemplateName};
