-- status-check schema, step 2, SQLite (docs/storage.md): the deadline scheduler's columns and
-- the notification outbox; the same objects as the MySQL file, in SQLite types (times as
-- RFC 3339 UTC text with three fractional digits).
--
-- SQLite runs the file in one transaction: it applies entirely or not at all. SQLite has no
-- `ADD COLUMN IF NOT EXISTS`, so unlike the other files this one cannot run a second time
-- over a database that already has the columns — which only deleting _sqlx_migrations from
-- the file could bring about (an SQLite database is only ever created by this service).

-- The scheduler's pending deadline: anchor + future window while the check is in FUTURE;
-- NULL without a future window and once the check has left FUTURE.
ALTER TABLE status_check_ext ADD COLUMN deadline_at TEXT;
-- When the poller's current lease (lock_id) was taken; NULL without a lease.
ALTER TABLE status_check_ext ADD COLUMN lease_taken_at TEXT;
CREATE INDEX IF NOT EXISTS idx_status_check_ext_deadline ON status_check_ext (deadline_at);
CREATE INDEX IF NOT EXISTS idx_status_check_ext_lease ON status_check_ext (lease_taken_at);

-- Checks that were open before this migration get their deadline.
UPDATE status_check_ext
   SET deadline_at = strftime('%Y-%m-%dT%H:%M:%fZ', anchor_at,
                              '+' || future_seconds || ' seconds')
 WHERE future_seconds > 0
   AND deadline_at IS NULL
   AND status_check_id IN (SELECT id FROM status_check WHERE phase = 'FUTURE');

CREATE TABLE IF NOT EXISTS status_check_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    status_check_id INTEGER NOT NULL REFERENCES status_check (id) ON DELETE CASCADE,
    robot_id        INTEGER NOT NULL,
    seq             INTEGER NOT NULL,
    payload         TEXT    NOT NULL,
    call_ref        TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lock_id         TEXT,
    locked_until    TEXT,
    sent_at         TEXT,
    last_error      TEXT,
    CONSTRAINT uk_status_check_outbox_seq UNIQUE (status_check_id, seq)
);
CREATE INDEX IF NOT EXISTS idx_status_check_outbox_due
    ON status_check_outbox (sent_at, next_attempt_at);
