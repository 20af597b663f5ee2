-- status-check, MySQL 8 / MariaDB >= 10.6: the history of monitor sessions (SPEC §12
-- "History") — this service's own table, beside the production ones, which it never touches.
--
-- One row per window span of a session, written in the transaction that writes the monitor's
-- state: the window opened (`ending` NULL, `window_end` its planned end), then, once it ended,
-- its real end and how: `reset` (an event restarted it at `window_end`; the event's Megazord
-- id in `reset_event_id`), `expired` (it passed quietly and alarmed: `reference_id`),
-- `sessionEnded` (cut by the session's end, no alarm) or `stopped` (the monitor was disabled,
-- changed to watch something else, or deleted while it was open). Keyed by the monitor's
-- (robot_id, rule_id), not its id, so a day's history outlives a replaced monitor. Purged in
-- batches once `window_end` is older than the outbox retention (OUTBOX_RETENTION_SECS).
CREATE TABLE IF NOT EXISTS status_check_monitor_window (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    robot_id        BIGINT UNSIGNED NOT NULL,
    rule_id         VARCHAR(64)     NOT NULL,
    session_date    CHAR(10)        NOT NULL,
    session_start   DATETIME(3)     NOT NULL,
    session_end     DATETIME(3)     NOT NULL,
    subscription_id BIGINT UNSIGNED NULL,
    window_number   INT UNSIGNED    NOT NULL,
    window_start    DATETIME(3)     NOT NULL,
    window_end      DATETIME(3)     NOT NULL,
    ending          VARCHAR(16)     NULL,
    -- status-check:{robotId}:{ruleId}:{sessionDate}:{windowNumber}, for an expired window.
    reference_id    VARCHAR(160)    NULL,
    reset_event_id  BIGINT          NULL,
    updated_at      DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    -- A span is its window's (re)start: the key of the upsert that ends the open row, and the
    -- read of one day's session (`?date=`: robot, rule, date — in window order).
    UNIQUE KEY uk_status_check_monitor_window
        (robot_id, rule_id, session_date, window_number, window_start),
    -- Serves the purge: WHERE window_end < ? ORDER BY window_end.
    INDEX idx_status_check_monitor_window_end (window_end)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
