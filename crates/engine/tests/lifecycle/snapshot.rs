//! A check restored from its snapshot.

use super::*;

// ---- restore / snapshot ----

#[test]
fn a_snapshot_restores_to_the_same_check() {
    let template = charging(true, 3600, 600);
    let (mut check, _) = started(&template, vec![event(1, "A", -60)]);
    let transition = check.take_future(&template, one(event(2, "A", 30)), at(31));
    assert_eq!(
        transition
            .new_records
            .iter()
            .map(|r| r.event.id)
            .collect::<Vec<_>>(),
        [2]
    );
    assert_eq!(transition.deadline, check.windows.until);
    let state = check.snapshot();
    let mut restored = Check::restore(state.clone(), &template, Limits::default());
    assert_eq!(restored.snapshot(), state);
    // It decides as the original would: the same event again is a duplicate, the deadline ends it.
    let again = restored.take_future(&template, one(event(2, "A", 30)), at(40));
    assert_eq!(again.skipped, [Skip::Duplicate(2)]);
    let ended = restored.finalise();
    assert_eq!(ended.deadline, None);
    assert!(ended.effects.contains(&Effect::Unsubscribe));
    assert_eq!(restored.phase, CheckPhase::Completed);
}
