-- status-check, MySQL 8 / MariaDB >= 10.6: this service's own tables, beside the production
-- ones (docs/storage.md). Nothing here alters a production table.

-- One row per check this service created or adopted: the exact (millisecond) times, the
-- windows, the next steps, the notification sequence, the scheduler's deadline and lease
-- time, and the request key that makes create idempotent.
CREATE TABLE IF NOT EXISTS status_check_ext (
    status_check_id  BIGINT UNSIGNED NOT NULL,
    robot_id         INT UNSIGNED    NOT NULL,
    step_id          BIGINT UNSIGNED NOT NULL,
    scheduled_id     BIGINT UNSIGNED NOT NULL,
    -- The request's plannedAt to the millisecond: with robot, step and scheduled id, the key
    -- of create. NULL on a check adopted from the Node service (its plannedAt is
    -- status_check.planned_at), so the Node service's duplicates never collide here.
    planned_at       DATETIME(3)     NULL,
    anchor_at        DATETIME(3)     NOT NULL,
    past_seconds     BIGINT          NOT NULL,
    future_seconds   BIGINT          NOT NULL,
    next_pass        BIGINT          NOT NULL,
    next_fail        BIGINT          NOT NULL,
    next_unknown     BIGINT          NULL,
    notification_seq BIGINT          NOT NULL DEFAULT 0,
    -- The scheduler's pending deadline, exact to the millisecond, while the check is open;
    -- NULL once it ended, so the claim's index range holds open checks only.
    deadline_at      DATETIME(3)     NULL,
    -- When the poller's current lease (lock_id) was taken; NULL without a lease.
    lease_taken_at   DATETIME(3)     NULL,
    -- When this row was derived for a check the Node service wrote; NULL for our own.
    adopted_at       DATETIME(3)     NULL,
    created_at       DATETIME(3)     NOT NULL,
    updated_at       DATETIME(3)     NOT NULL,
    PRIMARY KEY (status_check_id),
    UNIQUE KEY uk_status_check_ext_request (robot_id, step_id, scheduled_id, planned_at),
    -- Serves the claim: WHERE deadline_at <= ? … ORDER BY deadline_at.
    INDEX idx_status_check_ext_deadline (deadline_at),
    -- Serves the stale-lease release: WHERE lease_taken_at < ?.
    INDEX idx_status_check_ext_lease (lease_taken_at),
    CONSTRAINT fk_status_check_ext_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- One row per record this service wrote: the event attributes rules read, which
-- status_check_record lacks. The unique key means one incoming event is recorded at most once
-- per check. (A record the Node service wrote has none: its event time is its created_at.)
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

-- A template version's default windows, and the version number its YAML file declares
-- (different from status_check_template.version when that number was taken by a version the
-- Node service wrote). A version without a row has windows 0 / 0.
CREATE TABLE IF NOT EXISTS status_check_template_ext (
    status_check_template_id INT UNSIGNED NOT NULL,
    past_interval            BIGINT       NOT NULL,
    future_interval          BIGINT       NOT NULL,
    declared_version         BIGINT       NULL,
    PRIMARY KEY (status_check_template_id),
    CONSTRAINT fk_status_check_template_ext_template
        FOREIGN KEY (status_check_template_id) REFERENCES status_check_template (id)
        ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- Robot notifications (SPEC §3.7), written in the transaction of the change they announce
-- and sent by the relay. One row per (check, notification_seq). A row is unsent while
-- sent_at is NULL; a relay holds it while lock_id is set and locked_until has not passed.
CREATE TABLE IF NOT EXISTS status_check_outbox (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    status_check_id BIGINT UNSIGNED NOT NULL,
    robot_id        INT UNSIGNED    NOT NULL,
    seq             BIGINT          NOT NULL,
    payload         MEDIUMTEXT      NOT NULL,
    call_ref        VARCHAR(256)    NOT NULL,
    created_at      DATETIME(3)     NOT NULL,
    attempts        INT UNSIGNED    NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(3)     NOT NULL,
    lock_id         VARCHAR(256)    NULL,
    locked_until    DATETIME(3)     NULL,
    sent_at         DATETIME(3)     NULL,
    last_error      VARCHAR(1024)   NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_status_check_outbox_seq (status_check_id, seq),
    -- Serves the claim: WHERE sent_at IS NULL AND next_attempt_at <= ? ORDER BY
    -- next_attempt_at, id; and the backlog count (sent_at IS NULL).
    INDEX idx_status_check_outbox_due (sent_at, next_attempt_at),
    CONSTRAINT fk_status_check_outbox_status_check
        FOREIGN KEY (status_check_id) REFERENCES status_check (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
