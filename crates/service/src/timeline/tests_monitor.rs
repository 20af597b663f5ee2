//! The monitor's day as a function: bars by how windows ended, alarms with references, the
//! local day's real length on daylight-saving days.

use chrono::{NaiveDate, TimeDelta};

use super::monitor::day_length;
use super::tests::{
    assert_readable, at, attributes, mark_where, parse, texts, title_of, with_class,
};
use super::*;

fn amsterdam() -> Zone {
    Zone::named("Europe/Amsterdam").unwrap()
}

fn bar(number: u32, start: &str, end: &str, outcome: WindowOutcome) -> WindowBar {
    WindowBar {
        number,
        start: at(start),
        end: at(end),
        outcome,
    }
}

fn alarm(number: u32, date: &str, end: &str) -> AlarmMark {
    AlarmMark {
        window_number: number,
        reference_id: format!("status-check:42:no-toilet:{date}:{number}"),
        event_name: "NO_TOILET_ACTIVITY_ALARM".to_owned(),
        at: at(end),
        sent_at: Some(at(end) + TimeDelta::milliseconds(300)),
    }
}

/// 20 November (CET, UTC+1): session 08:00–22:00 local, two-hour windows; an event at 09:30
/// reset window 1, which then expired at 11:30; window 2 expired at 13:30; window 3 is open.
fn day() -> MonitorDay {
    MonitorDay {
        robot_id: 42,
        rule_id: "no-toilet".to_owned(),
        event_type: "TOILET_ACTIVITY".to_owned(),
        date: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
        session: Some((at("2026-11-20T07:00:00Z"), at("2026-11-20T21:00:00Z"))),
        windows: vec![
            bar(
                1,
                "2026-11-20T07:00:00Z",
                "2026-11-20T08:30:00Z",
                WindowOutcome::Reset,
            ),
            bar(
                1,
                "2026-11-20T08:30:00Z",
                "2026-11-20T10:30:00Z",
                WindowOutcome::Expired,
            ),
            bar(
                2,
                "2026-11-20T10:30:00Z",
                "2026-11-20T12:30:00Z",
                WindowOutcome::Expired,
            ),
            bar(
                3,
                "2026-11-20T12:30:00Z",
                "2026-11-20T14:30:00Z",
                WindowOutcome::Open,
            ),
        ],
        events: vec![at("2026-11-20T08:30:00Z")],
        alarms: vec![
            alarm(1, "2026-11-20", "2026-11-20T10:30:00Z"),
            alarm(2, "2026-11-20", "2026-11-20T12:30:00Z"),
        ],
        now: Some(at("2026-11-20T13:00:00Z")),
    }
}

fn assert_sound(day: &MonitorDay, svg: &str) {
    let doc = parse(svg);
    assert_eq!(with_class(&doc, "window-bar").len(), day.windows.len());
    assert_eq!(with_class(&doc, "event-mark").len(), day.events.len());
    assert_eq!(with_class(&doc, "alarm-mark").len(), day.alarms.len());
    assert_readable(
        &doc,
        &[
            "window-bar",
            "event-mark",
            "alarm-mark",
            "ref-mark",
            "session",
        ],
        "alarm-label",
    );
}

#[test]
fn a_day_shows_windows_by_how_they_ended_and_the_alarm_references() {
    let day = day();
    let svg = monitor_svg(&day, &amsterdam());
    assert_sound(&day, &svg);
    let doc = parse(&svg);
    assert_eq!(
        attributes(&doc, "window-bar", "data-outcome"),
        ["reset", "expired", "expired", "open"]
    );
    assert_eq!(
        texts(&doc, "alarm-label"),
        [
            "status-check:42:no-toilet:2026-11-20:1",
            "status-check:42:no-toilet:2026-11-20:2"
        ]
    );
    assert!(svg.contains("times in Europe/Amsterdam"));
    // The axis runs from local midnight (23:00 UTC the day before) for 24 hours.
    let root = doc.root_element();
    assert_eq!(
        at(root.attribute("data-start").unwrap()),
        at("2026-11-19T23:00:00Z")
    );
    assert_eq!(
        at(root.attribute("data-end").unwrap()),
        at("2026-11-20T23:00:00Z")
    );
    let summary = with_class(&doc, "outcome")[0].text().unwrap();
    assert_eq!(
        summary,
        "2026-11-20 (24 h) · session 14 h · 2 alarms · 1 watched event"
    );
}

