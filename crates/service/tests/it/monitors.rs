//! Monitors end to end (SPEC §12), on SQLite and MariaDB with the status queue on the SQS
//! emulator and the Megazord simulator (which stores the alarms posted to it): a quiet window
//! alarms, activity resets it (delivered, or found by the backfill), the session ends and
//! unsubscribes, and two replicas act on each window once. The workers are driven with
//! `tick_once` and a manual clock that the simulators share.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{Value, json};
use status_check::app::Workers;
use status_check::clock::{Clock as _, ManualClock};
use status_check::dev::{Stack, StackOptions};
use status_check::monitors::Monitors;
use status_check::store::DynStore;
use status_check::upstream::UpstreamConfig;
use status_check::upstream::megazord::HttpMegazord;
use status_check::upstream::micro_managers::HttpMicroManagers;
use status_check::workers::consumer::Outcome;
use status_check::{App, Config, Deps};
use status_check_engine::monitor::MonitorDefinition;
use status_check_sim::MegazordSim;
use status_check_sim::megazord::NewIncoming;
use tokio_util::sync::CancellationToken;

use crate::harness::on_both_backends;
use crate::harness::{Backend, Queues, sqs_queues};
use crate::support::TestDb;

pub(crate) const ROBOT: i64 = 42;
pub(crate) const ALARM: &str = "NO_TOILET_ACTIVITY_ALARM";
pub(crate) const TOKEN: &str = "internal-test-token";

