//! The configuration's unit tests: keys, defaults, roles and queues, secrets.

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
fn the_clock_skew_bound_is_seconds_above_zero() {
    let skew = config(&[]).unwrap().clock_skew;
    assert_eq!(skew.max, Duration::from_secs(5));
    assert_eq!(skew.interval, Duration::from_secs(5));
    let half = config(&[("CLOCK_SKEW_MAX", "0.5")]).unwrap().clock_skew;
    assert_eq!(half.max, Duration::from_millis(500));
    for bad in ["0", "-1", "five", "NaN", "inf"] {
        let err = config(&[("CLOCK_SKEW_MAX", bad)]).unwrap_err();
        assert_eq!(err.key, "CLOCK_SKEW_MAX", "{bad}: {err}");
    }
    let err = config(&[("CLOCK_SKEW_INTERVAL_MS", "0")]).unwrap_err();
    assert_eq!(err.key, "CLOCK_SKEW_INTERVAL_MS");
}

#[test]
fn defaults_apply() {
    let config = config(&[]).unwrap();
    assert_eq!(config.port, 8080);
    assert_eq!(
        config.database.database_url.expose(),
        "sqlite://status-check.db"
    );
    assert_eq!(config.upstream_timeout, Duration::from_secs(5));
    assert_eq!(config.robot_consumer_username, "tinybots-robots");
    assert_eq!(config.database.log_format, LogFormat::Json);
    assert_eq!(
        config.rule_cost_budget,
        status_check_engine::rules::DEFAULT_COST_BUDGET
    );
    assert_eq!(
        config.connection_limits,
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    );
    assert_eq!(config.http_request_timeout, Duration::from_secs(30));
    assert_eq!(
        config.database.store.operation_timeout,
        crate::store::DEFAULT_OPERATION_TIMEOUT
    );
    assert_eq!(
        config
            .database
            .store
            .operation_timeout
            .as_secs()
            .to_string(),
        default("DB_OPERATION_TIMEOUT_SECS")
    );
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
        ("MICRO_MANAGERS_ADDRESS", "http://micro-managers:8080/?v=1"),
        ("MEGAZORD_EVENTS_ADDRESS", "http://"),
        ("MEGAZORD_EVENTS_ADDRESS", "http://megazord/#events"),
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
        ("DB_OPERATION_TIMEOUT_SECS", "0"),
        ("DB_POOL_SIZE", "0"),
        ("DB_POOL_SIZE", "1001"),
        ("DB_OPERATION_TIMEOUT_SECS", "2.5"),
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
    let deployment = [("DB_RW_HOST", "db.internal"), ("DB_RW_USERNAME", "svc")];
    let ca = ("DB_SSL_CA", "/etc/ssl/rds.pem");
    // A CA makes verification the default; an explicit mode still wins.
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[("DB_RW_PASSWORD", "p@ss:word"), ("DB_PORT", "3307")],
            "mysql://svc:p%40ss%3Aword@db.internal:3307/tinybots?ssl-mode=preferred",
        ),
        (
            &[ca],
            "mysql://svc:@db.internal:3306/tinybots?ssl-mode=verify_identity&ssl-ca=%2Fetc%2Fssl%2Frds.pem",
        ),
        (
            &[ca, ("DB_SSL_MODE", "VERIFY_CA")],
            "mysql://svc:@db.internal:3306/tinybots?ssl-mode=verify_ca&ssl-ca=%2Fetc%2Fssl%2Frds.pem",
        ),
    ];
    for (extra, url) in cases {
        let pairs = [&deployment[..], extra].concat();
        let built = config(&pairs).unwrap();
        assert_eq!(built.database.database_url.expose(), url, "{extra:?}");
    }
    let err = config(&[
        ("DB_RW_HOST", "db.internal"),
        ("DB_RW_USERNAME", "svc"),
        ("DB_SSL_MODE", "sometimes"),
    ])
    .unwrap_err();
    assert_eq!(err.key, "DB_SSL_MODE");
    assert!(config(&[("DB_RW_HOST", "db")]).unwrap_err().key == "DB_RW_USERNAME");
}

