//! A backtest on the Node service's database before the cut-over (SPEC §14: "every ended check
//! of the template's name … the Node service's included"): a MariaDB made from the live
//! definition alone, never migrated by this service — none of its own tables. It is read as
//! if they were there and empty, and left as it was.

use serde_json::json;

use crate::backtest::{NodeCheck, legacy_version, node_check, status_check, summary};
use crate::support;

const CHARGING: &str = "robot-is-charging";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backtest_reads_a_database_this_service_never_migrated() {
    let Some(db) = support::mysql_db_production_unmigrated().await else {
        return;
    };
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
            &db,
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
    let tables = "SELECT COUNT(*) FROM information_schema.tables \
                  WHERE table_schema = DATABASE()";
    let before = db.raw.count(tables).await;

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
            db.url.as_deref().unwrap(),
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
    // Read only: not a table more.
    assert_eq!(db.raw.count(tables).await, before);
}
