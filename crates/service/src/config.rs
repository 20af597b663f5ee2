//! Configuration (SPEC §7): defaults, then an optional YAML file of the same keys, then the
//! environment, which wins. Every key is validated at start; an error names the key.
//! Secrets are wrapped so they never reach `Debug` output or logs.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
        "DB_SSL_MODE",
        "preferred",
        "TLS to MySQL (with DB_RW_HOST): `disabled`, `preferred` (TLS when the server offers it, its certificate not checked), `required`, `verify_ca` or `verify_identity` (checked against DB_SSL_CA or the system's roots). Use `verify_identity` in production. With DATABASE_URL, say `?ssl-mode=…` in the URL.",
    ),
    (
        "DB_SSL_CA",
        "",
        "PEM file of the CA that signs the MySQL server's certificate (with DB_SSL_MODE verify_ca / verify_identity), e.g. the RDS bundle.",
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
        "Retries of idempotent upstream calls on connection errors and 5xx.",
    ),
    (
        "STATUS_QUEUE_ADDRESS",
        "",
        "SQS URL of the status queue Megazord delivers to.",
    ),
    (
        "ROBOT_QUEUE_ADDRESS",
        "",
        "Prefix of the robots' SQS queue URLs; the robot id is appended.",
    ),
    ("AWS_REGION", "eu-central-1", "AWS region of the queues."),
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
        "api,consumer,scheduler,relay",
        "What this replica runs: any of `api`, `consumer` (status queue), `scheduler` (deadlines), `relay` (robot notifications).",
    ),
    (
        "CONSUMER_CONCURRENCY",
        "32",
        "Most status-queue messages processed at once; when all are busy the consumer stops receiving.",
    ),
    (
        "CONSUMER_WAIT_SECS",
        "20",
        "Long-poll wait of one status-queue receive (at most 20).",
    ),
    (
        "CONSUMER_VISIBILITY_SECS",
        "30",
        "Invisibility of a received message; extended while it is worked on.",
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
        "16",
        "Due checks one scheduler finalises at once.",
    ),
    (
        "SCHEDULER_STALE_LOCK_SECS",
        "30",
        "A deadline lease older than this is released so another replica takes the check over: what a crashed replica or a failed finalisation can delay a deadline by (a lease is held for the milliseconds a finalisation takes).",
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
        "templates",
        "Folder of the shipped YAML templates, synced to the database at start.",
    ),
    (
        "TEMPLATE_CACHE_TTL_SECS",
        "60",
        "How long a template loaded from the database is cached.",
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
        "How long sent robot notifications are kept before they are purged (in batches, once a minute).",
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

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A configuration problem, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration key {key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub database_url: Secret<String>,
    pub micro_managers_address: Option<String>,
    pub megazord_events_address: Option<String>,
    pub upstream_timeout: Duration,
    pub upstream_retries: usize,
    pub status_queue_address: Option<String>,
    pub robot_queue_address: Option<String>,
    pub aws_region: String,
    pub aws_endpoint: Option<String>,
    pub robot_consumer_username: String,
    pub roles: Roles,
    pub consumer_concurrency: usize,
    pub consumer_wait: Duration,
    pub consumer_visibility: Duration,
    pub unknown_subscription_grace: Duration,
    pub scheduler_scan_interval: Duration,
    pub scheduler_batch: usize,
    pub scheduler_concurrency: usize,
    pub scheduler_stale_lock: Duration,
    pub relay_poll_interval: Duration,
    pub relay_concurrency: usize,
    pub templates_dir: PathBuf,
    pub template_cache_ttl: Duration,
    pub history_cap: usize,
    pub open_checks_per_step: u64,
    pub docs_enabled: bool,
    pub consumer_unready_after: Duration,
    pub outbox_max_attempts: u32,
    pub outbox_retention: Duration,
    pub rule_cost_budget: u64,
    pub shutdown_timeout: Duration,
    pub http_header_read_timeout: Duration,
    pub http_idle_timeout: Duration,
    pub http_request_timeout: Duration,
    pub http_max_connections: usize,
    pub log_level: String,
    pub log_format: LogFormat,
}

/// What `status-check migrate` needs: the database and the logging, nothing of `serve`'s
/// roles (no upstream or queue address).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub database_url: Secret<String>,
    pub log_level: String,
    pub log_format: LogFormat,
}

