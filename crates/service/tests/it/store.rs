//! The store's behaviour suite: every behaviour is written once and runs against SQLite and
//! MySQL/MariaDB (`store::CONCERN::sqlite::*` and `store::CONCERN::mysql::*`), one file per
//! concern; the fixtures they share are here. The leased work queues are in `leased_queues`.

use std::collections::BTreeSet;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use status_check::store::{
    BatchedUpdate, CheckKey, CheckUpdate, Claimed, Created, Fence, NewCheck, Notifications,
    Provenance, StoreError, StoredCheck, StoredTemplate, Synced, UpdateOutcome,
};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use status_check_engine::{
    CheckPhase, CheckResult, Event, Limits, Record, RecordPhase, TemplateDefinition,
};

use crate::support::TestDb;

pub(crate) mod batch;
mod checks;
mod claims;
mod intents;
mod schema;
mod templates;
mod updates;

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

pub(crate) fn template(name: &str, version: i64) -> TemplateDefinition {
    TemplateDefinition {
        name: name.to_owned(),
        version,
        description: format!("{name}, version {version}"),
        is_active: true,
        poll_until_end: false,
        poller: PollerDefaults {
            past_interval: 3600,
            future_interval: 600,
        },
        past: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into(), "CHARGING_STOPPED".into()],
            pass: Some("past.exists(e, e.name == 'CHARGING_STARTED')".into()),
            fail: Some("past.exists(e, e.name == 'CHARGING_STOPPED')".into()),
            unknown: None,
        }),
        future: Some(PhaseDefinition {
            depends_on: vec!["CHARGING_STARTED".into()],
            pass: Some("future.size() > 0".into()),
            fail: None,
            unknown: Some("false".into()),
        }),
    }
}

fn now() -> DateTime<Utc> {
    at("2026-11-01T00:00:00Z")
}

/// Whether this service can run a definition: its rules compile as CEL (as the registry asks).
fn cel(definition: &TemplateDefinition) -> bool {
    status_check_engine::Template::from_definition(definition.clone(), &Limits::default()).is_ok()
}

/// The newest active version of `name`, as stored.
async fn newest_active(db: &TestDb, name: &str) -> Option<StoredTemplate> {
    db.store
        .template_versions(name)
        .await
        .unwrap()
        .into_iter()
        .find(|v| v.is_active)
}

/// Creates a check after inserting the other services' rows it refers to.
pub(crate) async fn create(db: &TestDb, check: NewCheck) -> Result<Created, StoreError> {
    db.neighbours.for_check(&check).await;
    db.store.create_check(check).await
}

pub(crate) async fn synced_template(db: &TestDb, name: &str) -> i64 {
    match db
        .store
        .sync_template(&template(name, 1), &|_| true, at("2026-11-01T00:00:00Z"))
        .await
        .unwrap()
    {
        Synced::Created(id) => id,
        other => panic!("expected Created, got {other:?}"),
    }
}

fn record(order: u32, phase: RecordPhase, event_id: i64, name: &str) -> Record {
    Record {
        order,
        phase,
        event: Event {
            id: event_id,
            name: name.to_owned(),
            created_at: at("2026-11-20T07:59:00.001Z") + TimeDelta::seconds(i64::from(order)),
            level: None,
            reference_id: None,
        },
        outgoing_event_id: None,
        result: CheckResult::Pending,
        created_at: at("2026-11-20T08:00:05Z"),
    }
}

