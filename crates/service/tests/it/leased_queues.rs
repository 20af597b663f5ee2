//! The three leased work queues on both backends — the notification outbox, subscription
//! removals and the monitors' actions: claimed under a lease, marked sent, failed with a
//! backoff, dead-lettered, counted in the backlog and purged. Their tests are kept together
//! here, as written for each store, to become one suite run for each kind of job.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;
use status_check::store::{
    CheckUpdate, Fence, MonitorSource, NEVER, NewAction, Notifications, OutboxHandoff, StoredCheck,
};

use crate::harness::on_both_backends;
use crate::monitor_store::{created, date, monitor, open_session};
use crate::store::batch::{item, repeating_an_event, three_checks};
use crate::store::{
    at, complete, create, created_new, new_check, notify, outbox_rows, render, synced_template,
    update, updated,
};
use crate::support::TestDb;

on_both_backends!(
    databases:
    outbox_claims_leases_and_retries,
    concurrent_outbox_claims_are_disjoint,
    committed_notifications_are_handed_over_leased,
    sent_notifications_are_purged_after_the_retention,
    subscription_removals_are_queued_once_leased_and_retried,
    the_actions_outbox_claims_retries_and_purges,
);

// ---- The notification outbox ----

async fn outbox_claims_leases_and_retries(db: &TestDb) {
    let template_id = synced_template(db, "outbox").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:01:00Z");
    let seconds = TimeDelta::seconds;
    for i in 0..3 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            &format!("call-{i}"),
            t0 + seconds(i),
        )
        .await
        .unwrap();
    }
    assert_eq!(db.store.notification_jobs().backlog().await.unwrap(), 3);

    // Due rows only, oldest first, up to the limit.
    assert_eq!(
        db.store
            .claim_outbox(t0 - seconds(1), "a", t0 + seconds(30), 10)
            .await
            .unwrap(),
        []
    );
    let a = db
        .store
        .claim_outbox(t0 + seconds(1), "a", t0 + seconds(31), 10)
        .await
        .unwrap();
    assert_eq!(a.iter().map(|m| m.seq).collect::<Vec<_>>(), [1, 2]);
    let first = &a[0];
    assert_eq!(
        (
            first.check_id,
            first.robot_id,
            first.call_ref.as_str(),
            first.attempts
        ),
        (created.id, 42, "call-0", 0)
    );
    assert_eq!(
        first.payload,
        format!(
            "check {} seq 1: FUTURE PENDING None with 3 records",
            created.id
        )
    );
    // Leased rows are not handed out again while their lease runs.
    let b = db
        .store
        .claim_outbox(t0 + seconds(5), "b", t0 + seconds(35), 10)
        .await
        .unwrap();
    assert_eq!(b.iter().map(|m| m.seq).collect::<Vec<_>>(), [3]);
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(5), "b", t0 + seconds(35), 10)
            .await
            .unwrap(),
        []
    );

    // Sent, once.
    assert!(
        db.store
            .outbox_sent(&[a[0].id], "a", t0 + seconds(6))
            .await
            .unwrap()
            .contains(&a[0].id)
    );
    assert!(
        !db.store
            .outbox_sent(&[a[0].id], "a", t0 + seconds(6))
            .await
            .unwrap()
            .contains(&a[0].id)
    );
    assert_eq!(db.store.notification_jobs().backlog().await.unwrap(), 2);

    // Failed: retried later, with the error kept (cut to the column).
    let error = "é".repeat(3000);
    assert!(
        db.store
            .outbox_failed(a[1].id, "a", t0 + seconds(60), &error)
            .await
            .unwrap()
    );
    assert!(
        !db.store
            .outbox_failed(a[1].id, "a", t0 + seconds(60), &error)
            .await
            .unwrap()
    );
    let rows = db.raw.outbox(created.id).await;
    assert_eq!(rows[0].sent_at, Some(t0 + seconds(6)));
    assert_eq!(rows[1].attempts, 1);
    assert_eq!(
        rows[1].last_error.as_deref(),
        Some("é".repeat(1024).as_str())
    );
    assert_eq!(rows[1].next_attempt_at, t0 + seconds(60));
    assert_eq!(rows[1].sent_at, None);

    // b's lease ran out: c takes the row over, and b can no longer mark it.
    let c = db
        .store
        .claim_outbox(t0 + seconds(40), "c", t0 + seconds(70), 10)
        .await
        .unwrap();
    assert_eq!(
        c.iter().map(|m| (m.seq, m.attempts)).collect::<Vec<_>>(),
        [(3, 0)]
    );
    assert!(
        !db.store
            .outbox_sent(&[b[0].id], "b", t0 + seconds(41))
            .await
            .unwrap()
            .contains(&b[0].id)
    );
    assert!(
        !db.store
            .outbox_failed(b[0].id, "b", t0 + seconds(41), "late")
            .await
            .unwrap()
    );
    assert!(
        db.store
            .outbox_sent(&[c[0].id], "c", t0 + seconds(42))
            .await
            .unwrap()
            .contains(&c[0].id)
    );

    // The failed row comes back when its retry is due, with its attempt count.
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(59), "d", t0 + seconds(90), 10)
            .await
            .unwrap(),
        []
    );
    let d = db
        .store
        .claim_outbox(t0 + seconds(60), "d", t0 + seconds(90), 10)
        .await
        .unwrap();
    assert_eq!(
        d.iter().map(|m| (m.seq, m.attempts)).collect::<Vec<_>>(),
        [(2, 1)]
    );
    // A batch marks only the rows its lease holds (a's row was sent already).
    assert_eq!(
        db.store
            .outbox_sent(&[a[0].id, d[0].id], "d", t0 + seconds(61))
            .await
            .unwrap(),
        [d[0].id]
    );
    assert_eq!(db.store.notification_jobs().backlog().await.unwrap(), 0);
    assert_eq!(
        db.store
            .claim_outbox(t0 + seconds(3600), "e", t0 + seconds(3630), 10)
            .await
            .unwrap(),
        []
    );
}

