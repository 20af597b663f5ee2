//! Configuration (SPEC §7): defaults, then an optional YAML file of the same keys, then the
//! environment, which wins. Every key is validated at start; an error names the key.
//! Secrets are wrapped so they never reach `Debug` output or logs.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod database;
mod keys;

pub(crate) use database::MYSQL_KEYS;
pub use database::{DatabaseConfig, Secret};
pub use keys::KEYS;
use keys::default;

use crate::checks::ReconcileSettings;
use crate::http::server::ConnectionLimits;
use crate::monitors::files::Sources as MonitorSources;
use crate::template_files::TemplateSource;
use crate::upstream::UpstreamConfig;
use crate::upstream::step_cache::StepCacheConfig;
use crate::workers::scheduler::SchedulerConfig;

/// The longest SQS keeps a message (14 days): no delivery comes later.
const MAX_QUEUE_RETENTION_SECS: u64 = 14 * 24 * 3600;
/// The longest retention: 100 years, far inside what a time can be moved by.
const MAX_RETENTION_SECS: u64 = 100 * 365 * 24 * 3600;

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
    /// The database, the store's bounds and the logging: all that `migrate` reads too.
    pub database: DatabaseConfig,
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
    pub consumer_batch_size: usize,
    pub consumer_wait: Duration,
    pub consumer_visibility: Duration,
    pub unknown_subscription_grace: Duration,
    /// `SCHEDULER_*`.
    pub scheduler: SchedulerConfig,
    /// `DEADLINE_RECONCILE*`: open checks read Megazord at their deadline (SPEC §3.5).
    pub reconcile: ReconcileSettings,
    pub relay_poll_interval: Duration,
    pub relay_concurrency: usize,
    /// `TEMPLATES_DIR`, or the templates built into the binary when it is unset.
    pub templates: TemplateSource,
    pub template_cache_ttl: Duration,
    pub history_cap: usize,
    pub open_checks_per_step: u64,
    /// Micro-Managers steps cached: for how long, and how many (0: no cache).
    pub step_cache: StepCacheConfig,
    pub docs_enabled: bool,
    pub consumer_unready_after: Duration,
    pub outbox_max_attempts: u32,
    pub outbox_retention: Duration,
    pub rule_cost_budget: u64,
    pub shutdown_timeout: Duration,
    /// `HTTP_HEADER_READ_TIMEOUT_SECS`, `HTTP_IDLE_TIMEOUT_SECS`, `HTTP_MAX_CONNECTIONS`.
    pub connection_limits: ConnectionLimits,
    pub http_request_timeout: Duration,
    /// `MONITORS_FILE`, `MONITORING_CONFIG` and `TOILET_MONITORING_CONFIG`.
    pub monitor_sources: MonitorSources,
    /// `MONITORS_QUEUE_SUFFIX`; `None`: monitors use the status queue.
    pub monitors_queue_suffix: Option<String>,
    /// `ALARM_PROVIDER_NAME`.
    pub alarm_provider_name: String,
    /// `INTERNAL_API_TOKEN`; `None`: the internal API answers 404.
    pub internal_api_token: Option<Secret<String>>,
    pub monitor_scan_interval: Duration,
    /// `CLOCK_SKEW_MAX` and `CLOCK_SKEW_INTERVAL_MS`.
    pub clock_skew: crate::clock::SkewSettings,
}

/// The queues' region when neither `AWS_REGION` nor a queue URL names one (the existing
/// deployment's).
const FALLBACK_AWS_REGION: &str = "eu-central-1";