pub(crate) fn new_check(template_id: i64, robot_id: i64) -> NewCheck {
    let anchor = at("2026-11-20T08:00:05.250Z");
    NewCheck {
        key: CheckKey {
            robot_id,
            step_id: 123,
            scheduled_id: 456,
            planned_at: at("2026-11-20T08:00:00.123Z"),
        },
        script_version_id: 789,
        template_id,
        phase: CheckPhase::Future,
        result: CheckResult::Pending,
        next_step_id: None,
        subscription_id: Some(991),
        windows: Windows::from_effective(anchor, 3600, 600),
        deadline: Some(anchor + TimeDelta::seconds(600)),
        next_steps: NextSteps {
            pass: 10,
            fail: 11,
            unknown: Some(12),
        },
        remove_subscription: false,
        subscribe_intent: None,
        records: vec![
            Record {
                event: Event {
                    level: Some(3),
                    reference_id: Some("ref-1".into()),
                    ..record(1, RecordPhase::Past, 5001, "CHARGING_STOPPED").event
                },
                ..record(1, RecordPhase::Past, 5001, "CHARGING_STOPPED")
            },
            Record {
                outgoing_event_id: Some(7002),
                result: CheckResult::Fail,
                ..record(2, RecordPhase::Past, 5002, "CHARGING_STOPPED")
            },
            record(3, RecordPhase::Future, 5003, "CHARGING_STARTED"),
        ],
        now: anchor,
    }
}

pub(crate) fn created_new(created: Created) -> StoredCheck {
    match created {
        Created::New(check) => check,
        Created::Existing(check) => panic!("expected a new check, got the existing {}", check.id),
    }
}

async fn check_rows(db: &TestDb) -> [i64; 5] {
    [
        db.raw.count("SELECT COUNT(*) FROM status_check").await,
        db.raw.count("SELECT COUNT(*) FROM status_check_ext").await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_poller")
            .await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_record")
            .await,
        db.raw
            .count("SELECT COUNT(*) FROM status_check_record_event")
            .await,
    ]
}

/// The deadline of `new_check`: anchor 08:00:05.250 + 600 s.
fn deadline() -> DateTime<Utc> {
    at("2026-11-20T08:10:05.250Z")
}

/// Megazord stored these incoming events of `robot_id` and fanned each out to subscription
/// 991 as outgoing event `id + 100_000` (what `future_record` refers to).
async fn delivered(db: &TestDb, robot_id: i64, event_ids: &[i64]) {
    for &id in event_ids {
        db.neighbours
            .outgoing_event(id + 100_000, id, 991, robot_id)
            .await;
    }
}

/// The `order` the next record of a check gets.
fn next_order(check: &StoredCheck) -> u32 {
    check.records.iter().map(|r| r.order).max().unwrap_or(0) + 1
}

/// A FUTURE record as a decision makes it: times finer than the store keeps (the event's
/// to the millisecond, the record's to the second).
fn future_record(order: u32, event_id: i64) -> Record {
    let mut record = record(order, RecordPhase::Future, event_id, "CHARGING_STARTED");
    record.event.created_at =
        at("2026-11-20T08:00:30.123456Z") + TimeDelta::seconds(i64::from(order));
    record.event.level = Some(2);
    record.event.reference_id = Some(format!("ref-{event_id}"));
    record.outgoing_event_id = Some(event_id + 100_000);
    record.created_at = at("2026-11-20T08:01:00.987654Z");
    record
}

/// What a fresh read returns for a record `future_record` made.
fn as_stored(mut record: Record) -> Record {
    record.event.created_at = record.event.created_at.trunc_subsecs(3);
    record.created_at = record.created_at.trunc_subsecs(0);
    record
}

/// A decision that appends one FUTURE record of `event_id` and keeps the check open.
fn append(event_id: i64) -> impl Fn(&StoredCheck) -> Option<CheckUpdate> + Send + Sync {
    move |check: &StoredCheck| {
        Some(CheckUpdate {
            phase: CheckPhase::Future,
            result: CheckResult::Pending,
            next_step_id: None,
            new_records: vec![future_record(next_order(check), event_id)],
            deadline: pending(check, CheckPhase::Future),
            release_lease: false,
            notify: false,
            remove_subscription: false,
        })
    }
}

