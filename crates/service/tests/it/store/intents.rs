//! Subscribes recorded before they are made (SPEC §13), on both backends: a delivery for an
//! unknown subscription is this service's when a record of the same robot, asking for its
//! event, was made inside the grace period before the event — Megazord's whole-second stamp
//! of that event included.

use super::*;

use chrono::TimeDelta;
use status_check::store::{UnknownDelivery, UnknownSubscription};

use crate::harness::on_both_backends;

on_both_backends!(
    databases:
    an_event_stamped_with_the_subscribes_whole_second_finds_its_record,
);

/// The delivery of `CHARGING_STARTED` for subscription `subscription`, stamped `created_at`.
async fn claim(db: &TestDb, subscription: i64, created_at: &str) -> UnknownSubscription {
    let delivery = UnknownDelivery {
        robot_id: 42,
        subscription_id: subscription,
        event_name: "CHARGING_STARTED",
        event_created_at: at(created_at),
    };
    db.store
        .claim_unknown_subscription(delivery, TimeDelta::seconds(60), at("2026-11-20T08:02:00Z"))
        .await
        .unwrap()
}

async fn an_event_stamped_with_the_subscribes_whole_second_finds_its_record(db: &TestDb) {
    let names = ["CHARGING_STARTED".to_owned()];
    let names = &names;
    let record = |made: &'static str| async move {
        db.store
            .record_subscribe_intent(42, names, None, at(made))
            .await
            .unwrap()
    };
    // Recorded at 08:00:00.400; the event happened at 08:00:00.800 and is stamped 08:00:00.
    let intent = record("2026-11-20T08:00:00.400Z").await;
    assert_eq!(
        claim(db, 991, "2026-11-20T08:00:00Z").await,
        UnknownSubscription::LostAnswer { intent }
    );
    // An event stamped with milliseconds before the record, or a whole second before its
    // second, came through another subscription.
    record("2026-11-20T08:10:00.400Z").await;
    for before in ["2026-11-20T08:10:00.300Z", "2026-11-20T08:09:59Z"] {
        assert_eq!(
            claim(db, 992, before).await,
            UnknownSubscription::Foreign,
            "{before}"
        );
    }
}