/// Database keys that would be ignored are refused: without DB_RW_HOST the service would run
/// on a local SQLite file (a mistyped host would lose every check at the next restart), and a
/// TLS setting beside DATABASE_URL would not apply.
#[test]
fn database_keys_that_would_be_ignored_are_refused() {
    for key in ["DB_RW_USERNAME", "DB_RW_PASSWORD", "DB_NAME", "DB_SSL_CA"] {
        let err = config(&[("DB_RW_HSOT", "db"), (key, "x")]).unwrap_err();
        assert_eq!(err.key, key);
        assert!(err.to_string().contains("DB_RW_HOST"), "{err}");
    }
    let url = ("DATABASE_URL", "mysql://u:p@db/x");
    for key in ["DB_SSL_MODE", "DB_SSL_CA"] {
        assert_eq!(
            config(&[url, (key, "verify_identity")]).unwrap_err().key,
            key
        );
    }
    // The URL wins over the deployment's other keys, as documented.
    let both = config(&[url, ("DB_RW_HOST", "db"), ("DB_RW_USERNAME", "svc")]).unwrap();
    assert_eq!(both.database.database_url.expose(), "mysql://u:p@db/x");
}

/// Spans added to or taken from times are bounded: a value beyond the bound would overflow the
/// time arithmetic of a worker (the consumer's grace, the relay's purge) and panic it.
#[test]
fn spans_added_to_times_are_bounded() {
    for (key, most) in [
        ("UNKNOWN_SUBSCRIPTION_GRACE_SECS", "1209600"),
        ("OUTBOX_RETENTION_SECS", "3153600000"),
    ] {
        assert!(config(&[(key, most)]).is_ok(), "{key}");
        let too_long = (most.parse::<u64>().unwrap() + 1).to_string();
        let err = config(&[(key, &too_long)]).unwrap_err();
        assert_eq!(err.key, key);
        assert!(err.message.contains(&format!("at most {most}")), "{err}");
        let huge = config(&[(key, "18446744073709551615")]).unwrap_err();
        assert_eq!(huge.key, key);
    }
}

/// Values a queue would refuse at run time are refused at start.
#[test]
fn queue_settings_the_queue_would_refuse_are_refused_at_start() {
    assert!(config(&[("CONSUMER_VISIBILITY_SECS", "43200")]).is_ok());
    let err = config(&[("CONSUMER_VISIBILITY_SECS", "43201")]).unwrap_err();
    assert_eq!(err.key, "CONSUMER_VISIBILITY_SECS");
    let err = config(&[("ROBOT_QUEUE_ADDRESS", "robot-")]).unwrap_err();
    assert_eq!(err.key, "ROBOT_QUEUE_ADDRESS");
}

#[test]
fn an_unverified_tls_certificate_is_warned_about() {
    let warning = |pairs: &[(&str, &str)]| config(pairs).unwrap().database.tls_warning();
    let deployment = [("DB_RW_HOST", "db.internal"), ("DB_RW_USERNAME", "svc")];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut pairs = deployment.to_vec();
        pairs.extend_from_slice(extra);
        warning(&pairs)
    };
    // The default without a CA, and `required`, accept any certificate.
    assert!(with(&[]).is_some_and(|w| w.contains("ssl-mode preferred")));
    assert!(with(&[("DB_SSL_MODE", "required")]).is_some_and(|w| w.contains("required")));
    // Verified, or TLS off on purpose: nothing to warn about.
    assert_eq!(with(&[("DB_SSL_CA", "/etc/ssl/rds.pem")]), None);
    assert_eq!(with(&[("DB_SSL_MODE", "verify_identity")]), None);
    assert_eq!(with(&[("DB_SSL_MODE", "disabled")]), None);
    // A URL says its own mode; sqlx's default there is `preferred`.
    assert!(warning(&[("DATABASE_URL", "mysql://u:p@db/x")]).is_some());
    assert_eq!(
        warning(&[("DATABASE_URL", "mysql://u:p@db/x?ssl-mode=verify_identity")]),
        None
    );
    assert_eq!(warning(&[("DATABASE_URL", "sqlite:///tmp/x.db")]), None);
    // The warning never carries the password.
    assert!(
        !warning(&[("DATABASE_URL", "mysql://u:hunter2@db/x")])
            .unwrap()
            .contains("hunter2")
    );
}

