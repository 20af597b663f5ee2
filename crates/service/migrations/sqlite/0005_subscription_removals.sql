-- status-check, SQLite: Megazord subscriptions to remove (as migrations/mysql/0005).
CREATE TABLE IF NOT EXISTS status_check_subscription_removal (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id        INTEGER NOT NULL,
    subscription_id INTEGER NOT NULL,
    reason          TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lock_id         TEXT,
    locked_until    TEXT,
    done_at         TEXT,
    last_error      TEXT,
    CONSTRAINT uk_status_check_subscription_removal UNIQUE (subscription_id)
);
CREATE INDEX IF NOT EXISTS idx_status_check_subscription_removal_due
    ON status_check_subscription_removal (done_at, next_attempt_at);
