//! The database settings (`DATABASE_URL`, or the existing deployment's `DB_*` keys) and
//! logging: all `status-check migrate` reads. Secrets never reach `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::{ConfigError, LogFormat, default, error, get, merged, optional};
use crate::store::StoreSettings;

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

/// What `status-check migrate` needs: the database and the logging, nothing of `serve`'s
/// roles (no upstream or queue address).
#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub database_url: Secret<String>,
    /// The store's operation timeout and pool size.
    pub store: StoreSettings,
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

    pub(super) fn from_values(
        values: &BTreeMap<String, String>,
    ) -> Result<DatabaseConfig, ConfigError> {
        let get = |key: &str| get(values, key);
        let optional = |key: &str| optional(values, key);
        let database_url = database_url(&get, &optional)?;
        let operation_timeout = match get("DB_OPERATION_TIMEOUT_SECS").parse::<u64>() {
            Ok(secs) if secs > 0 => Duration::from_secs(secs),
            _ => {
                return Err(error(
                    "DB_OPERATION_TIMEOUT_SECS",
                    format!(
                        "{:?} is not a whole number of seconds greater than 0",
                        get("DB_OPERATION_TIMEOUT_SECS")
                    ),
                ));
            }
        };
        let mysql_pool_size = match get("DB_POOL_SIZE").parse::<u32>() {
            Ok(size) if (1..=1000).contains(&size) => size,
            _ => {
                return Err(error(
                    "DB_POOL_SIZE",
                    format!(
                        "{:?} is not a number of connections from 1 to 1000",
                        get("DB_POOL_SIZE")
                    ),
                ));
            }
        };
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
            store: StoreSettings {
                operation_timeout,
                mysql_pool_size,
            },
            log_level,
            log_format,
        })
    }

    /// The store, connected and migrated: what `serve`, `migrate` and `dev` start with.
    pub async fn open_store(&self) -> anyhow::Result<crate::store::DynStore> {
        use anyhow::Context as _;
        let store = crate::store::connect(self.database_url.expose(), self.store)
            // Its error names the database and the cause (StoreError::Connect).
            .await?;
        store
            .migrate()
            .await
            .context("cannot migrate the database")?;
        Ok(store)
    }

    /// Starts this process's logging as configured, then warns should the connection to
    /// MySQL be encrypted without its certificate checked.
    pub fn start_logging(&self) {
        crate::telemetry::init_logging(&self.log_level, self.log_format);
        if let Some(warning) = self.tls_warning() {
            tracing::warn!("{warning}");
        }
    }

    /// What to warn about at start-up when the connection to MySQL is encrypted but its
    /// certificate is not checked (see [`tls_warning`]).
    pub fn tls_warning(&self) -> Option<String> {
        tls_warning(self.database_url.expose())
    }
}

/// A warning for a MySQL URL whose TLS accepts any certificate (`preferred`, sqlx's default,
/// or `required`): the connection can be intercepted. `None` for SQLite, a verified mode, or
/// TLS switched off on purpose (`disabled`).
pub(super) fn tls_warning(url: &str) -> Option<String> {
    if !url.starts_with("mysql://") {
        return None;
    }
    let mode = crate::store::mysql::unverified_tls_mode(url)?;
    Some(format!(
        "TLS to MySQL does not verify the server's certificate (ssl-mode {mode}): set \
         DB_SSL_CA (which makes verify_identity the default), or DB_SSL_MODE / the URL's \
         ssl-mode to verify_identity"
    ))
}

/// The existing deployment's MySQL keys, which build a `DATABASE_URL` when none is given.
pub(crate) const MYSQL_KEYS: [&str; 7] = [
    "DB_RW_HOST",
    "DB_PORT",
    "DB_RW_USERNAME",
    "DB_RW_PASSWORD",
    "DB_NAME",
    "DB_SSL_MODE",
    "DB_SSL_CA",
];

/// `DATABASE_URL`, or one built from the existing deployment's `DB_*` variables.
fn database_url(
    get: &impl Fn(&str) -> String,
    optional: &impl Fn(&str) -> Option<String>,
) -> Result<Secret<String>, ConfigError> {
    // The existing deployment's keys but the host (the URL's switch) and DB_PORT (which has a
    // default).
    let given: Vec<&str> = MYSQL_KEYS
        .into_iter()
        .filter(|key| !matches!(*key, "DB_RW_HOST" | "DB_PORT"))
        .filter(|key| optional(key).is_some())
        .collect();
    if let Some(url) = optional("DATABASE_URL") {
        if !(url.starts_with("sqlite:") || url.starts_with("mysql://")) {
            return Err(error("DATABASE_URL", "must start with sqlite: or mysql://"));
        }
        // DATABASE_URL wins over the deployment's keys, but a TLS setting beside it would
        // silently not apply: the operator would believe the certificate checked.
        if let Some(key) = given.iter().find(|key| key.starts_with("DB_SSL_")) {
            return Err(error(
                key,
                "does not apply when DATABASE_URL is set: say ?ssl-mode=…&ssl-ca=… in the URL, \
                 or unset DATABASE_URL",
            ));
        }
        return Ok(Secret::new(url));
    }
    let Some(host) = optional("DB_RW_HOST") else {
        // Without a host the others would be ignored and the service would run on a local
        // SQLite file: a mistyped DB_RW_HOST must not lose every check at the next restart.
        if let Some(key) = given.first() {
            return Err(error(
                key,
                "needs DB_RW_HOST (or DATABASE_URL): without it the service would use a local \
                 SQLite file",
            ));
        }
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
    let ca = optional("DB_SSL_CA");
    // A CA given means the certificate is to be checked against it, unless a mode says else.
    let mode = match (optional("DB_SSL_MODE"), &ca) {
        (Some(mode), _) => mode.to_ascii_lowercase(),
        (None, Some(_)) => "verify_identity".to_owned(),
        (None, None) => "preferred".to_owned(),
    };
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
    if let Some(ca) = ca {
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
