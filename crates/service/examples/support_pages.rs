//! The support pages (SPEC §15) on fixed data and a fixed clock, for the browser test and
//! the screenshots in docs/ (`scripts/support-pages`):
//!
//! ```text
//! cargo run -p status-check --example support_pages
//! ```
//!
//! Serves an API-only replica on 127.0.0.1 (a free port) over a fresh SQLite file holding two
//! checks of robot-is-charging (one passed by a future event, one failed at its deadline) and
//! the no-toilet monitor of robot 42 on 20 November 2026 (two alarms, the third window open),
//! the clock standing at 13:00 UTC that day. Prints one JSON line with the addresses and what
//! each page must show, then serves until stdin closes.

use std::io::Read as _;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use status_check::clock::ManualClock;
use status_check::jobs::Lease;
use status_check::store::{
    BatchedUpdate, CheckKey, CheckUpdate, Created, Fence, MonitorPut, MonitorSource, NewAction,
    NewCheck, Notifications, StateChange, StoreSettings, UpdateOutcome, WindowClose, WindowRecord,
};
use status_check::upstream::UpstreamConfig;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::micro_managers::HttpMicroManagers;
use status_check::{App, Config, Deps};
use status_check_engine::lifecycle::{NextSteps, Windows};
use status_check_engine::monitor::{
    ActionDefinition, DailyDefinition, Monitor, MonitorDefinition, WindowLength, WindowState,
};
use status_check_engine::{CheckPhase, CheckResult, Event, Record, RecordPhase};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "support-pages-demo-token";

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn record(
    order: u32,
    phase: RecordPhase,
    id: i64,
    name: &str,
    time: &str,
    result: CheckResult,
) -> Record {
    Record {
        order,
        phase,
        event: Event {
            id,
            name: name.to_owned(),
            created_at: at(time),
            level: Some(10),
            reference_id: None,
        },
        outgoing_event_id: None,
        result,
        created_at: at(time).max(at("2026-11-20T08:00:00Z")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite:{}", dir.path().join("demo.db").display());
    let store = status_check::store::connect(
        &url,
        StoreSettings {
            operation_timeout: status_check::store::DEFAULT_OPERATION_TIMEOUT,
            mysql_pool_size: 1,
        },
    )
    .await?;
    store.migrate().await?;
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/../../templates");
    let config = Config::from_sources(
        [
            ("HOST", "127.0.0.1"),
            ("PORT", "0"),
            ("ROLES", "api"),
            ("TEMPLATES_DIR", templates),
            ("INTERNAL_API_TOKEN", TOKEN),
            ("MICRO_MANAGERS_ADDRESS", "http://127.0.0.1:9"),
            ("MEGAZORD_EVENTS_ADDRESS", "http://127.0.0.1:9"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect(),
    )?;
    let now = at("2026-11-20T13:00:00Z");
    let upstream = UpstreamConfig::new("http://127.0.0.1:9");
    let app = App::build_with(
        &config,
        Deps {
            store: store.clone(),
            micro_managers: Arc::new(HttpMicroManagers::new(&upstream)?),
            megazord: Arc::new(HttpMegazord::new(&upstream)?),
            clock: Arc::new(ManualClock::new(now)),
            queue: None,
        },
    )
    .await?;

    let template = store.template_versions("robot-is-charging").await?;
    let template = template.last().expect("robot-is-charging is shipped");
    let definition = template.definition.clone().map_err(anyhow::Error::msg)?;
    let render = |check: &status_check::store::StoredCheck, seq: i64| {
        status_check::notify::render(check, seq, "demo-host")
    };
    let notifications = Notifications::rendered_by(&render);
    let next_steps = NextSteps {
        pass: 124,
        fail: 125,
        unknown: None,
    };

    // Check 1 of robot 42: stopped charging at 07:20, started again at 08:04 — PASS.
    // Check 2 of robot 43: stopped at 07:35, nothing after — FAIL at the deadline 08:10.
    let mut check_ids = Vec::new();
    for (robot, stopped, started) in [
        (42, "2026-11-20T07:20:00Z", Some("2026-11-20T08:04:00Z")),
        (43, "2026-11-20T07:35:00Z", None),
    ] {
        let anchor = at("2026-11-20T08:00:00Z");
        let windows = Windows::compute(0, 0, &definition.poller, anchor)?;
        let created = store
            .create_check(NewCheck {
                key: CheckKey {
                    robot_id: robot,
                    step_id: 123,
                    scheduled_id: 456,
                    planned_at: at("2026-11-20T07:59:30Z"),
                },
                script_version_id: 789,
                template_id: template.id,
                phase: CheckPhase::Future,
                result: CheckResult::Pending,
                next_step_id: None,
                subscription_id: Some(990 + robot),
                subscribe_intent: None,
                windows,
                deadline: windows.until,
                next_steps,
                records: vec![record(
                    1,
                    RecordPhase::Past,
                    5000 + robot,
                    "CHARGING_STOPPED",
                    stopped,
                    CheckResult::Pending,
                )],
                remove_subscription: false,
                now: anchor,
            })
            .await?;
        let Created::New(check) = created else {
            anyhow::bail!("the demo database is not fresh")
        };
        let (update, when) = match started {
            Some(time) => (
                CheckUpdate {
                    phase: CheckPhase::Completed,
                    result: CheckResult::Pass,
                    next_step_id: Some(124),
                    new_records: vec![record(
                        2,
                        RecordPhase::Future,
                        6000 + robot,
                        "CHARGING_STARTED",
                        time,
                        CheckResult::Pass,
                    )],
                    deadline: None,
                    release_lease: false,
                    notify: true,
                    remove_subscription: true,
                },
                at(time),
            ),
            None => (
                CheckUpdate {
                    phase: CheckPhase::Failed,
                    result: CheckResult::Fail,
                    next_step_id: Some(125),
                    new_records: Vec::new(),
                    deadline: None,
                    release_lease: false,
                    notify: true,
                    remove_subscription: true,
                },
                at("2026-11-20T08:10:00.200Z"),
            ),
        };
        let outcome = store
            .update_check(
                BatchedUpdate {
                    current: &check,
                    fence: Fence::None,
                    update,
                    call_ref: "demo",
                },
                &notifications,
                when,
            )
            .await?;
        anyhow::ensure!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
        let demo = Lease::parse("demo")?;
        let sent = store
            .notification_jobs()
            .claim(when, &demo, when + chrono::TimeDelta::seconds(30), 10)
            .await?;
        let ids: Vec<i64> = sent.iter().map(|m| m.id).collect();
        store
            .notification_jobs()
            .complete(&ids, &demo, when + chrono::TimeDelta::milliseconds(180))
            .await?;
        check_ids.push(check.id);
    }

    // The monitor: 2 h windows from 08:00 to 22:00 in Amsterdam; window 1 was reset by an
    // event, then windows 1 and 2 expired (alarms at 11:30 and 13:30 local); 3 is open.
    let monitor = Monitor::from_definition(&MonitorDefinition {
        robot_id: Some(42),
        rule_id: Some("no-toilet".to_owned()),
        event_type: Some("TOILET_ACTIVITY".to_owned()),
        window: Some("2h".to_owned()),
        timezone: Some("Europe/Amsterdam".to_owned()),
        daily: Some(DailyDefinition {
            start: Some("08:00".to_owned()),
            end: Some("22:00".to_owned()),
        }),
        actions: Some(vec![ActionDefinition {
            kind: Some("alarm".to_owned()),
            event_name: Some("NO_TOILET_ACTIVITY_ALARM".to_owned()),
            ..ActionDefinition::default()
        }]),
        enabled: Some(true),
    })
    .map_err(|errors| anyhow::anyhow!("{errors:?}"))?;
    let date = NaiveDate::from_ymd_opt(2026, 11, 20).unwrap();
    let put = store
        .put_monitor(&monitor, MonitorSource::Api, at("2026-11-20T06:00:00Z"))
        .await?;
    let (MonitorPut::Created(stored)
    | MonitorPut::Replaced(stored)
    | MonitorPut::Unchanged(stored)) = put;
    let alarms = [(1, "2026-11-20T10:30:00Z"), (2, "2026-11-20T12:30:00Z")];
    let change = StateChange {
        window: Some(WindowState {
            session_date: date,
            session_end: at("2026-11-20T21:00:00Z"),
            window_number: 3,
            window_start: at("2026-11-20T12:30:00Z"),
            window_end: at("2026-11-20T14:30:00Z"),
            window_length: WindowLength::parse("2h").unwrap(),
        }),
        subscription_id: Some(7001),
        due_at: at("2026-11-20T14:30:00Z"),
        release_lease: false,
        actions: alarms
            .iter()
            .flat_map(|(n, end)| {
                monitor.alarms(date, *n).into_iter().map(|alarm| NewAction {
                    session_date: date,
                    window_number: *n,
                    window_end: at(end),
                    alarm,
                })
            })
            .collect(),
        remove_subscription: None,
        windows: [
            (
                1,
                "2026-11-20T07:00:00Z",
                "2026-11-20T08:30:00Z",
                Some(WindowClose::Reset),
            ),
            (
                1,
                "2026-11-20T08:30:00Z",
                "2026-11-20T10:30:00Z",
                Some(WindowClose::Expired),
            ),
            (
                2,
                "2026-11-20T10:30:00Z",
                "2026-11-20T12:30:00Z",
                Some(WindowClose::Expired),
            ),
            (3, "2026-11-20T12:30:00Z", "2026-11-20T14:30:00Z", None),
        ]
        .into_iter()
        .map(|(number, start, end, ending)| WindowRecord {
            session_date: date,
            session_start: at("2026-11-20T07:00:00Z"),
            session_end: at("2026-11-20T21:00:00Z"),
            subscription_id: Some(7001),
            number,
            start: at(start),
            end: at(end),
            ending,
            reference_id: (ending == Some(WindowClose::Expired))
                .then(|| monitor.reference_id(date, number)),
            reset_event_id: (ending == Some(WindowClose::Reset)).then_some(6001),
        })
        .collect(),
    };
    anyhow::ensure!(
        store
            .write_monitor_state(&stored, None, &change, at("2026-11-20T12:30:00Z"))
            .await?
    );
    for (_, end) in alarms {
        let posted = at(end) + chrono::TimeDelta::milliseconds(420);
        let demo = Lease::parse("demo")?;
        let alarms = store.alarm_jobs();
        let claimed = alarms
            .claim(posted, &demo, posted + chrono::TimeDelta::seconds(30), 10)
            .await?;
        let ids: Vec<i64> = claimed.iter().map(|action| action.id).collect();
        alarms.complete(&ids, &demo, posted).await?;
    }

    let base = format!("http://127.0.0.1:{}", app.port());
    let pages = serde_json::json!({
        "base": base,
        "token": TOKEN,
        "pages": [
            {"name": "list", "path": "/internal/ui/", "eventMarks": 0,
             "texts": ["robot-is-charging v1", "no-toilet"]},
            {"name": "check", "path": format!("/internal/ui/checks/{}?tz=Europe/Amsterdam", check_ids[0]), "eventMarks": 2,
             "texts": ["COMPLETED · PASS · next step 124", "CHARGING_STARTED"]},
            {"name": "check-failed", "path": format!("/internal/ui/checks/{}", check_ids[1]), "eventMarks": 1,
             "texts": ["FAILED · FAIL · next step 125"]},
            {"name": "monitor", "path": "/internal/ui/monitors/42/no-toilet?date=2026-11-20", "eventMarks": 1,
             "windowBars": 4,
             "texts": ["status-check:42:no-toilet:2026-11-20:1", "status-check:42:no-toilet:2026-11-20:2", "open now"]},
        ],
    });
    println!("{pages}");
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(app.run(shutdown.clone()));
    // Serve until stdin closes (the test or script that started us is done).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await?;
    shutdown.cancel();
    server.await??;
    Ok(())
}