impl DatabaseConfig {
    /// Reads the process environment (and `CONFIG_FILE`, when set); only the database and
    /// logging keys are validated.
    pub fn from_env() -> Result<DatabaseConfig, ConfigError> {
        DatabaseConfig::from_sources(std::env::vars().collect())
    }

    /// Like [`Config::from_sources`], reading only the database and logging keys.
    pub fn from_sources(env: BTreeMap<String, String>) -> Result<DatabaseConfig, ConfigError> {
        DatabaseConfig::from_values(&merged(env)?)
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<DatabaseConfig, ConfigError> {
        let get = |key: &str| get(values, key);
        let optional = |key: &str| optional(values, key);
        let database_url = database_url(&get, &optional)?;
        let log_format = match get("LOG_FORMAT").as_str() {
            "json" => LogFormat::Json,
            "pretty" => LogFormat::Pretty,
            other => {
                return Err(error(
                    "LOG_FORMAT",
                    format!("{other:?} is not json or pretty"),
                ));
            }
        };
        let log_level = get("LOG_LEVEL");
        // A bare word is a level (a filter would take `loud` as a target and log nothing);
        // directives with `=` are tracing filters (`info,status_check=debug`).
        let levels = ["trace", "debug", "info", "warn", "error", "off"];
        let bare_words_are_levels = log_level
            .split(',')
            .map(str::trim)
            .filter(|directive| !directive.contains('='))
            .all(|level| levels.contains(&level.to_ascii_lowercase().as_str()));
        if !bare_words_are_levels || tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            return Err(error(
                "LOG_LEVEL",
                format!("{log_level:?} is not a log level"),
            ));
        }
        Ok(DatabaseConfig {
            database_url,
            log_level,
            log_format,
        })
    }
}

/// A key's value, trimmed, or its default when unset or empty.
fn get(values: &BTreeMap<String, String>, key: &str) -> String {
    optional(values, key).unwrap_or_else(|| default(key).to_owned())
}

