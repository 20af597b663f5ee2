//! Background work: the status-queue consumer, the deadline scheduler and the notification
//! relay. Each exposes `tick_once()` — one bounded step that a test drives with a manual
//! clock — and `run()`, which loops over it until shutdown.

pub mod consumer;
pub mod relay;
pub mod scheduler;

use std::sync::Arc;

use status_check_engine::lifecycle::{Check, Transition, Windows};
use status_check_engine::template::PollerDefaults;
use status_check_engine::{History, Limits};

use crate::store::{CheckUpdate, StoredCheck};
use crate::templates::LoadedTemplate;

/// Rebuilds the engine's view of a stored check; `None` for a check of the Node service not
/// yet adopted (its next steps are unknown, so nothing may decide it).
pub fn engine_check(
    stored: &StoredCheck,
    template: &LoadedTemplate,
    limits: Limits,
) -> Option<Check> {
    let windows = Windows::compute(
        stored.windows.past_seconds,
        stored.windows.future_seconds,
        &PollerDefaults::default(),
        stored.windows.anchor,
    )
    .unwrap_or(Windows {
        anchor: stored.windows.anchor,
        has_past: false,
        since: stored.polling_since,
        until: stored.polling_until,
    });
    Some(Check {
        robot_id: stored.key.robot_id,
        planned_at: stored.key.planned_at,
        windows,
        next_steps: stored.next_steps?,
        poll_until_end: template.template.poll_until_end,
        phase: stored.phase,
        result: stored.result,
        next_step_id: stored.next_step_id,
        history: History::from_records(stored.records.clone()),
        end_reason: None,
        limits,
    })
}

/// What to write after a decision: the new state, the appended records, and a notification
/// when something the robot sees changed.
pub fn update_from(check: &Check, transition: &Transition, release_lease: bool) -> CheckUpdate {
    let records = check.history.records();
    CheckUpdate {
        phase: check.phase,
        result: check.result,
        next_step_id: check.next_step_id,
        new_records: records[records.len() - transition.appended..].to_vec(),
        release_lease,
        notify: transition.changed,
    }
}

/// Shared by the workers: how a notification body is rendered.
pub fn renderer(hostname: Arc<str>) -> impl Fn(&StoredCheck, i64) -> String + Send + Sync {
    move |check, seq| crate::notify::render(check, seq, &hostname)
}