/// A decision that only notifies: the state stays, no record is added.
pub(crate) fn notify(check: &StoredCheck) -> Option<CheckUpdate> {
    Some(CheckUpdate {
        phase: check.phase,
        result: check.result,
        next_step_id: check.next_step_id,
        new_records: Vec::new(),
        deadline: pending(check, check.phase),
        release_lease: false,
        notify: true,
        remove_subscription: false,
    })
}

/// A decision that completes the check with PASS, releases the lease and notifies.
pub(crate) fn complete(check: &StoredCheck) -> Option<CheckUpdate> {
    Some(CheckUpdate {
        phase: CheckPhase::Completed,
        result: CheckResult::Pass,
        next_step_id: Some(check.next_steps.unwrap().pass),
        new_records: Vec::new(),
        deadline: None,
        release_lease: true,
        notify: true,
        remove_subscription: false,
    })
}

/// The tests' outbox rows: rendered by [`render`], for any relay to claim.
fn notifications() -> Notifications<'static> {
    Notifications::rendered_by(&render)
}

pub(crate) fn render(check: &StoredCheck, seq: i64) -> String {
    format!(
        "check {} seq {seq}: {} {} {:?} with {} records",
        check.id,
        check.phase,
        check.result,
        check.next_step_id,
        check.records.len()
    )
}

pub(crate) fn updated(outcome: UpdateOutcome) -> StoredCheck {
    match outcome {
        UpdateOutcome::Updated(check) => *check,
        other => panic!("expected Updated, got {other:?}"),
    }
}

pub(crate) async fn outbox_rows(db: &TestDb) -> i64 {
    db.raw
        .count("SELECT COUNT(*) FROM status_check_outbox")
        .await
}

/// A new check of `robot_id` whose future window is `future_seconds` from `anchor`.
async fn open_check(
    db: &TestDb,
    template_id: i64,
    robot_id: i64,
    anchor: &str,
    future: i64,
) -> StoredCheck {
    let mut check = new_check(template_id, robot_id);
    set_windows(&mut check, at(anchor), 3600, future);
    created_new(create(db, check).await.unwrap())
}

/// Gives a new check other windows, created at their anchor, with the deadline the engine
/// would set (the end of the future window while the check is in `FUTURE`).
fn set_windows(check: &mut NewCheck, anchor: DateTime<Utc>, past: i64, future: i64) {
    check.windows = Windows::from_effective(anchor, past, future);
    check.now = anchor;
    check.deadline = check
        .windows
        .until
        .filter(|_| check.phase == CheckPhase::Future);
}

/// The pending deadline of `check` once in `phase`, as the engine says it.
fn pending(check: &StoredCheck, phase: CheckPhase) -> Option<DateTime<Utc>> {
    check.windows.until.filter(|_| phase == CheckPhase::Future)
}

/// Writes `update`, decided on `current` as read, as the service writes one decision.
pub(crate) async fn write_on(
    db: &TestDb,
    current: &StoredCheck,
    fence: Fence<'_>,
    update: CheckUpdate,
    call_ref: &str,
    now: DateTime<Utc>,
) -> Result<UpdateOutcome, StoreError> {
    db.store
        .update_check(
            BatchedUpdate {
                current,
                fence,
                update,
                call_ref,
            },
            &notifications(),
            now,
        )
        .await
}

/// Reads the check, decides on it and writes the decision — again when the check changed
/// meanwhile (`Stale`) — as the use cases do.
pub(crate) async fn update(
    db: &TestDb,
    id: i64,
    fence: Fence<'_>,
    decide: &(dyn Fn(&StoredCheck) -> Option<CheckUpdate> + Send + Sync),
    call_ref: &str,
    now: DateTime<Utc>,
) -> Result<UpdateOutcome, StoreError> {
    loop {
        let Some(current) = db.store.get_check(id).await? else {
            return Ok(UpdateOutcome::NotFound);
        };
        let decision = decide(&current).expect("the decision writes something");
        match write_on(db, &current, fence, decision, call_ref, now).await? {
            UpdateOutcome::Stale => continue,
            outcome => return Ok(outcome),
        }
    }
}
