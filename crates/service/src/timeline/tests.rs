//! The check's picture as a function: every case parses as XML, marks match the records,
//! labels never overlap, outside text comes out escaped.

use chrono::{DateTime, TimeDelta, Utc};
use status_check_engine::{CheckPhase, CheckResult, RecordPhase};

use super::style::{CHAR_WIDTH, LABEL_GAP};
use super::*;

pub(super) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

/// The SVG parsed as XML (the test fails on anything a browser's XML parser would refuse).
pub(super) fn parse(svg: &str) -> roxmltree::Document<'_> {
    roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"))
}

pub(super) fn with_class<'a>(
    doc: &'a roxmltree::Document<'a>,
    class: &str,
) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|node| {
            node.attribute("class")
                .is_some_and(|classes| classes.split(' ').any(|c| c == class))
        })
        .collect()
}

/// The texts of the elements of `class`, in document order (those without text left out).
pub(super) fn texts<'a>(doc: &'a roxmltree::Document<'a>, class: &str) -> Vec<&'a str> {
    with_class(doc, class)
        .iter()
        .filter_map(|node| node.text())
        .collect()
}

/// The attribute `name` of every element of `class`, in document order; each must have it.
pub(super) fn attributes<'a>(
    doc: &'a roxmltree::Document<'a>,
    class: &str,
    name: &str,
) -> Vec<&'a str> {
    with_class(doc, class)
        .iter()
        .map(|node| node.attribute(name).unwrap())
        .collect()
}

/// The one element of `class` whose attribute `name` is `value`.
pub(super) fn mark_where<'a>(
    doc: &'a roxmltree::Document<'a>,
    class: &str,
    name: &str,
    value: &str,
) -> roxmltree::Node<'a, 'a> {
    with_class(doc, class)
        .into_iter()
        .find(|mark| mark.attribute(name) == Some(value))
        .unwrap()
}

/// A mark's tooltip: the text of its `<title>`.
pub(super) fn title_of<'a>(mark: roxmltree::Node<'a, 'a>) -> &'a str {
    mark.children()
        .find(|c| c.has_tag_name("title"))
        .unwrap()
        .text()
        .unwrap()
}

/// What makes any picture readable: every mark of the `marks` classes has its tooltip, and
/// neither the labels of class `labels` nor the axis' ticks overlap.
pub(super) fn assert_readable(doc: &roxmltree::Document<'_>, marks: &[&str], labels: &str) {
    assert_marks_titled(doc, marks);
    assert_no_overlap(doc, labels);
    assert_no_overlap(doc, "tick");
}

/// Every element that draws something (a shape or text inside a mark) sits in a group with
/// a `<title>`.
fn assert_marks_titled(doc: &roxmltree::Document<'_>, classes: &[&str]) {
    for class in classes {
        for mark in with_class(doc, class) {
            assert!(
                mark.children()
                    .any(|c| c.has_tag_name("title")
                        && c.text().is_some_and(|t| !t.trim().is_empty())),
                "a {class} has no <title>"
            );
        }
    }
}

/// Labels of one lane (same y) never overlap: their boxes, from the monospace width, are
/// apart by at least the gap.
fn assert_no_overlap(doc: &roxmltree::Document<'_>, class: &str) {
    let mut boxes: Vec<(String, f64, f64)> = with_class(doc, class)
        .iter()
        .map(|text| {
            let x: f64 = text.attribute("x").unwrap().parse().unwrap();
            let chars = text.text().unwrap_or("").chars().count() as f64;
            (
                text.attribute("y").unwrap().to_owned(),
                x,
                x + chars * CHAR_WIDTH,
            )
        })
        .collect();
    boxes.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for pair in boxes.windows(2) {
        if pair[0].0 == pair[1].0 {
            assert!(
                pair[1].1 >= pair[0].2 + LABEL_GAP - 0.02,
                "labels overlap in lane y={}: {:?} and {:?}",
                pair[0].0,
                pair[0],
                pair[1]
            );
        }
    }
}

fn record(
    order: u32,
    phase: RecordPhase,
    name: &str,
    event_at: &str,
    result: CheckResult,
) -> TimelineRecord {
    TimelineRecord {
        order,
        phase,
        event_name: name.to_owned(),
        incoming_event_id: Some(5000 + i64::from(order)),
        event_at: Some(at(event_at)),
        recorded_at: at(event_at).max(at("2026-11-20T08:00:00Z")),
        result,
    }
}

