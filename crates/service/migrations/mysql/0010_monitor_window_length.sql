-- status-check, MySQL 8 / MariaDB >= 10.6: the length an open monitor window was given.
-- Only this service's own tables change; the production tables are never touched.

-- The open window's own length (seconds), given when it opened or last restarted: whether the
-- session's end cut it is judged by it, not by a length the monitor took meanwhile (the open
-- window keeps its end). NULL when no session is open, and for a window opened before this
-- migration (judged by the monitor's length, as before). Added only when missing, so the file
-- can run again (a lost migration history): MySQL 8 has no ADD COLUMN IF NOT EXISTS.
SET @status_check_0010 = IF(
    (SELECT COUNT(*) FROM information_schema.columns
     WHERE table_schema = DATABASE() AND table_name = 'status_check_monitor_state'
       AND column_name = 'window_length_secs') = 0,
    'ALTER TABLE status_check_monitor_state ADD COLUMN window_length_secs INT UNSIGNED NULL',
    'DO 0');
PREPARE status_check_0010 FROM @status_check_0010;
EXECUTE status_check_0010;
DEALLOCATE PREPARE status_check_0010;
