-- status-check, SQLite: indexes for the reads on the hot paths that the production MySQL table
-- serves with its own indexes (fk_status_check_step_id, fk_status_check_subscription_id), which
-- 0003 did not mirror. Without them each read scanned every check of the robot, a cost that
-- grows with the robot's history.

-- Every create: the Node-written check with the same request key (robot, step, scheduled id),
-- and the count of open checks at the step (phase read from the index alone).
CREATE INDEX IF NOT EXISTS idx_status_check_robot_step
    ON status_check (robot_id, step_id, scheduled_id, phase);

-- Every delivery: the check a subscription belongs to.
CREATE INDEX IF NOT EXISTS idx_status_check_subscription_id
    ON status_check (subscription_id);
