-- status-check schema, MySQL 8 / MariaDB >= 10.6 (docs/storage.md).
--
-- The first six tables are the production `tinybots` tables with their exact columns and
-- types. They are created only when absent and never altered; foreign keys to tables other
-- services own (robot_account, script_step, event_subscription, incoming_event,
-- outgoing_event) are left out. The last three tables are this service's own additions.
-- Every time is UTC: the service's connections set time_zone = '+00:00'.

CREATE TABLE IF NOT EXISTS status_check_description (
    id          INT UNSIGNED NOT NULL AUTO_INCREMENT,
    name        VARCHAR(128) NOT NULL,
    description TEXT,
    created_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at  DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY uk_status_check_description_name (name)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS status_check_template (
    id                        INT UNSIGNED      NOT NULL AUTO_INCREMENT,
    template_description_id   INT UNSIGNED      NOT NULL,
    past_event_dependencies   VARCHAR(512)      NOT NULL,
    future_event_dependencies VARCHAR(512)      NOT NULL,
    version                   SMALLINT UNSIGNED NOT NULL DEFAULT 1,
    is_active                 BOOLEAN           NOT NULL DEFAULT TRUE,
    poll_until_end            BOOLEAN           NOT NULL DEFAULT FALSE,
    created_at                DATETIME          NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    UNIQUE KEY status_check_template_name_version (template_description_id, version),
    CONSTRAINT fk_status_check_template_description
        FOREIGN KEY (template_description_id) REFERENCES status_check_description (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Column names of this table are our assumption (docs/storage.md).
CREATE TABLE IF NOT EXISTS status_check_template_detail (
    id                       INT UNSIGNED NOT NULL AUTO_INCREMENT,
    status_check_template_id INT UNSIGNED NOT NULL,
    phase                    VARCHAR(64)  NOT NULL,
    output                   VARCHAR(64)  NOT NULL,
    expression               TEXT         NOT NULL,
    created_at               DATETIME     NOT NULL DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    CONSTRAINT fk_status_check_template_detail_template
        FOREIGN KEY (status_check_template_id) REFERENCES status_check_template (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS status_check (
    id                       BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    robot_id                 INT UNSIGNED    NOT NULL,
    status_check_template_id INT UNSIGNED    NOT NULL,
    phase                    VARCHAR(64)     NOT NULL,
    subscription_id          BIGINT UNSIGNED NULL,
    result                   VARCHAR(64)     NULL,
    step_id                  BIGINT UNSIGNED NOT NULL,
    next_step_id             BIGINT UNSIGNED NULL,
    script_version_id        BIGINT UNSIGNED NOT NULL,
    scheduled_id             BIGINT UNSIGNED NOT NULL,
    planned_at               TIMESTAMP       NOT NULL,
    created_at               TIMESTAMP       DEFAULT CURRENT_TIMESTAMP,
    updated_at               TIMESTAMP       DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (id),
    INDEX idx_status_check_result_template_robot_id (robot_id, status_check_template_id, result),
    CONSTRAINT fk_status_check_template
        FOREIGN KEY (status_check_template_id) REFERENCES status_check_template (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A scheduler claim `WHERE until <= ? AND lock_id IS NULL` (joined to status_check.phase)
-- is served by idx_status_check_poller_until.
CREATE TABLE IF NOT EXISTS status_check_poller (
    status_check_id BIGINT UNSIGNED NOT NULL,
    since           TIMESTAMP       NOT NULL,
    `until`         TIMESTAMP       NOT NULL,
    lock_id         VARCHAR(256)    NULL,
    created_at      TIMESTAMP       DEFAULT CURRENT_TIMESTAMP,
    updated_at      TIMESTAMP       DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (status_check_id),
    INDEX idx_status_check_poller_lock_id (lock_id),
    INDEX idx_status_check_poller_until (`until`),
    CONSTRAINT fk_status_check_poller_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE IF NOT EXISTS status_check_record (
    id                BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    status_check_id   BIGINT UNSIGNED NOT NULL,
    incoming_event_id BIGINT UNSIGNED NULL,
    outgoing_event_id BIGINT UNSIGNED NULL,
    event_name        VARCHAR(256)    NOT NULL,
    `order`           INT UNSIGNED    NOT NULL,
    phase             VARCHAR(64)     NOT NULL,
    result            VARCHAR(64)     NOT NULL,
    created_at        TIMESTAMP       DEFAULT CURRENT_TIMESTAMP,
    PRIMARY KEY (id, phase),
    CONSTRAINT fk_status_check_record_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- ---- This service's own objects ----

-- One row per check: the exact (millisecond) times, the windows, the next steps, the
-- notification sequence, and the request key that makes create idempotent.
CREATE TABLE IF NOT EXISTS status_check_ext (
    status_check_id  BIGINT UNSIGNED NOT NULL,
    robot_id         INT UNSIGNED    NOT NULL,
    step_id          BIGINT UNSIGNED NOT NULL,
    scheduled_id     BIGINT UNSIGNED NOT NULL,
    planned_at       DATETIME(3)     NOT NULL,
    anchor_at        DATETIME(3)     NOT NULL,
    past_seconds     BIGINT          NOT NULL,
    future_seconds   BIGINT          NOT NULL,
    next_pass        BIGINT          NOT NULL,
    next_fail        BIGINT          NOT NULL,
    next_unknown     BIGINT          NULL,
    notification_seq BIGINT          NOT NULL DEFAULT 0,
    created_at       DATETIME(3)     NOT NULL,
    updated_at       DATETIME(3)     NOT NULL,
    PRIMARY KEY (status_check_id),
    UNIQUE KEY uk_status_check_ext_request (robot_id, step_id, scheduled_id, planned_at),
    CONSTRAINT fk_status_check_ext_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per record: the event attributes rules read, which status_check_record lacks.
-- The unique key means one incoming event is recorded at most once per check.
CREATE TABLE IF NOT EXISTS status_check_record_event (
    record_id         BIGINT UNSIGNED NOT NULL,
    record_phase      VARCHAR(64)     NOT NULL,
    status_check_id   BIGINT UNSIGNED NOT NULL,
    incoming_event_id BIGINT UNSIGNED NOT NULL,
    event_created_at  DATETIME(3)     NOT NULL,
    `level`           BIGINT          NULL,
    reference_id      VARCHAR(256)    NULL,
    PRIMARY KEY (record_id, record_phase),
    UNIQUE KEY uk_status_check_record_event_incoming (status_check_id, incoming_event_id),
    CONSTRAINT fk_status_check_record_event_record
        FOREIGN KEY (record_id, record_phase) REFERENCES status_check_record (id, phase)
        ON DELETE CASCADE,
    CONSTRAINT fk_status_check_record_event_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- A template version's default windows; a version without a row has 0 / 0.
CREATE TABLE IF NOT EXISTS status_check_template_ext (
    status_check_template_id INT UNSIGNED NOT NULL,
    past_interval            BIGINT       NOT NULL,
    future_interval          BIGINT       NOT NULL,
    PRIMARY KEY (status_check_template_id),
    CONSTRAINT fk_status_check_template_ext_template
        FOREIGN KEY (status_check_template_id) REFERENCES status_check_template (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
