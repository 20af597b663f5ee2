-- status-check, MySQL 8 / MariaDB >= 10.6: Megazord subscriptions to remove (SPEC §13 "Cleanup
-- is exact"). A row is written in the transaction that ends a check (or when a create fails
-- after subscribing, or a delivery keeps coming for a subscription nothing owns) and the relay
-- role removes it at Megazord, retrying with backoff until Megazord answers 204 or 404.
-- Megazord never expires a subscription by itself: one that leaked would fan events out for
-- ever.
CREATE TABLE IF NOT EXISTS status_check_subscription_removal (
    id              BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    robot_id        INT UNSIGNED    NOT NULL,
    subscription_id BIGINT UNSIGNED NOT NULL,
    -- Why: `ended`, `create_failed`, `unowned`.
    reason          VARCHAR(32)     NOT NULL,
    created_at      DATETIME(3)     NOT NULL,
    attempts        INT UNSIGNED    NOT NULL DEFAULT 0,
    next_attempt_at DATETIME(3)     NOT NULL,
    lock_id         VARCHAR(256)    NULL,
    locked_until    DATETIME(3)     NULL,
    -- Megazord answered 204 or 404: nothing left to do.
    done_at         DATETIME(3)     NULL,
    last_error      VARCHAR(1024)   NULL,
    PRIMARY KEY (id),
    -- One removal per subscription, however many paths ask for it.
    UNIQUE KEY uk_status_check_subscription_removal (subscription_id),
    -- Serves the claim: WHERE done_at IS NULL AND next_attempt_at <= ? ORDER BY next_attempt_at.
    INDEX idx_status_check_subscription_removal_due (done_at, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
