//! The store's behaviour, written once for both backends: the SQL (identical text in both
//! dialects), the transactions, and the mapping between rows and the engine's types.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use status_check_engine::{CheckPhase, CheckResult, Event, Record, TemplateDefinition};

use super::db::{
    ATTEMPTS, Db, Failure, Mode, PerDialect, Retry, SqlRow, TIMESTAMP_MAX, TIMESTAMP_MIN, Tx, args,
    clamp_timestamp, millis, seconds_ceil, seconds_floor,
};
use super::{
    CheckKey, CheckUpdate, Claimed, Created, Decide, Fence, NewCheck, OutboxMessage, Render,
    StoreError, StoredCheck, StoredTemplate, Synced, UpdateOutcome,
};

// ---- SQL ----

/// A check with its template's name and version and its extension row. Checks without an
/// extension row (written by another service) are not visible.
macro_rules! select_check {
    () => {
        "SELECT sc.id AS id, e.robot_id AS robot_id, e.step_id AS step_id, \
         e.scheduled_id AS scheduled_id, e.planned_at AS planned_at, \
         sc.script_version_id AS script_version_id, sc.status_check_template_id AS template_id, \
         d.name AS template_name, t.version AS template_version, sc.phase AS phase, \
         sc.result AS result, sc.next_step_id AS next_step_id, \
         sc.subscription_id AS subscription_id, e.anchor_at AS anchor_at, \
         e.past_seconds AS past_seconds, e.future_seconds AS future_seconds, \
         e.next_pass AS next_pass, e.next_fail AS next_fail, e.next_unknown AS next_unknown, \
         e.notification_seq AS notification_seq, e.created_at AS created_at, \
         e.updated_at AS updated_at \
         FROM status_check sc \
         JOIN status_check_ext e ON e.status_check_id = sc.id \
         JOIN status_check_template t ON t.id = sc.status_check_template_id \
         JOIN status_check_description d ON d.id = t.template_description_id "
    };
}

const SELECT_CHECK_BY_ID: &str = concat!(select_check!(), "WHERE sc.id = ?");

const SELECT_CHECK_BY_KEY: &str = concat!(
    select_check!(),
    "WHERE e.robot_id = ? AND e.step_id = ? AND e.scheduled_id = ? AND e.planned_at = ?"
);

const SELECT_CHECK_ID_BY_KEY: &str = "SELECT status_check_id AS id FROM status_check_ext \
     WHERE robot_id = ? AND step_id = ? AND scheduled_id = ? AND planned_at = ?";

const SELECT_RECORDS: &str = "SELECT r.id AS id, r.`order` AS record_order, r.phase AS phase, \
     r.event_name AS event_name, r.incoming_event_id AS incoming_event_id, \
     r.outgoing_event_id AS outgoing_event_id, r.result AS result, r.created_at AS created_at, \
     ev.event_created_at AS event_created_at, ev.`level` AS event_level, \
     ev.reference_id AS reference_id \
     FROM status_check_record r \
     LEFT JOIN status_check_record_event ev \
       ON ev.record_id = r.id AND ev.record_phase = r.phase \
     WHERE r.status_check_id = ? \
     ORDER BY r.`order`, r.id";

pub const INSERT_CHECK: &str = "INSERT INTO status_check (robot_id, status_check_template_id, \
     phase, subscription_id, result, step_id, next_step_id, script_version_id, scheduled_id, \
     planned_at, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const INSERT_CHECK_EXT: &str = "INSERT INTO status_check_ext (status_check_id, robot_id, \
     step_id, scheduled_id, planned_at, anchor_at, past_seconds, future_seconds, next_pass, \
     next_fail, next_unknown, notification_seq, created_at, updated_at, deadline_at, \
     lease_taken_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, NULL)";

pub const INSERT_POLLER: &str = "INSERT INTO status_check_poller (status_check_id, since, `until`, \
     lock_id, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)";

pub const INSERT_RECORD: &str = "INSERT INTO status_check_record (status_check_id, \
     incoming_event_id, outgoing_event_id, event_name, `order`, phase, result, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

pub const INSERT_RECORD_EVENT: &str = "INSERT INTO status_check_record_event (record_id, \
     record_phase, status_check_id, incoming_event_id, event_created_at, `level`, reference_id) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";

macro_rules! select_template {
    () => {
        "SELECT t.id AS id, d.name AS name, d.description AS description, t.version AS version, \
         t.is_active AS is_active, t.poll_until_end AS poll_until_end, \
         t.past_event_dependencies AS past_dependencies, \
         t.future_event_dependencies AS future_dependencies, \
         x.past_interval AS past_interval, x.future_interval AS future_interval \
         FROM status_check_template t \
         JOIN status_check_description d ON d.id = t.template_description_id \
         LEFT JOIN status_check_template_ext x ON x.status_check_template_id = t.id "
    };
}

const SELECT_TEMPLATE_BY_ID: &str = concat!(select_template!(), "WHERE t.id = ?");

const SELECT_TEMPLATE_BY_VERSION: &str = concat!(
    select_template!(),
    "WHERE t.template_description_id = ? AND t.version = ?"
);

const SELECT_ACTIVE_TEMPLATE: &str = concat!(
    select_template!(),
    "WHERE d.name = ? AND t.is_active = 1 ORDER BY t.version DESC LIMIT 1"
);

const SELECT_DETAILS: &str = "SELECT id, phase, output, expression \
     FROM status_check_template_detail WHERE status_check_template_id = ? ORDER BY id";

const SELECT_DESCRIPTION: &str =
    "SELECT id, description FROM status_check_description WHERE name = ?";

const INSERT_DESCRIPTION: &str = "INSERT INTO status_check_description \
     (name, description, created_at, updated_at) VALUES (?, ?, ?, ?)";

const UPDATE_DESCRIPTION: &str =
    "UPDATE status_check_description SET description = ?, updated_at = ? WHERE id = ?";

const SELECT_MAX_VERSION: &str = "SELECT MAX(version) AS max_version \
     FROM status_check_template WHERE template_description_id = ?";

const INSERT_TEMPLATE: &str = "INSERT INTO status_check_template (template_description_id, \
     past_event_dependencies, future_event_dependencies, version, is_active, poll_until_end, \
     created_at) VALUES (?, ?, ?, ?, ?, ?, ?)";

