//! (c) deadlines: what the child process measures with — triggers on its own database that note
//! each claim and each final write of a check as SQLite's clock saw them, and the robots'
//! queues that note each notification.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::Connection;
use status_check::queue::{
    OutgoingMessage, Queue, QueueError, QueueMessage, ReceiveRequest, VisibilityChange,
};

/// When each check was claimed and finalised, as the database saw it.
#[derive(Default)]
pub(super) struct Timeline {
    /// (check, exact deadline, claimed at).
    pub(super) claims: Vec<(i64, DateTime<Utc>, DateTime<Utc>)>,
    /// (check, committed final at).
    pub(super) finalised: Vec<(i64, DateTime<Utc>)>,
}

/// The bench's own tables and triggers, added to the child's database before the run (the
/// service never reads them). A claim is the scheduler taking a check's lease
/// (`lease_taken_at` set); a finalisation is every write of a check's state
/// (`notification_seq`, written by each update) once its phase is final — so a check written
/// final twice is noted twice. `noted_at` is SQLite's clock at the write (ms); `batch_at` the
/// write's `updated_at`, the one `now` of the scheduler's batch it belongs to.
pub(super) const TIMELINE_TRIGGERS: &str = "
CREATE TABLE bench_claim (check_id INTEGER NOT NULL, deadline_at TEXT NOT NULL,
                          noted_at TEXT NOT NULL);
CREATE TABLE bench_final (check_id INTEGER NOT NULL, batch_at TEXT NOT NULL,
                          noted_at TEXT NOT NULL);
CREATE TRIGGER bench_claimed AFTER UPDATE OF lease_taken_at ON status_check_ext
WHEN NEW.lease_taken_at IS NOT NULL AND NEW.lease_taken_at IS NOT OLD.lease_taken_at
BEGIN
    INSERT INTO bench_claim VALUES (NEW.status_check_id, NEW.deadline_at,
                                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
CREATE TRIGGER bench_finalised AFTER UPDATE OF notification_seq ON status_check_ext
WHEN (SELECT phase FROM status_check WHERE id = NEW.status_check_id) IN ('COMPLETED', 'FAILED')
BEGIN
    INSERT INTO bench_final VALUES (NEW.status_check_id, NEW.updated_at,
                                    strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
END;
";

/// How many final writes the triggers noted so far.
pub(super) fn finalised_count(conn: &Connection) -> anyhow::Result<usize> {
    let count: i64 = conn.query_row("SELECT COUNT(*) FROM bench_final", [], |row| row.get(0))?;
    Ok(usize::try_from(count)?)
}

/// What the triggers noted, in the order of the writes. A batch's checks commit together: each
/// is taken as finalised at its batch's last write, the moment before that batch's commit.
pub(super) fn read_timeline(conn: &Connection) -> anyhow::Result<Timeline> {
    let time = |text: String| -> rusqlite::Result<DateTime<Utc>> {
        text.parse().map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let claims = conn
        .prepare("SELECT check_id, deadline_at, noted_at FROM bench_claim ORDER BY rowid")?
        .query_map([], |row| {
            Ok((row.get(0)?, time(row.get(1)?)?, time(row.get(2)?)?))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let finalised = conn
        .prepare(
            "WITH batches AS (SELECT batch_at, MAX(noted_at) AS committed_at FROM bench_final \
             GROUP BY batch_at) \
             SELECT f.check_id, b.committed_at FROM bench_final f \
             JOIN batches b ON b.batch_at = f.batch_at ORDER BY f.rowid",
        )?
        .query_map([], |row| Ok((row.get(0)?, time(row.get(1)?)?)))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Timeline { claims, finalised })
}

/// The robots' queues as a remote SQS would be for this process: every message is accepted,
/// its check id and time noted, its body dropped (so it takes no memory here).
#[derive(Default)]
pub(super) struct RobotQueues {
    pub(super) sent: Mutex<Vec<(i64, DateTime<Utc>)>>,
}

/// The check id in a notification body (`"link":"/v1/status-check/check/17"`).
fn notified_check(body: &str) -> Option<i64> {
    let at = body.find("/v1/status-check/check/")? + "/v1/status-check/check/".len();
    let digits: String = body[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[async_trait]
impl Queue for RobotQueues {
    async fn receive_checked(
        &self,
        _queue_url: &str,
        request: ReceiveRequest,
    ) -> Result<Vec<QueueMessage>, QueueError> {
        tokio::time::sleep(request.wait()).await;
        Ok(Vec::new())
    }

    async fn delete(&self, _queue_url: &str, _receipt: &str) -> Result<(), QueueError> {
        Ok(())
    }

    async fn extend_visibility_checked(
        &self,
        _queue_url: &str,
        _change: VisibilityChange<'_>,
    ) -> Result<(), QueueError> {
        Ok(())
    }

    async fn send_checked(
        &self,
        _queue_url: &str,
        message: OutgoingMessage<'_>,
    ) -> Result<String, QueueError> {
        let check = notified_check(message.body())
            .ok_or_else(|| QueueError::Rejected("no check link in the notification".into()))?;
        self.sent.lock().unwrap().push((check, Utc::now()));
        Ok(String::new())
    }
}
