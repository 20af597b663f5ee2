//! What the support pages and the internal check read show (SPEC §15), gathered from the
//! store and shaped for the timeline renderer: a check with its notifications, a monitor's
//! day with its windows and alarms.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use status_check_engine::Record;
use status_check_engine::lifecycle::Windows;
use utoipa::ToSchema;

use crate::checks::view::time;
use crate::store::{
    DynStore, Provenance, StoreError, StoredCheck, StoredMonitor, StoredNotification, WindowClose,
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
    /// When the robot's queue accepted it; null while it is still being sent, or when it was
    /// given up.
    pub sent_at: Option<String>,
    /// Sends tried so far (0 before the first), and the last failed one's error.
    pub attempts: i64,
    pub last_error: Option<String>,
    /// Given up (dead-lettered, SPEC §13): it failed too often and will never be sent.
    pub given_up: bool,
    /// The check's phase, result and next step the message carried.
    #[schema(example = "COMPLETED")]
    pub phase: String,
    #[schema(example = "PASS")]
    pub result: String,
    pub next_step_id: Option<i64>,
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
            attempts: stored.attempts,
            last_error: stored.last_error.clone(),
            given_up: stored.given_up,
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
        notifications: view
            .notifications
            .iter()
            .map(|n| TimelineNotification {
                seq: n.notification_seq,
                created_at: parse(&n.created_at),
                sent_at: n.sent_at.as_deref().map(parse),
                given_up: n.given_up.then(|| {
                    format!(
                        "given up after {} attempt{}: {}",
                        n.attempts,
                        if n.attempts == 1 { "" } else { "s" },
                        n.last_error.as_deref().unwrap_or("no error kept")
                    )
                }),
                phase: n.phase.clone(),
                result: n.result.clone(),
                next_step_id: n.next_step_id,
            })
            .collect(),
        now: Some(now),
        ..stored_timeline(check, view.poll_until_end)
    }
}

/// A stored check as the renderer draws it, without its notifications and undrawn `now`.
pub(crate) fn stored_timeline(check: &StoredCheck, poll_until_end: bool) -> CheckTimeline {
    CheckTimeline {
        id: Some(check.id),
        robot_id: Some(check.key.robot_id),
        template: check.template_name.clone(),
        template_version: check.template_version,
        planned_at: Some(check.key.planned_at),
        created_at: check.windows.anchor,
        past: past_window(&check.windows),
        deadline: check.windows.until,
        poll_until_end,
        records: check
            .records
            .iter()
            .map(|record| timeline_record(check, record))
            .collect(),
        phase: check.phase,
        result: check.result,
        next_step: check.next_step_id.map(|id| id.to_string()),
        ended_at: check.phase.is_final().then_some(check.updated_at),
        notifications: Vec::new(),
        now: None,
    }
}

/// What the page says about the monitor history it shows.
pub const MONITOR_HISTORY_NOTE: &str = "Each window as the service kept it (reset by a watched \
     event, expired with its alarm, cut by the session's end, stopped by a change), for as long \
     as sent notifications are kept (OUTBOX_RETENTION_SECS); the marks are the watched events \
     that reset a window.";

