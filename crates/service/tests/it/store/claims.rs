//! The scheduler's leases on both backends: claims of due checks are disjoint, leases fence
//! writes, stale leases are released.

use super::*;

use crate::harness::on_both_backends;
use crate::support::lease;

on_both_backends!(
    databases:
    leases_fence_writes_and_stale_leases_are_released,
    claim_due_takes_free_due_future_checks_oldest_first,
    concurrent_claims_are_disjoint,
    a_pile_of_stale_leases_is_released_in_batches,
);

async fn leases_fence_writes_and_stale_leases_are_released(db: &TestDb) {
    let template_id = synced_template(db, "fencing").await;
    let created = created_new(create(db, new_check(template_id, 42)).await.unwrap());
    let due = deadline();
    let claimed = |id| {
        vec![Claimed {
            check_id: id,
            deadline: due,
        }]
    };
    let millisecond = TimeDelta::milliseconds(1);
    // When the stale leases are looked for (a stale window after the lease was taken).
    let later_on = due + TimeDelta::seconds(30);

    // Not due a millisecond before its deadline; due at it.
    assert_eq!(
        db.store
            .claim_due(due - millisecond, &lease("lease-a"), 10)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        db.store
            .claim_due(due, &lease("lease-a"), 10)
            .await
            .unwrap(),
        claimed(created.id)
    );
    assert_eq!(
        db.raw.poller(created.id).await.2.as_deref(),
        Some("lease-a")
    );
    assert_eq!(db.raw.schedule(created.id).await, (Some(due), Some(due)));
    // Leased: nobody else gets it.
    assert_eq!(
        db.store
            .claim_due(due + TimeDelta::seconds(1), &lease("lease-x"), 10)
            .await
            .unwrap(),
        []
    );

    // Its holder is presumed dead once the lease is older than the stale window.
    assert_eq!(
        db.store.release_stale_leases(due, later_on).await.unwrap(),
        0
    );
    assert_eq!(
        db.store
            .release_stale_leases(due + millisecond, later_on)
            .await
            .unwrap(),
        1
    );
    assert_eq!(db.raw.poller(created.id).await.2, None);
    assert_eq!(db.raw.schedule(created.id).await, (Some(due), None));
    // The release is stamped with its own time (whole seconds), not left to the column's
    // `ON UPDATE` (the wall clock on MySQL, nothing on SQLite).
    let stamped = format!(
        "SELECT COUNT(*) FROM status_check_poller WHERE status_check_id = {} \
         AND updated_at = '{}'",
        created.id,
        db.raw.time_text(later_on.trunc_subsecs(0))
    );
    assert_eq!(db.raw.count(&stamped).await, 1, "{stamped}");
    assert_eq!(
        db.store
            .release_stale_leases(due + millisecond, later_on)
            .await
            .unwrap(),
        0
    );
    let later = due + TimeDelta::seconds(2);
    assert_eq!(
        db.store
            .claim_due(later, &lease("lease-b"), 10)
            .await
            .unwrap(),
        claimed(created.id)
    );

    // The old holder wakes up: its write is fenced off, nothing changes.
    let rows = check_rows(db).await;
    assert_eq!(
        update(
            db,
            created.id,
            Fence::Lease(&lease("lease-a")),
            &complete,
            "a",
            later
        )
        .await
        .unwrap(),
        UpdateOutcome::Fenced
    );
    assert_eq!(
        db.store.get_check(created.id).await.unwrap(),
        Some(created.clone())
    );
    assert_eq!(check_rows(db).await, rows);
    assert_eq!(outbox_rows(db).await, 0);
    assert_eq!(
        db.raw.poller(created.id).await.2.as_deref(),
        Some("lease-b")
    );

    // The current holder's write goes through and gives the lease back.
    let done = updated(
        update(
            db,
            created.id,
            Fence::Lease(&lease("lease-b")),
            &complete,
            "b",
            later,
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        (
            done.phase,
            done.result,
            done.next_step_id,
            done.notification_seq
        ),
        (CheckPhase::Completed, CheckResult::Pass, Some(10), 1)
    );
    assert_eq!(db.raw.poller(created.id).await.2, None);
    assert_eq!(db.raw.schedule(created.id).await, (None, None));
    assert_eq!(outbox_rows(db).await, 1);
    // Ended: never claimed again, nothing stale.
    let much_later = later + TimeDelta::hours(1);
    assert_eq!(
        db.store
            .claim_due(much_later, &lease("lease-c"), 10)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        db.store
            .release_stale_leases(much_later, much_later)
            .await
            .unwrap(),
        0
    );
}

async fn claim_due_takes_free_due_future_checks_oldest_first(db: &TestDb) {
    let template_id = synced_template(db, "claims").await;
    // Deadlines: anchor + window.
    let late = open_check(db, template_id, 1, "2026-11-20T08:00:05.250Z", 600).await; // 08:10:05.250
    let early = open_check(db, template_id, 2, "2026-11-20T08:00:01.000Z", 600).await; // 08:10:01
    let earliest = open_check(db, template_id, 3, "2026-11-20T08:00:03.000Z", 60).await; // 08:01:03
    let tie = open_check(db, template_id, 4, "2026-11-20T08:00:05.250Z", 600).await; // 08:10:05.250
    open_check(db, template_id, 5, "2026-11-20T08:00:05.250Z", 3600).await; // not due
    // Due, but leased by someone else.
    let leased = open_check(db, template_id, 6, "2026-11-20T07:00:00Z", 600).await;
    db.raw
        .execute_for(
            "UPDATE status_check_poller SET lock_id = 'elsewhere' WHERE status_check_id = ?",
            leased.id,
        )
        .await;
    // Due, but no longer in FUTURE (changed behind the store's back: the phase decides).
    let ended = open_check(db, template_id, 7, "2026-11-20T07:00:00Z", 600).await;
    db.raw
        .execute_for(
            "UPDATE status_check SET phase = 'COMPLETED' WHERE id = ?",
            ended.id,
        )
        .await;
    // Ended through the store.
    let completed = open_check(db, template_id, 8, "2026-11-20T07:00:00Z", 600).await;
    updated(
        update(
            db,
            completed.id,
            Fence::None,
            &complete,
            "c",
            at("2026-11-20T07:01:00Z"),
        )
        .await
        .unwrap(),
    );

    let now = at("2026-11-20T08:20:00Z");
    let deadline_of = |check: &StoredCheck| check.windows.until.unwrap();
    let first = db.store.claim_due(now, &lease("lease-1"), 2).await.unwrap();
    assert_eq!(
        first,
        [
            Claimed {
                check_id: earliest.id,
                deadline: at("2026-11-20T08:01:03Z")
            },
            Claimed {
                check_id: early.id,
                deadline: at("2026-11-20T08:10:01Z")
            },
        ]
    );
    let second = db
        .store
        .claim_due(now, &lease("lease-2"), 10)
        .await
        .unwrap();
    assert_eq!(
        second,
        [
            Claimed {
                check_id: late.id,
                deadline: deadline_of(&late)
            },
            Claimed {
                check_id: tie.id,
                deadline: deadline_of(&tie)
            },
        ]
    );
    assert_eq!(second[0].deadline, deadline());
    assert_eq!(
        db.store
            .claim_due(now, &lease("lease-3"), 10)
            .await
            .unwrap(),
        []
    );
    assert_eq!(
        db.store.claim_due(now, &lease("lease-3"), 0).await.unwrap(),
        []
    );
    assert_eq!(
        db.raw.poller(earliest.id).await.2.as_deref(),
        Some("lease-1")
    );
    assert_eq!(db.raw.poller(tie.id).await.2.as_deref(), Some("lease-2"));
    assert_eq!(
        db.raw.poller(leased.id).await.2.as_deref(),
        Some("elsewhere")
    );
}

async fn concurrent_claims_are_disjoint(db: &TestDb) {
    let template_id = synced_template(db, "concurrent-claims").await;
    let now = at("2026-11-20T09:00:00Z");
    for round in 0..3 {
        let mut all = BTreeSet::new();
        for i in 0..20 {
            let check = open_check(
                db,
                template_id,
                1000 * (round + 1) + i,
                "2026-11-20T08:00:00Z",
                60,
            )
            .await;
            all.insert(check.id);
        }
        let claimers = ["claimer-a", "claimer-b", "claimer-c", "claimer-d"].map(lease);
        let (a, b) = tokio::join!(
            db.store.claim_due(now, &claimers[0], 7),
            db.store.claim_due(now, &claimers[1], 7)
        );
        let ids = |claimed: Vec<Claimed>| -> BTreeSet<i64> {
            claimed.into_iter().map(|c| c.check_id).collect()
        };
        let (a, b) = (ids(a.unwrap()), ids(b.unwrap()));
        assert_eq!((a.len(), b.len()), (7, 7), "round {round}");
        assert!(a.is_disjoint(&b), "round {round}: {a:?} / {b:?}");
        let (c, d) = tokio::join!(
            db.store.claim_due(now, &claimers[2], 100),
            db.store.claim_due(now, &claimers[3], 100)
        );
        let (c, d) = (ids(c.unwrap()), ids(d.unwrap()));
        assert!(c.is_disjoint(&d), "round {round}: {c:?} / {d:?}");
        let union: BTreeSet<i64> = a.iter().chain(&b).chain(&c).chain(&d).copied().collect();
        assert_eq!(union, all, "round {round}");
        assert_eq!(
            a.len() + b.len() + c.len() + d.len(),
            all.len(),
            "round {round}"
        );
    }
}

/// More stale leases than one transaction releases (100): released batch after batch, all of
/// them, by one call.
async fn a_pile_of_stale_leases_is_released_in_batches(db: &TestDb) {
    let template_id = synced_template(db, "piled").await;
    let checks: Vec<_> = (0..130).map(|n| new_check(template_id, 2000 + n)).collect();
    for check in &checks {
        db.neighbours.for_check(check).await;
    }
    for created in db.store.create_checks(&checks).await.unwrap() {
        created_new(created);
    }
    let due = deadline();
    let claimed = db
        .store
        .claim_due(due, &lease("lease-a"), 200)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 130);
    let later_on = due + TimeDelta::seconds(30);
    assert_eq!(
        db.store
            .release_stale_leases(due + TimeDelta::milliseconds(1), later_on)
            .await
            .unwrap(),
        130
    );
    assert_eq!(
        db.raw
            .count("SELECT COUNT(*) FROM status_check_poller WHERE lock_id IS NOT NULL")
            .await,
        0
    );
}