#[test]
fn secrets_never_show_in_debug_output() {
    let config = config(&[
        ("DATABASE_URL", "mysql://u:hunter2@h/db"),
        ("INTERNAL_API_TOKEN", "s3cret-token"),
    ])
    .unwrap();
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(!debug.contains("s3cret-token"), "{debug}");
    assert_eq!(
        config
            .internal_api_token
            .as_ref()
            .map(|t| t.expose().as_str()),
        Some("s3cret-token")
    );
}

#[test]
fn the_monitor_role_is_a_default_and_job_names_a_monitoring_replica() {
    assert!(config(&[]).unwrap().roles.monitor);
    let job = config(&[("ROLES", Roles::JOB)]).unwrap().roles;
    assert!(job.monitor && job.consumer && job.relay);
    assert!(!job.api && !job.scheduler);
    assert!(config(&[]).unwrap().internal_api_token.is_none());
}

#[test]
fn a_monitoring_only_replica_with_a_queue_suffix_consumes_only_the_monitors_queue() {
    let suffix = ("MONITORS_QUEUE_SUFFIX", "azi-3-status-check-jobs");
    let job = config(&[
        ("ROLES", Roles::JOB),
        suffix,
        ("ROBOT_QUEUE_ADDRESS", "<unset>"),
    ])
    .expect("a job replica with a suffix needs no robot queue");
    let queue = job.monitors_queue_suffix.as_deref();
    assert_eq!(queue, Some("azi-3-status-check-jobs"));
    assert!(job.roles.consumes_monitors_queue(queue));
    assert!(
        !job.roles.consumes_status_queue(queue),
        "the plain queue belongs to the status-check service"
    );
    assert_eq!(job.alarm_provider_name, "azi-3-status-jobs");

    // Every role: both queues. No suffix: the status queue only, as before.
    let all = config(&[suffix]).unwrap();
    let queue = all.monitors_queue_suffix.as_deref();
    assert!(all.roles.consumes_status_queue(queue) && all.roles.consumes_monitors_queue(queue));
    let plain = config(&[("ROLES", Roles::JOB)]).unwrap();
    assert!(plain.roles.consumes_status_queue(None));
    assert!(!plain.roles.consumes_monitors_queue(None));

    // Without the suffix a job replica's relay sends robot notifications too.
    let err = config(&[("ROLES", Roles::JOB), ("ROBOT_QUEUE_ADDRESS", "<unset>")]).unwrap_err();
    assert_eq!(err.key, "ROBOT_QUEUE_ADDRESS");
    let err = config(&[("MONITORS_QUEUE_SUFFIX", "no/slash")]).unwrap_err();
    assert_eq!(err.key, "MONITORS_QUEUE_SUFFIX");
    let custom = config(&[("ALARM_PROVIDER_NAME", "other-provider")]).unwrap();
    assert_eq!(custom.alarm_provider_name, "other-provider");
}

