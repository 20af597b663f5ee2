//! What the support pages and the internal check read show (SPEC §15), gathered from the
//! store and shaped for the timeline renderer: a check with its notifications, a monitor's
//! day with its windows and alarms.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use status_check_engine::lifecycle::Windows;
use utoipa::ToSchema;

use crate::store::{
    DynStore, Provenance, StoreError, StoredCheck, StoredMonitor, StoredNotification,
};
use crate::timeline::{
    AlarmMark, CheckTimeline, MonitorDay, PastWindow, TimelineNotification, TimelineRecord,
    WindowBar, WindowOutcome,
};

/// One notification to the robot (SPEC §15), as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationDto {
    pub notification_seq: i64,
    /// When it was decided (written with the change).
    pub created_at: String,
    /// When the robot's queue accepted it; null while it is still being sent.
    pub sent_at: Option<String>,
    /// The check's phase, result and next step the message carried.
    #[schema(example = "COMPLETED")]
    pub phase: String,
    #[schema(example = "PASS")]
    pub result: String,
    pub next_step_id: Option<i64>,
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl NotificationDto {
    /// The outbox row with the state its payload carried (SPEC §3.7: `payload.phase`, …).
    pub fn from_stored(stored: &StoredNotification) -> NotificationDto {
        let body: serde_json::Value = serde_json::from_str(&stored.payload).unwrap_or_default();
        let field = |name: &str| body["payload"][name].as_str().unwrap_or("").to_owned();
        NotificationDto {
            notification_seq: stored.seq,
            created_at: time(stored.created_at),
            sent_at: stored.sent_at.map(time),
            phase: field("phase"),
            result: field("result"),
            next_step_id: body["payload"]["nextStepId"].as_i64(),
        }
    }
}

/// A check with what the pages show beside it.
#[derive(Debug, Clone)]
pub struct CheckView {
    pub check: StoredCheck,
    pub notifications: Vec<NotificationDto>,
    /// The template version's `pollUntilEnd` (false when the version is gone).
    pub poll_until_end: bool,
}

/// Any robot's check with its notifications; `None` when there is no such check.
pub async fn load_check(store: &DynStore, id: i64) -> Result<Option<CheckView>, StoreError> {
    let Some(check) = store.get_check(id).await? else {
        return Ok(None);
    };
    let notifications = store
        .check_notifications(id)
        .await?
        .iter()
        .map(NotificationDto::from_stored)
        .collect();
    let poll_until_end = store
        .template_by_id(check.template_id)
        .await?
        .and_then(|template| template.definition.ok())
        .is_some_and(|definition| definition.poll_until_end);
    Ok(Some(CheckView {
        check,
        notifications,
        poll_until_end,
    }))
}

/// The look-back of a check's windows.
pub fn past_window(windows: &Windows) -> PastWindow {
    match (windows.has_past, windows.since) {
        (false, _) => PastWindow::None,
        (true, Some(since)) => PastWindow::Since(since),
        (true, None) => PastWindow::Unbounded,
    }
}

/// The check as the renderer draws it; `now` is drawn while it is open.
pub fn check_timeline(view: &CheckView, now: DateTime<Utc>) -> CheckTimeline {
    let check = &view.check;
    let parse = |text: &str| {
        DateTime::parse_from_rfc3339(text)
            .map(|t| t.to_utc())
            .unwrap_or(check.updated_at)
    };
    CheckTimeline {
        id: Some(check.id),
        robot_id: Some(check.key.robot_id),
        template: check.template_name.clone(),
        template_version: check.template_version,
        planned_at: Some(check.key.planned_at),
        created_at: check.windows.anchor,
        past: past_window(&check.windows),
        deadline: check.windows.until,
        poll_until_end: view.poll_until_end,
        records: check
            .records
            .iter()
            .map(|record| {
                // The store gives a record the Node service wrote (no event row) its
                // recording time as event time: show that it is not the event's.
                let unknown_time = check.provenance != Provenance::Own
                    && record.event.level.is_none()
                    && record.event.reference_id.is_none()
                    && record.event.created_at == record.created_at;
                TimelineRecord {
                    order: record.order,
                    phase: record.phase,
                    event_name: record.event.name.clone(),
                    incoming_event_id: (record.event.id > 0).then_some(record.event.id),
                    event_at: (!unknown_time).then_some(record.event.created_at),
                    recorded_at: record.created_at,
                    result: record.result,
                }
            })
            .collect(),
        phase: check.phase,
        result: check.result,
        next_step: check.next_step_id.map(|id| id.to_string()),
        ended_at: check.phase.is_final().then_some(check.updated_at),
        notifications: view
            .notifications
            .iter()
            .map(|n| TimelineNotification {
                seq: n.notification_seq,
                created_at: parse(&n.created_at),
                sent_at: n.sent_at.as_deref().map(parse),
                phase: n.phase.clone(),
                result: n.result.clone(),
                next_step_id: n.next_step_id,
            })
            .collect(),
        now: Some(now),
    }
}

/// What the page says about the monitor history this version keeps.
pub const MONITOR_HISTORY_NOTE: &str = "This version keeps the alarms (the actions outbox, \
     purged after the retention) and the open window; expired windows are drawn back from \
     their alarms (a full window length before each). Windows reset by an event, and the \
     watched events themselves, are not stored yet.";

/// A monitor's local day as the store keeps it. The one place that knows where a day's
/// history comes from: when window history is stored (SPEC §12 "History"), it is read here.
pub async fn monitor_day(
    store: &DynStore,
    stored: &StoredMonitor,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<MonitorDay, StoreError> {
    let monitor = &stored.monitor;
    let session = monitor.session_on(date);
    let alarms = store
        .session_alarms(monitor.robot_id(), monitor.rule_id().as_str(), date)
        .await?;
    let length = monitor.window().as_delta();
    let mut windows: Vec<WindowBar> = Vec::new();
    for alarm in &alarms {
        if windows
            .last()
            .is_some_and(|w| w.number == alarm.window_number)
        {
            continue;
        }
        let start = alarm.window_end - length;
        windows.push(WindowBar {
            number: alarm.window_number,
            start: session.map_or(start, |s| start.max(s.start)),
            end: alarm.window_end,
            outcome: WindowOutcome::Expired,
        });
    }
    if let Some(open) = stored.state.window
        && open.session_date == date
    {
        windows.push(WindowBar {
            number: open.window_number,
            start: open.window_start,
            end: open.window_end,
            outcome: WindowOutcome::Open,
        });
    }
    Ok(MonitorDay {
        robot_id: monitor.robot_id(),
        rule_id: monitor.rule_id().to_string(),
        event_type: monitor.event_type().to_owned(),
        date,
        session: session.map(|s| (s.start, s.end)),
        windows,
        events: Vec::new(),
        alarms: alarms
            .iter()
            .map(|alarm| AlarmMark {
                window_number: alarm.window_number,
                reference_id: alarm.reference_id.clone(),
                event_name: alarm.event_name.clone(),
                at: alarm.window_end,
                sent_at: alarm.sent_at,
            })
            .collect(),
        now: Some(now),
    })
}
