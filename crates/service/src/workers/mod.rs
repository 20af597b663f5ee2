//! Background work: the status-queue consumer, the deadline scheduler, the monitor worker and
//! the relay (robot notifications, subscription removals, monitors' alarms). They move messages and time only — what a delivery or a deadline does to a check is
//! the use cases' (`crate::checks`). Each exposes `tick_once()` — one bounded step that a test
//! drives with a manual clock — and `run()`, which loops over it until shutdown. None imports
//! another. `App::run` starts each under the `supervisor`: a worker that panics stops the
//! replica.

pub mod consumer;
pub mod monitor;
pub mod relay;
pub mod scheduler;
pub mod supervisor;
mod visibility;