pub(crate) fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A replica with every role on the simulators, its workers for the test to drive.
pub(crate) struct Replica {
    pub base: String,
    pub workers: Workers,
    pub monitors: Arc<Monitors>,
    shutdown: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The service (one replica, more with [`MonitorStack::replica`]), the Megazord simulator,
/// the queues and the database, all on one manual clock.
pub(crate) struct MonitorStack {
    pub db: TestDb,
    pub queues: Queues,
    pub clock: Arc<ManualClock>,
    pub megazord: MegazordSim,
    megazord_url: String,
    pub first: Replica,
    env: BTreeMap<String, String>,
    _sims: tokio_util::sync::DropGuard,
}

fn env_of(queues: &Queues) -> BTreeMap<String, String> {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates");
    [
        ("HOST", "127.0.0.1".to_owned()),
        ("PORT", "0".to_owned()),
        ("TEMPLATES_DIR", templates.display().to_string()),
        ("STATUS_QUEUE_ADDRESS", queues.status_url.clone()),
        ("ROBOT_QUEUE_ADDRESS", queues.robot_prefix.clone()),
        ("CONSUMER_WAIT_SECS", "1".to_owned()),
        ("CONSUMER_VISIBILITY_SECS", "10".to_owned()),
        ("UNKNOWN_SUBSCRIPTION_GRACE_SECS", "0".to_owned()),
        ("UPSTREAM_TIMEOUT_MS", "2000".to_owned()),
        ("INTERNAL_API_TOKEN", TOKEN.to_owned()),
        ("SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ("LOG_LEVEL", "warn".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn serve(mut app: App) -> Replica {
    let workers = app.take_workers();
    let base = format!("http://127.0.0.1:{}", app.port());
    let monitors = app.state().monitors.clone();
    let shutdown = CancellationToken::new();
    tokio::spawn(app.run(shutdown.clone()));
    Replica {
        base,
        workers,
        monitors,
        shutdown,
    }
}

/// A stack on a fresh database of `backend` at `start`; `None` when MySQL or SQS tests are
/// switched off.
pub(crate) async fn stack(backend: Backend, start: DateTime<Utc>) -> Option<MonitorStack> {
    stack_with(backend, start, &[]).await
}

/// A stack with extra configuration keys.
pub(crate) async fn stack_with(
    backend: Backend,
    start: DateTime<Utc>,
    extra: &[(&str, &str)],
) -> Option<MonitorStack> {
    let db = backend.database().await?;
    stack_on(db, start, extra).await
}

/// A stack on a database the test made (e.g. through a proxy); `None` when SQS tests are
/// switched off.
pub(crate) async fn stack_on(
    db: TestDb,
    start: DateTime<Utc>,
    extra: &[(&str, &str)],
) -> Option<MonitorStack> {
    let queues = sqs_queues().await?;
    let clock = Arc::new(ManualClock::new(start));
    let mut env = env_of(&queues);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let built = Stack::build(StackOptions {
        env: env.clone(),
        store: Some(db.store.clone()),
        queue: queues.queue.clone(),
        clock: clock.clone(),
        mailbox: None,
        sim_ports: (0, 0),
        megazord_rows: Some(Arc::new(db.neighbours.clone())),
    })
    .await
    .expect("the stack builds");
    let megazord_url = format!("http://{}", built.megazord_addr);
    let first = serve(built.app);
    Some(MonitorStack {
        db,
        queues,
        clock,
        megazord: built.megazord,
        megazord_url,
        first,
        env,
        _sims: built.sims.drop_guard(),
    })
}

impl MonitorStack {
    pub fn store(&self) -> &DynStore {
        &self.db.store
    }

    /// Another replica on the same database, queues, simulators and clock.
    pub async fn replica(&self) -> Replica {
        self.replica_with(&[]).await.unwrap()
    }

    /// Another replica with extra configuration keys; its start-up error, if it fails.
    pub async fn replica_with(&self, extra: &[(&str, &str)]) -> anyhow::Result<Replica> {
        let mut env = self.env.clone();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        env.insert("MICRO_MANAGERS_ADDRESS".into(), self.megazord_url.clone());
        env.insert("MEGAZORD_EVENTS_ADDRESS".into(), self.megazord_url.clone());
        let config = Config::from_sources(env).unwrap();
        let upstream = UpstreamConfig::new(self.megazord_url.clone());
        let deps = Deps {
            store: self.db.store.clone(),
            micro_managers: Arc::new(HttpMicroManagers::new(&upstream).unwrap()),
            megazord: Arc::new(HttpMegazord::new(&upstream).unwrap()),
            clock: self.clock.clone(),
            queue: Some(self.queues.queue.clone()),
        };
        Ok(serve(App::build_with(&config, deps).await?))
    }

    pub fn set(&self, time: &str) {
        self.clock.set(at(time));
    }

    /// Creates a monitor of robot 42 through the use case (the API has its own tests).
    pub async fn monitor(&self, rule: &str, changes: Value) {
        let mut body = json!({
            "eventType": "TOILET_ACTIVITY", "window": "10m",
            "daily": {"start": "08:00", "end": "09:00"},
            "actions": [{"type": "alarm", "eventName": ALARM}]
        });
        for (key, value) in changes.as_object().unwrap() {
            body[key] = value.clone();
        }
        let definition: MonitorDefinition = serde_json::from_value(body).unwrap();
        self.first
            .monitors
            .put(ROBOT, rule, definition)
            .await
            .expect("the monitor is valid");
    }

    /// The alarms Megazord holds for robot 42: (referenceId, providerName, level), oldest
    /// first.
    pub fn alarms(&self) -> Vec<(String, String, i64)> {
        self.megazord
            .incomings(ROBOT, Some(ALARM), None)
            .iter()
            .map(|e| {
                (
                    e["referenceId"].as_str().unwrap().to_owned(),
                    e["providerName"].as_str().unwrap().to_owned(),
                    e["level"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// The reference ids of the alarms Megazord holds.
    pub fn references(&self) -> Vec<String> {
        self.alarms().into_iter().map(|(r, _, _)| r).collect()
    }

    /// The open window of a monitor: (number, start, end).
    pub async fn window(&self, rule: &str) -> Option<(u32, DateTime<Utc>, DateTime<Utc>)> {
        let stored = self.store().get_monitor(ROBOT, rule).await.unwrap()?;
        stored
            .state
            .window
            .map(|w| (w.window_number, w.window_start, w.window_end))
    }

    /// A robot's event, at Megazord now (it fans it out to the status queue).
    pub async fn event(&self, name: &str) {
        let posted = self
            .megazord
            .post_incoming(ROBOT, NewIncoming::named(name))
            .await
            .expect("a known event");
        assert!(posted.lost.is_empty(), "{:?}", posted.lost);
    }

    pub async fn tick_monitor(&self) -> status_check::monitors::DueTick {
        self.first
            .workers
            .monitor
            .as_ref()
            .unwrap()
            .tick_once()
            .await
    }

    /// One step of the monitor worker of a replica started for it.
    pub async fn tick_another_replica(&self) -> status_check::monitors::DueTick {
        let other = self.replica().await;
        other.workers.monitor.as_ref().unwrap().tick_once().await
    }

    pub async fn tick_relay(&self) -> status_check::workers::relay::RelayTick {
        self.first.workers.relay.as_ref().unwrap().tick_once().await
    }

    /// Receives until something comes (the emulator may take a receive or two).
    pub async fn consume(&self) -> Vec<Outcome> {
        let consumer = self.first.workers.consumer.as_ref().unwrap();
        for _ in 0..10 {
            let outcomes = consumer.tick_once().await;
            if !outcomes.is_empty() {
                return outcomes;
            }
        }
        panic!("nothing arrived on the status queue");
    }
}

pub(crate) fn reference(date: &str, number: u32) -> String {
    format!("status-check:{ROBOT}:no-toilet:{date}:{number}")
}

/// A window that passes without the event alarms once, with the stable reference id, and
/// the next window opens at its end; the session's end removes its subscription.
async fn a_quiet_window_alarms_once_and_the_session_ends_unsubscribed(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T07:59:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    let tick = stack.tick_monitor().await;
    assert_eq!(
        (tick.claimed, tick.waiting),
        (1, 1),
        "before the session: {tick:?}"
    );
    assert_eq!(stack.window("no-toilet").await, None);
    assert!(stack.megazord.undeleted_subscriptions().is_empty());

    stack.set("2026-11-20T08:00:00.200Z");
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let subscriptions = stack.megazord.subscriptions(ROBOT);
    assert_eq!(subscriptions.len(), 1, "{subscriptions:?}");
    assert_eq!(
        subscriptions[0]["subscriptionDetails"][0]["eventName"],
        "TOILET_ACTIVITY"
    );
    let subscription = subscriptions[0]["id"].as_i64().unwrap();
    assert_eq!(
        stack.megazord.subscription_until(subscription),
        Some(at("2026-11-20T09:00:00Z")),
        "until (ignored by Megazord) is the session's end"
    );
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:00:00Z"), at("2026-11-20T08:10:00Z"))),
        "opened within the grace: window 1 starts at the session's start"
    );

    stack.set("2026-11-20T08:10:01Z");
    assert_eq!(
        stack.tick_monitor().await.claimed,
        0,
        "not due before its settle time"
    );
    stack.set("2026-11-20T08:10:02.300Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert!(stack.alarms().is_empty(), "posted by the relay, not inline");
    assert_eq!(stack.tick_relay().await.alarms.done, 1);
    assert_eq!(
        stack.alarms(),
        [(
            reference("2026-11-20", 1),
            "azi-3-status-jobs".to_owned(),
            10
        )],
        "posted as the job service's provider without a level: Megazord gave the schema's (10)"
    );
    assert_eq!(stack.tick_relay().await.alarms.claimed, 0, "posted once");
    assert_eq!(
        stack.window("no-toilet").await,
        Some((2, at("2026-11-20T08:10:00Z"), at("2026-11-20T08:20:00Z")))
    );

    // Down (no ticks) until after the session: every window that passed alarms, in order,
    // once; then the session is closed and its subscription removed.
    stack.set("2026-11-20T09:00:05Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    let tick = stack.tick_relay().await;
    assert_eq!((tick.alarms.done, tick.removals.done), (5, 1), "{tick:?}");
    let expected: Vec<String> = (1..=6).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
    assert_eq!(stack.window("no-toilet").await, None);
    assert!(stack.megazord.undeleted_subscriptions().is_empty());
    let stored = stack.store().get_monitor(ROBOT, "no-toilet").await.unwrap();
    assert_eq!(
        stored.unwrap().state.due_at,
        at("2026-11-21T08:00:00Z"),
        "due at the next session's start"
    );
}

/// A delivered event restarts the window (with the same number); so does an event the
/// backfill finds at the window's end whose delivery is still on the queue. Neither alarms.
async fn activity_resets_the_window(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);

    stack.set("2026-11-20T08:05:00Z");
    stack.event("TOILET_ACTIVITY").await;
    assert_eq!(stack.consume().await, [Outcome::Applied]);
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:05:00Z"), at("2026-11-20T08:15:00Z")))
    );
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.claimed, 0, "the window moved on");

    // An event at 08:12 whose delivery nobody has taken yet.
    stack.set("2026-11-20T08:12:00Z");
    stack.event("TOILET_ACTIVITY").await;
    stack.set("2026-11-20T08:15:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:12:00Z"), at("2026-11-20T08:22:00Z"))),
        "the backfill found it"
    );
    assert_eq!(
        stack.consume().await,
        [Outcome::NoChange],
        "already taken in"
    );
    stack.tick_relay().await;
    assert!(stack.alarms().is_empty());

    // Then a quiet window: alarm 1 (numbers count alarms, not resets).
    stack.set("2026-11-20T08:22:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    stack.tick_relay().await;
    assert_eq!(stack.references(), [reference("2026-11-20", 1)]);
}

/// A monitor created half a minute into its session watches from then: its first window
/// starts at its creation, and no alarm is raised for the windows before it existed (SPEC §12).
async fn a_monitor_created_during_its_session_watches_from_then(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:30Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({"window": "4s"})).await;
    let tick = stack.tick_monitor().await;
    assert_eq!((tick.opened, tick.decided), (1, 0), "{tick:?}");
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:00:30Z"), at("2026-11-20T08:00:34Z")))
    );
    stack.tick_relay().await;
    assert!(stack.alarms().is_empty(), "{:?}", stack.alarms());
}

/// Two replicas ticking at the same instants: each window end is acted on by one of them,
/// and every quiet window alarms exactly once.
async fn two_replicas_act_on_each_window_once(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    let second = stack.replica().await;
    stack.monitor("no-toilet", json!({"window": "5m"})).await;
    let replicas = [&stack.first, &second];
    let mut acted = [0usize; 2];
    let start = at("2026-11-20T08:00:00Z");
    for minute in 0..=61 {
        stack.clock.set(start + TimeDelta::minutes(minute));
        let (a, b) = tokio::join!(
            replicas[0].workers.monitor.as_ref().unwrap().tick_once(),
            replicas[1].workers.monitor.as_ref().unwrap().tick_once()
        );
        assert!(
            a.claimed + b.claimed <= 1,
            "one claim per window: {a:?} {b:?}"
        );
        assert_eq!(a.failed + b.failed + a.fenced + b.fenced, 0, "{a:?} {b:?}");
        acted[0] += a.opened + a.decided;
        acted[1] += b.opened + b.decided;
        let (a, b) = tokio::join!(
            replicas[0].workers.relay.as_ref().unwrap().tick_once(),
            replicas[1].workers.relay.as_ref().unwrap().tick_once()
        );
        assert_eq!(a.alarms.failed + b.alarms.failed, 0);
    }
    assert_eq!(
        acted[0] + acted[1],
        13,
        "the opening and 12 window ends: {acted:?}"
    );
    let expected: Vec<String> = (1..=12).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
    assert!(stack.megazord.undeleted_subscriptions().is_empty());
}

/// An alarm Megazord refuses is retried with backoff (1 s, then 2 s, …) under the same
/// reference id, and posted once Megazord takes it.
async fn a_refused_alarm_is_retried_with_backoff(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack
        .megazord
        .refuse_posts_until(at("2026-11-20T08:10:04Z"));
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(stack.tick_relay().await.alarms.failed, 1);
    stack.set("2026-11-20T08:10:02.900Z");
    assert_eq!(
        stack.tick_relay().await.alarms.claimed,
        0,
        "waits its 1 s backoff"
    );
    stack.set("2026-11-20T08:10:03Z");
    assert_eq!(stack.tick_relay().await.alarms.failed, 1, "refused again");
    stack.set("2026-11-20T08:10:04.500Z");
    assert_eq!(stack.tick_relay().await.alarms.claimed, 0, "then 2 s");
    stack.set("2026-11-20T08:10:05Z");
    assert_eq!(stack.tick_relay().await.alarms.done, 1);
    assert_eq!(stack.references(), [reference("2026-11-20", 1)]);
}

/// Megazord stores an alarm but its answer is lost (it answers after the poster gave up): the
/// retry finds the alarm there by its reference id and does not post it again — the robot's
/// script starts once.
async fn an_alarm_whose_answer_was_lost_is_not_posted_twice(backend: Backend) {
    let Some(stack) = stack_with(
        backend,
        at("2026-11-20T08:00:00Z"),
        &[("UPSTREAM_TIMEOUT_MS", "300")],
    )
    .await
    else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.megazord.answer_posts_slowly_until(
        at("2026-11-20T08:10:03Z"),
        std::time::Duration::from_secs(1),
    );
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(
        stack.tick_relay().await.alarms.failed,
        1,
        "the answer was lost"
    );
    assert_eq!(stack.references(), [reference("2026-11-20", 1)], "stored");
    stack.set("2026-11-20T08:10:03Z");
    assert_eq!(stack.tick_relay().await.alarms.done, 1);
    assert_eq!(
        stack.references(),
        [reference("2026-11-20", 1)],
        "found there, not posted again"
    );
}

/// Two actions of one event differ by their level: each is posted (the second is not taken
/// for the first's lost answer, though they share the reference id); one the same as an
/// earlier one is posted once (Megazord could not tell them apart).
async fn actions_of_one_event_at_two_levels_are_both_posted(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    let actions = json!([
        {"type": "alarm", "eventName": ALARM, "level": 5},
        {"type": "alarm", "eventName": ALARM, "level": 1},
        {"type": "alarm", "eventName": ALARM, "level": 5},
    ]);
    stack
        .monitor("no-toilet", json!({"actions": actions}))
        .await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(stack.tick_relay().await.alarms.done, 2);
    let levels: Vec<(String, i64)> = stack
        .alarms()
        .into_iter()
        .map(|(reference, _, level)| (reference, level))
        .collect();
    let first = reference("2026-11-20", 1);
    assert_eq!(levels, [(first.clone(), 5), (first, 1)]);
}

/// A window length changed during the session's last window: that window keeps its end and
/// is judged by the length it was given — a full quiet 10 min window ending with the session
/// alarms, though the monitor is 15 min long by then (and would call it cut short).
async fn the_last_window_is_judged_by_its_own_length(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.set("2026-11-20T08:55:00Z");
    stack.tick_monitor().await;
    assert_eq!(
        stack.window("no-toilet").await,
        Some((6, at("2026-11-20T08:50:00Z"), at("2026-11-20T09:00:00Z")))
    );
    stack.monitor("no-toilet", json!({"window": "15m"})).await;
    stack.set("2026-11-20T09:00:02Z");
    stack.tick_monitor().await;
    stack.tick_relay().await;
    let expected: Vec<String> = (1..=6).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
}

/// A change that ends the session (here: other daily times) while window ends are overdue —
/// the worker was not running — first decides them, after the backfill: the quiet windows
/// alarm, the one an event reset does not; then the new session opens, numbering on.
async fn a_change_decides_the_overdue_window_ends_first(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    // No worker step from here: windows 1 [08:00, 08:10) and 2 [08:10, 08:20) pass quietly;
    // window 3, from 08:20, is reset at 08:27.
    stack.set("2026-11-20T08:27:00Z");
    stack.event("TOILET_ACTIVITY").await;
    stack.set("2026-11-20T08:35:00Z");
    stack
        .monitor(
            "no-toilet",
            json!({"daily": {"start": "08:00", "end": "10:00"}}),
        )
        .await;
    assert_eq!(stack.tick_monitor().await.opened, 1, "the new session");
    assert_eq!(
        stack
            .window("no-toilet")
            .await
            .map(|(number, start, _)| (number, start)),
        Some((3, at("2026-11-20T08:35:00Z"))),
        "numbered on after the two alarms"
    );
    stack.tick_relay().await;
    let expected: Vec<String> = (1..=2).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
}

/// Deleting a monitor whose window ends are overdue decides them first too: the quiet windows
/// alarm before the session ends with the monitor.
async fn a_delete_decides_the_overdue_window_ends_first(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.set("2026-11-20T08:25:00Z");
    let deleted = stack.first.monitors.delete(ROBOT, "no-toilet").await;
    assert!(deleted.unwrap().is_some());
    stack.tick_relay().await;
    let expected: Vec<String> = (1..=2).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
}

/// After downtime a short window's backlog is decided a bounded number of windows per step
/// (one transaction each), not in one transaction that outgrows the operation timeout: every
/// quiet window still alarms once, in order.
async fn a_long_backlog_of_windows_is_decided_in_bounded_steps(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({"window": "1s"})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    stack.set("2026-11-20T08:20:02Z");
    let mut backlog = Vec::new();
    while stack.window("no-toilet").await.unwrap().2 <= at("2026-11-20T08:20:00Z") {
        assert_eq!(stack.tick_monitor().await.decided, 1);
        backlog.push(stack.store().alarm_jobs().backlog().await.unwrap());
        assert!(backlog.len() <= 3, "{backlog:?}");
    }
    assert_eq!(backlog, [500, 1000, 1200]);
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1201, at("2026-11-20T08:20:00Z"), at("2026-11-20T08:20:01Z")))
    );
}

