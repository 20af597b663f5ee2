//! The leased work queues (`jobs::JobQueue`): the robot notification outbox, the subscriptions
//! to remove and the monitors' alarms, each a table with the same queue columns — `attempts`,
//! `next_attempt_at`, `lock_id`, `locked_until`, `last_error` and a done time — whose claim,
//! done, failed, backlog and purge statements are written once here, over a [`JobTable`].
//! Every operation is bounded by the store's operation timeout.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::checks::corrupt;
use super::db::{
    Db, Dialect, SqlRow, Step, Tx, args, bounded, millis, purge_older, read_all, retrying,
};
use super::db::{LAST_ERROR_MAX_CHARS, cut, limit_arg};
use super::monitor_rows::{parse_date, to_u32};
use super::{NEVER, NewAction, OutboxMessage, PendingAction, StoreError, SubscriptionRemoval};
use crate::jobs::{Job, JobFailure, JobKind, JobQueue, Lease};
use status_check_engine::monitor::AlarmRequest;

/// Where a kind's jobs are stored.
pub(crate) struct JobTable {
    pub table: &'static str,
    /// The column that says when the job was done (`NULL` while it is not).
    pub done: &'static str,
    /// The payload's columns, as the claim selects them.
    pub payload: &'static str,
}

/// The statements of one [`JobTable`], made once.
pub(crate) struct Statements {
    claim_mysql: String,
    claim_sqlite: String,
    lease: String,
    done: String,
    failed: String,
    backlog: String,
    done_before: String,
    delete: String,
}

impl Statements {
    pub(crate) fn of(t: &JobTable) -> Statements {
        let (table, done) = (t.table, t.done);
        let claim = format!(
            "SELECT id, attempts, {} FROM {table} \
             WHERE {done} IS NULL AND next_attempt_at <= ? \
               AND (lock_id IS NULL OR locked_until < ?) \
             ORDER BY next_attempt_at, id LIMIT ?",
            t.payload
        );
        Statements {
            claim_mysql: format!("{claim} FOR UPDATE SKIP LOCKED"),
            claim_sqlite: claim,
            lease: format!("UPDATE {table} SET lock_id = ?, locked_until = ? WHERE id = ?"),
            done: format!(
                "UPDATE {table} SET {done} = ?, lock_id = NULL, locked_until = NULL \
                 WHERE id = ? AND lock_id = ? AND {done} IS NULL"
            ),
            failed: format!(
                "UPDATE {table} SET attempts = attempts + 1, last_error = ?, \
                 next_attempt_at = ?, lock_id = NULL, locked_until = NULL \
                 WHERE id = ? AND lock_id = ? AND {done} IS NULL"
            ),
            // A dead-lettered job is not backlog: nothing will perform it.
            backlog: format!(
                "SELECT COUNT(*) AS backlog FROM {table} \
                 WHERE {done} IS NULL AND next_attempt_at < ?"
            ),
            done_before: format!(
                "SELECT id FROM {table} WHERE {done} IS NOT NULL AND {done} < ? \
                 ORDER BY {done} LIMIT ?"
            ),
            delete: format!("DELETE FROM {table} WHERE id = ?"),
        }
    }
}

/// A kind of job this store keeps: its table and how a row becomes its payload.
pub(crate) trait StoredKind: JobKind {
    fn statements() -> &'static Statements;

    fn payload<R: SqlRow>(row: &R) -> Result<Self::Payload, StoreError>;
}

/// Robot notifications (SPEC §3.7), written by `lifecycle::update_checks`.
pub struct NotificationJobs;

/// Megazord subscriptions to remove (SPEC §13), queued by the change that ends what used them.
pub struct Removals;

/// The monitors' alarms (SPEC §12), written with the window end that decided them.
pub struct Alarms;

impl JobKind for NotificationJobs {
    type Payload = OutboxMessage;
    const NAME: &'static str = "notification";
}

impl JobKind for Removals {
    type Payload = SubscriptionRemoval;
    const NAME: &'static str = "removal";
}

impl JobKind for Alarms {
    type Payload = PendingAction;
    const NAME: &'static str = "alarm";
}

/// `StoredKind` for each kind: its table (its statements made once, on first use) and the
/// function that reads its payload from a claimed row.
macro_rules! stored_kinds {
    ($($kind:ty: $table:expr, $payload:ident;)*) => {$(
        impl StoredKind for $kind {
            fn statements() -> &'static Statements {
                static STATEMENTS: LazyLock<Statements> = LazyLock::new(|| Statements::of(&$table));
                &STATEMENTS
            }

            fn payload<R: SqlRow>(row: &R) -> Result<Self::Payload, StoreError> {
                $payload(row)
            }
        }
    )*};
}

