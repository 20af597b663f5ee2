//! Every configuration key, its default and what it means: the one list `Config` reads,
//! `CONFIG_FILE` is checked against and docs/configuration.md must cover.

/// Every key this service reads, with its default and what it means — the source of
/// `docs/configuration.md`.
pub const KEYS: &[(&str, &str, &str)] = &[
    ("HOST", "0.0.0.0", "Address the HTTP server binds to."),
    (
        "PORT",
        "8080",
        "Port of the HTTP server (0 picks a free one).",
    ),
    (
        "DATABASE_URL",
        "sqlite://status-check.db",
        "`sqlite://FILE` (embedded default) or `mysql://USER:PASS@HOST:PORT/DB`.",
    ),
    (
        "DB_RW_HOST",
        "",
        "MySQL host, as in the existing deployment; used when DATABASE_URL is unset.",
    ),
    ("DB_PORT", "3306", "MySQL port (with DB_RW_HOST)."),
    ("DB_RW_USERNAME", "", "MySQL user (with DB_RW_HOST)."),
    (
        "DB_RW_PASSWORD",
        "",
        "MySQL password (with DB_RW_HOST). Secret.",
    ),
    ("DB_NAME", "tinybots", "MySQL database (with DB_RW_HOST)."),
    (
        "DB_POOL_SIZE",
        "10",
        "Connections of the MySQL pool (1 to 1000); with several replicas, mind the server's max_connections.",
    ),
    (
        "DB_SSL_MODE",
        "",
        "TLS to MySQL (with DB_RW_HOST): `disabled`, `preferred` (TLS when the server offers it, its certificate not checked), `required` (TLS, certificate not checked), `verify_ca` or `verify_identity` (checked against DB_SSL_CA or the system's roots). Unset: `verify_identity` when DB_SSL_CA is set, else `preferred`. An unchecked certificate is logged as a warning at start-up. With DATABASE_URL, say `?ssl-mode=…&ssl-ca=…` in the URL (sqlx's default there is `preferred`).",
    ),
    (
        "DB_SSL_CA",
        "",
        "PEM file of the CA that signs the MySQL server's certificate, e.g. the RDS bundle; makes `verify_identity` the default DB_SSL_MODE.",
    ),
    (
        "DB_OPERATION_TIMEOUT_SECS",
        "5",
        "The most one database operation (a transaction, its retries included) may take; past it the operation is abandoned and rolled back, a request answers 503 and a worker tries again on its next round. Also bounds the readiness probe's database ping. Migrations are not bounded.",
    ),
    (
        "MICRO_MANAGERS_ADDRESS",
        "",
        "Base URL of Micro-Managers. Required by `serve`.",
    ),
    (
        "MEGAZORD_EVENTS_ADDRESS",
        "",
        "Base URL of Megazord Events. Required by `serve`.",
    ),
    (
        "UPSTREAM_TIMEOUT_MS",
        "5000",
        "Timeout of one upstream HTTP attempt, in milliseconds.",
    ),
    (
        "UPSTREAM_RETRIES",
        "2",
        "Retries of idempotent upstream calls on connection errors and 5xx (not on a timeout).",
    ),
    (
        "STATUS_QUEUE_ADDRESS",
        "",
        "SQS URL of the status queue Megazord delivers to.",
    ),
    (
        "ROBOT_QUEUE_ADDRESS",
        "",
        "Prefix of the robots' SQS queue URLs (an http(s):// URL); the robot id is appended.",
    ),
    (
        "AWS_REGION",
        "",
        "AWS region of the queues. Unset: the region STATUS_QUEUE_ADDRESS (else ROBOT_QUEUE_ADDRESS) names (`https://sqs.<region>.amazonaws.com/…`), else AWS_DEFAULT_REGION, else eu-central-1.",
    ),
    (
        "AWS_DEFAULT_REGION",
        "",
        "The AWS tools' fallback region: used when AWS_REGION is unset and the queue URLs name none.",
    ),
    (
        "AWS_ENDPOINT",
        "",
        "Custom SQS endpoint, e.g. a local emulator.",
    ),
    (
        "ROBOT_CONSUMER_USERNAME",
        "tinybots-robots",
        "The Kong consumer username robots call as.",
    ),
    (
        "ROLES",
        "api,consumer,scheduler,relay,monitor",
        "What this replica runs: any of `api`, `consumer` (status queue), `scheduler` (deadlines), `relay` (robot notifications, subscription removals, monitors' alarms), `monitor` (monitors' sessions and window ends). `status-check job` runs `monitor,consumer,relay`.",
    ),
    (
        "MONITORS_FILE",
        "",
        "YAML or JSON file of monitors (docs/monitors.md), validated and synced to the database at start: created, changed, and disabled when the file no longer names one it named before. Monitors created through the API are left alone.",
    ),
    (
        "MONITORING_CONFIG",
        "",
        "The monitoring job service's configuration exactly as that service is deployed (its own variable): JSON inline (starting with `{`) or the path of a file; synced like MONITORS_FILE. MONITORS_FILE, MONITORING_CONFIG and TOILET_MONITORING_CONFIG may all be set, but no two may name the same monitor.",
    ),
    (
        "TOILET_MONITORING_CONFIG",
        "",
        "An older name of the job service's monitoring JSON, inline (starting with `{`) or the path of a file; synced like MONITORS_FILE.",
    ),
    (
        "MONITORS_QUEUE_SUFFIX",
        "",
        "Monitors subscribe with this queue suffix, so Megazord delivers their events to `${STATUS_QUEUE_ADDRESS}-${suffix}` (the job service's value: `azi-3-status-check-jobs`); replicas with both the `monitor` and `consumer` roles consume that queue as well (a replica with only one of them does not: give one replica both). A monitoring-only replica (roles without `api` and `scheduler`, e.g. `status-check job`) then consumes only that queue and needs no ROBOT_QUEUE_ADDRESS. Empty: monitors use the status queue — but for `status-check job`, which then takes the job service's value.",
    ),
    (
        "ALARM_PROVIDER_NAME",
        "azi-3-status-jobs",
        "The `providerName` monitors' alarms are posted to Megazord as; Megazord refuses a provider it does not know. The default is the monitoring job service's.",
    ),
    (
        "INTERNAL_API_TOKEN",
        "",
        "Bearer token of the internal API (`/internal/v1/monitors`); unset, those routes answer 404. Secret.",
    ),
    (
        "MONITOR_SCAN_INTERVAL_MS",
        "500",
        "How often the monitor worker looks for due monitors (a session to open, a window end passed): how late a window's alarm can be.",
    ),
    (
        "CONSUMER_CONCURRENCY",
        "128",
        "Most status-queue messages processed at once; when all are busy the consumer stops receiving.",
    ),
    (
        "CONSUMER_BATCH_SIZE",
        "50",
        "Most deliveries applied in one transaction (group commit: whatever has arrived while the previous batch was written, up to this many; messages are deleted after the commit).",
    ),
    (
        "CONSUMER_WAIT_SECS",
        "20",
        "Long-poll wait of one status-queue receive (at most 20).",
    ),
    (
        "CONSUMER_VISIBILITY_SECS",
        "30",
        "Invisibility of a received message; extended while it is worked on. At most 43200 \
         (12 h, the SQS limit).",
    ),
    (
        "CONSUMER_UNREADY_AFTER_SECS",
        "30",
        "How long status-queue receives may keep failing before /health/ready answers 503 (ready again after the next receive that works).",
    ),
    (
        "UNKNOWN_SUBSCRIPTION_GRACE_SECS",
        "60",
        "How long after its event a delivery for an unknown subscription is kept for redelivery.",
    ),
    (
        "SCHEDULER_SCAN_INTERVAL_MS",
        "250",
        "How often the scheduler looks for checks whose deadline passed.",
    ),
    (
        "SCHEDULER_BATCH",
        "200",
        "Most checks one scheduler scan claims.",
    ),
    (
        "SCHEDULER_CONCURRENCY",
        "4",
        "While deadlines are backlogged, claims one scheduler works on at once (each a batch of up to SCHEDULER_BATCH checks finalised in one transaction; one reads while another writes).",
    ),
    (
        "SCHEDULER_STALE_LOCK_SECS",
        "30",
        "A deadline lease older than this is released so another replica takes the check over: what a crashed replica or a failed finalisation can delay a deadline by (a lease is held for the milliseconds a finalisation takes).",
    ),
    (
        "DEADLINE_RECONCILE",
        "true",
        "true or false: a check still open at its deadline (PENDING, or any pollUntilEnd check) first reads its future dependencies' incomings at Megazord since its anchor and takes in what was never delivered (Megazord does not retry a failed queue send), then is decided. The same read confirms deliveries that end a check before they are written (an earlier event delivered later).",
    ),
    (
        "DEADLINE_RECONCILE_BUDGET_MS",
        "500",
        "The most a claimed batch of deadlines (or a consumer batch whose deliveries end checks) waits for those reads; a check whose read is not back by then is decided from what it has (logged; deadline_reconcile_total{outcome=\"timed_out\"} at deadlines, decision_reads_total{end=\"timed_out\"} for deliveries). With the 250 ms scan interval this keeps a deadline within 1 s.",
    ),
    (
        "DEADLINE_RECONCILE_CONCURRENCY",
        "32",
        "Megazord calls in flight at once for one claimed batch of deadlines, or one consumer batch's confirming reads (one call per check and future dependency).",
    ),
    (
        "CLOCK_SKEW_MAX",
        "5",
        "Seconds (a decimal number greater than 0) this replica's clock may be off the database's, either way, before /health/ready answers 503 naming the clock and the skew (a warning is logged). MySQL only; the work runs on the database's time either way (docs/operations.md, \"Clocks\").",
    ),
    (
        "CLOCK_SKEW_INTERVAL_MS",
        "5000",
        "How often a replica on MySQL reads the database's clock (five round trips, the fastest decides) to correct its own time and export `clock_skew_seconds`.",
    ),
    (
        "RELAY_POLL_INTERVAL_MS",
        "200",
        "How often the notification relay looks for unsent notifications when idle.",
    ),
    (
        "RELAY_CONCURRENCY",
        "16",
        "Robots the notification relay sends to at once (one robot's notifications stay in order).",
    ),
    (
        "TEMPLATES_DIR",
        "",
        "Folder of the shipped YAML templates, synced to the database at start. Unset: the templates built into the binary (the repository's `templates/` when it was built), so the binary needs no folder beside it.",
    ),
    (
        "TEMPLATE_CACHE_TTL_SECS",
        "60",
        "How long a template loaded from the database is cached.",
    ),
    (
        "STEP_CACHE_TTL_SECS",
        "300",
        "How long a script step read from Micro-Managers is reused (a step id's content is fixed within its script version); 0 turns the cache off.",
    ),
    (
        "STEP_CACHE_SIZE",
        "10000",
        "Most script steps cached (per robot and step); 0 turns the cache off.",
    ),
    (
        "OPEN_CHECKS_PER_STEP",
        "16",
        "Most open checks one robot may have at one script step; a create beyond it answers 429.",
    ),
    (
        "OUTBOX_MAX_ATTEMPTS",
        "20",
        "Attempts to send a robot notification (with backoff from 1 s doubling to 5 min) before it is dead-lettered: kept unsent, counted and logged.",
    ),
    (
        "OUTBOX_RETENTION_SECS",
        "604800",
        "How long sent robot notifications are kept before they are purged (in batches, once a minute); posted monitor alarms and the monitors' window history are kept as long.",
    ),
    (
        "DOCS_ENABLED",
        "true",
        "Serve Swagger UI at /docs (`true` or `false`); /openapi.json is served either way.",
    ),
    (
        "HISTORY_CAP",
        "10000",
        "Most records one check may hold; one more ends it FAILED.",
    ),
    (
        "RULE_COST_BUDGET",
        "200000",
        "Most cost units one evaluation of one rule may spend (one per element a comprehension visits); past it the rule errors and counts as false.",
    ),
    (
        "SHUTDOWN_TIMEOUT_SECS",
        "30",
        "Bound on the graceful shutdown drain.",
    ),
    (
        "HTTP_HEADER_READ_TIMEOUT_SECS",
        "10",
        "A connection that has not sent a full request head within this many seconds (the first request, or the next one on a kept-alive HTTP/1 connection) is closed.",
    ),
    (
        "HTTP_IDLE_TIMEOUT_SECS",
        "60",
        "A connection with no request in flight for this many seconds is closed gracefully (HTTP/2 GOAWAY); HTTP/1 connections are closed sooner by the header read timeout.",
    ),
    (
        "HTTP_REQUEST_TIMEOUT_SECS",
        "30",
        "A request whose handler runs longer than this is answered 503 (problem+json).",
    ),
    (
        "HTTP_MAX_CONNECTIONS",
        "1024",
        "Most HTTP connections served at once; when all are taken, new ones wait in the listen backlog until one closes.",
    ),
    (
        "LOG_LEVEL",
        "info",
        "`error`, `warn`, `info`, `debug`, `trace`, or a tracing filter directive.",
    ),
    ("LOG_FORMAT", "json", "`json` (production) or `pretty`."),
    (
        "CONFIG_FILE",
        "",
        "Optional YAML file setting any of these keys; the environment wins.",
    ),
];

/// A key's default (empty when it has none).
pub(super) fn default(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or("", |(_, default, _)| default)
}

#[cfg(test)]
mod docs {
    /// docs/configuration.md must list every key this service reads.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../../docs/configuration.md");
        for (key, _, _) in super::KEYS {
            assert!(
                doc.contains(&format!("`{key}`")),
                "{key} missing from docs/configuration.md"
            );
        }
    }
}
