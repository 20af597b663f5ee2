//! `status-check migrate` and `serve` against a database, run as an operator would: the real
//! binary in a clean environment. `migrate` needs nothing but the database; a database that
//! cannot be reached is reported once, quickly, naming where and why — never the password.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than the binary may take to give up on an unreachable database.
const PATIENCE: Duration = Duration::from_secs(20);

/// What one run of the binary did.
struct Run {
    code: Option<i32>,
    stderr: String,
    took: Duration,
}

/// Runs the binary with exactly `env` (nothing inherited) in `dir`, killed after `PATIENCE`.
fn status_check(args: &[&str], env: &[(&str, &str)], dir: &Path) -> Run {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_status-check"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the binary") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            break child.wait().expect("wait for the killed binary");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    Run {
        code: status.code(),
        stderr,
        took,
    }
}

/// A port on 127.0.0.1 nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address").port()
}

#[tokio::test]
async fn migrate_needs_nothing_but_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let url = format!("sqlite://{}", file.display());
    let run = status_check(&["migrate"], &[("DATABASE_URL", &url)], dir.path());
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", file.display()))
        .await
        .expect("the migrated file opens");
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(&pool)
            .await
            .unwrap();
    for table in [
        "status_check",
        "status_check_poller",
        "status_check_record",
        "status_check_template",
        "status_check_ext",
        "status_check_outbox",
    ] {
        assert!(
            tables.iter().any(|t| t == table),
            "{table} missing: {tables:?}"
        );
    }
    pool.close().await;
}

#[test]
fn serve_still_requires_its_queue_address() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let run = status_check(&["serve"], &[("DATABASE_URL", &url)], dir.path());
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(
        run.stderr.contains("STATUS_QUEUE_ADDRESS"),
        "{}",
        run.stderr
    );
}

/// A replica that cannot run (no Megazord address, which `serve`'s roles need) says so before
/// it touches the database: nothing is created or migrated.
#[test]
fn serve_without_an_upstream_address_touches_no_database() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.db");
    let url = format!("sqlite://{}", file.display());
    let run = status_check(
        &["serve"],
        &[
            ("DATABASE_URL", &url),
            ("STATUS_QUEUE_ADDRESS", "http://127.0.0.1:9/1/status"),
            ("ROBOT_QUEUE_ADDRESS", "http://127.0.0.1:9/1/robot-"),
            ("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9"),
        ],
        dir.path(),
    );
    assert_ne!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("MEGAZORD_EVENTS_ADDRESS"),
        "{}",
        run.stderr
    );
    assert!(!file.exists(), "the database was created: {}", run.stderr);
}

/// The same failure through `migrate` and `serve` (which connects once its configuration,
/// upstream addresses included, holds).
fn assert_reported_once(env: &[(&str, &str)], names: &[&str], cause: &str) {
    let dir = tempfile::tempdir().unwrap();
    for command in ["migrate", "serve"] {
        let mut env = env.to_vec();
        if command == "serve" {
            // An API-only replica needs no queue address: it stops at the database.
            env.extend([
                ("ROLES", "api"),
                ("PORT", "0"),
                ("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9"),
                ("MEGAZORD_EVENTS_ADDRESS", "http://127.0.0.1:9"),
            ]);
        }
        let run = status_check(&[command], &env, dir.path());
        let stderr = &run.stderr;
        assert_eq!(run.code, Some(2), "{command}: {stderr}");
        assert!(
            run.took < Duration::from_secs(10),
            "{command} took {:?}: {stderr}",
            run.took
        );
        for name in names {
            assert!(stderr.contains(name), "{command}: {name} missing: {stderr}");
        }
        assert_eq!(
            stderr.matches(cause).count(),
            1,
            "{command}: the cause {cause:?} once: {stderr}"
        );
        assert!(!stderr.contains("secretpw"), "{command}: {stderr}");
    }
}

#[test]
fn an_unreachable_mysql_is_reported_once_with_host_port_and_cause() {
    let port = closed_port().to_string();
    let url = format!("mysql://u:secretpw@127.0.0.1:{port}/db");
    let names = ["MySQL", &format!("127.0.0.1:{port}"), "db"];
    assert_reported_once(&[("DATABASE_URL", &url)], &names, "Connection refused");
    // The same from the existing deployment's variables.
    assert_reported_once(
        &[
            ("DB_RW_HOST", "127.0.0.1"),
            ("DB_PORT", &port),
            ("DB_RW_USERNAME", "u"),
            ("DB_RW_PASSWORD", "secretpw"),
            ("DB_NAME", "db"),
        ],
        &names,
        "Connection refused",
    );
}

#[test]
fn a_sqlite_file_that_cannot_be_created_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no-such-folder").join("x.db");
    let url = format!("sqlite://{}", file.display());
    assert_reported_once(
        &[("DATABASE_URL", &url)],
        &["SQLite", &file.display().to_string()],
        "unable to open database file",
    );
}

/// A server that answers but refuses: wrong password, unknown database — its own words, once.
#[test]
fn a_mysql_that_refuses_is_reported_with_its_own_reason() {
    if crate::support::mysql_skipped() {
        return;
    }
    let server = std::env::var("TEST_MYSQL_URL").unwrap();
    let server = reqwest::Url::parse(&server).expect("TEST_MYSQL_URL is a URL");
    let real_password = server.password().unwrap_or_default().to_owned();
    let at = format!(
        "{}:{}",
        server.host_str().unwrap(),
        server.port().unwrap_or(3306)
    );

    let mut wrong_password = server.clone();
    wrong_password.set_password(Some("secretpw")).unwrap();
    wrong_password.set_path("/sc_test_any");
    assert_reported_once(
        &[("DATABASE_URL", wrong_password.as_str())],
        &["MySQL", &at, "sc_test_any"],
        "Access denied",
    );

    let mut unknown_database = server.clone();
    unknown_database.set_path("/sc_test_no_such_database");
    let dir = tempfile::tempdir().unwrap();
    let run = status_check(
        &["migrate"],
        &[("DATABASE_URL", unknown_database.as_str())],
        dir.path(),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(
        run.stderr.matches("Unknown database").count(),
        1,
        "{}",
        run.stderr
    );
    assert!(
        real_password.is_empty() || !run.stderr.contains(&real_password),
        "the password leaked: {}",
        run.stderr
    );
}
