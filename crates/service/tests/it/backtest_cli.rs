//! `templates backtest` when it cannot run, or has nothing to do: a clear message on stderr
//! (whatever the output format) and the exit code that says so.

use std::process::Output;

use crate::backtest::status_check;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// `templates backtest` of the shipped robot-is-charging template against `database`, with
/// `more` arguments.
async fn backtest_charging(database: &str, more: &[&str]) -> Output {
    let mut list = args(&[
        "templates",
        "backtest",
        "templates/robot-is-charging.v1.yaml",
        "--database",
        database,
    ]);
    list.extend(args(more));
    status_check(list).await
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A migrated SQLite database with no checks.
async fn empty_database() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("status-check.db");
    let url = format!("sqlite://{}", path.display());
    let store = status_check::store::connect(
        &url,
        status_check::store::StoreSettings {
            operation_timeout: status_check::store::DEFAULT_OPERATION_TIMEOUT,
            mysql_pool_size: 1,
        },
    )
    .await
    .unwrap();
    store.migrate().await.unwrap();
    drop(store);
    (dir, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_template_file_is_named_on_stderr_and_nothing_is_printed() {
    let (dir, url) = empty_database().await;
    let broken = dir.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "name: robot-is-charging\nversion: 2\nresources:\n  pastEvents:\n    dependsOn: [A]\n    \
         PASS: 'evnts.size() > 0'\n",
    )
    .unwrap();
    for format in [None, Some("--json")] {
        let mut list = args(&[
            "templates",
            "backtest",
            broken.to_str().unwrap(),
            "--database",
            &url,
        ]);
        list.extend(format.map(str::to_owned));
        let output = status_check(list).await;
        assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
        assert!(output.stdout.is_empty(), "{format:?}: nothing on stdout");
        let message = stderr(&output);
        assert!(
            message.contains("broken.yaml is not a valid template")
                && message.contains("resources.pastEvents.PASS")
                && message.contains("evnts"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_an_error_and_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.db");
    let output = backtest_charging(missing.to_str().unwrap(), &["--json"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let message = stderr(&output);
    assert!(
        message.contains("cannot open the database")
            && message.contains("nowhere.db")
            && message.contains("no such file"),
        "{message}"
    );
    assert!(!missing.exists(), "a read-only backtest created the file");

    // A file that is not a status-check database.
    std::fs::write(&missing, "not a database").unwrap();
    let output = backtest_charging(missing.to_str().unwrap(), &[]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("nowhere.db"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_period_without_checks_reports_zero_and_says_so() {
    let (_dir, url) = empty_database().await;
    let output = backtest_charging(
        &url,
        &["--since", "2026-10-01", "--until", "2026-10-02", "--json"],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report["summary"],
        serde_json::json!({"examined": 0, "unchanged": 0, "changed": 0, "notComparable": 0})
    );
    // Off a terminal, nothing but the report (SPEC §14): the text report says why it is empty.
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
    let output = backtest_charging(&url, &["--since", "2026-10-01", "--until", "2026-10-02"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(output.stderr.is_empty(), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("the database holds no version of robot-is-charging"),
        "{text}"
    );

    // --limit 0 would examine nothing: refused.
    let output = backtest_charging(&url, &["--limit", "0"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("--limit"), "{}", stderr(&output));

    // --until before --since: it cannot run.
    let output = backtest_charging(&url, &["--since", "2026-10-02", "--until", "2026-10-01"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("the period is empty"),
        "{}",
        stderr(&output)
    );
    let output = backtest_charging(&url, &["--since", "last week"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--since"), "{}", stderr(&output));
}