/// A check created at 08:00 with a one-hour past window and a ten-minute future window that
/// passed in the future phase at 08:04.
fn base() -> CheckTimeline {
    CheckTimeline {
        id: Some(17),
        robot_id: Some(42),
        template: "robot-is-charging".to_owned(),
        template_version: 2,
        planned_at: Some(at("2026-11-20T07:59:30Z")),
        created_at: at("2026-11-20T08:00:00Z"),
        past: PastWindow::Since(at("2026-11-20T07:00:00Z")),
        deadline: Some(at("2026-11-20T08:10:00Z")),
        poll_until_end: false,
        records: vec![
            record(
                1,
                RecordPhase::Past,
                "CHARGING_STOPPED",
                "2026-11-20T07:20:00Z",
                CheckResult::Pending,
            ),
            record(
                2,
                RecordPhase::Future,
                "CHARGING_STARTED",
                "2026-11-20T08:04:00Z",
                CheckResult::Pass,
            ),
        ],
        phase: CheckPhase::Completed,
        result: CheckResult::Pass,
        next_step: Some("124".to_owned()),
        ended_at: Some(at("2026-11-20T08:04:00.120Z")),
        notifications: vec![TimelineNotification {
            seq: 1,
            created_at: at("2026-11-20T08:04:00.120Z"),
            sent_at: Some(at("2026-11-20T08:04:00.300Z")),
            given_up: None,
            phase: "COMPLETED".to_owned(),
            result: "PASS".to_owned(),
            next_step_id: Some(124),
        }],
        now: None,
    }
}

fn render(check: &CheckTimeline) -> String {
    check_svg(check, &Zone::utc())
}

/// The check rendered in UTC, checked to be [sound](assert_sound).
fn render_sound(check: &CheckTimeline) -> String {
    let svg = render(check);
    assert_sound(check, &svg);
    svg
}

/// What every picture of a check must satisfy.
fn assert_sound(check: &CheckTimeline, svg: &str) {
    let doc = parse(svg);
    assert_eq!(
        with_class(&doc, "event-mark").len(),
        check.records.len(),
        "one event mark per record"
    );
    assert_eq!(
        with_class(&doc, "notification-mark").len(),
        check.notifications.len()
    );
    assert_readable(
        &doc,
        &[
            "event-mark",
            "notification-mark",
            "window-bar",
            "result-band",
            "ref-mark",
            "outcome-mark",
        ],
        "event-label",
    );
    let root = doc.root_element();
    assert!(root.has_tag_name(("http://www.w3.org/2000/svg", "svg")));
    // Every coordinate is a finite number inside the picture.
    for node in doc.descendants() {
        for name in ["x", "x1", "x2", "cx"] {
            if let Some(value) = node.attribute(name) {
                if value.ends_with('%') {
                    continue;
                }
                let value: f64 = value.parse().unwrap_or_else(|_| panic!("{name}={value}"));
                assert!(
                    (0.0..=WIDTH).contains(&value),
                    "{name}={value} is outside the picture"
                );
            }
        }
    }
}

#[test]
fn a_passed_check_shows_its_windows_events_outcome_and_notification() {
    let check = base();
    let svg = render_sound(&check);
    let doc = parse(&svg);
    let outcome = with_class(&doc, "outcome")[0].text().unwrap().to_owned();
    assert_eq!(outcome, "COMPLETED · PASS · next step 124");
    assert_eq!(with_class(&doc, "past-window").len(), 1);
    assert_eq!(with_class(&doc, "future-window").len(), 1);
    assert_eq!(
        attributes(&doc, "ref-mark", "data-ref"),
        ["planned", "created", "deadline"]
    );
    // Bands: PENDING after the past record (taken in at the creation), PASS after the second.
    assert_eq!(
        attributes(&doc, "result-band", "data-result"),
        ["PENDING", "PASS"]
    );
    assert_eq!(
        texts(&doc, "event-label"),
        ["CHARGING_STOPPED", "CHARGING_STARTED"]
    );
    assert!(svg.contains("times in UTC"));
}

