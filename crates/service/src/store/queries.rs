//! The store's behaviour, written once for both backends: the SQL (identical text in both
//! dialects), the transactions, and the mapping between rows and the engine's types.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::template::{PhaseDefinition, PollerDefaults};
use status_check_engine::{CheckResult, Event, Record, TemplateDefinition};

use super::db::{
    ATTEMPTS, Db, Failure, Mode, SqlRow, TIMESTAMP_MAX, TIMESTAMP_MIN, Tx, args, clamp_timestamp,
    millis, seconds_ceil, seconds_floor,
};
use super::{CheckKey, Created, NewCheck, StoreError, StoredCheck, StoredTemplate, Synced};

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

const INSERT_CHECK: &str = "INSERT INTO status_check (robot_id, status_check_template_id, \
     phase, subscription_id, result, step_id, next_step_id, script_version_id, scheduled_id, \
     planned_at, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

const INSERT_CHECK_EXT: &str = "INSERT INTO status_check_ext (status_check_id, robot_id, \
     step_id, scheduled_id, planned_at, anchor_at, past_seconds, future_seconds, next_pass, \
     next_fail, next_unknown, notification_seq, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)";

const INSERT_POLLER: &str = "INSERT INTO status_check_poller (status_check_id, since, `until`, \
     lock_id, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)";

const INSERT_RECORD: &str = "INSERT INTO status_check_record (status_check_id, \
     incoming_event_id, outgoing_event_id, event_name, `order`, phase, result, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

const INSERT_RECORD_EVENT: &str = "INSERT INTO status_check_record_event (record_id, \
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
