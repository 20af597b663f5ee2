-- status-check, SQLite: the history of monitor sessions (as migrations/mysql/0009).
CREATE TABLE IF NOT EXISTS status_check_monitor_window (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id        INTEGER NOT NULL,
    rule_id         TEXT    NOT NULL,
    session_date    TEXT    NOT NULL,
    session_start   TEXT    NOT NULL,
    session_end     TEXT    NOT NULL,
    subscription_id INTEGER,
    window_number   INTEGER NOT NULL,
    window_start    TEXT    NOT NULL,
    window_end      TEXT    NOT NULL,
    ending          TEXT,
    reference_id    TEXT,
    reset_event_id  INTEGER,
    updated_at      TEXT    NOT NULL,
    CONSTRAINT uk_status_check_monitor_window
        UNIQUE (robot_id, rule_id, session_date, window_number, window_start)
);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_window_end
    ON status_check_monitor_window (window_end);