#[test]
fn the_marks_sit_at_their_event_times_on_the_axis() {
    let check = base();
    let svg = render(&check);
    let doc = parse(&svg);
    let root = doc.root_element();
    let start = at(root.attribute("data-start").unwrap());
    let end = at(root.attribute("data-end").unwrap());
    assert!(start < at("2026-11-20T07:00:00Z") && end > at("2026-11-20T08:10:00Z"));
    // The past record's circle and the future record's diamond, in time order.
    let circle = doc
        .descendants()
        .find(|n| {
            n.has_tag_name("circle") && n.parent().unwrap().attribute("class") == Some("event-mark")
        })
        .unwrap();
    let cx: f64 = circle.attribute("cx").unwrap().parse().unwrap();
    let scale = axis::Scale::new(start, end, 112.0, WIDTH - 76.0);
    assert!((cx - scale.x(at("2026-11-20T07:20:00Z"))).abs() < 0.01);
}

/// The past records are all evaluated at the creation: their result holds from then, not from
/// their events' times, and nothing is drawn as a result before the check existed.
#[test]
fn results_start_when_the_service_took_the_records_in() {
    let mut check = base();
    check.records = vec![
        record(
            1,
            RecordPhase::Past,
            "CHARGING_STARTED",
            "2026-11-20T07:10:00Z",
            CheckResult::Fail,
        ),
        record(
            2,
            RecordPhase::Past,
            "CHARGING_STOPPED",
            "2026-11-20T07:40:00Z",
            CheckResult::Fail,
        ),
        // A delivery whose event was stamped before the last one's but arrived after it.
        record(
            3,
            RecordPhase::Future,
            "CHARGING_STARTED",
            "2026-11-20T08:03:00Z",
            CheckResult::Pass,
        ),
    ];
    check.records[2].recorded_at = at("2026-11-20T08:06:00Z");
    check.ended_at = Some(at("2026-11-20T08:06:00Z"));
    let svg = render_sound(&check);
    let doc = parse(&svg);
    let root = doc.root_element();
    let scale = axis::Scale::new(
        at(root.attribute("data-start").unwrap()),
        at(root.attribute("data-end").unwrap()),
        112.0,
        WIDTH - 76.0,
    );
    let starts: Vec<(String, f64)> = with_class(&doc, "result-band")
        .iter()
        .map(|band| {
            let rect = band.children().find(|c| c.has_tag_name("rect")).unwrap();
            (
                band.attribute("data-result").unwrap().to_owned(),
                rect.attribute("x").unwrap().parse().unwrap(),
            )
        })
        .collect();
    let x = |time: &str| scale.x(at(time));
    assert_eq!(starts.len(), 3, "{starts:?}");
    assert_eq!(starts[0].0, "FAIL");
    assert!(
        (starts[0].1 - x("2026-11-20T08:00:00Z")).abs() < 0.01,
        "{starts:?}"
    );
    assert_eq!(starts[2].0, "PASS");
    assert!(
        (starts[2].1 - x("2026-11-20T08:06:00Z")).abs() < 0.01,
        "{starts:?}"
    );
}

#[test]
fn a_check_without_a_past_window_says_so() {
    let mut check = base();
    check.past = PastWindow::None;
    check.records.remove(0);
    check.records[0].order = 1;
    let svg = render_sound(&check);
    let doc = parse(&svg);
    assert_eq!(with_class(&doc, "no-past-window").len(), 1);
    assert!(with_class(&doc, "past-window").is_empty());
    // Nothing before the creation: the first band starts at the anchor.
    let bands = with_class(&doc, "result-band");
    assert_eq!(bands[0].attribute("data-result"), Some("PENDING"));
}

#[test]
fn an_unbounded_look_back_runs_off_the_left_edge() {
    let mut check = base();
    check.past = PastWindow::Unbounded;
    // An event three weeks back: the axis spans weeks, ticks are days.
    check.records[0] = record(
        1,
        RecordPhase::Past,
        "CHARGING_STOPPED",
        "2026-10-30T07:20:00Z",
        CheckResult::Pending,
    );
    let svg = render_sound(&check);
    let doc = parse(&svg);
    let bar = with_class(&doc, "past-window")[0];
    let rect = bar.children().find(|c| c.has_tag_name("rect")).unwrap();
    assert_eq!(
        rect.attribute("x"),
        Some("112"),
        "starts at the axis' left end"
    );
    assert!(svg.contains("unbounded"));
    let ticks = texts(&doc, "tick");
    assert!(ticks.iter().any(|t| t.ends_with("Nov")), "{ticks:?}");
}

