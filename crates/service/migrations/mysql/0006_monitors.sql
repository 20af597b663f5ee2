-- status-check, MySQL 8 / MariaDB >= 10.6: monitors (SPEC §12) — this service's own tables,
-- beside the production ones, which they never touch.
--
-- A monitor is (robot_id, rule_id) and its definition (the canonical JSON of the monitor as the
-- internal API shows it). `source` says who last wrote it: `file` (MONITORS_FILE or
-- TOILET_MONITORING_CONFIG, synced at start: the file is authoritative for the monitors it
-- names, and disables the ones it named before and no longer does) or `api`.
CREATE TABLE IF NOT EXISTS status_check_monitor (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    robot_id    BIGINT UNSIGNED NOT NULL,
    rule_id     VARCHAR(64)     NOT NULL,
    definition  TEXT            NOT NULL,
    enabled     BOOLEAN         NOT NULL,
    source      VARCHAR(8)      NOT NULL,
    -- 1 when created, + 1 at every change of the definition.
    version     INT UNSIGNED    NOT NULL,
    created_at  DATETIME(3)     NOT NULL,
    updated_at  DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_status_check_monitor (robot_id, rule_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The running state of one monitor: its open session and window (all NULL when none is open),
-- the Megazord subscription of that session, and when the monitor worker must act next
-- (`due_at`: the open window's end, the next session's start, or a retry time; 9999-01-01 for
-- a disabled monitor). `lock_id` / `locked_at` are the worker's lease (taken over after the
-- stale window); `state_version` grows with every write, and every write names the version it
-- was decided on (and the lease, for the worker), so two writers never both succeed.
CREATE TABLE IF NOT EXISTS status_check_monitor_state (
    monitor_id      BIGINT UNSIGNED NOT NULL,
    session_date    CHAR(10)        NULL,
    session_end     DATETIME(3)     NULL,
    window_number   INT UNSIGNED    NULL,
    window_start    DATETIME(3)     NULL,
    window_end      DATETIME(3)     NULL,
    subscription_id BIGINT UNSIGNED NULL,
    due_at          DATETIME(3)     NOT NULL,
    lock_id         VARCHAR(256)    NULL,
    locked_at       DATETIME(3)     NULL,
    state_version   BIGINT UNSIGNED NOT NULL,
    updated_at      DATETIME(3)     NOT NULL,
    PRIMARY KEY (monitor_id),
    CONSTRAINT fk_status_check_monitor_state FOREIGN KEY (monitor_id)
        REFERENCES status_check_monitor (id) ON DELETE CASCADE,
    -- Serves the claim: WHERE due_at <= ? ORDER BY due_at.
    INDEX idx_status_check_monitor_state_due (due_at),
    -- Serves the routing of a delivery: WHERE subscription_id = ?.
    INDEX idx_status_check_monitor_state_subscription (subscription_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

-- The actions of windows that passed quietly (alarms), written in the transaction that
-- decided the window, and posted to Megazord by the relay with retry and backoff. One row per
-- (reference id, action): a window is acted on once. Kept when its monitor is deleted (what
-- was decided is still sent); sent rows are purged after the outbox retention.
CREATE TABLE IF NOT EXISTS status_check_monitor_action (
    id              BIGINT UNSIGNED  NOT NULL AUTO_INCREMENT,
    monitor_id      BIGINT UNSIGNED  NOT NULL,
    robot_id        BIGINT UNSIGNED  NOT NULL,
    rule_id         VARCHAR(64)      NOT NULL,
    session_date    CHAR(10)         NOT NULL,
    window_number   INT UNSIGNED     NOT NULL,
    action_index    INT UNSIGNED     NOT NULL,
    -- status-check:{robotId}:{ruleId}:{sessionDate}:{windowNumber}
    reference_id    VARCHAR(160)     NOT NULL,
    event_name      VARCHAR(128)     NOT NULL,
    level           TINYINT UNSIGNED NOT NULL,
    window_end      DATETIME(3)      NOT NULL,
    created_at      DATETIME(3)      NOT NULL,
    attempts        INT UNSIGNED     NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(3)      NOT NULL,
    lock_id         VARCHAR(256)     NULL,
    locked_until    DATETIME(3)      NULL,
    sent_at         DATETIME(3)      NULL,
    last_error      VARCHAR(1024)    NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_status_check_monitor_action (reference_id, action_index),
    -- Serves "the last window number of a session" (numbering goes on after a reopen).
    INDEX idx_status_check_monitor_action_session (robot_id, rule_id, session_date, window_number),
    -- Serves the claim (sent_at IS NULL AND next_attempt_at <= ?) and the purge.
    INDEX idx_status_check_monitor_action_due (sent_at, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
