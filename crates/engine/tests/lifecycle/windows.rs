//! §3.1: a check's windows from the node's intervals and the template's defaults.

use super::*;

// ---- §3.1 windows ----

#[test]
fn windows_use_the_node_intervals_when_set() {
    let windows = Windows::compute(600, 300, &defaults(3600, 60), anchor()).unwrap();
    assert_eq!(windows.anchor, anchor());
    assert!(windows.has_past);
    assert_eq!(windows.since, Some(at(-600)));
    assert_eq!(windows.until, Some(at(300)));
}

#[test]
fn windows_fall_back_to_template_defaults_for_zero() {
    let windows = Windows::compute(0, 0, &defaults(3600, 600), anchor()).unwrap();
    assert!(windows.has_past);
    assert_eq!(windows.since, Some(at(-3600)));
    assert_eq!(windows.until, Some(at(600)));

    // Each interval falls back on its own.
    let windows = Windows::compute(0, 30, &defaults(3600, 600), anchor()).unwrap();
    assert_eq!(windows.since, Some(at(-3600)));
    assert_eq!(windows.until, Some(at(30)));
    let windows = Windows::compute(120, 0, &defaults(3600, 600), anchor()).unwrap();
    assert_eq!(windows.since, Some(at(-120)));
    assert_eq!(windows.until, Some(at(600)));
}

#[test]
fn windows_minus_one_is_an_unbounded_past() {
    for (node, default) in [(-1, 3600), (0, -1)] {
        let windows = Windows::compute(node, 0, &defaults(default, 600), anchor()).unwrap();
        assert!(windows.has_past, "node {node}, default {default}");
        assert_eq!(windows.since, None, "node {node}, default {default}");
        assert!(windows.in_past(anchor() - TimeDelta::days(3650)));
        assert!(windows.in_past(anchor()));
        assert!(!windows.in_past(at(1)));
    }
}

#[test]
fn windows_zero_everywhere_means_no_past_and_no_future_phase() {
    let windows = Windows::compute(0, 0, &defaults(0, 0), anchor()).unwrap();
    assert!(!windows.has_past);
    assert_eq!(windows.since, Some(anchor()));
    assert_eq!(windows.until, None);
    assert!(!windows.in_past(anchor()));
    assert!(!windows.in_past(at(-1)));
    assert!(!windows.in_future(at(1)));
}

#[test]
fn windows_past_is_closed_at_the_anchor_and_future_open_from_its_second() {
    let windows = Windows::compute(600, 300, &defaults(0, 0), anchor()).unwrap();
    assert!(!windows.in_past(at(-601)));
    assert!(windows.in_past(at(-600)));
    assert!(windows.in_past(anchor()));
    assert!(!windows.in_past(at(1)));
    // Megazord stamps in whole seconds: an event stamped with a whole-second anchor's second
    // may have happened during it, after the anchor (both fetches may see it; it is recorded
    // once).
    assert!(windows.in_future(anchor()));
    assert!(!windows.in_future(anchor() - TimeDelta::milliseconds(1)));
    assert!(windows.in_future(at(1)));
    assert!(windows.in_future(at(300)));
    assert!(!windows.in_future(at(301)));
}

/// Megazord stamps events in whole seconds: one stamped with the second an anchor falls inside
/// may have come after it, and is in the future window; a second before is not.
#[test]
fn windows_future_takes_in_the_whole_second_of_an_anchor_inside_it() {
    let inside = anchor() + TimeDelta::milliseconds(500);
    let windows = Windows::compute(600, 300, &defaults(0, 0), inside).unwrap();
    assert!(
        windows.in_future(anchor()),
        "stamped with the anchor's second"
    );
    assert!(!windows.in_future(anchor() + TimeDelta::milliseconds(200)));
    assert!(windows.in_future(anchor() + TimeDelta::milliseconds(501)));
    assert!(!windows.in_future(at(-1)));
    assert!(windows.in_past(anchor()));
}

#[test]
fn windows_reject_out_of_range_intervals() {
    let d = defaults(3600, 600);
    assert_eq!(
        Windows::compute(-2, 0, &d, anchor()),
        Err(WindowError::Past(-2))
    );
    assert_eq!(
        Windows::compute(MAX_INTERVAL + 1, 0, &d, anchor()),
        Err(WindowError::Past(MAX_INTERVAL + 1))
    );
    assert_eq!(
        Windows::compute(0, -1, &d, anchor()),
        Err(WindowError::Future(-1))
    );
    assert_eq!(
        Windows::compute(0, MAX_INTERVAL + 1, &d, anchor()),
        Err(WindowError::Future(MAX_INTERVAL + 1))
    );
    assert_eq!(
        Windows::compute(i64::MIN, i64::MAX, &d, anchor()),
        Err(WindowError::Past(i64::MIN))
    );
    let widest = Windows::compute(MAX_INTERVAL, MAX_INTERVAL, &d, anchor()).unwrap();
    assert_eq!(widest.since, Some(at(-MAX_INTERVAL)));
    assert_eq!(widest.until, Some(at(MAX_INTERVAL)));
}
