//! `templates test … --svg FILE`: a replay drawn by the timeline renderer (SPEC §15), the
//! same picture the support pages draw of a stored check.

use chrono::{DateTime, Utc};
use status_check_engine::lifecycle::Windows;
use status_check_engine::replay::{Replay, SampleEvent};
use status_check_engine::template::Template;
use status_check_engine::{CheckResult, RecordPhase};

use crate::support::past_window;
use crate::timeline::{CheckTimeline, TimelineRecord};

/// The replay as a timeline: the records are the events the replay took in (the skipped
/// ones are not recorded), at their event times; the windows are the template's defaults.
pub fn replay_timeline(
    template: &Template,
    events: &[SampleEvent],
    replay: &Replay,
) -> CheckTimeline {
    let windows = Windows::compute(0, 0, &template.poller, replay.anchor).ok();
    // The replay's PAST steps follow the past events by (time, id); FUTURE steps the file.
    let mut past: Vec<(usize, &SampleEvent)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.phase == RecordPhase::Past)
        .collect();
    past.sort_by_key(|(i, e)| (e.created_at, e.id.unwrap_or(*i as i64 + 1)));
    let future = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.phase == RecordPhase::Future);
    let steps = replay.steps.iter().filter(|s| s.event.is_some());
    let mut records = Vec::new();
    for ((i, event), step) in past.into_iter().chain(future).zip(steps) {
        if step.skipped.is_some() {
            continue;
        }
        records.push(TimelineRecord {
            order: u32::try_from(records.len() + 1).unwrap_or(u32::MAX),
            phase: event.phase,
            event_name: event.name.clone(),
            incoming_event_id: Some(event.id.unwrap_or(i as i64 + 1)),
            event_at: Some(event.created_at),
            recorded_at: event.created_at.max(replay.anchor),
            result: step.result,
        });
    }
    let deadline = windows.as_ref().and_then(|w| w.until);
    let decided_at_deadline = replay.steps.last().is_some_and(|s| s.step == "DEADLINE");
    let ended_at: DateTime<Utc> = if decided_at_deadline {
        deadline.unwrap_or(replay.anchor)
    } else {
        records.last().map_or(replay.anchor, |r| r.recorded_at)
    };
    CheckTimeline {
        id: None,
        robot_id: None,
        template: template.name.to_string(),
        template_version: i64::from(template.version),
        planned_at: None,
        created_at: replay.anchor,
        past: windows
            .as_ref()
            .map_or(crate::timeline::PastWindow::None, past_window),
        deadline,
        poll_until_end: template.poll_until_end,
        records,
        phase: replay.phase,
        result: if replay.phase.is_final() {
            replay.result
        } else {
            CheckResult::Pending
        },
        next_step: replay
            .next_command
            .as_ref()
            .map(|c| format!("of the {c} command")),
        ended_at: Some(ended_at),
        notifications: Vec::new(),
        now: None,
    }
}
