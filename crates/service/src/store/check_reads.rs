//! Reading checks: one by id, by request key or by subscription, a batch's by ids or
//! subscriptions (statements over id lists, `in_list.rs`), the open checks at a step, and
//! the mapping from rows to `StoredCheck` and its records — a check this service wrote, one
//! it adopted, or one the Node service wrote (production rows only).

use std::collections::HashMap;

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::{CheckResult, Event, Record};

use super::checks::{corrupt, key_args, parse};
use super::db::bounded;
use super::db::{Arg, Db, Mode, SqlRow, Tx, args, limit_arg, read_all, seconds_floor};
use super::in_list::{InList, MAX_IDS};
use super::{CheckKey, Provenance, StoreError, StoredCheck};

/// A check with its template's name and version, its poller's window and — when this service
/// created or adopted it — its extension row. A check the Node service wrote has none: it is
/// read from the production rows alone.
macro_rules! select_check {
    () => {
        "SELECT sc.id AS id, sc.robot_id AS robot_id, sc.step_id AS step_id, \
         sc.scheduled_id AS scheduled_id, sc.planned_at AS planned_at, \
         e.planned_at AS exact_planned_at, \
         sc.script_version_id AS script_version_id, sc.status_check_template_id AS template_id, \
         d.name AS template_name, t.version AS template_version, sc.phase AS phase, \
         sc.result AS result, sc.next_step_id AS next_step_id, \
         sc.subscription_id AS subscription_id, sc.created_at AS created_at, \
         sc.updated_at AS updated_at, p.since AS poller_since, p.`until` AS poller_until, \
         e.status_check_id AS ext_id, e.anchor_at AS anchor_at, \
         e.past_seconds AS past_seconds, e.future_seconds AS future_seconds, \
         e.next_pass AS next_pass, e.next_fail AS next_fail, e.next_unknown AS next_unknown, \
         e.notification_seq AS notification_seq, e.adopted_at AS adopted_at, \
         e.created_at AS ext_created_at, e.updated_at AS ext_updated_at \
         FROM status_check sc \
         JOIN status_check_template t ON t.id = sc.status_check_template_id \
         JOIN status_check_description d ON d.id = t.template_description_id \
         LEFT JOIN status_check_poller p ON p.status_check_id = sc.id \
         LEFT JOIN status_check_ext e ON e.status_check_id = sc.id "
    };
}

const SELECT_CHECK_BY_ID: &str = concat!(select_check!(), "WHERE sc.id = ?");

const SELECT_CHECK_BY_KEY: &str = concat!(
    select_check!(),
    "WHERE e.robot_id = ? AND e.step_id = ? AND e.scheduled_id = ? AND e.planned_at = ?"
);

/// A check the Node service wrote for the same request: its `planned_at` is whole seconds,
/// the request's cut (MariaDB, or MySQL with `TIME_TRUNCATE_FRACTIONAL`) or rounded (MySQL)
/// to the second, so either is the request's.
pub(crate) const SELECT_NODE_CHECK_BY_KEY: &str = concat!(
    select_check!(),
    "WHERE sc.robot_id = ? AND sc.step_id = ? AND sc.scheduled_id = ? \
     AND sc.planned_at IN (?, ?) AND e.planned_at IS NULL ORDER BY sc.id LIMIT 1"
);

macro_rules! select_records {
    () => {
        "SELECT r.status_check_id AS status_check_id, r.id AS id, r.`order` AS record_order, \
         r.phase AS phase, r.event_name AS event_name, r.incoming_event_id AS incoming_event_id, \
         r.outgoing_event_id AS outgoing_event_id, r.result AS result, r.created_at AS created_at, \
         ev.event_created_at AS event_created_at, ev.`level` AS event_level, \
         ev.reference_id AS reference_id \
         FROM status_check_record r \
         LEFT JOIN status_check_record_event ev \
           ON ev.record_id = r.id AND ev.record_phase = r.phase "
    };
}

const SELECT_RECORDS: &str = concat!(
    select_records!(),
    "WHERE r.status_check_id = ? ORDER BY r.`order`, r.id"
);

/// The records of several checks, each check's in order.
pub(crate) static SELECT_RECORDS_OF_CHECKS: InList = InList::new(
    concat!(select_records!(), "WHERE r.status_check_id IN "),
    " ORDER BY r.status_check_id, r.`order`, r.id",
);