/// A monitor's local day as the store keeps it: the windows of that day's session with how
/// each ended (SPEC §12 "History"), the events that reset them, and the alarms posted.
pub async fn monitor_day(
    store: &DynStore,
    stored: &StoredMonitor,
    date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<MonitorDay, StoreError> {
    let monitor = &stored.monitor;
    let (robot_id, rule_id) = (monitor.robot_id(), monitor.rule_id().as_str());
    let kept = store.monitor_windows(robot_id, rule_id, date).await?;
    let alarms = store.session_alarms(robot_id, rule_id, date).await?;
    // A day whose session was reopened (the monitor changed) keeps both openings: the span
    // drawn runs from the first's start to the last's end.
    let session = kept
        .first()
        .zip(kept.last())
        .map(|(first, last)| (first.session_start, last.session_end))
        .or_else(|| monitor.session_on(date).map(|s| (s.start, s.end)));
    let windows = kept
        .iter()
        .map(|w| WindowBar {
            number: w.number,
            start: w.start,
            end: w.end,
            outcome: match w.ending {
                None => WindowOutcome::Open,
                Some(WindowClose::Reset) => WindowOutcome::Reset,
                Some(WindowClose::Expired) => WindowOutcome::Expired,
                Some(WindowClose::SessionEnded) => WindowOutcome::SessionEnded,
                Some(WindowClose::Stopped) => WindowOutcome::Stopped,
            },
        })
        .collect();
    let events = kept
        .iter()
        .filter(|w| w.ending == Some(WindowClose::Reset))
        .map(|w| w.end)
        .collect();
    Ok(MonitorDay {
        robot_id,
        rule_id: rule_id.to_owned(),
        event_type: monitor.event_type().to_owned(),
        date,
        session,
        windows,
        events,
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

/// A stored record as the timeline draws it. The store gives a record the Node service wrote
/// (no event row) its recording time as event time: drawn as not the event's.
pub(crate) fn timeline_record(check: &StoredCheck, record: &Record) -> TimelineRecord {
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
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use status_check_engine::{CheckResult, Event, Record, RecordPhase};

    use super::*;
    use crate::store::fixtures::stored_check;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// A record as the store reads it: a Node one has no event row, so its event time is its
    /// recording time and it has no level.
    fn record(order: u32, level: Option<i64>, event_at: &str, recorded: &str) -> Record {
        Record {
            order,
            phase: RecordPhase::Future,
            event: Event {
                id: -i64::from(order),
                name: "CHARGING_STARTED".to_owned(),
                created_at: at(event_at),
                level,
                reference_id: None,
            },
            outgoing_event_id: None,
            result: CheckResult::Pass,
            created_at: at(recorded),
        }
    }

    fn check(provenance: Provenance, records: Vec<Record>) -> StoredCheck {
        StoredCheck {
            provenance,
            records,
            ..stored_check(at("2026-11-20T08:00:00Z"))
        }
    }

    #[test]
    fn a_node_record_has_no_event_time_and_an_own_one_keeps_its() {
        let node = record(1, None, "2026-11-20T08:05:00Z", "2026-11-20T08:05:00Z");
        for (provenance, expected) in [
            (Provenance::NodeOnly, None),
            (Provenance::Adopted, None),
            (Provenance::Own, Some(at("2026-11-20T08:05:00Z"))),
        ] {
            let view = CheckView {
                check: check(provenance, vec![node.clone()]),
                notifications: Vec::new(),
                poll_until_end: false,
            };
            let timeline = check_timeline(&view, at("2026-11-20T09:00:00Z"));
            assert_eq!(timeline.records[0].event_at, expected, "{provenance:?}");
            assert_eq!(timeline.records[0].incoming_event_id, None);
            assert_eq!(timeline.past, PastWindow::Unbounded);
            assert_eq!(timeline.next_step.as_deref(), Some("124"));
        }
        // An adopted check's own later record (with its event row) keeps its event time.
        let later = record(2, Some(10), "2026-11-20T08:04:00Z", "2026-11-20T08:04:01Z");
        let view = CheckView {
            check: check(Provenance::Adopted, vec![node, later]),
            notifications: Vec::new(),
            poll_until_end: false,
        };
        let timeline = check_timeline(&view, at("2026-11-20T09:00:00Z"));
        assert_eq!(
            timeline.records[1].event_at,
            Some(at("2026-11-20T08:04:00Z"))
        );
    }

    #[test]
    fn a_notification_shows_the_state_its_message_carried() {
        let stored = StoredNotification {
            seq: 2,
            created_at: at("2026-11-20T08:05:00Z"),
            sent_at: None,
            payload: r#"{"to":{"robotId":"42"},"payload":{"id":3,"phase":"FAILED","result":"FAIL","nextStepId":125,"notificationSeq":2}}"#.to_owned(),
            attempts: 8,
            last_error: Some("the queue does not exist".to_owned()),
            given_up: true,
        };
        let dto = NotificationDto::from_stored(&stored);
        assert_eq!(
            (
                dto.notification_seq,
                dto.phase.as_str(),
                dto.result.as_str(),
                dto.next_step_id
            ),
            (2, "FAILED", "FAIL", Some(125))
        );
        assert_eq!(dto.created_at, "2026-11-20T08:05:00.000Z");
        assert_eq!(dto.sent_at, None);
        assert!(dto.given_up);
        assert_eq!(
            (dto.attempts, dto.last_error.as_deref()),
            (8, Some("the queue does not exist"))
        );
        // A payload that is not what the relay writes still lists the notification.
        let odd = StoredNotification {
            payload: "not json".to_owned(),
            ..stored
        };
        assert_eq!(NotificationDto::from_stored(&odd).phase, "");
    }
}
