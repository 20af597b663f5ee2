//! The writes of one unit — a create, a delivery, a finalisation — as the service's store makes
//! them (the statements are `store::sql`'s), written once for both raw clients: `raw.rs` runs
//! them through `rusqlite`, `raw_mysql.rs` through the `mysql` crate.

use chrono::{DateTime, TimeDelta, Utc};
use status_check::store::sql::{
    DELETE_INTENT, INSERT_CHECK, INSERT_CHECK_EXT, INSERT_INTENT, INSERT_OUTBOX, INSERT_POLLER,
    INSERT_RECORD, INSERT_RECORD_EVENT, QUEUE_REMOVAL_SQLITE, RELEASE_POLLER, UPDATE_CHECK_STATE,
    UPDATE_EXT_STATE,
};
use status_check_engine::CheckResult;

use super::*;
use crate::deliveries::toilet_expected;

/// A bound value. Times are bound as each client binds them (SQLite: RFC 3339 text with
/// milliseconds, as the store stores them; MySQL: a DATETIME value).
#[derive(Debug, Clone)]
pub(super) enum Arg {
    Int(i64),
    Text(String),
    Time(DateTime<Utc>),
    Bool(bool),
    Null,
    /// The id the `n`-th statement of this unit inserted.
    InsertId(usize),
}

impl From<i64> for Arg {
    fn from(value: i64) -> Arg {
        Arg::Int(value)
    }
}

impl From<&str> for Arg {
    fn from(value: &str) -> Arg {
        Arg::Text(value.to_owned())
    }
}

impl From<DateTime<Utc>> for Arg {
    fn from(value: DateTime<Utc>) -> Arg {
        Arg::Time(value)
    }
}

impl From<bool> for Arg {
    fn from(value: bool) -> Arg {
        Arg::Bool(value)
    }
}

impl<T: Into<Arg>> From<Option<T>> for Arg {
    fn from(value: Option<T>) -> Arg {
        value.map_or(Arg::Null, Into::into)
    }
}

macro_rules! args {
    ($($value:expr),* $(,)?) => { vec![$(Arg::from($value)),*] };
}

/// One statement with its arguments.
pub(super) struct Write {
    pub(super) sql: &'static str,
    pub(super) args: Vec<Arg>,
}

fn write(sql: &'static str, args: Vec<Arg>) -> Write {
    Write { sql, args }
}

fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

/// The subscription a raw check holds.
pub(super) fn raw_subscription(scheduled: i64) -> i64 {
    70_000_000 + scheduled
}

/// What a raw check row holds.
#[derive(Debug, Clone)]
pub(super) struct RawCheck {
    pub(super) robot: i64,
    pub(super) scheduled: i64,
    pub(super) template_id: i64,
    /// The step, its next steps are `step * 10 + 1, 2, 3` (rows that exist on MySQL).
    pub(super) step: i64,
    pub(super) subscription: Option<i64>,
    pub(super) anchor: DateTime<Utc>,
    pub(super) future_seconds: i64,
    /// The exact deadline (`None`: no pending deadline).
    pub(super) deadline: Option<DateTime<Utc>>,
    /// The record of the subscribe made for it ([`subscribe_intent_write`]), deleted by the
    /// create's write as the service's deletes it.
    pub(super) subscribe_intent: Option<i64>,
}

impl RawCheck {
    /// A create's check as (a) writes it: robot-is-charging's step 103, anchored now, a
    /// 600 s future window, subscribed.
    pub(super) fn create(
        robot: i64,
        scheduled: i64,
        template_id: i64,
        subscription: i64,
    ) -> RawCheck {
        let now = Utc::now();
        RawCheck {
            robot,
            scheduled,
            template_id,
            step: 103,
            subscription: Some(subscription),
            anchor: now,
            future_seconds: 600,
            deadline: Some(now + TimeDelta::seconds(600)),
            subscribe_intent: None,
        }
    }
}