async fn concurrent_outbox_claims_are_disjoint(db: &TestDb) {
    let template_id = synced_template(db, "outbox-claims").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:01:00Z");
    for i in 0..12 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            "call",
            t0 + TimeDelta::milliseconds(i),
        )
        .await
        .unwrap();
    }
    let now = t0 + TimeDelta::seconds(1);
    let until = now + TimeDelta::seconds(30);
    let (a, b) = tokio::join!(
        db.store.claim_outbox(now, "a", until, 5),
        db.store.claim_outbox(now, "b", until, 5)
    );
    let seqs = |claimed: Vec<status_check::store::OutboxMessage>| -> BTreeSet<i64> {
        claimed.into_iter().map(|m| m.seq).collect()
    };
    let (a, b) = (seqs(a.unwrap()), seqs(b.unwrap()));
    assert_eq!((a.len(), b.len()), (5, 5));
    assert!(a.is_disjoint(&b), "{a:?} / {b:?}");
    let rest = seqs(db.store.claim_outbox(now, "c", until, 100).await.unwrap());
    let union: BTreeSet<i64> = a.iter().chain(&b).chain(&rest).copied().collect();
    assert_eq!(union, (1..=12).collect());
    assert_eq!(a.len() + b.len() + rest.len(), 12);
}