/// An alarm is retried until Megazord accepts it (SPEC §12), however long it refuses: never
/// given up after OUTBOX_MAX_ATTEMPTS as a robot notification is.
async fn an_alarm_refused_for_hours_is_posted_once_megazord_accepts(backend: Backend) {
    let Some(stack) = stack_with(
        backend,
        at("2026-11-20T08:00:00Z"),
        &[("OUTBOX_MAX_ATTEMPTS", "3")],
    )
    .await
    else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    let refused_until = at("2026-11-20T11:10:00Z");
    stack.megazord.refuse_posts_until(refused_until);
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    let mut failed = 0;
    while stack.clock.now() < refused_until {
        failed += stack.tick_relay().await.alarms.failed;
        stack.clock.advance(TimeDelta::seconds(301));
    }
    assert!(failed > 20, "tried {failed} times");
    assert!(stack.references().is_empty());
    assert_eq!(stack.tick_relay().await.alarms.done, 1);
    assert_eq!(stack.references(), [reference("2026-11-20", 1)]);
}

/// Megazord stamps an event before its row is readable: an event of a window's last second
/// that becomes readable just after the window's end still resets the window — a window end
/// is decided only a settle time (2 s) after it, with the backfill — and nothing alarms.
async fn an_event_stored_just_after_its_windows_end_still_resets_it(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("no-toilet", json!({})).await;
    assert_eq!(stack.tick_monitor().await.opened, 1);
    // The worker's scan just after the end, while the event is not readable yet.
    stack.set("2026-11-20T08:10:00.400Z");
    let tick = stack.tick_monitor().await;
    assert_eq!(
        (tick.claimed, tick.decided),
        (0, 0),
        "not settled: {tick:?}"
    );
    let stamped = NewIncoming::named("TOILET_ACTIVITY").at(at("2026-11-20T08:09:59Z"));
    stack.megazord.post_incoming(ROBOT, stamped).await.unwrap();

    stack.set("2026-11-20T08:10:01.900Z");
    assert_eq!(stack.tick_monitor().await.claimed, 0, "still settling");
    stack.set("2026-11-20T08:10:02Z");
    assert_eq!(stack.tick_monitor().await.decided, 1);
    assert_eq!(
        stack.window("no-toilet").await,
        Some((1, at("2026-11-20T08:09:59Z"), at("2026-11-20T08:19:59Z"))),
        "the backfill found the event of the window's last second"
    );
    stack.tick_relay().await;
    assert!(stack.alarms().is_empty(), "{:?}", stack.alarms());
}