/// The record of a subscribe about to be made, as `record_subscribe_intent` writes it in its
/// own transaction before the call: the robot, the event names as JSON, no queue (checks use
/// none).
pub(super) fn subscribe_intent_write(
    robot: i64,
    event_names: &[&str],
    now: DateTime<Utc>,
) -> Write {
    let names = serde_json::to_string(event_names).unwrap_or_default();
    write(
        INSERT_INTENT,
        args![robot, names.as_str(), None::<&str>, millis(now)],
    )
}

/// One create's rows (status_check, ext, poller), as `create_check` writes them; first, as it
/// does, the deletion of its subscribe's record when it has one.
pub(super) fn create_writes(check: &RawCheck, now: DateTime<Utc>) -> Vec<Write> {
    let (now_ms, now_s) = (millis(now), floor_seconds(now));
    let planned = planned_at();
    let until = check.anchor + TimeDelta::seconds(check.future_seconds);
    let mut writes: Vec<Write> = check
        .subscribe_intent
        .map(|intent| write(DELETE_INTENT, args![intent]))
        .into_iter()
        .collect();
    // The status_check insert, whose id the ext and poller rows reference.
    let check_row = writes.len();
    writes.extend([
        write(
            INSERT_CHECK,
            args![
                check.robot,
                check.template_id,
                "FUTURE",
                check.subscription,
                Some("PENDING"),
                check.step,
                None::<i64>,
                SCRIPT_VERSION_ID,
                check.scheduled,
                planned,
                now_s,
                now_s,
            ],
        ),
        write(INSERT_CHECK_EXT, {
            let mut args = vec![Arg::InsertId(check_row)];
            args.extend(args![
                check.robot,
                check.step,
                check.scheduled,
                planned,
                millis(check.anchor),
                3600_i64,
                check.future_seconds,
                check.step * 10 + 1,
                check.step * 10 + 2,
                Some(check.step * 10 + 3),
                now_ms,
                now_ms,
                check.deadline.map(millis),
                None::<DateTime<Utc>>,
                None::<DateTime<Utc>>,
            ]);
            args
        }),
        write(INSERT_POLLER, {
            let mut args = vec![Arg::InsertId(check_row)];
            args.extend(args![
                floor_seconds(check.anchor - TimeDelta::hours(1)),
                floor_seconds(until) + TimeDelta::seconds(1),
                now_s,
                now_s,
            ]);
            args
        }),
    ]);
    writes
}

/// A delivery of the deliveries scenario: the `round`-th (0-based) TOILET_VISIT of check
/// `check` (robot `robot`), the `ticket`-th delivery overall; incoming event `event_id`,
/// outgoing `outgoing_id`.
#[derive(Debug, Clone)]
pub(super) struct RawDelivery {
    pub(super) check: i64,
    pub(super) robot: i64,
    pub(super) round: usize,
    pub(super) event_id: i64,
    pub(super) outgoing_id: i64,
}

/// One delivery's writes, as `update_check` makes them for a toilet-activity visit: the
/// check's state, its ext row, a record and its event row, and the robot's notification
/// (a `payload`-sized outbox row) when the result changed.
pub(super) fn delivery_writes(d: &RawDelivery, payload: &str, now: DateTime<Utc>) -> Vec<Write> {
    let (now_ms, now_s) = (millis(now), floor_seconds(now));
    let (result, seq) = toilet_expected(d.round + 1);
    let notify = toilet_expected(d.round).0 != result;
    let mut writes = vec![
        write(
            UPDATE_CHECK_STATE,
            args!["FUTURE", Some(result.as_str()), None::<i64>, now_s, d.check],
        ),
        write(
            UPDATE_EXT_STATE,
            args![
                seq,
                Some(millis(now + TimeDelta::seconds(3600))),
                false,
                now_ms,
                d.check
            ],
        ),
        write(
            INSERT_RECORD,
            args![
                d.check,
                Some(d.event_id),
                Some(d.outgoing_id),
                "TOILET_VISIT",
                d.round as i64 + 1,
                "FUTURE",
                result.as_str(),
                now_s,
            ],
        ),
        write(INSERT_RECORD_EVENT, {
            let mut args = vec![Arg::InsertId(2)];
            args.extend(args![
                "FUTURE",
                d.check,
                d.event_id,
                now_ms,
                Some(1_i64),
                None::<&str>
            ]);
            args
        }),
    ];
    if notify {
        writes.push(outbox_write(d.check, d.robot, seq, payload, now_ms));
    }
    writes
}