/// Notifications handed to this process's relay: the rows are committed leased to it (no
/// other relay claims them until the lease runs out) and handed over only after the commit —
/// a refused batch hands nothing — and once the relay has `capacity` waiting, rows are
/// written for any relay to claim.
async fn committed_notifications_are_handed_over_leased(db: &TestDb) {
    let checks = three_checks(db, "batch-handoff").await;
    let handoff = OutboxHandoff::new("relay-here".to_owned(), Duration::from_secs(30), 2);
    let handing = Notifications {
        render: &render,
        handoff: Some(&handoff),
    };
    let now = at("2026-11-20T08:01:00Z");
    // The first item's row is written, then the second item is refused by the database: the
    // batch rolls back and hands nothing over.
    let repeating = repeating_an_event(&checks[1]);
    let refused = [
        item(&checks[0], notify(&checks[0]).unwrap()),
        item(&checks[1], repeating),
    ];
    assert!(
        db.store
            .update_checks(&refused, &handing, now)
            .await
            .is_err()
    );
    assert!(
        handoff.take(10).is_empty(),
        "nothing handed for a refused batch"
    );
    assert_eq!(outbox_rows(db).await, 0);

    let batch = [
        item(&checks[0], notify(&checks[0]).unwrap()),
        item(&checks[1], notify(&checks[1]).unwrap()),
    ];
    let outcomes = db.store.update_checks(&batch, &handing, now).await.unwrap();
    let notified: Vec<StoredCheck> = outcomes.into_iter().map(updated).collect();
    let claimed_elsewhere = db
        .store
        .claim_outbox(now, "relay-there", now + TimeDelta::seconds(30), 10)
        .await
        .unwrap();
    assert!(claimed_elsewhere.is_empty(), "{claimed_elsewhere:?}");

    // The relay has two waiting (its capacity): the next notification is left to a claim.
    let third = db
        .store
        .update_check(
            &checks[2],
            Fence::None,
            &notify(&checks[2]).unwrap(),
            &handing,
            "c",
            now,
        )
        .await
        .unwrap();
    let third = updated(third);
    let claimed = db
        .store
        .claim_outbox(now, "relay-there", now + TimeDelta::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed
            .iter()
            .map(|row| (row.check_id, row.seq))
            .collect::<Vec<_>>(),
        [(third.id, third.notification_seq)]
    );

    let handed = handoff.take(10);
    assert_eq!(
        handed
            .iter()
            .map(|row| (
                row.check_id,
                row.seq,
                row.payload.clone(),
                row.call_ref.as_str()
            ))
            .collect::<Vec<_>>(),
        notified
            .iter()
            .map(|check| (
                check.id,
                check.notification_seq,
                render(check, check.notification_seq),
                "batch"
            ))
            .collect::<Vec<_>>()
    );
    // The relay marks them sent under its lease (the ids are the rows').
    let ids: Vec<i64> = handed.iter().map(|row| row.id).collect();
    assert_eq!(
        db.store
            .outbox_sent(&ids, "relay-there", now + TimeDelta::seconds(1))
            .await
            .unwrap(),
        Vec::<i64>::new(),
        "another lease marks nothing"
    );
    assert_eq!(
        db.store
            .outbox_sent(&ids, "relay-here", now + TimeDelta::seconds(1))
            .await
            .unwrap(),
        ids
    );
    assert_eq!(
        db.store
            .outbox_sent(&[claimed[0].id], "relay-there", now + TimeDelta::seconds(1))
            .await
            .unwrap(),
        [claimed[0].id]
    );
    // After the leases, nothing is left to claim: sent is sent.
    assert!(
        db.store
            .claim_outbox(
                now + TimeDelta::seconds(60),
                "relay-there",
                now + TimeDelta::seconds(90),
                10
            )
            .await
            .unwrap()
            .is_empty()
    );
}

/// Sent notifications older than the retention are purged in bounded batches; unsent ones
/// and newer ones stay.
async fn sent_notifications_are_purged_after_the_retention(db: &TestDb) {
    let template_id = synced_template(db, "purge").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let t0 = at("2026-11-20T08:00:00Z");
    let seconds = TimeDelta::seconds;
    for i in 0..5 {
        update(
            db,
            created.id,
            Fence::None,
            &notify,
            &format!("n{i}"),
            t0 + seconds(i),
        )
        .await
        .unwrap();
    }
    let claimed = db
        .store
        .claim_outbox(t0 + seconds(10), "relay", t0 + seconds(40), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 5);
    // Four sent, at 08:00:20 .. 08:00:23; one left unsent.
    for (i, message) in claimed.iter().take(4).enumerate() {
        db.store
            .outbox_sent(&[message.id], "relay", t0 + seconds(20 + i as i64))
            .await
            .unwrap();
    }
    let before = |cut: i64| t0 + seconds(cut);
    assert_eq!(db.store.purge_sent_outbox(before(20), 10).await.unwrap(), 0);
    assert_eq!(
        db.store.purge_sent_outbox(before(23), 2).await.unwrap(),
        2,
        "a batch"
    );
    assert_eq!(db.store.purge_sent_outbox(before(23), 10).await.unwrap(), 1);
    assert_eq!(
        outbox_rows(db).await,
        2,
        "the newest sent row and the unsent one stay"
    );
    assert_eq!(db.store.notification_jobs().backlog().await.unwrap(), 1);
}

// ---- Subscription removals ----