/// A monitor the monitors file no longer names, whose window ends are overdue when a replica
/// starts with that file (every replica was down), has them decided before it is disabled:
/// its quiet windows alarm instead of being lost with its session.
async fn a_monitor_dropped_from_the_file_decides_its_overdue_window_ends_first(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("monitors.yaml");
    std::fs::write(
        &file,
        format!(
            "- robotId: {ROBOT}\n  ruleId: no-toilet\n  eventType: TOILET_ACTIVITY\n  window: 10m\n  \
             daily: {{start: \"08:00\", end: \"09:00\"}}\n  actions: [{{type: alarm, eventName: {ALARM}}}]\n"
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let Some(stack) = stack_with(
        backend,
        at("2026-11-20T08:00:00Z"),
        &[("MONITORS_FILE", path)],
    )
    .await
    else {
        return;
    };
    assert_eq!(stack.tick_monitor().await.opened, 1);
    // Nothing ran from 08:00 to 08:25: the ends at 08:10 and 08:20 are overdue.
    stack.set("2026-11-20T08:25:00Z");
    std::fs::write(&file, "[]\n").unwrap();
    let _replica = stack
        .replica_with(&[("MONITORS_FILE", path)])
        .await
        .unwrap();
    let stored = stack.store().get_monitor(ROBOT, "no-toilet").await.unwrap();
    assert!(!stored.unwrap().monitor.enabled(), "disabled");
    stack.tick_relay().await;
    let expected: Vec<String> = (1..=2).map(|n| reference("2026-11-20", n)).collect();
    assert_eq!(stack.references(), expected);
}

/// A worker whose claimed batch is slow (Megazord answers each subscribe after a second, while
/// 20 s pass on the clock) starts no session once half the 30 s stale window since its claim
/// has passed: the rest are let go at once, due as they were, rather than opened by this
/// replica while another, finding them stale, opens them too.
async fn a_slow_batch_lets_go_of_the_monitors_it_cannot_start_in_time(backend: Backend) {
    let Some(stack) = stack(backend, at("2026-11-20T08:00:00Z")).await else {
        return;
    };
    stack.monitor("first", json!({})).await;
    stack.monitor("second", json!({})).await;
    stack.megazord.answer_slowly_until(
        at("2026-11-20T09:00:00Z"),
        std::time::Duration::from_secs(1),
    );
    let (clock, megazord) = (stack.clock.clone(), stack.megazord.clone());
    let meanwhile = tokio::spawn(async move {
        let patience = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while megazord.subscriptions(ROBOT).is_empty() {
            assert!(std::time::Instant::now() < patience, "no subscribe came");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        clock.advance(TimeDelta::seconds(20));
    });
    let tick = stack.tick_monitor().await;
    meanwhile.await.unwrap();
    assert_eq!(
        (tick.claimed, tick.opened, tick.waiting),
        (2, 1, 1),
        "{tick:?}"
    );
    let tick = stack.tick_another_replica().await;
    assert_eq!(
        (tick.claimed, tick.opened),
        (1, 1),
        "taken at once: {tick:?}"
    );
}

on_both_backends!(
    a_monitor_created_during_its_session_watches_from_then,
    a_quiet_window_alarms_once_and_the_session_ends_unsubscribed,
    activity_resets_the_window,
    two_replicas_act_on_each_window_once,
    a_refused_alarm_is_retried_with_backoff,
    an_alarm_whose_answer_was_lost_is_not_posted_twice,
    actions_of_one_event_at_two_levels_are_both_posted,
    the_last_window_is_judged_by_its_own_length,
    a_change_decides_the_overdue_window_ends_first,
    a_delete_decides_the_overdue_window_ends_first,
    an_alarm_refused_for_hours_is_posted_once_megazord_accepts,
    a_long_backlog_of_windows_is_decided_in_bounded_steps,
    an_event_stored_just_after_its_windows_end_still_resets_it,
    a_monitor_dropped_from_the_file_decides_its_overdue_window_ends_first,
    a_slow_batch_lets_go_of_the_monitors_it_cannot_start_in_time,
);