/// Only what was set: a key's default never counts as "given".
fn optional(values: &BTreeMap<String, String>, key: &str) -> Option<String> {
    values
        .get(key)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// The file named by `CONFIG_FILE` (when one is), overridden by the known keys of `env`.
fn merged(env: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    if let Some(file) = env.get("CONFIG_FILE").filter(|f| !f.is_empty()) {
        values = read_file(Path::new(file))?;
    }
    let known = |key: &str| KEYS.iter().any(|(k, _, _)| *k == key);
    for (key, value) in env {
        if known(&key) {
            values.insert(key, value);
        }
    }
    Ok(values)
}

impl Config {
    /// Reads the process environment (and `CONFIG_FILE`, when set).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_sources(std::env::vars().collect())
    }

    /// Builds the configuration from environment-like variables, reading `CONFIG_FILE` when
    /// one of them names it.
    pub fn from_sources(env: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_values(&merged(env)?)
    }

    fn from_values(values: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let get = |key: &str| get(values, key);
        let optional = |key: &str| optional(values, key);
        let parse_u64 = |key: &str| -> Result<u64, ConfigError> {
            get(key)
                .parse::<u64>()
                .map_err(|_| error(key, format!("{:?} is not a whole number", get(key))))
        };
        let positive = |key: &str| -> Result<u64, ConfigError> {
            match parse_u64(key)? {
                0 => Err(error(key, "must be greater than 0")),
                n => Ok(n),
            }
        };
        let url = |key: &str| -> Result<Option<String>, ConfigError> {
            match optional(key) {
                Some(value) if !value.starts_with("http://") && !value.starts_with("https://") => {
                    Err(error(key, format!("{value:?} is not an http(s) URL")))
                }
                other => Ok(other),
            }
        };

        let host = get("HOST")
            .parse::<IpAddr>()
            .map_err(|_| error("HOST", format!("{:?} is not an IP address", get("HOST"))))?;
        let port = get("PORT")
            .parse::<u16>()
            .map_err(|_| error("PORT", format!("{:?} is not a port number", get("PORT"))))?;
        let DatabaseConfig {
            database_url,
            log_level,
            log_format,
        } = DatabaseConfig::from_values(values)?;
        let robot_queue_address = optional("ROBOT_QUEUE_ADDRESS");
        let roles = Roles::parse(&get("ROLES")).map_err(|m| error("ROLES", m))?;
        let status_queue_address = url("STATUS_QUEUE_ADDRESS")?;
        if roles.consumer && status_queue_address.is_none() {
            return Err(error(
                "STATUS_QUEUE_ADDRESS",
                "required when ROLES includes consumer",
            ));
        }
        if roles.relay && robot_queue_address.is_none() {
            return Err(error(
                "ROBOT_QUEUE_ADDRESS",
                "required when ROLES includes relay",
            ));
        }
        let wait = positive("CONSUMER_WAIT_SECS")?;
        if wait > 20 {
            return Err(error(
                "CONSUMER_WAIT_SECS",
                "must be at most 20 (the SQS limit)",
            ));
        }
        let usize_of = |key: &str| -> Result<usize, ConfigError> {
            usize::try_from(positive(key)?).map_err(|_| error(key, "too large"))
        };
        Ok(Config {
            host,
            port,
            database_url,
            micro_managers_address: url("MICRO_MANAGERS_ADDRESS")?,
            megazord_events_address: url("MEGAZORD_EVENTS_ADDRESS")?,
            upstream_timeout: Duration::from_millis(positive("UPSTREAM_TIMEOUT_MS")?),
            upstream_retries: usize::try_from(parse_u64("UPSTREAM_RETRIES")?)
                .ok()
                .filter(|r| *r <= 10)
                .ok_or_else(|| error("UPSTREAM_RETRIES", "must be at most 10"))?,
            status_queue_address,
            robot_queue_address,
            aws_region: get("AWS_REGION"),
            aws_endpoint: url("AWS_ENDPOINT")?,
            robot_consumer_username: get("ROBOT_CONSUMER_USERNAME"),
            roles,
            consumer_concurrency: usize_of("CONSUMER_CONCURRENCY")?,
            consumer_wait: Duration::from_secs(wait),
            consumer_visibility: Duration::from_secs(positive("CONSUMER_VISIBILITY_SECS")?),
            unknown_subscription_grace: Duration::from_secs(parse_u64(
                "UNKNOWN_SUBSCRIPTION_GRACE_SECS",
            )?),
            scheduler_scan_interval: Duration::from_millis(positive("SCHEDULER_SCAN_INTERVAL_MS")?),
            scheduler_batch: usize_of("SCHEDULER_BATCH")?,
            scheduler_concurrency: usize_of("SCHEDULER_CONCURRENCY")?,
            scheduler_stale_lock: Duration::from_secs(positive("SCHEDULER_STALE_LOCK_SECS")?),
            relay_poll_interval: Duration::from_millis(positive("RELAY_POLL_INTERVAL_MS")?),
            relay_concurrency: usize_of("RELAY_CONCURRENCY")?,
            templates_dir: PathBuf::from(get("TEMPLATES_DIR")),
            template_cache_ttl: Duration::from_secs(positive("TEMPLATE_CACHE_TTL_SECS")?),
            history_cap: usize::try_from(positive("HISTORY_CAP")?)
                .map_err(|_| error("HISTORY_CAP", "too large"))?,
            open_checks_per_step: positive("OPEN_CHECKS_PER_STEP")?,
            docs_enabled: match get("DOCS_ENABLED").to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                other => {
                    return Err(error(
                        "DOCS_ENABLED",
                        format!("{other:?} is not true or false"),
                    ));
                }
            },
            consumer_unready_after: Duration::from_secs(positive("CONSUMER_UNREADY_AFTER_SECS")?),
            outbox_retention: Duration::from_secs(positive("OUTBOX_RETENTION_SECS")?),
            outbox_max_attempts: u32::try_from(positive("OUTBOX_MAX_ATTEMPTS")?)
                .map_err(|_| error("OUTBOX_MAX_ATTEMPTS", "too large"))?,
            rule_cost_budget: positive("RULE_COST_BUDGET")?,
            shutdown_timeout: Duration::from_secs(positive("SHUTDOWN_TIMEOUT_SECS")?),
            http_header_read_timeout: Duration::from_secs(positive(
                "HTTP_HEADER_READ_TIMEOUT_SECS",
            )?),
            http_idle_timeout: Duration::from_secs(positive("HTTP_IDLE_TIMEOUT_SECS")?),
            http_request_timeout: Duration::from_secs(positive("HTTP_REQUEST_TIMEOUT_SECS")?),
            http_max_connections: usize_of("HTTP_MAX_CONNECTIONS")?,
            log_level,
            log_format,
        })
    }
}

