//! Writing checks into the production tables and this service's `status_check_ext`: create
//! (alone or grouped), the records and their event rows, the stored forms of windows,
//! deadlines and reference ids; and the helpers every store module uses for rows it cannot
//! read. Reading checks back is `check_reads.rs`.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::Record;
use status_check_engine::lifecycle::Windows;

use super::check_reads::{find_check, load_check};
use super::db::bounded;
use super::db::{
    Arg, Db, Mode, Retry, SqlRow, Step, TIMESTAMP_MAX, TIMESTAMP_MIN, Tx, args, clamp_timestamp,
    millis, retrying, seconds_ceil, seconds_floor,
};
use super::{CheckKey, Created, NewCheck, StoreError};

// ---- SQL ----

const SELECT_CHECK_ID_BY_KEY: &str = "SELECT status_check_id AS id FROM status_check_ext \
     WHERE robot_id = ? AND step_id = ? AND scheduled_id = ? AND planned_at = ?";

pub const INSERT_CHECK: &str = "INSERT INTO status_check (robot_id, status_check_template_id, \
     phase, subscription_id, result, step_id, next_step_id, script_version_id, scheduled_id, \
     planned_at, created_at, updated_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";

pub const INSERT_CHECK_EXT: &str = "INSERT INTO status_check_ext (status_check_id, robot_id, \
     step_id, scheduled_id, planned_at, anchor_at, past_seconds, future_seconds, next_pass, \
     next_fail, next_unknown, notification_seq, created_at, updated_at, deadline_at, \
     lease_taken_at, adopted_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)";

pub const INSERT_POLLER: &str = "INSERT INTO status_check_poller (status_check_id, since, `until`, \
     lock_id, created_at, updated_at) VALUES (?, ?, ?, NULL, ?, ?)";

pub const INSERT_RECORD: &str = "INSERT INTO status_check_record (status_check_id, \
     incoming_event_id, outgoing_event_id, event_name, `order`, phase, result, created_at) \
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)";

pub const INSERT_RECORD_EVENT: &str = "INSERT INTO status_check_record_event (record_id, \
     record_phase, status_check_id, incoming_event_id, event_created_at, `level`, reference_id) \
     VALUES (?, ?, ?, ?, ?, ?, ?)";

// ---- Checks ----

async fn try_create_check<D: Db>(db: &D, check: &NewCheck) -> Result<Created, StoreError> {
    let mut tx = db.begin(Mode::Write).await?;
    match create_in(db, &mut tx, check).await {
        Ok(created) => {
            tx.commit().await?;
            Ok(created)
        }
        Err(error) => {
            tx.rollback().await.ok();
            Err(error)
        }
    }
}

/// One create inside an open write transaction.
async fn create_in<D: Db>(db: &D, tx: &mut D::Tx, check: &NewCheck) -> Result<Created, StoreError> {
    let key = &check.key;
    // The subscribe's answer came: the subscription is stored here, or (the request lost a
    // race) removed by the caller; its record is no longer needed to recognise it.
    if let Some(intent) = check.subscribe_intent {
        tx.execute(super::intents::DELETE_INTENT, args![intent])
            .await?;
    }
    let existing = tx
        .fetch_optional(SELECT_CHECK_ID_BY_KEY, key_args(key))
        .await?;
    if let Some(row) = existing {
        let id = row.int("id")?;
        let existing = load_check(tx, id)
            .await?
            .ok_or_else(|| corrupt(format!("status_check {id} has no readable row")))?;
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
            stored_deadline(check.deadline),
            None::<DateTime<Utc>>,
            None::<DateTime<Utc>>,
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
        insert_record(tx, id, record).await?;
    }
    if check.remove_subscription
        && let Some(subscription_id) = check.subscription_id
    {
        super::removals::queue_in(db, tx, key.robot_id, subscription_id, "ended", check.now)
            .await?;
    }
    let stored = load_check(tx, id)
        .await?
        .ok_or_else(|| corrupt(format!("the new status_check {id} cannot be read back")))?;
    Ok(Created::New(stored))
}

/// The poller's `since`/`until`, whole seconds in the `TIMESTAMP` range, wide enough to hold
/// the exact window (`since` rounded down, `until` up): a scheduler claiming `until <= now`
/// never fires before the exact deadline kept in `status_check_ext`.
pub(super) fn poller_bounds(windows: &Windows) -> (DateTime<Utc>, DateTime<Utc>) {
    let anchor = millis(windows.anchor);
    let since = match windows.past_seconds {
        -1 => TIMESTAMP_MIN,
        seconds => seconds_floor(anchor - TimeDelta::seconds(seconds.max(0))),
    };
    let until = seconds_ceil(anchor + TimeDelta::seconds(windows.future_seconds.max(0)));
    (clamp_timestamp(since), clamp_timestamp(until))
}