/// The checks of several subscriptions (every robot's: the caller keeps the ones it asked for).
pub(crate) static SELECT_CHECKS_BY_SUBSCRIPTIONS: InList =
    InList::new(concat!(select_check!(), "WHERE sc.subscription_id IN "), "");

pub(crate) async fn find_check<D: Db>(
    db: &D,
    key: &CheckKey,
) -> Result<Option<StoredCheck>, StoreError> {
    let mut tx = db.begin(Mode::Read).await?;
    let row = tx
        .fetch_optional(SELECT_CHECK_BY_KEY, key_args(key))
        .await?;
    let row = match row {
        Some(row) => Some(row),
        None => {
            tx.fetch_optional(
                SELECT_NODE_CHECK_BY_KEY,
                args![
                    key.robot_id,
                    key.step_id,
                    key.scheduled_id,
                    seconds_floor(key.planned_at),
                    seconds_floor(key.planned_at + TimeDelta::milliseconds(500))
                ],
            )
            .await?
        }
    };
    let check = match row {
        Some(row) => Some(check_with_records(&mut tx, &row).await?),
        None => None,
    };
    tx.commit().await?;
    Ok(check)
}

pub(crate) const COUNT_OPEN_AT_STEP: &str = "SELECT COUNT(*) AS open_checks FROM status_check \
     WHERE robot_id = ? AND step_id = ? AND phase NOT IN ('COMPLETED', 'FAILED')";

pub(super) async fn load_check<T: Tx>(
    tx: &mut T,
    id: i64,
) -> Result<Option<StoredCheck>, StoreError> {
    match tx.fetch_optional(SELECT_CHECK_BY_ID, args![id]).await? {
        Some(row) => Ok(Some(check_with_records(tx, &row).await?)),
        None => Ok(None),
    }
}

async fn check_with_records<T: Tx>(tx: &mut T, row: &T::Row) -> Result<StoredCheck, StoreError> {
    let id = row.int("id")?;
    let created_at = check_created_at(row)?;
    let records = tx
        .fetch_all(SELECT_RECORDS, args![id])
        .await?
        .iter()
        .map(|row| record_from_row(id, created_at, row))
        .collect::<Result<Vec<_>, _>>()?;
    check_from_row(row, records)
}

/// When a check was created: `created_at` is nullable in production, and a row without it is
/// the Node service's, read as created when it was planned.
fn check_created_at<R: SqlRow>(row: &R) -> Result<DateTime<Utc>, StoreError> {
    let planned_at = row.time("planned_at")?;
    Ok(row.opt_time("created_at")?.unwrap_or(planned_at))
}

