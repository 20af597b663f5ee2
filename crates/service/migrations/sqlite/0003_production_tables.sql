-- status-check, SQLite: the six production tables (docs/storage.md "Migrations").
--
-- The same tables and columns as the production MySQL definition, in SQLite types. Times are
-- TEXT in RFC 3339 UTC with exactly three fractional digits ('2026-11-20T08:00:00.000Z'), so
-- they sort and compare as text; columns that are whole seconds on MySQL hold '.000' here.
-- status_check_record's MySQL primary key (id, phase) becomes an INTEGER PRIMARY KEY id plus
-- UNIQUE (id, phase), which status_check_record_event references.

CREATE TABLE IF NOT EXISTS status_check_description (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT status_check_description_name UNIQUE (name)
);

CREATE TABLE IF NOT EXISTS status_check_template (
    id                        INTEGER PRIMARY KEY AUTOINCREMENT,
    template_description_id   INTEGER NOT NULL
        REFERENCES status_check_description (id) ON DELETE CASCADE,
    past_event_dependencies   TEXT    NOT NULL,
    future_event_dependencies TEXT    NOT NULL,
    version                   INTEGER NOT NULL DEFAULT 1,
    is_active                 BOOLEAN NOT NULL DEFAULT 1,
    poll_until_end            BOOLEAN NOT NULL DEFAULT 0,
    created_at                TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CONSTRAINT status_check_template_name_version UNIQUE (template_description_id, version)
);

CREATE TABLE IF NOT EXISTS status_check_template_detail (
    template_id    INTEGER NOT NULL REFERENCES status_check_template (id) ON DELETE CASCADE,
    phase          TEXT    NOT NULL,
    raw_expression TEXT    NOT NULL,
    output         TEXT    NOT NULL,
    CONSTRAINT status_check_template_unique_phase_output UNIQUE (template_id, phase, output)
);

CREATE TABLE IF NOT EXISTS status_check (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    robot_id                 INTEGER NOT NULL,
    status_check_template_id INTEGER NOT NULL REFERENCES status_check_template (id),
    phase                    TEXT    NOT NULL,
    subscription_id          INTEGER,
    result                   TEXT,
    step_id                  INTEGER NOT NULL,
    next_step_id             INTEGER,
    script_version_id        INTEGER NOT NULL,
    scheduled_id             INTEGER NOT NULL,
    planned_at               TEXT    NOT NULL,
    created_at               TEXT    DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at               TEXT    DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_status_check_result_template_robot_id
    ON status_check (robot_id, status_check_template_id, result);
CREATE INDEX IF NOT EXISTS fk_status_check_template_id
    ON status_check (status_check_template_id);

CREATE TABLE IF NOT EXISTS status_check_poller (
    status_check_id INTEGER PRIMARY KEY REFERENCES status_check (id) ON DELETE CASCADE,
    since           TEXT,
    `until`         TEXT,
    lock_id         TEXT,
    created_at      TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS idx_status_check_poller_lock_id ON status_check_poller (lock_id);
CREATE INDEX IF NOT EXISTS idx_status_check_poller_until ON status_check_poller (`until`);

CREATE TABLE IF NOT EXISTS status_check_record (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    status_check_id   INTEGER NOT NULL REFERENCES status_check (id) ON DELETE CASCADE,
    incoming_event_id INTEGER,
    outgoing_event_id INTEGER,
    event_name        TEXT    NOT NULL,
    `order`           INTEGER NOT NULL,
    phase             TEXT    NOT NULL,
    result            TEXT    NOT NULL,
    created_at        TEXT    DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (id, phase)
);
CREATE INDEX IF NOT EXISTS fk_status_check_record_check_id
    ON status_check_record (status_check_id);