/// The deadline the scheduler waits for (`status_check_ext.deadline_at`), as stored: to the
/// millisecond, within a `DATETIME(3)`. The engine says what it is (the end of the future
/// window while the check waits for events, else none), so the claim's index range holds the
/// open checks only, not every check that ever ended.
pub(super) fn stored_deadline(deadline: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    deadline.map(|deadline| millis(deadline).min(DATETIME_MAX))
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

/// `status_check_record_event.reference_id` is a `VARCHAR(256)`: a longer one from Megazord
/// is kept cut (on SQLite too, so both backends hold the same).
pub(super) fn stored_reference_id(reference_id: Option<&str>) -> Option<String> {
    reference_id.map(|reference| super::db::cut(reference, 256))
}

pub(super) async fn insert_record<T: Tx>(
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
            stored_reference_id(record.event.reference_id.as_deref()),
        ],
    )
    .await?;
    Ok(())
}

// ---- Helpers ----

/// A create's request key as its statements bind it.
pub(super) fn key_args(key: &CheckKey) -> Vec<Arg> {
    args![
        key.robot_id,
        key.step_id,
        key.scheduled_id,
        millis(key.planned_at)
    ]
}

pub(super) fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

pub(super) fn parse<T: std::str::FromStr>(
    text: &str,
    what: impl Fn() -> String,
) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e: T::Err| corrupt(format!("{}: {e}", what())))
}

/// Creating checks (SPEC §2.2): a check with its poller, records and request key in one
/// transaction. Part of [`Store`](super::Store); implemented once, below, for every backend,
/// each operation bounded by the backend's operation timeout.
#[async_trait::async_trait]
pub trait CheckWrites: Send + Sync {
    /// Inserts the check, its poller, its records with their event attributes and its
    /// idempotency key in one transaction. When the key exists already, inserts nothing and
    /// returns the existing check.
    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError>;

    /// Several creates, each as [`Store::create_check`] would make it, in one transaction
    /// (group commit); one outcome per check, in order. Any error fails the whole batch and
    /// nothing is written: the caller then creates each alone.
    async fn create_checks(&self, checks: &[NewCheck]) -> Result<Vec<Created>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> CheckWrites for B {
    async fn create_check(&self, check: NewCheck) -> Result<Created, StoreError> {
        let db = self;
        bounded(db, "create_check", async {
            check_insertable(&check)?;
            let mut retry = Retry::default();
            loop {
                let error = match try_create_check(db, &check).await {
                    Ok(created) => return Ok(created),
                    Err(error) => error,
                };
                match error.is_duplicate() {
                    // Lost the race against an identical create: return the winner's check. If the
                    // winner rolled back instead, try again.
                    Some(true) => {
                        if let Some(existing) = find_check(db, &check.key).await? {
                            return Ok(Created::Existing(existing));
                        }
                        if !retry.again_after(&error).await {
                            return Err(error);
                        }
                    }
                    Some(false) => {
                        return Err(StoreError::Conflict(
                            "an incoming event would be recorded twice for one check".to_owned(),
                        ));
                    }
                    None => {
                        if !retry.again(&error).await {
                            return Err(error);
                        }
                    }
                }
            }
        })
        .await
    }

    async fn create_checks(&self, checks: &[NewCheck]) -> Result<Vec<Created>, StoreError> {
        // Several creates in one transaction (group commit), each as `create_check` alone would
        // write it (a request key already taken — also by an earlier item of the batch — is the
        // existing check). Any error fails the whole batch and nothing is written: the caller then
        // creates each alone, which also settles a race with another replica's identical create.
        let db = self;
        bounded(db, "create_checks", async {
            for check in checks {
                check_insertable(check)?;
            }
            retrying!(db, tx => async {
                let mut created = Vec::with_capacity(checks.len());
                for check in checks {
                    created.push(create_in(db, &mut tx, check).await?);
                }
                Ok(Step::Commit(created))
            }
            .await)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_deadline_is_to_the_millisecond_within_a_datetime() {
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        assert_eq!(
            stored_deadline(Some(at("2026-11-20T08:10:00.250999Z"))),
            Some(at("2026-11-20T08:10:00.250Z"))
        );
        assert_eq!(stored_deadline(None), None);
        assert_eq!(
            stored_deadline(Some(DateTime::<Utc>::MAX_UTC)),
            Some(DATETIME_MAX)
        );
    }

    #[test]
    fn poller_bounds_hold_the_exact_window() {
        let anchor = DateTime::parse_from_rfc3339("2026-11-20T08:00:00.250Z")
            .unwrap()
            .to_utc();
        let at = |text: &str| DateTime::parse_from_rfc3339(text).unwrap().to_utc();
        let windows = |past_seconds, future_seconds| {
            Windows::from_effective(anchor, past_seconds, future_seconds)
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
