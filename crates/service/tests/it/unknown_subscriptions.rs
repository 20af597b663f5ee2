//! Deliveries for subscriptions no check or monitor session has (SPEC §13): one nothing
//! here knows is never removed — it may be another service's, on a queue shared by mistake.
//! (The lost answer's subscription, which is removed, is `faults_upstream`'s; an ended check's
//! subscription that keeps delivering, `takeover`'s.)

use crate::harness::Backend;
use crate::harness::on_both_backends;
use crate::lifecycle::{at, consume, delivery, put, stack};
use status_check::workers::consumer::Outcome;

const ROBOT: i64 = 42;

/// A delivery that keeps coming for a subscription nothing here knows is, after the grace
/// period, deleted — and the subscription left alone: it may be another service's, on a queue
/// shared by mistake (SPEC §13). No DELETE reaches Megazord, now or later.
pub async fn an_unknown_subscription_is_never_removed(backend: Backend) {
    let Some((app, workers, queues)) = stack(backend).await else {
        return;
    };
    app.given_subscriptions(ROBOT, 4242).await;
    put(
        &app,
        &queues,
        &delivery(
            4242,
            88000,
            7700,
            "CHARGING_STARTED",
            "2026-11-20T08:00:00Z",
        ),
    )
    .await;
    app.clock.set(at("2026-11-20T08:05:00Z"));
    assert_eq!(consume(&workers).await, [Outcome::UnknownDropped]);
    let relay = workers.relay.as_ref().unwrap();
    assert_eq!(relay.tick_once().await.removals.claimed, 0);
    app.clock.set(at("2026-11-20T09:00:00Z"));
    assert_eq!(relay.tick_once().await.removals.claimed, 0);
    assert_eq!(app.store.removal_jobs().backlog().await.unwrap(), 0);
    assert_eq!(app.upstream_calls("DELETE", "/subscriptions/4242").await, 0);
}

on_both_backends!(an_unknown_subscription_is_never_removed);
