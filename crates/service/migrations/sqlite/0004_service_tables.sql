-- status-check, SQLite: this service's own tables (as migrations/mysql/0004, in SQLite types).

CREATE TABLE IF NOT EXISTS status_check_ext (
    status_check_id  INTEGER PRIMARY KEY REFERENCES status_check (id) ON DELETE CASCADE,
    robot_id         INTEGER NOT NULL,
    step_id          INTEGER NOT NULL,
    scheduled_id     INTEGER NOT NULL,
    planned_at       TEXT,
    anchor_at        TEXT    NOT NULL,
    past_seconds     INTEGER NOT NULL,
    future_seconds   INTEGER NOT NULL,
    next_pass        INTEGER NOT NULL,
    next_fail        INTEGER NOT NULL,
    next_unknown     INTEGER,
    notification_seq INTEGER NOT NULL DEFAULT 0,
    deadline_at      TEXT,
    lease_taken_at   TEXT,
    adopted_at       TEXT,
    created_at       TEXT    NOT NULL,
    updated_at       TEXT    NOT NULL,
    CONSTRAINT uk_status_check_ext_request UNIQUE (robot_id, step_id, scheduled_id, planned_at)
);
CREATE INDEX IF NOT EXISTS idx_status_check_ext_deadline ON status_check_ext (deadline_at);
CREATE INDEX IF NOT EXISTS idx_status_check_ext_lease ON status_check_ext (lease_taken_at);

CREATE TABLE IF NOT EXISTS status_check_record_event (
    record_id         INTEGER NOT NULL,
    record_phase      TEXT    NOT NULL,
    status_check_id   INTEGER NOT NULL REFERENCES status_check (id) ON DELETE CASCADE,
    incoming_event_id INTEGER NOT NULL,
    event_created_at  TEXT    NOT NULL,
    `level`           INTEGER,
    reference_id      TEXT,
    PRIMARY KEY (record_id, record_phase),
    CONSTRAINT uk_status_check_record_event_incoming UNIQUE (status_check_id, incoming_event_id),
    FOREIGN KEY (record_id, record_phase) REFERENCES status_check_record (id, phase)
        ON DELETE CASCADE
);

CREATE TABLE IF NOT EXISTS status_check_template_ext (
    status_check_template_id INTEGER PRIMARY KEY
        REFERENCES status_check_template (id) ON DELETE CASCADE,
    past_interval            INTEGER NOT NULL,
    future_interval          INTEGER NOT NULL,
    declared_version         INTEGER
);

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