/// Which parts of the service a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub consumer: bool,
    pub scheduler: bool,
    pub relay: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        consumer: true,
        scheduler: true,
        relay: true,
    };

    fn parse(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            consumer: false,
            scheduler: false,
            relay: false,
        };
        for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "api" => roles.api = true,
                "consumer" => roles.consumer = true,
                "scheduler" => roles.scheduler = true,
                "relay" => roles.relay = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a role (api, consumer, scheduler, relay)"
                    ));
                }
            }
        }
        if !(roles.api || roles.consumer || roles.scheduler || roles.relay) {
            return Err("names no role".to_owned());
        }
        Ok(roles)
    }
}

fn default(key: &str) -> &'static str {
    KEYS.iter()
        .find(|(k, _, _)| *k == key)
        .map_or("", |(_, default, _)| default)
}

/// `DATABASE_URL`, or one built from the existing deployment's `DB_*` variables.
fn database_url(
    get: &impl Fn(&str) -> String,
    optional: &impl Fn(&str) -> Option<String>,
) -> Result<Secret<String>, ConfigError> {
    if let Some(url) = optional("DATABASE_URL") {
        if !(url.starts_with("sqlite:") || url.starts_with("mysql://")) {
            return Err(error("DATABASE_URL", "must start with sqlite: or mysql://"));
        }
        return Ok(Secret::new(url));
    }
    let Some(host) = optional("DB_RW_HOST") else {
        return Ok(Secret::new(default("DATABASE_URL").to_owned()));
    };
    let port = get("DB_PORT").parse::<u16>().map_err(|_| {
        error(
            "DB_PORT",
            format!("{:?} is not a port number", get("DB_PORT")),
        )
    })?;
    let user = optional("DB_RW_USERNAME")
        .ok_or_else(|| error("DB_RW_USERNAME", "is required with DB_RW_HOST"))?;
    let password = get("DB_RW_PASSWORD");
    let name = get("DB_NAME");
    let modes = [
        "disabled",
        "preferred",
        "required",
        "verify_ca",
        "verify_identity",
    ];
    let mode = get("DB_SSL_MODE").to_ascii_lowercase();
    if !modes.contains(&mode.as_str()) {
        return Err(error(
            "DB_SSL_MODE",
            format!("{mode:?} is not one of {}", modes.join(", ")),
        ));
    }
    let mut url = format!(
        "mysql://{}:{}@{host}:{port}/{}?ssl-mode={}",
        percent_encode(&user),
        percent_encode(&password),
        percent_encode(&name),
        mode
    );
    if let Some(ca) = optional("DB_SSL_CA") {
        url.push_str(&format!("&ssl-ca={}", percent_encode(&ca)));
    }
    Ok(Secret::new(url))
}

