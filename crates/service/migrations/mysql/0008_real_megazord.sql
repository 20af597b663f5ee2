-- status-check, MySQL 8 / MariaDB >= 10.6: Megazord as it really behaves (SPEC §5.2, §12, §13).
-- Only this service's own tables change; the production tables are never touched.

-- An alarm is posted without a level unless its monitor sets one: Megazord then uses the
-- event schema's level (lower is more urgent; a level nobody chose must never be sent).
ALTER TABLE status_check_monitor_action MODIFY level TINYINT UNSIGNED NULL;

-- Why a monitor cannot open its session (e.g. Megazord knows no event schema of the name it
-- watches), shown by the internal API; NULL when it can. Added only when missing, so the file
-- can run again (a lost migration history): MySQL 8 has no ADD COLUMN IF NOT EXISTS.
SET @status_check_0008 = IF(
    (SELECT COUNT(*) FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'status_check_monitor_state'
       AND column_name = 'problem') = 0,
    'ALTER TABLE status_check_monitor_state ADD COLUMN problem VARCHAR(1024) NULL',
    'DO 0');
PREPARE status_check_0008 FROM @status_check_0008;
EXECUTE status_check_0008;
DEALLOCATE PREPARE status_check_0008;

-- Every subscribe this service makes is written here before the call (SPEC §13): should its
-- answer be lost, the subscription id is never learnt, and a delivery for an unknown
-- subscription that matches a row (same robot, an event name asked for, inside the grace
-- period after `created_at`) identifies it as this service's, to be removed. A row whose
-- answer came is deleted in the write that stores the subscription; the rest are purged once
-- no delivery can match them any more.
CREATE TABLE IF NOT EXISTS status_check_subscribe_intent (
    id          BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    robot_id    BIGINT UNSIGNED NOT NULL,
    -- JSON array of the event names asked for.
    event_names VARCHAR(4096)   NOT NULL,
    -- The queue suffix asked for; NULL: the status queue.
    queue       VARCHAR(128)    NULL,
    created_at  DATETIME(3)     NOT NULL,
    PRIMARY KEY (id),
    -- Serves the match (WHERE robot_id = ? AND created_at BETWEEN ? AND ?) and the purge.
    INDEX idx_status_check_subscribe_intent_robot (robot_id, created_at),
    INDEX idx_status_check_subscribe_intent_created (created_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
