-- status-check schema, step 2, MySQL 8 / MariaDB >= 10.6 (docs/storage.md): the deadline
-- scheduler's columns and the notification outbox. Only this service's own tables change;
-- the production tables are never altered.
--
-- MySQL commits each DDL statement on its own, so a failure half-way leaves part of this
-- file applied (sqlx then reports the migration as dirty). Every ALTER below first checks
-- information_schema, so once the cause is fixed (and the dirty row removed from
-- _sqlx_migrations) the file runs again cleanly; it also runs cleanly on a database that
-- already has all of it. MySQL 8 has no `ADD COLUMN IF NOT EXISTS`, hence the prepared
-- statements.

-- status_check_ext.deadline_at: the scheduler's pending deadline, exact to the millisecond
-- (anchor + future window) while the check is in FUTURE; NULL without a future window and
-- once the check has left FUTURE, so the claim's index range holds open checks only.
SET @status_check_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'status_check_ext'
        AND COLUMN_NAME = 'deadline_at') = 0,
    'ALTER TABLE status_check_ext ADD COLUMN deadline_at DATETIME(3) NULL',
    'DO 0');
PREPARE status_check_stmt FROM @status_check_ddl;
EXECUTE status_check_stmt;
DEALLOCATE PREPARE status_check_stmt;

-- status_check_ext.lease_taken_at: when the poller's current lease (lock_id) was taken; NULL
-- without a lease. Leases taken long ago are stale and released.
SET @status_check_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.COLUMNS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'status_check_ext'
        AND COLUMN_NAME = 'lease_taken_at') = 0,
    'ALTER TABLE status_check_ext ADD COLUMN lease_taken_at DATETIME(3) NULL',
    'DO 0');
PREPARE status_check_stmt FROM @status_check_ddl;
EXECUTE status_check_stmt;
DEALLOCATE PREPARE status_check_stmt;

-- Serves the claim: WHERE deadline_at <= ? … ORDER BY deadline_at (the primary key, which
-- every secondary index ends with, breaks ties).
SET @status_check_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'status_check_ext'
        AND INDEX_NAME = 'idx_status_check_ext_deadline') = 0,
    'ALTER TABLE status_check_ext ADD INDEX idx_status_check_ext_deadline (deadline_at)',
    'DO 0');
PREPARE status_check_stmt FROM @status_check_ddl;
EXECUTE status_check_stmt;
DEALLOCATE PREPARE status_check_stmt;

-- Serves the stale-lease release: WHERE lease_taken_at < ?.
SET @status_check_ddl = IF(
    (SELECT COUNT(*) FROM information_schema.STATISTICS
      WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'status_check_ext'
        AND INDEX_NAME = 'idx_status_check_ext_lease') = 0,
    'ALTER TABLE status_check_ext ADD INDEX idx_status_check_ext_lease (lease_taken_at)',
    'DO 0');
PREPARE status_check_stmt FROM @status_check_ddl;
EXECUTE status_check_stmt;
DEALLOCATE PREPARE status_check_stmt;

SET @status_check_ddl = NULL;

-- Checks that were open before this migration get their deadline.
UPDATE status_check_ext
   SET deadline_at = DATE_ADD(anchor_at, INTERVAL future_seconds SECOND)
 WHERE future_seconds > 0
   AND deadline_at IS NULL
   AND status_check_id IN (SELECT id FROM status_check WHERE phase = 'FUTURE');

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