const INSERT_DETAIL: &str = "INSERT INTO status_check_template_detail \
     (status_check_template_id, phase, output, expression, created_at) VALUES (?, ?, ?, ?, ?)";

const INSERT_TEMPLATE_EXT: &str = "INSERT INTO status_check_template_ext \
     (status_check_template_id, past_interval, future_interval) VALUES (?, ?, ?)";

const UPDATE_TEMPLATE_ACTIVE: &str = "UPDATE status_check_template SET is_active = ? WHERE id = ?";

/// The longest dependency list `status_check_template.*_event_dependencies` holds.
const DEPENDENCIES_MAX_CHARS: usize = 512;

// ---- Checks ----

pub(crate) async fn create_check<D: Db>(db: &D, check: NewCheck) -> Result<Created, StoreError> {
    check_insertable(&check)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match try_create_check(db, &check).await {
            Ok(created) => return Ok(created),
            Err(error) => error,
        };
        match db.classify(&error) {
            // Lost the race against an identical create: return the winner's check. If the
            // winner rolled back instead, try again.
            Failure::Duplicate { request_key: true } => {
                if let Some(existing) = find_check(db, &check.key).await? {
                    return Ok(Created::Existing(existing));
                }
            }
            Failure::Duplicate { request_key: false } => {
                return Err(StoreError::Conflict(
                    "an incoming event would be recorded twice for one check".to_owned(),
                ));
            }
            Failure::Transient => {}
            Failure::Other => return Err(error),
        }
        if attempt >= ATTEMPTS {
            return Err(error);
        }
    }
}

async fn try_create_check<D: Db>(db: &D, check: &NewCheck) -> Result<Created, StoreError> {
    let mut tx = db.begin(Mode::Write).await?;
    let key = &check.key;
    let existing = tx
        .fetch_optional(
            SELECT_CHECK_ID_BY_KEY,
            args![
                key.robot_id,
                key.step_id,
                key.scheduled_id,
                millis(key.planned_at)
            ],
        )
        .await?;
    if let Some(row) = existing {
        let id = row.int("id")?;
        let existing = load_check(&mut tx, id)
            .await?
            .ok_or_else(|| corrupt(format!("status_check {id} has no readable row")))?;
        tx.commit().await?;
        return Ok(Created::Existing(existing));
    }

    let now = millis(check.now);
    let now_seconds = seconds_floor(check.now);
    let id = tx
        .execute(
            INSERT_CHECK,
            args![
                key.robot_id,
                check.template_id,
                check.phase.as_str(),
                check.subscription_id,
                Some(check.result.as_str().to_owned()),
                key.step_id,
                check.next_step_id,
                check.script_version_id,
                key.scheduled_id,
                seconds_floor(key.planned_at),
                now_seconds,
                now_seconds,
            ],
        )
        .await?
        .last_insert_id;
    let windows = &check.windows;
    tx.execute(
        INSERT_CHECK_EXT,
        args![
            id,
            key.robot_id,
            key.step_id,
            key.scheduled_id,
            millis(key.planned_at),
            millis(windows.anchor),
            windows.past_seconds,
            windows.future_seconds,
            check.next_steps.pass,
            check.next_steps.fail,
            check.next_steps.unknown,
            now,
            now,
            pending_deadline(check.phase, windows),
        ],
    )
    .await?;
    let (since, until) = poller_bounds(windows);
    tx.execute(
        INSERT_POLLER,
        args![id, since, until, now_seconds, now_seconds],
    )
    .await?;
    for record in &check.records {
        insert_record(&mut tx, id, record).await?;
    }
    let stored = load_check(&mut tx, id)
        .await?
        .ok_or_else(|| corrupt(format!("the new status_check {id} cannot be read back")))?;
    tx.commit().await?;
    Ok(Created::New(stored))
}

/// The poller's `since`/`until`, whole seconds in the `TIMESTAMP` range, wide enough to hold
/// the exact window (`since` rounded down, `until` up): a scheduler claiming `until <= now`
/// never fires before the exact deadline kept in `status_check_ext`.
fn poller_bounds(windows: &super::StoredWindows) -> (DateTime<Utc>, DateTime<Utc>) {
    let anchor = millis(windows.anchor);
    let since = match windows.past_seconds {
        -1 => TIMESTAMP_MIN,
        seconds => seconds_floor(anchor - TimeDelta::seconds(seconds.max(0))),
    };
    let until = seconds_ceil(anchor + TimeDelta::seconds(windows.future_seconds.max(0)));
    (clamp_timestamp(since), clamp_timestamp(until))
}

/// The deadline the scheduler waits for (`status_check_ext.deadline_at`): the end of the
/// future window, exact to the millisecond, while the check is in `FUTURE`; none without a
/// future window or once the check has left `FUTURE` — so the claim's index range holds the
/// open checks only, not every check that ever ended.
fn pending_deadline(phase: CheckPhase, windows: &super::StoredWindows) -> Option<DateTime<Utc>> {
    if phase != CheckPhase::Future || windows.future_seconds <= 0 {
        return None;
    }
    let deadline = TimeDelta::try_seconds(windows.future_seconds)
        .and_then(|window| millis(windows.anchor).checked_add_signed(window))
        .unwrap_or(DATETIME_MAX);
    Some(deadline.min(DATETIME_MAX))
}

/// The largest value a MySQL `DATETIME(3)` holds.
const DATETIME_MAX: DateTime<Utc> = match DateTime::from_timestamp(253_402_300_799, 999_000_000) {
    Some(t) => t,
    None => DateTime::UNIX_EPOCH,
};

/// Refuses what the tables cannot hold as given: `planned_at` outside a `TIMESTAMP`, or one
/// incoming event twice among the records (the database refuses that too).
fn check_insertable(check: &NewCheck) -> Result<(), StoreError> {
    let mut event_ids: Vec<i64> = check.records.iter().map(|r| r.event.id).collect();
    event_ids.sort_unstable();
    if let Some(pair) = event_ids.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(StoreError::Conflict(format!(
            "incoming event {} appears twice among the records of one check",
            pair[0]
        )));
    }
    let planned_at = seconds_floor(check.key.planned_at);
    if planned_at < TIMESTAMP_MIN || planned_at > TIMESTAMP_MAX {
        return Err(StoreError::Conflict(format!(
            "plannedAt {} is outside the range the database holds ({} to {})",
            check.key.planned_at.to_rfc3339(),
            TIMESTAMP_MIN.to_rfc3339(),
            TIMESTAMP_MAX.to_rfc3339()
        )));
    }
    Ok(())
}

