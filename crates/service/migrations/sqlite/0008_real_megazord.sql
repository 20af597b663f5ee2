-- status-check, SQLite: Megazord as it really behaves (as migrations/mysql/0008).

-- An alarm's level may be NULL (posted without one): SQLite cannot drop a NOT NULL, so the
-- table is made again.
CREATE TABLE status_check_monitor_action_0008 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor_id      INTEGER NOT NULL,
    robot_id        INTEGER NOT NULL,
    rule_id         TEXT    NOT NULL,
    session_date    TEXT    NOT NULL,
    window_number   INTEGER NOT NULL,
    action_index    INTEGER NOT NULL,
    reference_id    TEXT    NOT NULL,
    event_name      TEXT    NOT NULL,
    level           INTEGER,
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
INSERT INTO status_check_monitor_action_0008
    SELECT id, monitor_id, robot_id, rule_id, session_date, window_number, action_index,
           reference_id, event_name, level, window_end, created_at, attempts, next_attempt_at,
           lock_id, locked_until, sent_at, last_error
    FROM status_check_monitor_action;
DROP TABLE status_check_monitor_action;
ALTER TABLE status_check_monitor_action_0008 RENAME TO status_check_monitor_action;
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_action_session
    ON status_check_monitor_action (robot_id, rule_id, session_date, window_number);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_action_due
    ON status_check_monitor_action (sent_at, next_attempt_at);

-- `problem`: why a monitor cannot open its session. Made again with the column (rather than
-- ALTER TABLE … ADD COLUMN) so that the file can run again after a lost migration history.
CREATE TABLE status_check_monitor_state_0008 (
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
    updated_at      TEXT    NOT NULL,
    problem         TEXT
);
INSERT INTO status_check_monitor_state_0008 (monitor_id, session_date, session_end,
    window_number, window_start, window_end, subscription_id, due_at, lock_id, locked_at,
    state_version, updated_at)
    SELECT monitor_id, session_date, session_end, window_number, window_start, window_end,
           subscription_id, due_at, lock_id, locked_at, state_version, updated_at
    FROM status_check_monitor_state;
DROP TABLE status_check_monitor_state;
ALTER TABLE status_check_monitor_state_0008 RENAME TO status_check_monitor_state;
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_state_due
    ON status_check_monitor_state (due_at);
CREATE INDEX IF NOT EXISTS idx_status_check_monitor_state_subscription
    ON status_check_monitor_state (subscription_id);

CREATE TABLE IF NOT EXISTS status_check_subscribe_intent (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id    INTEGER NOT NULL,
    event_names TEXT    NOT NULL,
    queue       TEXT,
    created_at  TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_status_check_subscribe_intent_robot
    ON status_check_subscribe_intent (robot_id, created_at);
CREATE INDEX IF NOT EXISTS idx_status_check_subscribe_intent_created
    ON status_check_subscribe_intent (created_at);