/// The region an SQS queue URL names: the label after `sqs` (`sqs.<region>.amazonaws.com`,
/// `sqs-fips.<region>…`, a VPC endpoint's `vpce-….sqs.<region>.vpce.amazonaws.com`, the
/// dual-stack `sqs.<region>.api.aws`, localstack's `sqs.<region>.localhost.localstack.cloud`),
/// or the legacy `<region>.queue.amazonaws.com`; none for another host (an emulator's
/// address).
fn region_in_queue_url(address: &str) -> Option<String> {
    let url = reqwest::Url::parse(address).ok()?;
    let labels: Vec<&str> = url.host_str()?.split('.').collect();
    let after_sqs = labels
        .iter()
        .position(|label| label.starts_with("sqs"))
        .and_then(|at| labels.get(at + 1));
    let legacy = match labels.as_slice() {
        [region, "queue", "amazonaws", ..] => Some(region),
        _ => None,
    };
    // A region: letters, digits and dashes, ending in its number (`eu-west-1`).
    let is_region = |label: &&&str| {
        label.contains('-')
            && label.ends_with(|c: char| c.is_ascii_digit())
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    after_sqs
        .filter(is_region)
        .or(legacy.filter(is_region))
        .map(|region| (*region).to_owned())
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

/// The file named by `CONFIG_FILE` (when one is), overridden by the known keys of `env` that
/// have a value: an empty one counts as unset (as everywhere else), so it leaves the file's.
pub(crate) fn merged(
    env: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut values = BTreeMap::new();
    if let Some(file) = env.get("CONFIG_FILE").filter(|f| !f.is_empty()) {
        values = read_file(Path::new(file))?;
    }
    let known = |key: &str| KEYS.iter().any(|(k, _, _)| *k == key);
    for (key, value) in env {
        if known(&key) && !value.trim().is_empty() {
            values.insert(key, value);
        }
    }
    Ok(values)
}

impl Config {
    /// An upstream at `base` with the configured timeout and retries.
    pub fn upstream(&self, base: String) -> UpstreamConfig {
        let mut upstream = UpstreamConfig::new(base);
        upstream.timeout = self.upstream_timeout;
        upstream.retries = self.upstream_retries;
        upstream
    }

    /// Reads the process environment (and `CONFIG_FILE`, when set).
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_sources(std::env::vars().collect())
    }

    /// Builds the configuration from environment-like variables, reading `CONFIG_FILE` when
    /// one of them names it.
    pub fn from_sources(env: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_values(&merged(env)?)
    }

    /// What `status-check job` runs with: [`Roles::job_environment`] of the environment
    /// merged with `CONFIG_FILE`, so a suffix the file sets is kept too.
    pub fn for_job(env: BTreeMap<String, String>) -> Result<Config, ConfigError> {
        Config::from_values(&Roles::job_environment(merged(env)?))
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
        // A span added to or taken from a time: bounded, so that the arithmetic cannot overflow.
        let at_most =
            |key: &str, secs: u64, most: u64, why: &str| -> Result<Duration, ConfigError> {
                match secs <= most {
                    true => Ok(Duration::from_secs(secs)),
                    false => Err(error(key, format!("must be at most {most} ({why})"))),
                }
            };
        let positive_seconds = |key: &str| -> Result<Duration, ConfigError> {
            get(key)
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s > 0.0)
                .and_then(|s| Duration::try_from_secs_f64(s).ok())
                .ok_or_else(|| {
                    error(
                        key,
                        format!("{:?} is not a number of seconds greater than 0", get(key)),
                    )
                })
        };
        let url = |key: &str| -> Result<Option<String>, ConfigError> {
            match optional(key) {
                Some(value) if !value.starts_with("http://") && !value.starts_with("https://") => {
                    Err(error(key, format!("{value:?} is not an http(s) URL")))
                }
                other => Ok(other),
            }
        };
        let upstream_url = |key: &str| -> Result<Option<String>, ConfigError> {
            let address = url(key)?;
            if let Some(address) = &address {
                crate::upstream::http::base_url(address)
                    .map_err(|reason| error(key, format!("{address:?}: {reason}")))?;
            }
            Ok(address)
        };

        let host = get("HOST")
            .parse::<IpAddr>()
            .map_err(|_| error("HOST", format!("{:?} is not an IP address", get("HOST"))))?;
        let port = get("PORT")
            .parse::<u16>()
            .map_err(|_| error("PORT", format!("{:?} is not a port number", get("PORT"))))?;
        let database = DatabaseConfig::from_values(values)?;
        let robot_queue_address = url("ROBOT_QUEUE_ADDRESS")?;
        let roles = Roles::parse(&get("ROLES")).map_err(|m| error("ROLES", m))?;
        let status_queue_address = url("STATUS_QUEUE_ADDRESS")?;
        let aws_region = optional("AWS_REGION")
            .or_else(|| {
                [&status_queue_address, &robot_queue_address]
                    .into_iter()
                    .flatten()
                    .find_map(|address| region_in_queue_url(address))
            })
            .or_else(|| optional("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| FALLBACK_AWS_REGION.to_owned());
        if roles.consumer && status_queue_address.is_none() {
            return Err(error(
                "STATUS_QUEUE_ADDRESS",
                "required when ROLES includes consumer",
            ));
        }
        let monitors_queue_suffix = optional("MONITORS_QUEUE_SUFFIX");
        if let Some(suffix) = &monitors_queue_suffix
            && (suffix.len() > 128
                || !suffix
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return Err(error(
                "MONITORS_QUEUE_SUFFIX",
                format!("{suffix:?} is not a queue suffix: 1 to 128 of a-z, A-Z, 0-9 and -"),
            ));
        }
        if roles.relay
            && robot_queue_address.is_none()
            && !(roles.monitoring_only() && monitors_queue_suffix.is_some())
        {
            return Err(error(
                "ROBOT_QUEUE_ADDRESS",
                "required when ROLES includes relay (but for a monitoring-only replica with \
                 MONITORS_QUEUE_SUFFIX set)",
            ));
        }
        let wait = positive("CONSUMER_WAIT_SECS")?;
        if wait > 20 {
            return Err(error(
                "CONSUMER_WAIT_SECS",
                "must be at most 20 (the SQS limit)",
            ));
        }
        let boolean = |key: &str| -> Result<bool, ConfigError> {
            match get(key).to_ascii_lowercase().as_str() {
                "true" => Ok(true),
                "false" => Ok(false),
                other => Err(error(key, format!("{other:?} is not true or false"))),
            }
        };
        let usize_of = |key: &str| -> Result<usize, ConfigError> {
            usize::try_from(positive(key)?).map_err(|_| error(key, "too large"))
        };
        Ok(Config {
            host,
            port,
            database,
            micro_managers_address: upstream_url("MICRO_MANAGERS_ADDRESS")?,
            megazord_events_address: upstream_url("MEGAZORD_EVENTS_ADDRESS")?,
            upstream_timeout: Duration::from_millis(positive("UPSTREAM_TIMEOUT_MS")?),
            upstream_retries: usize::try_from(parse_u64("UPSTREAM_RETRIES")?)
                .ok()
                .filter(|r| *r <= 10)
                .ok_or_else(|| error("UPSTREAM_RETRIES", "must be at most 10"))?,
            status_queue_address,
            robot_queue_address,
            aws_region,
            aws_endpoint: url("AWS_ENDPOINT")?,
            robot_consumer_username: get("ROBOT_CONSUMER_USERNAME"),
            roles,
            consumer_concurrency: usize_of("CONSUMER_CONCURRENCY")?,
            consumer_batch_size: usize_of("CONSUMER_BATCH_SIZE")?,
            consumer_wait: Duration::from_secs(wait),
            consumer_visibility: Duration::from_secs(
                Some(positive("CONSUMER_VISIBILITY_SECS")?)
                    .filter(|secs| *secs <= crate::queue::MAX_VISIBILITY.as_secs())
                    .ok_or_else(|| {
                        error(
                            "CONSUMER_VISIBILITY_SECS",
                            "must be at most 43200 (12 h, the SQS limit)",
                        )
                    })?,
            ),
            unknown_subscription_grace: at_most(
                "UNKNOWN_SUBSCRIPTION_GRACE_SECS",
                parse_u64("UNKNOWN_SUBSCRIPTION_GRACE_SECS")?,
                MAX_QUEUE_RETENTION_SECS,
                "14 days, the longest SQS keeps a message",
            )?,
            scheduler: SchedulerConfig {
                scan_interval: Duration::from_millis(positive("SCHEDULER_SCAN_INTERVAL_MS")?),
                batch: usize_of("SCHEDULER_BATCH")?,
                stale_after: Duration::from_secs(positive("SCHEDULER_STALE_LOCK_SECS")?),
                concurrency: usize_of("SCHEDULER_CONCURRENCY")?,
            },
            reconcile: ReconcileSettings {
                enabled: boolean("DEADLINE_RECONCILE")?,
                budget: Duration::from_millis(positive("DEADLINE_RECONCILE_BUDGET_MS")?),
                concurrency: usize_of("DEADLINE_RECONCILE_CONCURRENCY")?,
            },
            relay_poll_interval: Duration::from_millis(positive("RELAY_POLL_INTERVAL_MS")?),
            relay_concurrency: usize_of("RELAY_CONCURRENCY")?,
            templates: optional("TEMPLATES_DIR").map_or(TemplateSource::BuiltIn, |dir| {
                TemplateSource::Dir(dir.into())
            }),
            template_cache_ttl: Duration::from_secs(positive("TEMPLATE_CACHE_TTL_SECS")?),
            history_cap: usize::try_from(positive("HISTORY_CAP")?)
                .map_err(|_| error("HISTORY_CAP", "too large"))?,
            open_checks_per_step: positive("OPEN_CHECKS_PER_STEP")?,
            step_cache: StepCacheConfig {
                ttl: Duration::from_secs(parse_u64("STEP_CACHE_TTL_SECS")?),
                capacity: parse_u64("STEP_CACHE_SIZE")?,
            },
            docs_enabled: boolean("DOCS_ENABLED")?,
            consumer_unready_after: Duration::from_secs(positive("CONSUMER_UNREADY_AFTER_SECS")?),
            outbox_retention: at_most(
                "OUTBOX_RETENTION_SECS",
                positive("OUTBOX_RETENTION_SECS")?,
                MAX_RETENTION_SECS,
                "100 years",
            )?,
            outbox_max_attempts: u32::try_from(positive("OUTBOX_MAX_ATTEMPTS")?)
                .map_err(|_| error("OUTBOX_MAX_ATTEMPTS", "too large"))?,
            rule_cost_budget: positive("RULE_COST_BUDGET")?,
            shutdown_timeout: Duration::from_secs(positive("SHUTDOWN_TIMEOUT_SECS")?),
            connection_limits: ConnectionLimits {
                header_read_timeout: Duration::from_secs(positive(
                    "HTTP_HEADER_READ_TIMEOUT_SECS",
                )?),
                idle_timeout: Duration::from_secs(positive("HTTP_IDLE_TIMEOUT_SECS")?),
                max_connections: usize_of("HTTP_MAX_CONNECTIONS")?,
            },
            http_request_timeout: Duration::from_secs(positive("HTTP_REQUEST_TIMEOUT_SECS")?),
            monitor_sources: MonitorSources {
                monitors_file: optional("MONITORS_FILE").map(PathBuf::from),
                monitoring_config: optional("MONITORING_CONFIG"),
                toilet_monitoring_config: optional("TOILET_MONITORING_CONFIG"),
            },
            monitors_queue_suffix,
            alarm_provider_name: get("ALARM_PROVIDER_NAME"),
            internal_api_token: optional("INTERNAL_API_TOKEN").map(Secret::new),
            monitor_scan_interval: Duration::from_millis(positive("MONITOR_SCAN_INTERVAL_MS")?),
            clock_skew: crate::clock::SkewSettings {
                max: positive_seconds("CLOCK_SKEW_MAX")?,
                interval: Duration::from_millis(positive("CLOCK_SKEW_INTERVAL_MS")?),
            },
        })
    }
}

/// The queue suffix the monitoring job service subscribed with (SPEC §5.2, §12): its
/// deliveries arrive on `${STATUS_QUEUE_ADDRESS}-azi-3-status-check-jobs`.
pub const JOB_SERVICE_QUEUE_SUFFIX: &str = "azi-3-status-check-jobs";

/// Which parts of the service a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub consumer: bool,
    pub scheduler: bool,
    pub relay: bool,
    /// Monitors' sessions and window ends (SPEC §12).
    pub monitor: bool,
}

impl Roles {
    pub const ALL: Roles = Roles {
        api: true,
        consumer: true,
        scheduler: true,
        relay: true,
        monitor: true,
    };

    /// What `status-check job` runs: a monitoring-only replica.
    pub const JOB: &'static str = "monitor,consumer,relay";

    /// The environment `status-check job` runs with: ROLES is [`Roles::JOB`], and where the
    /// deployment sets no MONITORS_QUEUE_SUFFIX — the job service's never did: it always
    /// subscribed with [`JOB_SERVICE_QUEUE_SUFFIX`] — that suffix, so that it is a drop-in for
    /// that deployment (SPEC §12): its sessions' deliveries arrive on its own queue, and it
    /// never consumes the status queue the Node status-check service reads.
    pub fn job_environment(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
        env.insert("ROLES".to_owned(), Self::JOB.to_owned());
        let suffix = env.entry("MONITORS_QUEUE_SUFFIX".to_owned()).or_default();
        if suffix.trim().is_empty() {
            *suffix = JOB_SERVICE_QUEUE_SUFFIX.to_owned();
        }
        env
    }

    /// Runs monitors and nothing of the checks' own work (no API, no deadlines): with a
    /// monitors queue suffix it consumes only the monitors' queue, as the job service did.
    pub fn monitoring_only(&self) -> bool {
        self.monitor && !self.api && !self.scheduler
    }

    /// Consumes the status queue (checks' deliveries).
    pub fn consumes_status_queue(&self, monitors_queue_suffix: Option<&str>) -> bool {
        self.consumer && !(self.monitoring_only() && monitors_queue_suffix.is_some())
    }

    /// Consumes the monitors' own queue.
    pub fn consumes_monitors_queue(&self, monitors_queue_suffix: Option<&str>) -> bool {
        self.consumer && self.monitor && monitors_queue_suffix.is_some()
    }

    fn parse(text: &str) -> Result<Roles, String> {
        let mut roles = Roles {
            api: false,
            consumer: false,
            scheduler: false,
            relay: false,
            monitor: false,
        };
        for role in text.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            match role {
                "api" => roles.api = true,
                "consumer" => roles.consumer = true,
                "scheduler" => roles.scheduler = true,
                "relay" => roles.relay = true,
                "monitor" => roles.monitor = true,
                other => {
                    return Err(format!(
                        "{other:?} is not a role (api, consumer, scheduler, relay, monitor)"
                    ));
                }
            }
        }
        if !(roles.api || roles.consumer || roles.scheduler || roles.relay || roles.monitor) {
            return Err("names no role".to_owned());
        }
        Ok(roles)
    }
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
mod tests;