fn check_from_row<R: SqlRow>(row: &R, records: Vec<Record>) -> Result<StoredCheck, StoreError> {
    let id = row.int("id")?;
    let what = |column: &str| format!("status_check {id}: {column}");
    let planned_at = row.time("planned_at")?;
    let created_at = check_created_at(row)?;
    let updated_at = row.opt_time("updated_at")?.unwrap_or(created_at);
    let own = row.opt_int("ext_id")?.is_some();
    let (windows, next_steps, provenance) = if own {
        let windows = Windows::from_effective(
            row.time("anchor_at")?,
            row.int("past_seconds")?,
            row.int("future_seconds")?,
        );
        let next_steps = NextSteps {
            pass: row.int("next_pass")?,
            fail: row.int("next_fail")?,
            unknown: row.opt_int("next_unknown")?,
        };
        let provenance = match row.opt_time("adopted_at")? {
            Some(_) => Provenance::Adopted,
            None => Provenance::Own,
        };
        (windows, Some(next_steps), provenance)
    } else {
        let since = row.opt_time("poller_since")?;
        let until = row.opt_time("poller_until")?;
        (
            node_windows(created_at, since, until),
            None,
            Provenance::NodeOnly,
        )
    };
    let (created_at, updated_at, planned_at, notification_seq) = match provenance {
        Provenance::Own => (
            row.time("ext_created_at")?,
            row.time("ext_updated_at")?,
            row.opt_time("exact_planned_at")?.unwrap_or(planned_at),
            row.int("notification_seq")?,
        ),
        Provenance::Adopted => (
            created_at,
            row.time("ext_updated_at")?,
            planned_at,
            row.int("notification_seq")?,
        ),
        Provenance::NodeOnly => (created_at, updated_at, planned_at, 0),
    };
    Ok(StoredCheck {
        id,
        key: CheckKey {
            robot_id: row.int("robot_id")?,
            step_id: row.int("step_id")?,
            scheduled_id: row.int("scheduled_id")?,
            planned_at,
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
        windows,
        next_steps,
        provenance,
        notification_seq,
        records,
        created_at,
        updated_at,
    })
}

/// The windows of a check the Node service wrote, from its poller row: anchored at its
/// creation, `since` and `until` as the poller has them (whole seconds; no `since` is an
/// unbounded look-back, no `until` no future window).
pub(super) fn node_windows(
    anchor: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
) -> Windows {
    Windows::from_effective(
        anchor,
        since.map_or(-1, |since| (anchor - since).num_seconds().max(0)),
        until.map_or(0, |until| (until - anchor).num_seconds().max(0)),
    )
}

/// A record. One the Node service wrote has no `status_check_record_event` row: its event
/// time is the record's `created_at` (nullable in production: else its check's,
/// `check_created_at`), level and reference unknown; without an incoming event id its event
/// id is minus the record's id — never a Megazord id (they start at 1), and distinct per
/// record, as the engine's history needs.
fn record_from_row<R: SqlRow>(
    check_id: i64,
    check_created_at: DateTime<Utc>,
    row: &R,
) -> Result<Record, StoreError> {
    let record_id = row.int("id")?;
    let what = |column: &str| format!("status_check {check_id}, record {record_id}: {column}");
    let created_at = row.opt_time("created_at")?;
    let event_created_at = row
        .opt_time("event_created_at")?
        .or(created_at)
        .unwrap_or(check_created_at);
    let order = row.int("record_order")?;
    Ok(Record {
        order: u32::try_from(order)
            .map_err(|_| corrupt(format!("{} {order} is out of range", what("order"))))?,
        phase: parse(&row.text("phase")?, || what("phase"))?,
        event: Event {
            id: row.opt_int("incoming_event_id")?.unwrap_or(-record_id),
            name: row.text("event_name")?,
            created_at: event_created_at,
            level: row.opt_int("event_level")?,
            reference_id: row.opt_text("reference_id")?,
        },
        outgoing_event_id: row.opt_int("outgoing_event_id")?,
        result: parse(&row.text("result")?, || what("result"))?,
        created_at: created_at.unwrap_or(event_created_at),
    })
}

pub(crate) const SELECT_CHECK_BY_SUBSCRIPTION: &str = concat!(
    select_check!(),
    "WHERE sc.robot_id = ? AND sc.subscription_id = ? ORDER BY sc.id DESC LIMIT 1"
);

/// [`find_by_subscription`] for many (robot, subscription) pairs in one read transaction and
/// two statements per [`MAX_IDS`] pairs — a delivery batch's reads — one answer per pair, in
/// order.
pub(crate) async fn find_by_subscriptions<D: Db>(
    db: &D,
    keys: &[(i64, i64)],
) -> Result<Vec<Option<StoredCheck>>, StoreError> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut subscriptions: Vec<i64> = keys.iter().map(|&(_, subscription)| subscription).collect();
    subscriptions.sort_unstable();
    subscriptions.dedup();
    let mut tx = db.begin(Mode::Read).await?;
    // Per pair, its latest check (as `ORDER BY sc.id DESC LIMIT 1` picks one alone).
    let mut latest: HashMap<(i64, i64), <D::Tx as Tx>::Row> = HashMap::new();
    for chunk in subscriptions.chunks(MAX_IDS) {
        let (sql, ids) = SELECT_CHECKS_BY_SUBSCRIPTIONS.for_ids(chunk);
        for row in tx
            .fetch_all(sql, ids.into_iter().map(Arg::from).collect())
            .await?
        {
            let key = (row.int("robot_id")?, row.int("subscription_id")?);
            if !keys.contains(&key) {
                continue;
            }
            let id = row.int("id")?;
            match latest.get(&key) {
                Some(kept) if kept.int("id")? > id => {}
                _ => {
                    latest.insert(key, row);
                }
            }
        }
    }
    let (found, rows): (Vec<(i64, i64)>, Vec<_>) = latest.into_iter().unzip();
    let checks = with_records(&mut tx, rows).await?;
    tx.commit().await?;
    let checks: HashMap<(i64, i64), StoredCheck> = found.into_iter().zip(checks).collect();
    Ok(keys.iter().map(|key| checks.get(key).cloned()).collect())
}