#[test]
fn daylight_saving_days_last_23_and_25_hours() {
    let zone = amsterdam();
    let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
    let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
    assert_eq!(day_length(spring, &zone), TimeDelta::hours(23));
    assert_eq!(day_length(autumn, &zone), TimeDelta::hours(25));

    for (date, hours, session) in [
        // 00:00–24:00 local: 23 h in spring, 25 h in autumn.
        (spring, 23, ("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z")),
        (autumn, 25, ("2026-10-24T22:00:00Z", "2026-10-25T23:00:00Z")),
    ] {
        let mut day = day();
        day.date = date;
        day.session = Some((at(session.0), at(session.1)));
        day.windows = vec![bar(1, session.0, session.1, WindowOutcome::SessionEnded)];
        day.events.clear();
        day.alarms.clear();
        day.now = None;
        let svg = monitor_svg(&day, &zone);
        assert_sound(&day, &svg);
        let doc = parse(&svg);
        let summary = with_class(&doc, "outcome")[0].text().unwrap().to_owned();
        assert!(summary.contains(&format!("({hours} h)")), "{summary}");
        assert!(summary.contains(&format!("session {hours} h")), "{summary}");
        // The whole-day window fills the whole axis: positions are real time, not clock time.
        let rect = with_class(&doc, "window-bar")[0]
            .children()
            .find(|c| c.has_tag_name("rect"))
            .unwrap();
        let x: f64 = rect.attribute("x").unwrap().parse().unwrap();
        let width: f64 = rect.attribute("width").unwrap().parse().unwrap();
        assert_eq!(x, 112.0);
        assert!((x + width - (WIDTH - 24.0)).abs() < 0.01);
        // The local hour labels skip 02:00 in spring and carry the local clock after the change.
        let ticks = texts(&doc, "tick");
        assert!(ticks.contains(&"00:00"), "{ticks:?}");
        assert!(!ticks.contains(&"02:00") || date == autumn, "{ticks:?}");
        assert!(ticks.contains(&"12:00"), "{ticks:?}");
    }
}

#[test]
fn a_day_without_a_session_or_anything_kept() {
    let mut day = day();
    day.session = None;
    day.windows.clear();
    day.events.clear();
    day.alarms.clear();
    day.now = None;
    let svg = monitor_svg(&day, &Zone::utc());
    assert_sound(&day, &svg);
    assert!(svg.contains("no session that day"));
    assert!(svg.contains("no alarm"));
}

#[test]
fn many_alarms_thin_their_labels_and_hostile_ids_are_escaped() {
    let mut day = day();
    day.rule_id = "<script>x</script>".to_owned();
    day.event_type = "\"quoted\" & <b>".to_owned();
    day.windows.clear();
    day.alarms = (1..=120u32)
        .map(|n| {
            let end = at("2026-11-20T07:00:00Z") + TimeDelta::minutes(7 * i64::from(n));
            let mut alarm = alarm(n, "2026-11-20", &end.to_rfc3339());
            if n == 7 {
                alarm.reference_id = format!("<img src=x onerror=alert(1)>{}", "x".repeat(1000));
                alarm.sent_at = None;
            }
            alarm
        })
        .collect();
    let svg = monitor_svg(&day, &amsterdam());
    assert_sound(&day, &svg);
    assert!(!svg.contains("<script>") && !svg.contains("<img") && !svg.contains("<b>"));
    let doc = parse(&svg);
    let shown = with_class(&doc, "alarm-label").len();
    assert!(shown > 3 && shown < 60, "{shown} of 120 labels");
    let heading = with_class(&doc, "heading")[0].text().unwrap();
    assert_eq!(
        heading,
        "Monitor <script>x</script> · robot 42 · watches \"quoted\" & <b>"
    );
    let tip = title_of(mark_where(&doc, "alarm-mark", "data-window", "7"));
    assert!(tip.contains("<img src=x onerror=alert(1)>") && tip.contains("not posted yet"));
}
