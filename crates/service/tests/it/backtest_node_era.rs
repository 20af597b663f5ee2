//! A backtest on the Node service's database before the cut-over (SPEC §14: "every ended check
//! of the template's name … the Node service's included"): a database this service never
//! migrated — none of its own tables. On MariaDB, one made from the live definition alone; on
//! SQLite (which has no such definition), a migrated one with the tables the reads join
//! dropped. It is read as if they were there and empty, says so, and is left as it was.

use serde_json::json;

use crate::backtest::{NodeCheck, legacy_version, node_check, status_check, summary};
use crate::support::{self, TestDb};

const CHARGING: &str = "robot-is-charging";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_reads_a_mariadb_this_service_never_migrated() {
    let Some(db) = support::mysql_db_production_unmigrated().await else {
        return;
    };
    let url = db.url.clone().unwrap();
    let tables = "SELECT COUNT(*) FROM information_schema.tables \
                  WHERE table_schema = DATABASE()";
    let before = db.raw.count(tables).await;
    backtest_node_checks(&db, &url).await;
    // Read only: not a table more.
    assert_eq!(db.raw.count(tables).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_reads_a_sqlite_file_without_this_services_tables() {
    let db = support::sqlite_db().await;
    for drop in [
        "DROP TABLE status_check_record_event",
        "DROP TABLE status_check_template_ext",
        "DROP TABLE status_check_ext",
    ] {
        db.raw.execute_text(drop, &[]).await;
    }
    let url = format!("sqlite://{}", db.sqlite_path().unwrap().display());
    backtest_node_checks(&db, &url).await;
}

/// Two checks the Node service decided, backtested with the shipped robot-is-charging: both
/// unchanged, and the report says the database was read as the Node service's.
async fn backtest_node_checks(db: &TestDb, url: &str) {
    db.raw
        .execute_text(
            "INSERT INTO status_check_description (name, description, created_at) \
             VALUES (?, 'Written by the Node service', '2025-06-01 00:00:00')",
            &[CHARGING],
        )
        .await;
    let legacy = legacy_version(&db.raw, 1).await;
    // Charging stopped at 07:20, nothing after: FAIL at the deadline, as the shipped version
    // decides it too. And one the Node service passed on a start at 07:50 (in the past).
    // (It subscribed, waited and ended at its deadline; the other never needed to.)
    for (robot, phase, result, subscription_id, record) in [
        (
            4,
            "FAILED",
            "FAIL",
            Some(9004),
            (9401, "CHARGING_STOPPED", "2026-11-20T07:20:00Z", "PENDING"),
        ),
        (
            5,
            "COMPLETED",
            "PASS",
            None,
            (9501, "CHARGING_STARTED", "2026-11-20T07:50:00Z", "PASS"),
        ),
    ] {
        db.neighbours.robot(robot).await;
        node_check(
            db,
            NodeCheck {
                robot,
                template_id: legacy,
                phase,
                result,
                next_step_id: None,
                subscription_id,
                record,
            },
        )
        .await;
    }
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../templates/robot-is-charging.v1.yaml"
    );
    let output = status_check(
        [
            "templates",
            "backtest",
            shipped,
            "--database",
            url,
            "--since",
            "2026-11-20",
            "--until",
            "2026-11-21",
            "--json",
        ]
        .map(str::to_owned)
        .to_vec(),
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary(&report), (2, 2, 0, 0), "{report:#}");
    assert_eq!(report["matrix"]["FAIL"]["FAIL"], json!(1), "{report:#}");
    assert_eq!(report["matrix"]["PASS"]["PASS"], json!(1), "{report:#}");
    assert_eq!(report["neverMigrated"], json!(true), "{report:#}");
}