pub(crate) static SELECT_CHECKS_BY_IDS: InList =
    InList::new(concat!(select_check!(), "WHERE sc.id IN "), "");

/// The checks of `rows` with their records (read [`MAX_IDS`] checks per statement), in the
/// order of `rows`.
async fn with_records<T: Tx>(
    tx: &mut T,
    rows: Vec<T::Row>,
) -> Result<Vec<StoredCheck>, StoreError> {
    let mut check_ids: Vec<i64> = rows
        .iter()
        .map(|row| row.int("id"))
        .collect::<Result<_, _>>()?;
    check_ids.sort_unstable();
    let created: HashMap<i64, DateTime<Utc>> = rows
        .iter()
        .map(|row| Ok((row.int("id")?, check_created_at(row)?)))
        .collect::<Result<_, StoreError>>()?;
    let mut records: HashMap<i64, Vec<Record>> = HashMap::new();
    for chunk in check_ids.chunks(MAX_IDS) {
        let (sql, ids) = SELECT_RECORDS_OF_CHECKS.for_ids(chunk);
        for row in tx
            .fetch_all(sql, ids.into_iter().map(Arg::from).collect())
            .await?
        {
            let check_id = row.int("status_check_id")?;
            let check_created_at = created.get(&check_id).copied().ok_or_else(|| {
                corrupt(format!(
                    "record of status_check {check_id}, which was not read"
                ))
            })?;
            records.entry(check_id).or_default().push(record_from_row(
                check_id,
                check_created_at,
                &row,
            )?);
        }
    }
    rows.iter()
        .map(|row| {
            let id = row.int("id")?;
            check_from_row(row, records.remove(&id).unwrap_or_default())
        })
        .collect()
}

/// One page of a backtest's read (SPEC §14): the ended checks of some template versions
/// created in `[since, until)` — of some robots, when `robots` is not empty — with an id
/// above `after`, in id order (keyset pagination over the primary key), at most `limit`.
#[derive(Debug, Clone)]
pub struct EndedChecksPage<'a> {
    pub template_ids: &'a [i64],
    pub robots: &'a [i64],
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub after: i64,
    pub limit: usize,
}

/// The statement of [`EndedChecksPage`] for so many template ids and robots — the page, or
/// how many checks the whole period holds (`count`) — built once per shape and kept for the
/// process's lifetime (the `Tx` seam takes `&'static str`); every value is bound.
pub(crate) fn ended_checks_sql(templates: usize, robots: usize, count: bool) -> &'static str {
    type Shape = (usize, usize, bool);
    static TEXTS: std::sync::Mutex<Vec<(Shape, &'static str)>> = std::sync::Mutex::new(Vec::new());
    let shape = (templates, robots, count);
    let mut texts = TEXTS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((_, text)) = texts.iter().find(|(known, _)| *known == shape) {
        return text;
    }
    let list = |n: usize| vec!["?"; n].join(", ");
    let robots_filter = match robots {
        0 => String::new(),
        n => format!("AND sc.robot_id IN ({}) ", list(n)),
    };
    let filter = format!(
        "WHERE sc.status_check_template_id IN ({}) AND sc.phase IN ('COMPLETED', 'FAILED') \
         AND sc.created_at >= ? AND sc.created_at < ? {robots_filter}AND sc.id > ?",
        list(templates),
    );
    let text = if count {
        format!("SELECT COUNT(*) AS checks FROM status_check sc {filter}")
    } else {
        format!("{}{filter} ORDER BY sc.id LIMIT ?", select_check!())
    };
    let text: &'static str = Box::leak(text.into_boxed_str());
    texts.push((shape, text));
    text
}

