-- status-check, SQLite: the length an open monitor window was given (as
-- migrations/mysql/0010). After a lost migration history every file runs again, and 0008 makes
-- status_check_monitor_state again without this column first, so adding it here cannot find
-- it there already.
ALTER TABLE status_check_monitor_state ADD COLUMN window_length_secs INTEGER;