/// A removal is queued once per subscription (however many paths ask), claimed under a
/// lease, retried at its backoff, and done once Megazord said so; an update that ends a check
/// queues its removal in the same transaction.
async fn subscription_removals_are_queued_once_leased_and_retried(db: &TestDb) {
    let t0 = at("2026-11-20T08:00:00Z");
    let seconds = TimeDelta::seconds;
    db.store
        .queue_subscription_removal(42, 5555, "create_failed", t0)
        .await
        .unwrap();
    db.store
        .queue_subscription_removal(42, 5555, "unowned", t0)
        .await
        .unwrap();
    assert_eq!(db.store.removal_jobs().backlog().await.unwrap(), 1);
    let claimed = db
        .store
        .claim_subscription_removals(t0, "a", t0 + seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (
            claimed[0].robot_id,
            claimed[0].subscription_id,
            claimed[0].reason.as_str(),
            claimed[0].attempts
        ),
        (42, 5555, "create_failed", 0)
    );
    // Leased: another replica does not get it.
    assert!(
        db.store
            .claim_subscription_removals(t0, "b", t0 + seconds(30), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        db.store
            .subscription_removal_failed(claimed[0].id, "a", t0 + seconds(2), "megazord 503")
            .await
            .unwrap()
    );
    assert!(
        db.store
            .claim_subscription_removals(t0 + seconds(1), "b", t0 + seconds(31), 10)
            .await
            .unwrap()
            .is_empty(),
        "not before its retry time"
    );
    let again = db
        .store
        .claim_subscription_removals(t0 + seconds(2), "b", t0 + seconds(32), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(
        db.store
            .subscriptions_removed(&[5555, 5556], t0 + seconds(3))
            .await
            .unwrap(),
        1,
        "one was pending"
    );
    assert_eq!(
        db.store
            .subscriptions_removed(&[5555], t0 + seconds(3))
            .await
            .unwrap(),
        0
    );
    assert_eq!(db.store.removal_jobs().backlog().await.unwrap(), 0);

    // Ending a check queues its subscription's removal with the change.
    let template_id = synced_template(db, "removal").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let ending = |check: &StoredCheck| {
        Some(CheckUpdate {
            remove_subscription: true,
            ..complete(check).unwrap()
        })
    };
    updated(
        update(db, created.id, Fence::None, &ending, "end", t0)
            .await
            .unwrap(),
    );
    let queued = db
        .store
        .claim_subscription_removals(t0 + seconds(10), "c", t0 + seconds(40), 10)
        .await
        .unwrap();
    assert_eq!(
        queued
            .iter()
            .map(|r| (r.subscription_id, r.reason.as_str()))
            .collect::<Vec<_>>(),
        [(991, "ended")]
    );
}

// ---- The monitors' actions ----

async fn the_actions_outbox_claims_retries_and_purges(db: &TestDb) {
    let t0 = at("2026-11-20T07:00:00Z");
    let stored = created(
        db.store
            .put_monitor(&monitor("a", json!({})), MonitorSource::Api, t0)
            .await
            .unwrap(),
    );
    let mut change = open_session(991);
    change.actions = (1..=3)
        .flat_map(|number| {
            monitor("a", json!({}))
                .alarms(date(), number)
                .into_iter()
                .map(move |alarm| NewAction {
                    session_date: date(),
                    window_number: number,
                    window_end: at("2026-11-20T09:00:00Z"),
                    alarm,
                })
        })
        .collect();
    assert!(
        db.store
            .write_monitor_state(&stored, None, &change, t0)
            .await
            .unwrap()
    );
    let until = t0 + TimeDelta::seconds(30);
    let (a, b) = tokio::join!(
        db.store.claim_monitor_actions(t0, "a", until, 2),
        db.store.claim_monitor_actions(t0, "b", until, 2)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.len() + b.len(), 3);
    let ids: BTreeSet<i64> = a.iter().chain(&b).map(|x| x.id).collect();
    assert_eq!(ids.len(), 3, "disjoint claims");
    let first = &a[0];
    assert!(
        !db.store
            .monitor_action_sent(first.id, "b", t0)
            .await
            .unwrap()
    );
    assert!(
        db.store
            .monitor_action_sent(first.id, "a", t0)
            .await
            .unwrap()
    );
    let second = a.get(1).unwrap_or(&b[0]);
    let lease = if a.len() > 1 { "a" } else { "b" };
    assert!(
        db.store
            .monitor_action_failed(second.id, lease, t0 + TimeDelta::seconds(60), "503")
            .await
            .unwrap()
    );
    assert_eq!(db.store.monitor_action_backlog().await.unwrap(), 2);
    let retried = db
        .store
        .claim_monitor_actions(
            t0 + TimeDelta::seconds(60),
            "c",
            until + TimeDelta::seconds(60),
            10,
        )
        .await
        .unwrap();
    let retried: Vec<(i64, u32)> = retried.iter().map(|x| (x.id, x.attempts)).collect();
    assert!(retried.contains(&(second.id, 1)), "{retried:?}");
    // A dead-lettered action is no backlog.
    assert!(
        db.store
            .monitor_action_failed(second.id, "c", NEVER, "gave up")
            .await
            .unwrap()
    );
    assert_eq!(db.store.monitor_action_backlog().await.unwrap(), 1);
    assert_eq!(
        db.store
            .purge_sent_monitor_actions(t0 + TimeDelta::seconds(1), 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        db.store
            .purge_sent_monitor_actions(t0 + TimeDelta::seconds(1), 10)
            .await
            .unwrap(),
        0
    );
}