/// The arguments of [`ended_checks_sql`], the page's limit aside.
fn ended_checks_args(page: &EndedChecksPage<'_>) -> Vec<Arg> {
    let mut bound: Vec<Arg> = page.template_ids.iter().map(|&id| Arg::from(id)).collect();
    // The production `created_at`: the bounds are compared as it is stored.
    bound.push(Arg::from(page.since));
    bound.push(Arg::from(page.until));
    bound.extend(page.robots.iter().map(|&id| Arg::from(id)));
    bound.push(Arg::from(page.after));
    bound
}

pub(crate) async fn ended_checks_page<D: Db>(
    db: &D,
    page: &EndedChecksPage<'_>,
) -> Result<Vec<StoredCheck>, StoreError> {
    if page.template_ids.is_empty() || page.limit == 0 {
        return Ok(Vec::new());
    }
    // One statement per version, each walking its version's index in id order, then the
    // lowest ids of them all: with every id in one `IN`, SQLite read and sorted all the later
    // checks of the period for every page (quadratic in the period's size).
    let sql = ended_checks_sql(1, page.robots.len(), false);
    let mut tx = db.begin(Mode::Read).await?;
    let mut keyed = Vec::new();
    for template_id in page.template_ids {
        let version = EndedChecksPage {
            template_ids: std::slice::from_ref(template_id),
            ..page.clone()
        };
        let mut bound = ended_checks_args(&version);
        bound.push(Arg::from(limit_arg(page.limit)));
        for row in tx.fetch_all(sql, bound).await? {
            keyed.push((row.int("id")?, row));
        }
    }
    keyed.sort_unstable_by_key(|(id, _)| *id);
    keyed.truncate(page.limit);
    let rows = keyed.into_iter().map(|(_, row)| row).collect();
    let checks = with_records(&mut tx, rows).await?;
    tx.commit().await?;
    Ok(checks)
}

/// How far before the period's start the seek stays: a check's id rises with its creation
/// but not strictly (transactions commit out of order, the Node service's replicas stamped
/// their own times), so the pages start after the last check created more than this before
/// `since`.
const SEEK_MARGIN: TimeDelta = TimeDelta::hours(1);

/// The id after which the checks created at `since` or later begin, found by a binary search
/// of the primary key (a few dozen one-row reads): the table has no index on `created_at`, and
/// the pages walk each version's index in id order, so without it the first page would read
/// every older check of the template — years of them in production.
pub(crate) async fn ended_checks_start<D: Db>(
    db: &D,
    since: DateTime<Utc>,
) -> Result<i64, StoreError> {
    const NEXT: &str = "SELECT id, created_at FROM status_check WHERE id > ? ORDER BY id LIMIT 1";
    const LAST: &str = "SELECT id FROM status_check ORDER BY id DESC LIMIT 1";
    let threshold = since
        .checked_sub_signed(SEEK_MARGIN)
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut tx = db.begin(Mode::Read).await?;
    // Every check up to `early` was created before the threshold; the answer is at most `late`.
    let mut early = 0;
    let mut late = match tx.fetch_optional(LAST, Vec::new()).await? {
        Some(row) => row.int("id")?,
        None => 0,
    };
    while early < late {
        let mid = early + (late - early) / 2;
        let next = tx.fetch_optional(NEXT, args![mid]).await?;
        match next {
            Some(row) if row.opt_time("created_at")?.is_some_and(|at| at < threshold) => {
                early = row.int("id")?;
            }
            // Created late enough, or no time kept (NULL in production): the pages begin at
            // or before it.
            _ => late = mid,
        }
    }
    tx.commit().await?;
    Ok(early.min(late))
}