fn outbox_write(check: i64, robot: i64, seq: i64, payload: &str, now_ms: DateTime<Utc>) -> Write {
    write(
        INSERT_OUTBOX,
        args![
            check,
            robot,
            seq,
            payload,
            "00000000-0000-0000-0000-000000000000",
            now_ms,
            now_ms
        ],
    )
}

/// One delivery that ends its check ((b′): medication-box-opened, PASS on an opening), as
/// `update_check` makes it: the record and its event row, then the final state and next step,
/// the ext row, the subscription queued for removal and the robot's notification — a
/// finalisation's writes ([`finalise_writes`]) but the lease's (a delivery holds none), after a
/// record's.
pub(super) fn deciding_delivery_writes(
    d: &RawDelivery,
    (event_name, subscription): (&str, i64),
    payload: &str,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let (now_ms, now_s) = (millis(now), floor_seconds(now));
    let mut writes = vec![
        write(
            INSERT_RECORD,
            args![
                d.check,
                Some(d.event_id),
                Some(d.outgoing_id),
                event_name,
                1_i64,
                "FUTURE",
                CheckResult::Pass.as_str(),
                now_s,
            ],
        ),
        write(INSERT_RECORD_EVENT, {
            let mut args = vec![Arg::InsertId(0)];
            args.extend(args![
                "FUTURE",
                d.check,
                d.event_id,
                now_ms,
                None::<i64>,
                None::<&str>
            ]);
            args
        }),
    ];
    let ending = Ending {
        phase: "COMPLETED",
        result: CheckResult::Pass,
        next_step: 124,
        release_lease: false,
    };
    writes.extend(finalise_writes(
        d.check,
        (d.robot, subscription),
        &ending,
        payload,
        now,
    ));
    writes
}

/// How a check ends in a raw limit's writes.
#[derive(Clone, Copy)]
pub(super) struct Ending {
    pub(super) phase: &'static str,
    pub(super) result: CheckResult,
    pub(super) next_step: i64,
    /// A deadline's claim holds a lease to release; a delivery none.
    pub(super) release_lease: bool,
}

/// One finalisation's writes, as `update_check` makes them for robot-is-charging (at a
/// deadline: FAILED, FAIL): the check's final state and next step, the lease released (a
/// deadline's claim holds one; a delivery none), the ext row, the subscription queued for
/// removal, and the robot's notification (SQLite's SQL).
pub(super) fn finalise_writes(
    check: i64,
    (robot, subscription): (i64, i64),
    ending: &Ending,
    payload: &str,
    now: DateTime<Utc>,
) -> Vec<Write> {
    let Ending {
        phase,
        result,
        next_step,
        release_lease,
    } = *ending;
    let (now_ms, now_s) = (millis(now), floor_seconds(now));
    let mut writes = vec![write(
        UPDATE_CHECK_STATE,
        args![phase, Some(result.as_str()), Some(next_step), now_s, check],
    )];
    if release_lease {
        writes.push(write(RELEASE_POLLER, args![now_s, check]));
    }
    writes.extend([
        write(
            UPDATE_EXT_STATE,
            args![1_i64, None::<DateTime<Utc>>, release_lease, now_ms, check],
        ),
        write(
            QUEUE_REMOVAL_SQLITE,
            args![robot, subscription, "ended", now_ms, now_ms],
        ),
        outbox_write(check, robot, 1, payload, now_ms),
    ]);
    writes
}