/// `status-check job` starts with the monitoring job service's own environment — no
/// MONITORS_QUEUE_SUFFIX, no ROBOT_QUEUE_ADDRESS — and then consumes only that service's queue:
/// never the status queue the Node status-check service reads (SPEC §12).
#[test]
fn job_runs_on_the_job_services_environment_and_its_queue_only() {
    let deployed: BTreeMap<String, String> = [
        ("STATUS_QUEUE_ADDRESS", "http://sqs.local/1/status-queue"),
        ("MEGAZORD_EVENTS_ADDRESS", "http://megazord:8080"),
        ("ROLES", "api,scheduler"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let job = Config::for_job(deployed.clone()).expect("the job service's environment is enough");
    let suffix = job.monitors_queue_suffix.as_deref();
    assert_eq!(suffix, Some(JOB_SERVICE_QUEUE_SUFFIX));
    assert!(job.roles.monitoring_only(), "ROLES is the job's");
    assert!(job.roles.consumes_monitors_queue(suffix));
    assert!(!job.roles.consumes_status_queue(suffix));
    // A suffix the deployment sets is kept.
    let mut other = deployed.clone();
    other.insert("MONITORS_QUEUE_SUFFIX".into(), "jobs-eu".into());
    let job = Config::for_job(other).unwrap();
    assert_eq!(job.monitors_queue_suffix.as_deref(), Some("jobs-eu"));
    // So is one its CONFIG_FILE sets (the environment wins over the file, not the default).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "MONITORS_QUEUE_SUFFIX: jobs-from-file\n").unwrap();
    let mut with_file = deployed;
    with_file.insert("CONFIG_FILE".into(), file.display().to_string());
    let job = Config::for_job(with_file).unwrap();
    assert_eq!(job.monitors_queue_suffix.as_deref(), Some("jobs-from-file"));
}

#[test]
fn the_environment_wins_over_the_file_and_file_typos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    std::fs::write(&file, "PORT: 9000\nLOG_FORMAT: pretty\n").unwrap();
    let path = file.to_str().unwrap();
    // An empty variable is unset: the file's value stands, not the default.
    let emptied = config(&[("CONFIG_FILE", path), ("PORT", ""), ("LOG_FORMAT", " ")]).unwrap();
    assert_eq!(emptied.port, 9000);
    assert_eq!(emptied.database.log_format, LogFormat::Pretty);
    let config = config(&[("CONFIG_FILE", path), ("PORT", "9100")]).unwrap();
    assert_eq!(config.port, 9100);
    assert_eq!(config.database.log_format, LogFormat::Pretty);

    std::fs::write(&file, "PROT: 9000\n").unwrap();
    let err = Config::from_sources(
        [("CONFIG_FILE".to_owned(), path.to_owned())]
            .into_iter()
            .collect(),
    )
    .unwrap_err();
    assert_eq!(err.key, "PROT");
}

/// A connect that hangs must end as a connection error (retried), before the attempt's own
/// timeout ends it as a timed-out attempt (not retried): the connect timeout is the shorter.
#[test]
fn the_upstream_connect_timeout_is_shorter_than_the_attempt() {
    let short = config(&[("UPSTREAM_TIMEOUT_MS", "1500")]).unwrap();
    let upstream = short.upstream("http://x".to_owned());
    assert_eq!(upstream.timeout, Duration::from_millis(1500));
    assert_eq!(
        upstream.effective_connect_timeout(),
        Duration::from_millis(750)
    );
    let default = config(&[]).unwrap().upstream("http://x".to_owned());
    assert_eq!(default.effective_connect_timeout(), Duration::from_secs(2));
    assert!(default.effective_connect_timeout() < default.timeout);
}

/// The queues' region: `AWS_REGION` when set; else the one the queue URLs name, in any of AWS's
/// host forms (a deployment that sets only `AWS_DEFAULT_REGION` or none still reaches its
/// queues); else `AWS_DEFAULT_REGION`; else eu-central-1.
#[test]
fn the_aws_region_comes_from_the_key_or_the_queue_urls() {
    let region = |host: &str, extra: &[(&str, &str)]| {
        let status = format!("https://{host}/123456789012/status");
        let robot = format!("https://{host}/123456789012/robot-");
        let mut pairs = vec![
            ("STATUS_QUEUE_ADDRESS", status.as_str()),
            ("ROBOT_QUEUE_ADDRESS", robot.as_str()),
        ];
        pairs.extend_from_slice(extra);
        config(&pairs).unwrap().aws_region
    };
    let none: &[(&str, &str)] = &[];
    for (host, extra, expected) in [
        ("sqs.eu-west-1.amazonaws.com", none, "eu-west-1"),
        (
            "sqs.eu-west-1.amazonaws.com",
            &[("AWS_REGION", "us-east-2")],
            "us-east-2",
        ),
        ("ap-southeast-2.queue.amazonaws.com", none, "ap-southeast-2"),
        ("sqs-fips.us-east-1.amazonaws.com", none, "us-east-1"),
        (
            "vpce-0a1b-4e5f.sqs.us-west-2.vpce.amazonaws.com",
            none,
            "us-west-2",
        ),
        ("sqs.eu-north-1.api.aws", none, "eu-north-1"),
        (
            "sqs.ca-central-1.localhost.localstack.cloud",
            none,
            "ca-central-1",
        ),
        // An emulator's address names none.
        ("127.0.0.1:4566", none, "eu-central-1"),
        (
            "localhost:4566",
            &[("AWS_DEFAULT_REGION", "sa-east-1")],
            "sa-east-1",
        ),
    ] {
        assert_eq!(region(host, extra), expected, "{host} {extra:?}");
    }
}