/// How many checks the pages from `page.after` on hold (its limit aside): a progress bar's
/// length.
pub(crate) async fn count_ended_checks<D: Db>(
    db: &D,
    page: &EndedChecksPage<'_>,
) -> Result<u64, StoreError> {
    if page.template_ids.is_empty() {
        return Ok(0);
    }
    let sql = ended_checks_sql(page.template_ids.len(), page.robots.len(), true);
    let count = read_all(db, sql, ended_checks_args(page), |row| row.int("checks"))
        .await?
        .pop()
        .unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Reading checks: by id, by request key, by subscription, the open ones at a step. Part of
/// [`Store`](super::Store); implemented once, below, for every backend, each operation bounded
/// by the backend's operation timeout.
#[async_trait::async_trait]
pub trait CheckReads: Send + Sync {
    /// The check with this id, whoever owns it.
    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError>;

    /// [`Store::get_check`] for many ids at once, in one read transaction with two
    /// statements per 64 ids (`in_list::MAX_IDS`; a claimed batch of deadlines' reads); one
    /// answer per id, in order.
    async fn get_checks(&self, ids: &[i64]) -> Result<Vec<Option<StoredCheck>>, StoreError>;

    /// The check created for this request key, if any.
    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError>;

    /// How many checks of this robot at this step are open (not `COMPLETED`/`FAILED`): the
    /// per-robot cap of create (SPEC §13). Served by the production `fk_status_check_step_id`
    /// on MySQL, by the partial index of open checks (migration 0007) on SQLite.
    async fn open_checks_at_step(&self, robot_id: i64, step_id: i64) -> Result<u64, StoreError>;

    /// The check a delivery belongs to: (robot, Megazord subscription), looked up through the
    /// subscription index (production's `fk_status_check_subscription_id`; SQLite's from
    /// migration 0007; docs/storage.md). Should two checks of a robot name one subscription,
    /// the newest.
    async fn find_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredCheck>, StoreError>;

    /// [`Store::find_by_subscription`] for many `(robot, subscription)` pairs at once, in one
    /// read transaction with two statements per 64 subscriptions (`in_list::MAX_IDS`; a
    /// delivery batch's reads); one answer per pair, in order.
    async fn find_by_subscriptions(
        &self,
        keys: &[(i64, i64)],
    ) -> Result<Vec<Option<StoredCheck>>, StoreError>;
}

#[async_trait::async_trait]
impl<B: Db + 'static> CheckReads for B {
    async fn get_check(&self, id: i64) -> Result<Option<StoredCheck>, StoreError> {
        let db = self;
        bounded(db, "get_check", async {
            let mut tx = db.begin(Mode::Read).await?;
            let check = load_check(&mut tx, id).await?;
            tx.commit().await?;
            Ok(check)
        })
        .await
    }

    async fn get_checks(&self, ids: &[i64]) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        // [`get_check`] for many ids in one read transaction and two statements per [`MAX_IDS`]
        // ids — a claimed batch of deadlines' reads — one answer per id, in order.
        let db = self;
        bounded(db, "get_checks", async {
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let mut sorted = ids.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            let mut tx = db.begin(Mode::Read).await?;
            let mut rows = Vec::with_capacity(sorted.len());
            for chunk in sorted.chunks(MAX_IDS) {
                let (sql, ids) = SELECT_CHECKS_BY_IDS.for_ids(chunk);
                rows.extend(
                    tx.fetch_all(sql, ids.into_iter().map(Arg::from).collect())
                        .await?,
                );
            }
            let checks = with_records(&mut tx, rows).await?;
            tx.commit().await?;
            let checks: HashMap<i64, StoredCheck> =
                checks.into_iter().map(|check| (check.id, check)).collect();
            Ok(ids.iter().map(|id| checks.get(id).cloned()).collect())
        })
        .await
    }

    async fn find_check(&self, key: &CheckKey) -> Result<Option<StoredCheck>, StoreError> {
        bounded(self, "find_check", find_check(self, key)).await
    }

    async fn open_checks_at_step(&self, robot_id: i64, step_id: i64) -> Result<u64, StoreError> {
        let db = self;
        bounded(db, "open_checks_at_step", async {
            let args = args![robot_id, step_id];
            let count = read_all(db, COUNT_OPEN_AT_STEP, args, |row| row.int("open_checks"))
                .await?
                .pop()
                .unwrap_or(0);
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn find_by_subscription(
        &self,
        robot_id: i64,
        subscription_id: i64,
    ) -> Result<Option<StoredCheck>, StoreError> {
        let db = self;
        bounded(db, "find_by_subscription", async {
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
        })
        .await
    }

    async fn find_by_subscriptions(
        &self,
        keys: &[(i64, i64)],
    ) -> Result<Vec<Option<StoredCheck>>, StoreError> {
        bounded(
            self,
            "find_by_subscriptions",
            find_by_subscriptions(self, keys),
        )
        .await
    }
}