#[test]
fn events_at_the_window_edges_stay_inside_the_picture() {
    let mut check = base();
    check.records = vec![
        record(
            1,
            RecordPhase::Past,
            "AT_SINCE",
            "2026-11-20T07:00:00Z",
            CheckResult::Pending,
        ),
        record(
            2,
            RecordPhase::Past,
            "AT_ANCHOR",
            "2026-11-20T08:00:00Z",
            CheckResult::Pending,
        ),
        record(
            3,
            RecordPhase::Future,
            "AT_DEADLINE",
            "2026-11-20T08:10:00Z",
            CheckResult::Pass,
        ),
    ];
    check.ended_at = Some(at("2026-11-20T08:10:00Z"));
    let svg = render_sound(&check);
    let doc = parse(&svg);
    assert_eq!(
        texts(&doc, "event-label"),
        ["AT_SINCE", "AT_ANCHOR", "AT_DEADLINE"]
    );
}

#[test]
fn one_record_and_five_hundred_records() {
    let mut one = base();
    one.records.truncate(1);
    render_sound(&one);

    let mut many = base();
    many.records = (1..=500u32)
        .map(|order| {
            let time = at("2026-11-20T07:00:00Z") + TimeDelta::seconds(i64::from(order) * 7);
            let result = if order == 500 {
                CheckResult::Pass
            } else {
                CheckResult::Pending
            };
            record(
                order,
                RecordPhase::Past,
                &format!("SENSOR_READING_{order}"),
                &time.to_rfc3339(),
                result,
            )
        })
        .collect();
    let svg = render_sound(&many);
    let doc = parse(&svg);
    let shown = with_class(&doc, "event-label").len();
    assert!(
        shown > 5 && shown < 100,
        "labels thinned: {shown} of 500 shown"
    );
    let note = with_class(&doc, "labels-omitted")[0]
        .text()
        .unwrap()
        .to_owned();
    assert!(
        note.starts_with(&format!("{} of 500 labels left out", 500 - shown)),
        "{note}"
    );
    assert!(
        svg.len() < 400_000,
        "500 records stay a reasonable page: {} bytes",
        svg.len()
    );
}

#[test]
fn a_poll_until_end_check_shows_every_change_and_the_last_result() {
    let mut check = base();
    check.poll_until_end = true;
    check.records = vec![
        record(
            1,
            RecordPhase::Past,
            "CHARGING_STARTED",
            "2026-11-20T07:30:00Z",
            CheckResult::Pass,
        ),
        record(
            2,
            RecordPhase::Future,
            "CHARGING_STOPPED",
            "2026-11-20T08:03:00Z",
            CheckResult::Fail,
        ),
        record(
            3,
            RecordPhase::Future,
            "CHARGING_STARTED",
            "2026-11-20T08:06:00Z",
            CheckResult::Pass,
        ),
    ];
    check.ended_at = Some(at("2026-11-20T08:10:00.050Z"));
    let svg = render_sound(&check);
    let doc = parse(&svg);
    // PASS from the creation (the past record), then each delivery's result.
    assert_eq!(
        attributes(&doc, "result-band", "data-result"),
        ["PASS", "FAIL", "PASS"]
    );
    let outcome = with_class(&doc, "outcome")[0].text().unwrap();
    assert!(
        outcome.contains("pollUntilEnd: the last result stands"),
        "{outcome}"
    );
    assert_eq!(with_class(&doc, "outcome-mark").len(), 1);
}

#[test]
fn a_node_record_without_an_event_time_is_drawn_hollow_at_its_recording() {
    let mut check = base();
    check.id = Some(3);
    check.planned_at = Some(at("2026-11-20T08:00:00Z"));
    check.records[1].event_at = None;
    check.records[1].incoming_event_id = None;
    check.records[1].recorded_at = at("2026-11-20T08:05:00Z");
    check.notifications.clear();
    let svg = render_sound(&check);
    let doc = parse(&svg);
    let mark = mark_where(&doc, "event-mark", "data-order", "2");
    let title = title_of(mark);
    assert!(title.contains("event time not stored"), "{title}");
    let shape = mark.children().find(|c| c.has_tag_name("path")).unwrap();
    assert_eq!(shape.attribute("fill"), Some("#ffffff"));
    assert!(svg.contains("no notification kept"));
}