stored_kinds! {
    NotificationJobs: JobTable {
        table: "status_check_outbox",
        done: "sent_at",
        payload: "status_check_id, robot_id, seq, payload, call_ref",
    }, outbox_message;
    Removals: JobTable {
        table: "status_check_subscription_removal",
        done: "done_at",
        payload: "robot_id, subscription_id, reason",
    }, subscription_removal;
    Alarms: JobTable {
        table: "status_check_monitor_action",
        done: "sent_at",
        payload: "monitor_id, robot_id, rule_id, session_date, window_number, action_index, \
                  reference_id, event_name, level, window_end",
    }, pending_action;
}

fn outbox_message<R: SqlRow>(row: &R) -> Result<OutboxMessage, StoreError> {
    Ok(OutboxMessage {
        check_id: row.int("status_check_id")?,
        robot_id: row.int("robot_id")?,
        seq: row.int("seq")?,
        payload: row.text("payload")?,
        call_ref: row.text("call_ref")?,
    })
}

fn subscription_removal<R: SqlRow>(row: &R) -> Result<SubscriptionRemoval, StoreError> {
    Ok(SubscriptionRemoval {
        robot_id: row.int("robot_id")?,
        subscription_id: row.int("subscription_id")?,
        reason: row.text("reason")?,
    })
}

fn pending_action<R: SqlRow>(row: &R) -> Result<PendingAction, StoreError> {
    let level = row.opt_int("level")?;
    let action_index = row.int("action_index")?;
    Ok(PendingAction {
        monitor_id: row.int("monitor_id")?,
        robot_id: row.int("robot_id")?,
        rule_id: row.text("rule_id")?,
        action: NewAction {
            session_date: parse_date(&row.text("session_date")?)?,
            window_number: to_u32(row.int("window_number")?, "window_number")?,
            window_end: row.time("window_end")?,
            alarm: AlarmRequest {
                action_index: usize::try_from(action_index)
                    .map_err(|_| corrupt(format!("action index {action_index}")))?,
                event_name: row.text("event_name")?,
                level: level
                    .map(|level| {
                        u8::try_from(level).map_err(|_| corrupt(format!("alarm level {level}")))
                    })
                    .transpose()?,
                reference_id: row.text("reference_id")?,
            },
        },
    })
}

#[async_trait]
impl<B: Db + 'static, K: StoredKind> JobQueue<K> for B {
    async fn claim(
        &self,
        now: DateTime<Utc>,
        lease: &Lease,
        lease_until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Job<K::Payload>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let statements = K::statements();
        let claim = match self.dialect() {
            Dialect::Mysql => statements.claim_mysql.as_str(),
            Dialect::Sqlite => statements.claim_sqlite.as_str(),
        };
        let now = millis(now);
        retrying!(self, "claim_jobs", tx => async {
            let rows = tx.fetch_all(claim, args![now, now, limit_arg(limit)]).await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in rows {
                let id = row.int("id")?;
                claimed.push(Job {
                    id,
                    attempts: to_u32(row.int("attempts")?, "attempts")?,
                    payload: K::payload(&row)?,
                });
                tx.execute(&statements.lease, args![lease.as_str(), millis(lease_until), id])
                    .await?;
            }
            Ok(Step::Commit(claimed))
        }
        .await)
    }

    async fn complete(
        &self,
        ids: &[i64],
        lease: &Lease,
        now: DateTime<Utc>,
    ) -> Result<Vec<i64>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let sql = K::statements().done.as_str();
        // One transaction for a whole batch: on SQLite every write transaction waits its turn
        // for the single writer, so one per job would halve the deadline throughput.
        retrying!(self, "complete_jobs", tx => async {
            let mut marked = Vec::with_capacity(ids.len());
            for &id in ids {
                let done = tx.execute(sql, args![millis(now), id, lease.as_str()]).await?;
                if done.rows_affected > 0 {
                    marked.push(id);
                }
            }
            Ok(Step::Commit(marked))
        }
        .await)
    }

    async fn fail(&self, failures: &[JobFailure], lease: &Lease) -> Result<u64, StoreError> {
        if failures.is_empty() {
            return Ok(0);
        }
        let sql = K::statements().failed.as_str();
        retrying!(self, "fail_jobs", tx => async {
            let mut recorded = 0;
            for failure in failures {
                let retry_at = failure.retry_at.unwrap_or(NEVER);
                recorded += tx
                    .execute(
                        sql,
                        args![
                            cut(&failure.error, LAST_ERROR_MAX_CHARS),
                            millis(retry_at),
                            failure.id,
                            lease.as_str()
                        ],
                    )
                    .await?
                    .rows_affected;
            }
            Ok(Step::Commit(recorded))
        }
        .await)
    }

    async fn backlog(&self) -> Result<i64, StoreError> {
        let sql = K::statements().backlog.as_str();
        bounded(self, "job_backlog", async {
            let mut backlog = read_all(self, sql, args![NEVER], |row| row.int("backlog")).await?;
            Ok(backlog.pop().unwrap_or(0))
        })
        .await
    }

    async fn purge(&self, done_before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        let statements = K::statements();
        bounded(
            self,
            "purge_jobs",
            purge_older(
                self,
                &statements.done_before,
                &statements.delete,
                done_before,
                limit,
            ),
        )
        .await
    }
}
