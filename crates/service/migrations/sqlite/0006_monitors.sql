-- status-check, SQLite: monitors (as migrations/mysql/0006).
CREATE TABLE IF NOT EXISTS status_check_monitor (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id    INTEGER NOT NULL,
    rule_id     TEXT    NOT NULL,
    definition  TEXT    NOT NULL,
    enabled     BOOLEAN NOT NULL,
    source      TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL,
    CONSTRAINT uk_status_check_monitor UNIQUE (robot_id, rule_id)
);

CREATE TABLE IF NOT EXISTS status_check_monitor_state (
    monitor_id      INTEGER PRIMARY KEY REFERENCES status_check_monitor (id) ON DELETE CASCADE,
    session_date    TEXT,
    session_end     TEXT,
    window_number   INTEGER,
    window_start    TEXT,
    window_end      TEXT,
    subscription_id INTEGER,
    due_at          TEXT    NOT NULL,
    lock_id         TEXT,
    locked_at       TEXT,
    state_version   INTEGER NOT NULL,
    updated_at      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_state_due
    ON status_check_monitor_state (due_at);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_state_subscription
    ON status_check_monitor_state (subscription_id);

CREATE TABLE IF NOT EXISTS status_check_monitor_action (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor_id      INTEGER NOT NULL,
    robot_id        INTEGER NOT NULL,
    rule_id         TEXT    NOT NULL,
    session_date    TEXT    NOT NULL,
    window_number   INTEGER NOT NULL,
    action_index    INTEGER NOT NULL,
    reference_id    TEXT    NOT NULL,
    event_name      TEXT    NOT NULL,
    level           INTEGER NOT NULL,
    window_end      TEXT    NOT NULL,
    created_at      TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT    NOT NULL,
    lock_id         TEXT,
    locked_until    TEXT,
    sent_at         TEXT,
    last_error      TEXT,
    CONSTRAINT uk_status_check_monitor_action UNIQUE (reference_id, action_index)
);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_action_session
    ON status_check_monitor_action (robot_id, rule_id, session_date, window_number);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_action_due
    ON status_check_monitor_action (sent_at, next_attempt_at);