#[test]
fn an_open_check_shows_now_and_no_outcome_yet() {
    let mut check = base();
    check.phase = CheckPhase::Future;
    check.result = CheckResult::Pending;
    check.next_step = None;
    check.ended_at = None;
    check.records.truncate(1);
    check.notifications.clear();
    check.now = Some(at("2026-11-20T08:02:00Z"));
    let svg = render_sound(&check);
    let doc = parse(&svg);
    assert!(with_class(&doc, "outcome-mark").is_empty());
    assert!(
        with_class(&doc, "ref-mark")
            .iter()
            .any(|m| m.attribute("data-ref") == Some("now"))
    );
    assert_eq!(
        with_class(&doc, "outcome")[0].text(),
        Some("FUTURE · PENDING · next step not decided yet")
    );
}

#[test]
fn hostile_names_come_out_escaped() {
    let mut check = base();
    let long = "Ω".repeat(1024);
    check.template = "<script>alert(1)</script>".to_owned();
    check.records[0].event_name = "\"><script>alert('x')</script>&amp;\u{1}".to_owned();
    check.records[1].event_name = long.clone();
    check.next_step = Some("'\"<b>".to_owned());
    let svg = render_sound(&check);
    assert!(!svg.contains("<script>"), "no markup from outside");
    assert!(!svg.contains("<b>"));
    let doc = parse(&svg);
    // The text reads as it was given (escaped, not dropped), control characters replaced.
    assert!(
        title_of(with_class(&doc, "event-mark")[0])
            .contains("\"><script>alert('x')</script>&amp;\u{FFFD}")
    );
    // A 1 kB name is cut in the label, whole in the tooltip.
    let label = with_class(&doc, "event-label")[1].text().unwrap();
    assert_eq!(label.chars().count(), style::MAX_LABEL_CHARS);
    assert!(label.ends_with('…'));
    assert!(title_of(with_class(&doc, "event-mark")[1]).contains(&long));
    assert!(
        with_class(&doc, "heading")[0]
            .text()
            .unwrap()
            .contains("<script>alert(1)</script>")
    );
}

#[test]
fn a_replay_has_no_ids_and_times_follow_the_zone() {
    let mut check = base();
    check.id = None;
    check.robot_id = None;
    check.planned_at = None;
    let zone = Zone::named("europe/amsterdam").unwrap();
    assert_eq!(zone.name, "Europe/Amsterdam");
    let svg = check_svg(&check, &zone);
    assert_sound(&check, &svg);
    let doc = parse(&svg);
    assert!(
        with_class(&doc, "heading")[0]
            .text()
            .unwrap()
            .starts_with("Replay of robot-is-charging v2")
    );
    assert!(svg.contains("times in Europe/Amsterdam"));
    // 08:00 UTC is 09:00 in Amsterdam in November.
    let ticks = texts(&doc, "tick");
    assert!(ticks.contains(&"09:00"), "{ticks:?}");
    assert!(Zone::named("Mars/Olympus").is_err());
}

#[test]
fn ticks_read_well_from_seconds_to_years() {
    let zone = Zone::utc();
    let cases = [
        ("2026-11-20T08:00:00Z", "2026-11-20T08:00:20Z", "08:00:00"),
        ("2026-11-20T08:00:00Z", "2026-11-20T08:30:00Z", "08:05"),
        ("2026-11-20T00:00:00Z", "2026-11-21T00:00:00Z", "03:00"),
        ("2026-11-01T00:00:00Z", "2026-11-20T00:00:00Z", "08 Nov"),
        ("2024-01-01T00:00:00Z", "2026-11-20T00:00:00Z", "Jul 2024"),
        ("1990-01-01T00:00:00Z", "2026-11-20T00:00:00Z", "2000"),
    ];
    for (from, to, expected) in cases {
        let scale = axis::Scale::new(at(from), at(to), 0.0, 800.0);
        let ticks = axis::ticks(&scale, &zone.tz, 84.0);
        let labels: Vec<&str> = ticks.iter().map(|t| t.label.as_str()).collect();
        assert!(
            ticks.len() >= 2 && ticks.len() <= 10,
            "{from}..{to}: {labels:?}"
        );
        assert!(labels.contains(&expected), "{from}..{to}: {labels:?}");
        assert!(ticks.windows(2).all(|w| w[0].at < w[1].at));
    }
}