async fn insert_record<T: Tx>(
    tx: &mut T,
    check_id: i64,
    record: &Record,
) -> Result<(), StoreError> {
    let phase = record.phase.as_str();
    let record_id = tx
        .execute(
            INSERT_RECORD,
            args![
                check_id,
                Some(record.event.id),
                record.outgoing_event_id,
                record.event.name.as_str(),
                record.order,
                phase,
                record.result.as_str(),
                seconds_floor(record.created_at),
            ],
        )
        .await?
        .last_insert_id;
    tx.execute(
        INSERT_RECORD_EVENT,
        args![
            record_id,
            phase,
            check_id,
            record.event.id,
            millis(record.event.created_at),
            record.event.level,
            record.event.reference_id.clone(),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn get_check<D: Db>(db: &D, id: i64) -> Result<Option<StoredCheck>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let check = load_check(&mut tx, id).await?;
    tx.commit().await?;
    Ok(check)
}

pub(crate) async fn find_check<D: Db>(
    db: &D,
    key: &CheckKey,
) -> Result<Option<StoredCheck>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx
        .fetch_optional(
            SELECT_CHECK_BY_KEY,
            args![
                key.robot_id,
                key.step_id,
                key.scheduled_id,
                millis(key.planned_at)
            ],
        )
        .await?;
    let check = match row {
        Some(row) => Some(check_with_records(&mut tx, &row).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(check)
}

async fn load_check<T: Tx>(tx: &mut T, id: i64) -> Result<Option<StoredCheck>, StoreError> {
    match tx.fetch_optional(SELECT_CHECK_BY_ID, args![id]).await? {
        Some(row) => Ok(Some(check_with_records(tx, &row).await?)),
        None => Ok(None),
    }
}

async fn check_with_records<T: Tx>(tx: &mut T, row: &T::Row) -> Result<StoredCheck, StoreError> {
    let id = row.int("id")?;
    let records = tx
        .fetch_all(SELECT_RECORDS, args![id])
        .await?
        .iter()
        .map(|row| record_from_row(id, row))
        .collect::<Result<Vec<_>, _>>()?;
    check_from_row(row, records)
}

fn check_from_row<R: SqlRow>(row: &R, records: Vec<Record>) -> Result<StoredCheck, StoreError> {
    let id = row.int("id")?;
    let what = |column: &str| format!("status_check {id}: {column}");
    let anchor = row.time("anchor_at")?;
    let past_seconds = row.int("past_seconds")?;
    let future_seconds = row.int("future_seconds")?;
    let windows = Windows::compute(
        past_seconds,
        future_seconds,
        &PollerDefaults::default(),
        anchor,
    )
    .map_err(|e| corrupt(format!("{}: {e}", what("windows"))))?;
    Ok(StoredCheck {
        id,
        key: CheckKey {
            robot_id: row.int("robot_id")?,
            step_id: row.int("step_id")?,
            scheduled_id: row.int("scheduled_id")?,
            planned_at: row.time("planned_at")?,
        },
        script_version_id: row.int("script_version_id")?,
        template_id: row.int("template_id")?,
        template_name: row.text("template_name")?,
        template_version: row.int("template_version")?,
        phase: parse(&row.text("phase")?, || what("phase"))?,
        result: match row.opt_text("result")? {
            Some(result) => parse(&result, || what("result"))?,
            None => CheckResult::Pending,
        },
        next_step_id: row.opt_int("next_step_id")?,
        subscription_id: row.opt_int("subscription_id")?,
        windows: super::StoredWindows {
            anchor,
            past_seconds,
            future_seconds,
        },
        next_steps: NextSteps {
            pass: row.int("next_pass")?,
            fail: row.int("next_fail")?,
            unknown: row.opt_int("next_unknown")?,
        },
        polling_since: windows.since,
        polling_until: windows.until,
        notification_seq: row.int("notification_seq")?,
        records,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
    })
}

fn record_from_row<R: SqlRow>(check_id: i64, row: &R) -> Result<Record, StoreError> {
    let record_id = row.int("id")?;
    let what = |column: &str| format!("status_check {check_id}, record {record_id}: {column}");
    let event_created_at = row
        .opt_time("event_created_at")?
        .ok_or_else(|| corrupt(format!("{} is missing", what("event attributes"))))?;
    let order = row.int("record_order")?;
    Ok(Record {
        order: u32::try_from(order)
            .map_err(|_| corrupt(format!("{} {order} is out of range", what("order"))))?,
        phase: parse(&row.text("phase")?, || what("phase"))?,
        event: Event {
            id: row
                .opt_int("incoming_event_id")?
                .ok_or_else(|| corrupt(format!("{} is missing", what("incoming_event_id"))))?,
            name: row.text("event_name")?,
            created_at: event_created_at,
            level: row.opt_int("event_level")?,
            reference_id: row.opt_text("reference_id")?,
        },
        outgoing_event_id: row.opt_int("outgoing_event_id")?,
        result: parse(&row.text("result")?, || what("result"))?,
        created_at: row.time("created_at")?,
    })
}

// ---- The lifecycle: deliveries, the deadline scheduler, the outbox ----

/// A statement that locks a check's `status_check` row — the first lock of every change of a
/// check (lock order: status_check, then status_check_poller, then status_check_ext). On
/// SQLite a plain read: `BEGIN IMMEDIATE` already holds the database's write lock.
const LOCK_CHECK: PerDialect = PerDialect {
    mysql: "SELECT id FROM status_check WHERE id = ? FOR UPDATE",
    sqlite: "SELECT id FROM status_check WHERE id = ?",
};

/// The poller's lease, read and locked (second in the lock order) after the check's row.
const LOCK_POLLER: PerDialect = PerDialect {
    mysql: "SELECT lock_id FROM status_check_poller WHERE status_check_id = ? FOR UPDATE",
    sqlite: "SELECT lock_id FROM status_check_poller WHERE status_check_id = ?",
};

const SELECT_CHECK_BY_SUBSCRIPTION: &str = concat!(
    select_check!(),
    "WHERE sc.robot_id = ? AND sc.subscription_id = ? ORDER BY sc.id DESC LIMIT 1"
);

pub const UPDATE_CHECK_STATE: &str = "UPDATE status_check \
     SET phase = ?, result = ?, next_step_id = ?, updated_at = ? WHERE id = ?";

pub const RELEASE_POLLER: &str = "UPDATE status_check_poller SET lock_id = NULL, updated_at = ? \
     WHERE status_check_id = ?";

pub const UPDATE_EXT_STATE: &str = "UPDATE status_check_ext SET notification_seq = ?, \
     deadline_at = ?, lease_taken_at = CASE WHEN ? THEN NULL ELSE lease_taken_at END, \
     updated_at = ? WHERE status_check_id = ?";

pub const INSERT_OUTBOX: &str = "INSERT INTO status_check_outbox (status_check_id, robot_id, seq, \
     payload, call_ref, created_at, attempts, next_attempt_at, lock_id, locked_until, sent_at, \
     last_error) VALUES (?, ?, ?, ?, ?, ?, 0, ?, NULL, NULL, NULL, NULL)";

/// Due checks, oldest deadline first. The join order is fixed to the one the deadline index
/// serves — ext (range on `idx_status_check_ext_deadline`, already in ORDER BY order) →
/// status_check → poller (by primary key) — with MySQL's `STRAIGHT_JOIN` and SQLite's
/// `CROSS JOIN` (without statistics SQLite would otherwise start from the poller's `lock_id`
/// index: every free poller, i.e. every check that ever ended). On MySQL the rows are read,
/// locked and skipped in deadline order, so two claimers never miss a row between them;
/// `SKIP LOCKED` passes over checks another transaction holds (a claimer, or a change under
/// way) without waiting, so a claim never waits for a row lock and cannot take part in a
/// deadlock.
macro_rules! claim_due_sql {
    ($join:literal, $lock:literal) => {
        concat!(
            "SELECT e.status_check_id AS id, e.deadline_at AS deadline_at \
             FROM status_check_ext e ",
            $join,
            " status_check sc ON sc.id = e.status_check_id ",
            $join,
            " status_check_poller p ON p.status_check_id = e.status_check_id \
             WHERE e.deadline_at <= ? AND sc.phase = 'FUTURE' AND p.lock_id IS NULL \
             ORDER BY e.deadline_at, e.status_check_id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_DUE: PerDialect = PerDialect {
    mysql: claim_due_sql!("STRAIGHT_JOIN", " FOR UPDATE SKIP LOCKED"),
    sqlite: claim_due_sql!("CROSS JOIN", ""),
};

/// [`CLAIM_DUE`] as SQLite runs it.
pub const CLAIM_DUE_SQLITE: &str = CLAIM_DUE.sqlite;

pub const LEASE_POLLER: &str = "UPDATE status_check_poller SET lock_id = ?, updated_at = ? \
     WHERE status_check_id = ? AND lock_id IS NULL";

pub const LEASE_EXT: &str =
    "UPDATE status_check_ext SET lease_taken_at = ? WHERE status_check_id = ?";

/// Sorted by the caller (an `ORDER BY` here leads SQLite to scan the table in id order
/// instead of using `idx_status_check_ext_lease`).
const SELECT_STALE_LEASES: &str =
    "SELECT status_check_id AS id FROM status_check_ext WHERE lease_taken_at < ?";

const FORGET_STALE_LEASE: &str = "UPDATE status_check_ext SET lease_taken_at = NULL \
     WHERE status_check_id = ? AND lease_taken_at < ?";

/// `updated_at` is left alone (MySQL's `ON UPDATE CURRENT_TIMESTAMP` sets it): this call has
/// no clock of its own.
const RELEASE_STALE_POLLER: &str =
    "UPDATE status_check_poller SET lock_id = NULL WHERE status_check_id = ?";

macro_rules! claim_outbox_sql {
    ($lock:literal) => {
        concat!(
            "SELECT id, status_check_id, robot_id, seq, payload, call_ref, attempts \
             FROM status_check_outbox \
             WHERE sent_at IS NULL AND next_attempt_at <= ? \
               AND (lock_id IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?",
            $lock
        )
    };
}

const CLAIM_OUTBOX: PerDialect = PerDialect {
    mysql: claim_outbox_sql!(" FOR UPDATE SKIP LOCKED"),
    sqlite: claim_outbox_sql!(""),
};

const LEASE_OUTBOX: &str =
    "UPDATE status_check_outbox SET lock_id = ?, locked_until = ? WHERE id = ?";

const OUTBOX_SENT: &str = "UPDATE status_check_outbox \
     SET sent_at = ?, lock_id = NULL, locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

const OUTBOX_FAILED: &str = "UPDATE status_check_outbox \
     SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, lock_id = NULL, \
         locked_until = NULL \
     WHERE id = ? AND lock_id = ? AND sent_at IS NULL";

const OUTBOX_BACKLOG: &str =
    "SELECT COUNT(*) AS backlog FROM status_check_outbox WHERE sent_at IS NULL";

/// `status_check_poller.lock_id` and `status_check_outbox.lock_id` are `VARCHAR(256)`.
const LEASE_MAX_CHARS: usize = 256;
/// `status_check_outbox.call_ref` is `VARCHAR(256)`.
const CALL_REF_MAX_CHARS: usize = 256;
/// `status_check_outbox.last_error` is `VARCHAR(1024)`.
const LAST_ERROR_MAX_CHARS: usize = 1024;

/// How a unit of work ends when it did not fail.
enum Step<V> {
    Commit(V),
    /// Nothing (more) to write: roll back, freeing the locks at once.
    Rollback(V),
}

/// Runs one write unit in a transaction — `$unit` uses `&mut $tx` and yields a
/// `Result<Step<_>>` — committing or rolling back as it says, and runs it again on a
/// transient failure (deadlock, lock wait timeout, SQLITE_BUSY) a bounded number of times.
macro_rules! retrying {
    ($db:expr, $tx:ident => $unit:expr) => {{
        let mut retry = Retry::default();
        loop {
            let result = async {
                let mut $tx = $db.begin(Mode::Write).await?;
                let result = $unit;
                finish($tx, result).await
            }
            .await;
            match result {
                Ok(value) => break Ok(value),
                Err(error) => {
                    if !retry.again($db, &error).await {
                        break Err(error);
                    }
                }
            }
        }
    }};
}

/// Commits or rolls back the transaction as the unit's result says; an error rolls back.
async fn finish<T: Tx, V>(tx: T, result: Result<Step<V>, StoreError>) -> Result<V, StoreError> {
    match result {
        Ok(Step::Commit(value)) => {
            tx.commit().await?;
            Ok(value)
        }
        Ok(Step::Rollback(value)) => {
            tx.rollback().await?;
            Ok(value)
        }
        Err(error) => {
            // The error is what matters; a failed rollback closes the connection anyway.
            tx.rollback().await.ok();
            Err(error)
        }
    }
}

fn check_lease(lease: &str) -> Result<(), StoreError> {
    if lease.is_empty() || lease.chars().count() > LEASE_MAX_CHARS {
        return Err(StoreError::Conflict(format!(
            "a lease must be 1 to {LEASE_MAX_CHARS} characters, not {}",
            lease.chars().count()
        )));
    }
    Ok(())
}

fn cut(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

fn limit_arg(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) async fn find_by_subscription<D: Db>(
    db: &D,
    robot_id: i64,
    subscription_id: i64,
) -> Result<Option<StoredCheck>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx
        .fetch_optional(
            SELECT_CHECK_BY_SUBSCRIPTION,
            args![robot_id, subscription_id],
        )
        .await?;
    let check = match row {
        Some(row) => Some(check_with_records(&mut tx, &row).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(check)
}

pub(crate) async fn update_check<D: Db>(
    db: &D,
    id: i64,
    fence: Fence<'_>,
    decide: Decide<'_>,
    render: Render<'_>,
    call_ref: &str,
    now: DateTime<Utc>,
) -> Result<UpdateOutcome, StoreError> {
    let mut retry = Retry::default();
    loop {
        let result = async {
            let mut tx = db.begin(Mode::Write).await?;
            let result = update_in(db, &mut tx, id, fence, decide, render, call_ref, now).await;
            finish(tx, result).await
        }
        .await;
        let error = match result {
            Ok(outcome) => return Ok(outcome),
            Err(error) => error,
        };
        if let Failure::Duplicate { .. } = db.classify(&error) {
            // The decision repeated an incoming event the check has (or a notification
            // sequence number): a bug upstream. Nothing was written.
            return Err(StoreError::Conflict(format!(
                "status_check {id}: the update repeats what the check already holds \
                 (an incoming event recorded twice?): {error}"
            )));
        }
        if !retry.again(db, &error).await {
            return Err(error);
        }
    }
}

/// One attempt of `update_check`, in the lock order status_check → poller → ext.
#[allow(clippy::too_many_arguments)]
async fn update_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    id: i64,
    fence: Fence<'_>,
    decide: Decide<'_>,
    render: Render<'_>,
    call_ref: &str,
    now: DateTime<Utc>,
) -> Result<Step<UpdateOutcome>, StoreError> {
    // 1. The check's row: every change of this check waits here until the last one commits.
    if tx
        .fetch_optional(db.sql(&LOCK_CHECK), args![id])
        .await?
        .is_none()
    {
        return Ok(Step::Rollback(UpdateOutcome::NotFound));
    }
    // 2. Its poller, for the fence. (On MySQL both are locking reads, which see the latest
    //    committed rows; the plain reads below take their snapshot only now, under the lock.)
    let lock_id = match tx.fetch_optional(db.sql(&LOCK_POLLER), args![id]).await? {
        Some(row) => row.opt_text("lock_id")?,
        None => None,
    };
    if let Fence::Lease(lease) = fence
        && lock_id.as_deref() != Some(lease)
    {
        return Ok(Step::Rollback(UpdateOutcome::Fenced));
    }
    let Some(check) = load_check(tx, id).await? else {
        return Ok(Step::Rollback(UpdateOutcome::NotFound));
    };
    let Some(update) = decide(&check) else {
        return Ok(Step::Rollback(UpdateOutcome::Unchanged(check)));
    };
    check_orders(&check, &update)?;

    let now_ms = millis(now);
    let now_seconds = seconds_floor(now);
    tx.execute(
        UPDATE_CHECK_STATE,
        args![
            update.phase.as_str(),
            Some(update.result.as_str().to_owned()),
            update.next_step_id,
            now_seconds,
            id
        ],
    )
    .await?;
    if update.release_lease {
        tx.execute(RELEASE_POLLER, args![now_seconds, id]).await?;
    }
    let seq = check.notification_seq + i64::from(update.notify);
    tx.execute(
        UPDATE_EXT_STATE,
        args![
            seq,
            pending_deadline(update.phase, &check.windows),
            update.release_lease,
            now_ms,
            id
        ],
    )
    .await?;
    for record in &update.new_records {
        insert_record(tx, id, record).await?;
    }
    let notify = update.notify;
    let updated = after_update(check, update, seq, now);
    if notify {
        let payload = render(&updated, seq);
        tx.execute(
            INSERT_OUTBOX,
            args![
                id,
                updated.key.robot_id,
                seq,
                payload,
                cut(call_ref, CALL_REF_MAX_CHARS),
                now_ms,
                now_ms
            ],
        )
        .await?;
    }
    Ok(Step::Commit(UpdateOutcome::Updated(updated)))
}

/// The check as the update left it, built from what was loaded and written — the same value
/// a fresh read returns (the suite compares them), without reading the history back: the
/// times are truncated as the writes truncate them.
fn after_update(
    mut check: StoredCheck,
    update: CheckUpdate,
    seq: i64,
    now: DateTime<Utc>,
) -> StoredCheck {
    check.phase = update.phase;
    check.result = update.result;
    check.next_step_id = update.next_step_id;
    check.notification_seq = seq;
    check.updated_at = millis(now);
    check
        .records
        .extend(update.new_records.into_iter().map(|record| Record {
            created_at: seconds_floor(record.created_at),
            event: Event {
                created_at: millis(record.event.created_at),
                ..record.event
            },
            ..record
        }));
    check
}

/// New records continue the stored `order`s one by one; anything else is a decision made on
/// another state than the stored one — a bug, refused before anything is written.
fn check_orders(check: &StoredCheck, update: &CheckUpdate) -> Result<(), StoreError> {
    let mut last = check.records.iter().map(|r| r.order).max().unwrap_or(0);
    for record in &update.new_records {
        if Some(record.order) != last.checked_add(1) {
            return Err(StoreError::Conflict(format!(
                "status_check {}: a new record has order {} where {} was next",
                check.id,
                record.order,
                u64::from(last) + 1
            )));
        }
        last = record.order;
    }
    Ok(())
}

pub(crate) async fn claim_due<D: Db>(
    db: &D,
    now: DateTime<Utc>,
    lease: &str,
    limit: usize,
) -> Result<Vec<Claimed>, StoreError> {
    check_lease(lease)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    retrying!(db, tx => claim_due_in(db, &mut tx, now, lease, limit).await)
}

async fn claim_due_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    now: DateTime<Utc>,
    lease: &str,
    limit: usize,
) -> Result<Step<Vec<Claimed>>, StoreError> {
    let rows = tx
        .fetch_all(db.sql(&CLAIM_DUE), args![millis(now), limit_arg(limit)])
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let check_id = row.int("id")?;
        let deadline = row.time("deadline_at")?;
        // The rows are locked (MySQL) or the database is (SQLite): the lease is still free.
        let done = tx
            .execute(LEASE_POLLER, args![lease, seconds_floor(now), check_id])
            .await?;
        if done.rows_affected == 0 {
            continue;
        }
        tx.execute(LEASE_EXT, args![millis(now), check_id]).await?;
        claimed.push(Claimed { check_id, deadline });
    }
    Ok(Step::Commit(claimed))
}

pub(crate) async fn release_stale_leases<D: Db>(
    db: &D,
    taken_before: DateTime<Utc>,
) -> Result<u64, StoreError> {
    retrying!(db, tx => release_stale_in(db, &mut tx, taken_before).await)
}

/// Candidates first (a plain read over `idx_status_check_ext_lease`), then each in the lock
/// order with the condition checked again on the locked row: a lease renewed or released
/// since the read is left alone. Checks are taken in id order, so two replicas releasing at
/// once wait for each other instead of deadlocking.
async fn release_stale_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    taken_before: DateTime<Utc>,
) -> Result<Step<u64>, StoreError> {
    let taken_before = millis(taken_before);
    let mut candidates = tx
        .fetch_all(SELECT_STALE_LEASES, args![taken_before])
        .await?
        .iter()
        .map(|row| row.int("id"))
        .collect::<Result<Vec<_>, _>>()?;
    candidates.sort_unstable();
    let mut released = 0;
    for id in candidates {
        if tx
            .fetch_optional(db.sql(&LOCK_CHECK), args![id])
            .await?
            .is_none()
        {
            continue;
        }
        tx.fetch_optional(db.sql(&LOCK_POLLER), args![id]).await?;
        let done = tx
            .execute(FORGET_STALE_LEASE, args![id, taken_before])
            .await?;
        if done.rows_affected == 0 {
            continue;
        }
        tx.execute(RELEASE_STALE_POLLER, args![id]).await?;
        released += 1;
    }
    Ok(Step::Commit(released))
}

pub(crate) async fn claim_outbox<D: Db>(
    db: &D,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<OutboxMessage>, StoreError> {
    check_lease(lease)?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    retrying!(db, tx => claim_outbox_in(db, &mut tx, now, lease, lease_until, limit).await)
}

async fn claim_outbox_in<D: Db>(
    db: &D,
    tx: &mut D::Tx,
    now: DateTime<Utc>,
    lease: &str,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Step<Vec<OutboxMessage>>, StoreError> {
    let now = millis(now);
    let rows = tx
        .fetch_all(db.sql(&CLAIM_OUTBOX), args![now, now, limit_arg(limit)])
        .await?;
    let mut claimed = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.int("id")?;
        let attempts = row.int("attempts")?;
        let message = OutboxMessage {
            id,
            check_id: row.int("status_check_id")?,
            robot_id: row.int("robot_id")?,
            seq: row.int("seq")?,
            payload: row.text("payload")?,
            call_ref: row.text("call_ref")?,
            attempts: u32::try_from(attempts)
                .map_err(|_| corrupt(format!("status_check_outbox {id}: attempts {attempts}")))?,
        };
        tx.execute(LEASE_OUTBOX, args![lease, millis(lease_until), id])
            .await?;
        claimed.push(message);
    }
    Ok(Step::Commit(claimed))
}

/// One transaction for a whole batch: on SQLite every write transaction waits its turn for
/// the single writer, so one per sent row would halve the deadline throughput.
pub(crate) async fn outbox_sent<D: Db>(
    db: &D,
    ids: &[i64],
    lease: &str,
    now: DateTime<Utc>,
) -> Result<Vec<i64>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    retrying!(db, tx => async {
        let mut marked = Vec::with_capacity(ids.len());
        for &id in ids {
            let done = tx.execute(OUTBOX_SENT, args![millis(now), id, lease]).await?;
            if done.rows_affected > 0 {
                marked.push(id);
            }
        }
        Ok(Step::Commit(marked))
    }
    .await)
}

pub(crate) async fn outbox_failed<D: Db>(
    db: &D,
    id: i64,
    lease: &str,
    next_attempt_at: DateTime<Utc>,
    error: &str,
) -> Result<bool, StoreError> {
    write_one(
        db,
        OUTBOX_FAILED,
        args![
            cut(error, LAST_ERROR_MAX_CHARS),
            millis(next_attempt_at),
            id,
            lease
        ],
    )
    .await
}

/// One statement in its own transaction, retried on transient failures; whether it matched
/// a row.
async fn write_one<D: Db>(
    db: &D,
    sql: &'static str,
    args: Vec<super::db::Arg>,
) -> Result<bool, StoreError> {
    retrying!(db, tx => tx
                .execute(sql, args.clone())
                .await
                .map(|done| Step::Commit(done.rows_affected > 0)))
}

pub(crate) async fn outbox_backlog<D: Db>(db: &D) -> Result<i64, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx.fetch_optional(OUTBOX_BACKLOG, args![]).await?;
    tx.commit().await?;
    match row {
        Some(row) => row.int("backlog"),
        None => Ok(0),
    }
}

// ---- Templates ----

pub(crate) async fn sync_template<D: Db>(
    db: &D,
    definition: &TemplateDefinition,
    now: DateTime<Utc>,
) -> Result<Synced, StoreError> {
    let past = dependencies_json(definition.past.as_ref(), definition)?;
    let future = dependencies_json(definition.future.as_ref(), definition)?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match try_sync_template(db, definition, &past, &future, now).await {
            Ok(synced) => return Ok(synced),
            Err(error) => error,
        };
        // Another replica syncing the same template at the same time: the retry sees its rows.
        let retry = matches!(
            db.classify(&error),
            Failure::Duplicate { .. } | Failure::Transient
        );
        if !retry || attempt >= ATTEMPTS {
            return Err(error);
        }
    }
}

async fn try_sync_template<D: Db>(
    db: &D,
    definition: &TemplateDefinition,
    past_dependencies: &str,
    future_dependencies: &str,
    now: DateTime<Utc>,
) -> Result<Synced, StoreError> {
    let now = seconds_floor(now);
    let mut tx = db.begin(Mode::Write).await?;
    let (description_id, stored_description) = match tx
        .fetch_optional(SELECT_DESCRIPTION, args![definition.name.as_str()])
        .await?
    {
        Some(row) => (row.int("id")?, row.opt_text("description")?),
        None => {
            let done = tx
                .execute(
                    INSERT_DESCRIPTION,
                    args![
                        definition.name.as_str(),
                        definition.description.as_str(),
                        now,
                        now
                    ],
                )
                .await?;
            (done.last_insert_id, Some(definition.description.clone()))
        }
    };
    let highest = tx
        .fetch_optional(SELECT_MAX_VERSION, args![description_id])
        .await?
        .map(|row| row.opt_int("max_version"))
        .transpose()?
        .flatten();

    let existing = tx
        .fetch_optional(
            SELECT_TEMPLATE_BY_VERSION,
            args![description_id, definition.version],
        )
        .await?;
    let synced = match existing {
        None => {
            let id = tx
                .execute(
                    INSERT_TEMPLATE,
                    args![
                        description_id,
                        past_dependencies,
                        future_dependencies,
                        definition.version,
                        definition.is_active,
                        definition.poll_until_end,
                        now,
                    ],
                )
                .await?
                .last_insert_id;
            for (phase, output, expression) in rules_of(definition) {
                tx.execute(INSERT_DETAIL, args![id, phase, output, expression, now])
                    .await?;
            }
            tx.execute(
                INSERT_TEMPLATE_EXT,
                args![
                    id,
                    definition.poller.past_interval,
                    definition.poller.future_interval
                ],
            )
            .await?;
            Synced::Created(id)
        }
        Some(row) => {
            let stored = template_with_details(&mut tx, &row).await?;
            let mut comparable = stored.definition.clone();
            comparable.is_active = definition.is_active;
            comparable.description = definition.description.clone();
            if comparable != *definition {
                // Refused: nothing is changed (the transaction rolls back on drop).
                return Ok(Synced::Conflict {
                    id: stored.id,
                    stored: Box::new(stored.definition),
                });
            }
            if stored.definition.is_active != definition.is_active {
                tx.execute(
                    UPDATE_TEMPLATE_ACTIVE,
                    args![definition.is_active, stored.id],
                )
                .await?;
            }
            Synced::Unchanged(stored.id)
        }
    };
    // The description belongs to the name: the highest version's file says what it is.
    let newest = highest.is_none_or(|highest| definition.version >= highest);
    if newest && stored_description.as_deref() != Some(definition.description.as_str()) {
        tx.execute(
            UPDATE_DESCRIPTION,
            args![definition.description.as_str(), now, description_id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(synced)
}

pub(crate) async fn active_template<D: Db>(
    db: &D,
    name: &str,
) -> Result<Option<StoredTemplate>, StoreError> {
    load_template(db, SELECT_ACTIVE_TEMPLATE, args![name]).await
}

pub(crate) async fn template_by_id<D: Db>(
    db: &D,
    id: i64,
) -> Result<Option<StoredTemplate>, StoreError> {
    load_template(db, SELECT_TEMPLATE_BY_ID, args![id]).await
}

async fn load_template<D: Db>(
    db: &D,
    sql: &'static str,
    args: Vec<super::db::Arg>,
) -> Result<Option<StoredTemplate>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let template = match tx.fetch_optional(sql, args).await? {
        Some(row) => Some(template_with_details(&mut tx, &row).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(template)
}

async fn template_with_details<T: Tx>(
    tx: &mut T,
    row: &T::Row,
) -> Result<StoredTemplate, StoreError> {
    let id = row.int("id")?;
    let details = tx.fetch_all(SELECT_DETAILS, args![id]).await?;
    template_from_rows(row, &details)
}

fn template_from_rows<R: SqlRow>(row: &R, details: &[R]) -> Result<StoredTemplate, StoreError> {
    let id = row.int("id")?;
    let what = |column: &str| format!("status_check_template {id}: {column}");
    let dependencies = |column: &str| -> Result<Vec<String>, StoreError> {
        parse_dependencies(&row.text(column)?)
            .map_err(|e| corrupt(format!("{}: {e}", what(column))))
    };
    let mut past = PhaseDefinition {
        depends_on: dependencies("past_dependencies")?,
        ..PhaseDefinition::default()
    };
    let mut future = PhaseDefinition {
        depends_on: dependencies("future_dependencies")?,
        ..PhaseDefinition::default()
    };
    for detail in details {
        let detail_id = detail.int("id")?;
        let phase = detail.text("phase")?;
        let output = detail.text("output")?;
        let phase_definition = match phase.as_str() {
            "PAST" => &mut past,
            "FUTURE" => &mut future,
            _ => {
                return Err(corrupt(format!(
                    "{}: unknown phase {phase:?}",
                    what(&format!("detail {detail_id}"))
                )));
            }
        };
        let slot = match output.as_str() {
            "PASS" => &mut phase_definition.pass,
            "FAIL" => &mut phase_definition.fail,
            "UNKNOWN" => &mut phase_definition.unknown,
            _ => {
                return Err(corrupt(format!(
                    "{}: unknown output {output:?}",
                    what(&format!("detail {detail_id}"))
                )));
            }
        };
        if slot.is_some() {
            return Err(corrupt(format!(
                "{}: a second {phase} {output} rule",
                what(&format!("detail {detail_id}"))
            )));
        }
        *slot = Some(detail.text("expression")?);
    }
    let present = |phase: PhaseDefinition| {
        let empty = phase.depends_on.is_empty()
            && phase.pass.is_none()
            && phase.fail.is_none()
            && phase.unknown.is_none();
        (!empty).then_some(phase)
    };
    Ok(StoredTemplate {
        id,
        definition: TemplateDefinition {
            name: row.text("name")?,
            version: row.int("version")?,
            description: row.opt_text("description")?.unwrap_or_default(),
            is_active: row.boolean("is_active")?,
            poll_until_end: row.boolean("poll_until_end")?,
            poller: PollerDefaults {
                past_interval: row.opt_int("past_interval")?.unwrap_or(0),
                future_interval: row.opt_int("future_interval")?.unwrap_or(0),
            },
            past: present(past),
            future: present(future),
        },
    })
}

/// `(phase, output, expression)` of every rule the definition has.
fn rules_of(definition: &TemplateDefinition) -> Vec<(&'static str, &'static str, String)> {
    let mut rules = Vec::new();
    for (phase, definition) in [("PAST", &definition.past), ("FUTURE", &definition.future)] {
        let Some(definition) = definition else {
            continue;
        };
        for (output, rule) in [
            ("PASS", &definition.pass),
            ("FAIL", &definition.fail),
            ("UNKNOWN", &definition.unknown),
        ] {
            if let Some(rule) = rule {
                rules.push((phase, output, rule.clone()));
            }
        }
    }
    rules
}

/// The stored form of a phase's dependencies: a JSON array of event names (`[]` without the
/// phase).
fn dependencies_json(
    phase: Option<&PhaseDefinition>,
    definition: &TemplateDefinition,
) -> Result<String, StoreError> {
    let names: &[String] = phase.map(|p| p.depends_on.as_slice()).unwrap_or_default();
    let json = serde_json::to_string(names)
        .map_err(|e| corrupt(format!("dependencies cannot be written: {e}")))?;
    if json.chars().count() > DEPENDENCIES_MAX_CHARS {
        return Err(StoreError::Conflict(format!(
            "template {} version {}: its dependencies take {} characters stored, more than the \
             {DEPENDENCIES_MAX_CHARS} the column holds",
            definition.name,
            definition.version,
            json.chars().count()
        )));
    }
    Ok(json)
}

/// Reads a dependency list: `["A","B"]`, or the legacy `[{"eventName":"A"}]`; blank is empty.
pub(crate) fn parse_dependencies(text: &str) -> Result<Vec<String>, String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Dependency {
        Name(String),
        Legacy {
            #[serde(rename = "eventName")]
            event_name: String,
        },
    }
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let dependencies: Vec<Dependency> = serde_json::from_str(text).map_err(|e| {
        format!("{text:?} is not a JSON array of event names or {{\"eventName\": …}}: {e}")
    })?;
    Ok(dependencies
        .into_iter()
        .map(|dependency| match dependency {
            Dependency::Name(name) | Dependency::Legacy { event_name: name } => name,
        })
        .collect())
}

// ---- Helpers ----

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

fn parse<T: std::str::FromStr>(text: &str, what: impl Fn() -> String) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| corrupt(format!("{}: {e}", what())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_parse_in_both_forms() {
        assert_eq!(
            parse_dependencies(r#"["CHARGING_STARTED","B"]"#).unwrap(),
            ["CHARGING_STARTED", "B"]
        );
        assert_eq!(
            parse_dependencies(r#"[{"eventName":"X"},{"eventName":"Y","extra":1}]"#).unwrap(),
            ["X", "Y"]
        );
        assert_eq!(parse_dependencies(" ").unwrap(), Vec::<String>::new());
        assert!(parse_dependencies(r#"[{"name":"X"}]"#).is_err());
        assert!(parse_dependencies("CHARGING").is_err());
    }

    #[test]
    fn the_pending_deadline_is_the_exact_end_of_an_open_future_window() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let windows = |future_seconds| super::super::StoredWindows {
            anchor: at("2026-11-20T08:00:00.250999Z"),
            past_seconds: 60,
            future_seconds,
        };
        assert_eq!(
            pending_deadline(CheckPhase::Future, &windows(600)),
            Some(at("2026-11-20T08:10:00.250Z"))
        );
        assert_eq!(pending_deadline(CheckPhase::Future, &windows(0)), None);
        assert_eq!(pending_deadline(CheckPhase::Completed, &windows(600)), None);
        assert_eq!(pending_deadline(CheckPhase::Failed, &windows(600)), None);
        assert_eq!(
            pending_deadline(CheckPhase::Future, &windows(i64::MAX)),
            Some(DATETIME_MAX)
        );
    }

    #[test]
    fn poller_bounds_hold_the_exact_window() {
        let anchor = DateTime::parse_from_rfc3339("2026-11-20T08:00:00.250Z")
            .unwrap()
            .to_utc();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let windows = |past_seconds, future_seconds| super::super::StoredWindows {
            anchor,
            past_seconds,
            future_seconds,
        };
        assert_eq!(
            poller_bounds(&windows(60, 30)),
            (at("2026-11-20T07:59:00Z"), at("2026-11-20T08:00:31Z"))
        );
        assert_eq!(
            poller_bounds(&windows(-1, 0)),
            (TIMESTAMP_MIN, at("2026-11-20T08:00:01Z"))
        );
    }
}
