//! `templates backtest --svg-dir DIR`: each changed check's timeline as both versions saw it
//! (SPEC §14, §15), drawn by the timeline renderer the support pages use —
//! `check-{id}-stored.svg` from the stored rows, `check-{id}-candidate.svg` from the replay.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use status_check_engine::Template;
use status_check_engine::lifecycle::{Check, EndReason};

use crate::store::StoredCheck;
use crate::support::{past_window, stored_timeline, timeline_record};
use crate::timeline::{CheckTimeline, Zone, check_svg};

/// The two files of one changed check.
pub fn paths(dir: &Path, check_id: i64) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("check-{check_id}-stored.svg")),
        dir.join(format!("check-{check_id}-candidate.svg")),
    )
}

/// Writes both timelines of a changed check.
pub fn write(
    dir: &Path,
    check: &StoredCheck,
    stored_poll_until_end: bool,
    candidate: &Template,
    run: &Check,
    next_command: Option<&str>,
) -> std::io::Result<()> {
    let (stored_path, candidate_path) = paths(dir, check.id);
    let zone = Zone::utc();
    std::fs::write(
        stored_path,
        check_svg(&stored_timeline(check, stored_poll_until_end), &zone),
    )?;
    std::fs::write(
        candidate_path,
        check_svg(
            &candidate_timeline(check, candidate, run, next_command),
            &zone,
        ),
    )
}

fn candidate_timeline(
    check: &StoredCheck,
    candidate: &Template,
    run: &Check,
    next_command: Option<&str>,
) -> CheckTimeline {
    let records = run.history.records();
    let anchor = check.windows.anchor;
    let ended_at: Option<DateTime<Utc>> = match (run.phase.is_final(), run.end_reason) {
        (false, _) => None,
        (true, Some(EndReason::Deadline)) => check.windows.until.or(Some(anchor)),
        (true, _) => Some(records.last().map_or(anchor, |r| r.created_at.max(anchor))),
    };
    CheckTimeline {
        id: Some(check.id),
        robot_id: Some(check.key.robot_id),
        template: candidate.name.to_string(),
        template_version: i64::from(candidate.version),
        planned_at: Some(check.key.planned_at),
        created_at: anchor,
        past: past_window(&check.windows),
        deadline: check.windows.until,
        poll_until_end: candidate.poll_until_end,
        records: records.iter().map(|r| timeline_record(check, r)).collect(),
        phase: run.phase,
        result: run.result,
        next_step: next_command.map(|c| format!("of the {c} command")),
        ended_at,
        notifications: Vec::new(),
        now: None,
    }
}