/// Encodes everything but unreserved characters, for a URL's user, password or path.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A YAML map of the same keys; unknown keys are refused so a typo cannot go unnoticed.
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(
            "CONFIG_FILE",
            format!("cannot read {}: {e}", path.display()),
        )
    })?;
    let raw: BTreeMap<String, serde_json::Value> = serde_saphyr::from_str(&text).map_err(|e| {
        error(
            "CONFIG_FILE",
            format!("{} is not a YAML map: {e}", path.display()),
        )
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in raw {
        if !KEYS.iter().any(|(k, _, _)| *k == key) || key == "CONFIG_FILE" {
            return Err(error(&key, format!("unknown key in {}", path.display())));
        }
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            serde_json::Value::Null => String::new(),
            _ => return Err(error(&key, "must be a plain value")),
        };
        values.insert(key, value);
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration with the queue addresses every role set needs by default.
    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut values: BTreeMap<String, String> = [
            ("STATUS_QUEUE_ADDRESS", "http://sqs.local/1/status"),
            ("ROBOT_QUEUE_ADDRESS", "http://sqs.local/1/robot-"),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        values.retain(|_, v| v != "<unset>");
        Config::from_sources(values)
    }

    #[test]
    fn roles_decide_which_queue_addresses_are_required() {
        let err = config(&[("STATUS_QUEUE_ADDRESS", "<unset>")]).unwrap_err();
        assert_eq!(err.key, "STATUS_QUEUE_ADDRESS");
        let err = config(&[("ROBOT_QUEUE_ADDRESS", "<unset>")]).unwrap_err();
        assert_eq!(err.key, "ROBOT_QUEUE_ADDRESS");
        let api_only = config(&[
            ("ROLES", "api"),
            ("STATUS_QUEUE_ADDRESS", "<unset>"),
            ("ROBOT_QUEUE_ADDRESS", "<unset>"),
        ])
        .unwrap();
        assert!(api_only.roles.api && !api_only.roles.consumer && !api_only.roles.relay);
        assert_eq!(config(&[("ROLES", "api,cron")]).unwrap_err().key, "ROLES");
        assert_eq!(config(&[]).unwrap().roles, Roles::ALL);
    }

    #[test]
    fn the_database_configuration_needs_no_queue_or_upstream_address() {
        let only_database = |pairs: &[(&str, &str)]| {
            DatabaseConfig::from_sources(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            )
        };
        let config = only_database(&[("DATABASE_URL", "sqlite:///tmp/x.db")]).unwrap();
        assert_eq!(config.database_url.expose(), "sqlite:///tmp/x.db");
        assert_eq!(config.log_format, LogFormat::Json);
        // Keys only `serve` reads are not looked at.
        assert!(only_database(&[("PORT", "eighty"), ("ROLES", "cron")]).is_ok());
        // What it does read is validated as strictly as by `serve`.
        for (key, value) in [
            ("DATABASE_URL", "postgres://x"),
            ("LOG_FORMAT", "xml"),
            ("DB_PORT", "many"),
        ] {
            let err = only_database(&[(key, value), ("DB_RW_HOST", "db"), ("DB_RW_USERNAME", "u")])
                .unwrap_err();
            assert_eq!(err.key, key, "{err}");
        }
        // `serve` still refuses to start without its queue address.
        assert_eq!(
            Config::from_sources(
                [("DATABASE_URL".to_owned(), "sqlite:///tmp/x.db".to_owned())]
                    .into_iter()
                    .collect()
            )
            .unwrap_err()
            .key,
            "STATUS_QUEUE_ADDRESS"
        );
    }

    #[test]
    fn defaults_apply() {
        let config = config(&[]).unwrap();
        assert_eq!(config.port, 8080);
        assert_eq!(config.database_url.expose(), "sqlite://status-check.db");
        assert_eq!(config.upstream_timeout, Duration::from_secs(5));
        assert_eq!(config.robot_consumer_username, "tinybots-robots");
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.rule_cost_budget,
            status_check_engine::rules::DEFAULT_COST_BUDGET
        );
        assert_eq!(config.http_header_read_timeout, Duration::from_secs(10));
        assert_eq!(config.http_idle_timeout, Duration::from_secs(60));
        assert_eq!(config.http_request_timeout, Duration::from_secs(30));
        assert_eq!(config.http_max_connections, 1024);
    }

    #[test]
    fn invalid_values_name_their_key() {
        for (key, value) in [
            ("PORT", "eighty"),
            ("HOST", "localhost:80"),
            ("UPSTREAM_TIMEOUT_MS", "0"),
            ("LOG_FORMAT", "xml"),
            ("DATABASE_URL", "postgres://x"),
            ("MICRO_MANAGERS_ADDRESS", "micro-managers:80"),
            ("HISTORY_CAP", "-1"),
            ("LOG_LEVEL", "loud"),
            ("LOG_LEVEL", "info,[[["),
            ("OPEN_CHECKS_PER_STEP", "0"),
            ("OUTBOX_MAX_ATTEMPTS", "0"),
            ("RULE_COST_BUDGET", "0"),
            ("HTTP_HEADER_READ_TIMEOUT_SECS", "0"),
            ("HTTP_IDLE_TIMEOUT_SECS", "soon"),
            ("HTTP_REQUEST_TIMEOUT_SECS", "0"),
            ("HTTP_MAX_CONNECTIONS", "0"),
        ] {
            let err = config(&[(key, value)]).unwrap_err();
            assert_eq!(err.key, key, "{err}");
            assert!(err.to_string().contains(key));
        }
    }

    #[test]
    fn log_levels_and_filters_are_accepted() {
        for level in [
            "info",
            "WARN",
            "off",
            "info,status_check=debug",
            "sqlx=warn",
        ] {
            assert!(config(&[("LOG_LEVEL", level)]).is_ok(), "{level}");
        }
    }

    #[test]
    fn the_existing_deployments_variables_build_a_mysql_url() {
        let built = config(&[
            ("DB_RW_HOST", "db.internal"),
            ("DB_RW_USERNAME", "svc"),
            ("DB_RW_PASSWORD", "p@ss:word"),
            ("DB_PORT", "3307"),
        ])
        .unwrap();
        assert_eq!(
            built.database_url.expose(),
            "mysql://svc:p%40ss%3Aword@db.internal:3307/tinybots?ssl-mode=preferred"
        );
        let verified = config(&[
            ("DB_RW_HOST", "db.internal"),
            ("DB_RW_USERNAME", "svc"),
            ("DB_SSL_MODE", "verify_identity"),
            ("DB_SSL_CA", "/etc/ssl/rds.pem"),
        ])
        .unwrap();
        assert_eq!(
            verified.database_url.expose(),
            "mysql://svc:@db.internal:3306/tinybots?ssl-mode=verify_identity&ssl-ca=%2Fetc%2Fssl%2Frds.pem"
        );
        let err = config(&[
            ("DB_RW_HOST", "db.internal"),
            ("DB_RW_USERNAME", "svc"),
            ("DB_SSL_MODE", "sometimes"),
        ])
        .unwrap_err();
        assert_eq!(err.key, "DB_SSL_MODE");
        assert!(config(&[("DB_RW_HOST", "db")]).unwrap_err().key == "DB_RW_USERNAME");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = config(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
    }

    #[test]
    fn the_environment_wins_over_the_file_and_file_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.yaml");
        std::fs::write(&file, "PORT: 9000\nLOG_FORMAT: pretty\n").unwrap();
        let path = file.to_str().unwrap();
        let config = config(&[("CONFIG_FILE", path), ("PORT", "9100")]).unwrap();
        assert_eq!(config.port, 9100);
        assert_eq!(config.log_format, LogFormat::Pretty);

        std::fs::write(&file, "PROT: 9000\n").unwrap();
        let err = Config::from_sources(
            [("CONFIG_FILE".to_owned(), path.to_owned())]
                .into_iter()
                .collect(),
        )
        .unwrap_err();
        assert_eq!(err.key, "PROT");
    }
}

#[cfg(test)]
mod docs {
    /// docs/configuration.md must list every key this service reads.
    #[test]
    fn every_key_is_documented() {
        let doc = include_str!("../../../docs/configuration.md");
        for (key, _, _) in super::KEYS {
            assert!(
                doc.contains(&format!("`{key}`")),
                "{key} missing from docs/configuration.md"
            );
        }
    }
}
