-- status-check, SQLite: indexes for the reads on the hot paths that the production MySQL table
-- serves with its own indexes (fk_status_check_step_id, fk_status_check_subscription_id), which
-- 0003 did not mirror. Without them each read scanned every check of the robot, a cost that
-- grows with the robot's history.

-- Every create: the Node-written check with the same request key (robot, step, scheduled id).
CREATE INDEX IF NOT EXISTS idx_status_check_robot_step
    ON status_check (robot_id, step_id, scheduled_id);

-- Every create: how many checks of the robot are open at the step (the cap). Open checks
-- only, so the count reads a handful of entries, not the robot's history at that step; a
-- check leaves it once, when it ends. (Its WHERE is the count's, word for word: SQLite uses a
-- partial index only for a query that implies it.)
CREATE INDEX IF NOT EXISTS idx_status_check_open_at_step
    ON status_check (robot_id, step_id) WHERE phase NOT IN ('COMPLETED', 'FAILED');

-- Every delivery: the check a subscription belongs to.
CREATE INDEX IF NOT EXISTS idx_status_check_subscription_id
    ON status_check (subscription_id);

-- The production index (robot_id, status_check_template_id, result) served the robot's lookups
-- above before these indexes existed, and nothing reads it now; it holds `result`, which every
-- change of a check sets, so every delivery and every finalisation rewrote it for nothing.
-- (SQLite's copy only: MySQL's production table is never altered.)
DROP INDEX IF EXISTS idx_status_check_result_template_robot_id;
