//! `status-check migrate` and `serve` against a database, run as an operator would: the real
//! binary in a clean environment. `migrate` needs nothing but the database.

use std::io::Read as _;
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
