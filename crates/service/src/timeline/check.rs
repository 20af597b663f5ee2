//! The picture of one check: its windows, the result after each record as a band, each
//! record as a mark at its event time, the notifications to the robot, and the lines of
//! `plannedAt`, the creation, the deadline (and now, while it is open).

use chrono::{DateTime, TimeDelta, Utc};
use maud::{Markup, html};
use status_check_engine::{CheckResult, RecordPhase};

use super::axis::{Scale, human_duration, ticks};
use super::style::{
    self, BLUE, FAIL, INK, MUTED, Reference, SKY, Swatch, axis, bar_label, clean, defs, empty_row,
    label_width, n, place_labels, reference_marks, result_fill, short,
};
use super::{CheckTimeline, PastWindow, TimelineRecord, WIDTH, Zone};

const LEFT: f64 = 112.0;
const RIGHT_PAD: f64 = 16.0;
const WINDOWS_Y: f64 = 84.0;
const RESULT_Y: f64 = 114.0;
const BAR_HEIGHT: f64 = 20.0;
const EVENTS_Y: f64 = 156.0;
const EVENT_LANES: usize = 4;
const LANE_HEIGHT: f64 = 13.0;
const NOTIFY_Y: f64 = 240.0;
const AXIS_Y: f64 = 280.0;
const LEGEND_Y: f64 = 342.0;
const HEIGHT: f64 = 372.0;
/// Where labels must end.
const LABEL_RIGHT: f64 = WIDTH - 8.0;

/// The check as SVG, times labelled in `zone`.
pub fn check_svg(check: &CheckTimeline, zone: &Zone) -> String {
    let scale = scale_of(check);
    let ticks = ticks(&scale, &zone.tz, 84.0);
    let fmt = |at: DateTime<Utc>| zone.format(at);
    let title = match (check.id, check.robot_id) {
        (Some(id), Some(robot)) => format!(
            "Check {id} · robot {robot} · {} v{}",
            clean(&check.template),
            check.template_version
        ),
        _ => format!(
            "Replay of {} v{}",
            clean(&check.template),
            check.template_version
        ),
    };
    let outcome = outcome_text(check);
    let markup = html! {
        svg xmlns="http://www.w3.org/2000/svg" class="timeline check-timeline"
            width=(n(WIDTH)) height=(n(HEIGHT)) viewBox=(format!("0 0 {} {}", n(WIDTH), n(HEIGHT)))
            role="img" aria-label=(format!("{title}: {outcome}"))
            data-start=(scale.start.to_rfc3339()) data-end=(scale.end.to_rfc3339())
            font-family="ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace" font-size="11" {
            title { (title) ": " (outcome) }
            (defs())
            rect width="100%" height="100%" fill="#ffffff" {}
            text class="heading" x="8" y="18" font-size="13" font-weight="bold" fill=(INK) { (title) }
            text class="outcome" x="8" y="36" font-size="12" fill=(INK) { (outcome) }
            (row_names())
            (window_bars(check, &scale, &fmt))
            (result_bands(check, &scale, &fmt))
            (reference_lines(check, &scale, &fmt))
            (event_marks(&check.records, &scale, &fmt))
            (notification_marks(check, &scale, &fmt))
            (axis(&scale, &ticks, AXIS_Y, &zone.name))
            (legend())
        }
    };
    markup.into_string()
}

/// `COMPLETED · PASS · next step 124`.
pub fn outcome_text(check: &CheckTimeline) -> String {
    let next = match &check.next_step {
        Some(step) => format!("next step {}", clean(step)),
        None if check.phase.is_final() => "no next step".to_owned(),
        None => "next step not decided yet".to_owned(),
    };
    let rule = if check.poll_until_end {
        " · pollUntilEnd: the last result stands"
    } else {
        ""
    };
    format!("{} · {} · {next}{rule}", check.phase, check.result)
}

/// The instants the picture must show, padded; an unbounded look-back runs off the left.
fn scale_of(check: &CheckTimeline) -> Scale {
    let mut instants = vec![check.created_at];
    instants.extend(check.planned_at);
    instants.extend(check.deadline);
    if let PastWindow::Since(since) = check.past {
        instants.push(since);
    }
    instants.extend(check.records.iter().map(TimelineRecord::at));
    for notification in &check.notifications {
        instants.push(notification.created_at);
        instants.extend(notification.sent_at);
    }
    match (check.phase.is_final(), check.ended_at, check.now) {
        (true, Some(ended), _) => instants.push(ended),
        (false, _, Some(now)) => instants.push(now),
        _ => {}
    }
    let first = instants.iter().min().copied().unwrap_or(check.created_at);
    let last = instants.iter().max().copied().unwrap_or(check.created_at);
    let span = (last - first).max(TimeDelta::seconds(10));
    let pad = span / 25;
    let before = if check.past == PastWindow::Unbounded {
        span / 8
    } else {
        pad
    };
    Scale::new(first - before, last + pad, LEFT, WIDTH - RIGHT_PAD - 60.0)
}

fn row_names() -> Markup {
    html! {
        g class="row-names" fill=(MUTED) {
            text x="8" y=(n(WINDOWS_Y + 14.0)) { "windows" }
            text x="8" y=(n(RESULT_Y + 14.0)) { "result" }
            text x="8" y=(n(EVENTS_Y + 4.0)) { "events" }
            text x="8" y=(n(NOTIFY_Y + 4.0)) { "robot told" }
        }
    }
}

fn window_bars(
    check: &CheckTimeline,
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let created = scale.x(check.created_at);
    let past = match check.past {
        PastWindow::None => None,
        PastWindow::Since(since) => Some((
            scale.x(since),
            format!(
                "past window: {} to {} ({})",
                fmt(since),
                fmt(check.created_at),
                human_duration((check.created_at - since).num_seconds())
            ),
            "past window",
        )),
        PastWindow::Unbounded => Some((
            scale.left,
            format!("past window: unbounded, up to {}", fmt(check.created_at)),
            "← past window (unbounded)",
        )),
    };
    let future = check.deadline.map(|deadline| {
        (
            scale.x(deadline),
            format!(
                "future window: {} to {} ({})",
                fmt(check.created_at),
                fmt(deadline),
                human_duration((deadline - check.created_at).num_seconds())
            ),
        )
    });
    html! {
        g class="windows" {
            @if let Some((x, tip, label)) = past {
                g class="window-bar past-window" {
                    title { (tip) }
                    rect x=(n(x)) y=(n(WINDOWS_Y)) width=(n((created - x).max(1.0))) height=(n(BAR_HEIGHT)) fill=(SKY) {}
                    @if created - x >= label_width(label) + 8.0 {
                        text x=(n(x + 4.0)) y=(n(WINDOWS_Y + 14.0)) fill=(INK) { (label) }
                    }
                }
            } @else {
                g class="window-bar no-past-window" {
                    title { "no past window (pastInterval 0)" }
                    text x=(n(created - 4.0)) y=(n(WINDOWS_Y + 14.0)) text-anchor="end" fill=(MUTED) { "no past window" }
                }
            }
            @if let Some((x, tip)) = future {
                g class="window-bar future-window" {
                    title { (tip) }
                    rect x=(n(created)) y=(n(WINDOWS_Y)) width=(n((x - created).max(1.0))) height=(n(BAR_HEIGHT)) fill=(BLUE) {}
                    @if x - created >= label_width("future window") + 8.0 {
                        text x=(n(created + 4.0)) y=(n(WINDOWS_Y + 14.0)) fill="#ffffff" { "future window" }
                    }
                }
            } @else {
                g class="window-bar no-future-window" {
                    title { "no future window (futureInterval 0): decided at creation" }
                    text x=(n(created + 4.0)) y=(n(WINDOWS_Y + 14.0)) fill=(MUTED) { "no future window" }
                }
            }
        }
    }
}

/// The result after each record, from when the service took the record in (its recording, not
/// its event's time: the past records are all evaluated at the creation, and a delivery counts
/// from its arrival) to the next record's; PENDING from the creation to the first; the last
/// runs to the end (the check's end, or now). No result is drawn before the check existed.
fn result_bands(
    check: &CheckTimeline,
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let begin = check.created_at;
    let end = match (check.phase.is_final(), check.ended_at, check.now) {
        (true, Some(ended), _) => ended,
        (false, _, Some(now)) => now,
        _ => check.deadline.unwrap_or(check.created_at),
    };
    let mut bands: Vec<(DateTime<Utc>, CheckResult, String)> = Vec::new();
    let first = check.records.first().map(|record| record.recorded_at);
    if first.is_none_or(|first| begin < first) {
        bands.push((begin, CheckResult::Pending, "before any record".to_owned()));
    }
    let mut since = begin;
    for record in &check.records {
        since = since.max(record.recorded_at);
        bands.push((
            since,
            record.result,
            format!(
                "after record {} ({})",
                record.order,
                short(&record.event_name)
            ),
        ));
    }
    let mut spans = Vec::new();
    for (i, (start, result, why)) in bands.iter().enumerate() {
        let stop = bands.get(i + 1).map_or(end, |next| next.0).max(*start);
        spans.push((*start, stop, *result, why.clone()));
    }
    html! {
        g class="results" {
            @for (start, stop, result, why) in &spans {
                @let (x1, x2) = (scale.x(*start), scale.x(*stop));
                g class="result-band" data-result=(result.to_string()) {
                    title { (result.to_string()) " " (why) ", " (fmt(*start)) " to " (fmt(*stop)) }
                    rect x=(n(x1)) y=(n(RESULT_Y)) width=(n((x2 - x1).max(1.5))) height=(n(BAR_HEIGHT))
                        fill=(result_fill(*result)) stroke="#ffffff" stroke-width="0.5" {}
                    (bar_label(x1, x2, RESULT_Y + 14.0, &result.to_string()))
                }
            }
            @if check.phase.is_final() {
                @let x = scale.x(end);
                g class="outcome-mark" {
                    title { "ended " (fmt(end)) ": " (outcome_text(check)) }
                    path d=(format!("M{} {}v{}", n(x), n(RESULT_Y - 4.0), n(BAR_HEIGHT + 8.0))) stroke=(INK) stroke-width="3" {}
                    text x=(n(x + 5.0)) y=(n(RESULT_Y + 14.0)) fill=(INK) font-weight="bold" {
                        (check.result.to_string())
                    }
                }
            }
        }
    }
}

fn reference_lines(
    check: &CheckTimeline,
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let now = check.now.filter(|_| !check.phase.is_final());
    let references: [Reference; 4] = [
        (check.planned_at, "planned", "4 3", "plannedAt"),
        (
            Some(check.created_at),
            "created",
            "none",
            "created (the anchor)",
        ),
        (check.deadline, "deadline", "8 3 2 3", "deadline"),
        (now, "now", "1 3", "now"),
    ];
    let right = scale.right + 60.0;
    html! {
        g class="references" {
            (reference_marks(scale, fmt, &references, AXIS_Y, right, Some("1.2")))
        }
    }
}

fn event_marks(
    records: &[TimelineRecord],
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let mut by_x: Vec<&TimelineRecord> = records.iter().collect();
    by_x.sort_by_key(|record| (record.at(), record.order));
    let labels: Vec<String> = by_x.iter().map(|r| short(&r.event_name)).collect();
    let items: Vec<(f64, f64)> = by_x
        .iter()
        .zip(&labels)
        .map(|(record, label)| {
            let width = label_width(label);
            // Near the right edge a label ends at its mark instead of starting there.
            let x = (scale.x(record.at()) - 3.0).min(LABEL_RIGHT - width);
            (x, width)
        })
        .collect();
    let lanes = place_labels(&items, EVENT_LANES, LABEL_RIGHT);
    let shown = lanes.iter().filter(|lane| lane.is_some()).count();
    html! {
        g class="events" {
            @for (((record, label), lane), (label_x, _)) in by_x.iter().zip(&labels).zip(&lanes).zip(&items) {
                @let x = scale.x(record.at());
                g class="event-mark" data-order=(record.order) data-phase=(record.phase.as_str()) {
                    title { (record_tip(record, fmt)) }
                    (event_shape(record, x, EVENTS_Y))
                    @if let Some(lane) = lane {
                        @let y = EVENTS_Y + 18.0 + LANE_HEIGHT * *lane as f64;
                        text class="event-label" x=(n(*label_x)) y=(n(y)) fill=(INK) { (label) }
                    }
                }
            }
            @if shown < by_x.len() {
                text class="labels-omitted" x=(n(scale.left)) y=(n(EVENTS_Y + 18.0 + LANE_HEIGHT * EVENT_LANES as f64))
                    fill=(MUTED) font-style="italic" {
                    (by_x.len() - shown) " of " (by_x.len()) " labels left out to avoid overlap; every mark has its tooltip, and the table below lists all"
                }
            }
        }
    }
}

fn record_tip(record: &TimelineRecord, fmt: &dyn Fn(DateTime<Utc>) -> String) -> String {
    let at = match record.event_at {
        Some(at) => format!("event at {}", fmt(at)),
        None => "event time not stored (a record of the Node service)".to_owned(),
    };
    let id = record
        .incoming_event_id
        .map(|id| format!(" · incoming event {id}"))
        .unwrap_or_default();
    format!(
        "#{} {} · {} · {at} · recorded {} · result after it: {}{id}",
        record.order,
        clean(&record.event_name),
        record.phase.as_str(),
        fmt(record.recorded_at),
        record.result
    )
}

/// A circle for a PAST record, a diamond for a FUTURE one; hollow when its event time is
/// unknown (drawn at its recording time).
fn event_shape(record: &TimelineRecord, x: f64, y: f64) -> Markup {
    let known = record.event_at.is_some();
    let fill = if known { INK } else { "#ffffff" };
    html! {
        @match record.phase {
            RecordPhase::Past => {
                circle cx=(n(x)) cy=(n(y)) r="5" fill=(fill) stroke=(INK) stroke-width="1.5" {}
            }
            RecordPhase::Future => {
                path d=(format!("M{} {}l6 6l-6 6l-6 -6z", n(x), n(y - 6.0))) fill=(fill) stroke=(INK) stroke-width="1.5" {}
            }
        }
    }
}

fn notification_marks(
    check: &CheckTimeline,
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    let labels: Vec<String> = check
        .notifications
        .iter()
        .map(|m| format!("#{} {}", m.seq, m.result))
        .collect();
    let items: Vec<(f64, f64)> = check
        .notifications
        .iter()
        .zip(&labels)
        .map(|(m, label)| {
            (
                scale.x(m.sent_at.unwrap_or(m.created_at)) - 4.0,
                label_width(label),
            )
        })
        .collect();
    let lanes = place_labels(&items, 1, scale.right + 60.0);
    html! {
        g class="notifications" {
            @for ((m, label), lane) in check.notifications.iter().zip(&labels).zip(&lanes) {
                @let x = scale.x(m.sent_at.unwrap_or(m.created_at));
                g class="notification-mark" data-seq=(m.seq) {
                    title {
                        "notification " (m.seq) ": " (clean(&m.phase)) " " (clean(&m.result))
                        @if let Some(step) = m.next_step_id { " · next step " (step) }
                        " · decided " (fmt(m.created_at))
                        @match (m.sent_at, &m.given_up) {
                            (Some(sent), _) => { " · sent " (fmt(sent)) }
                            (None, Some(why)) => { " · " (clean(why)) }
                            (None, None) => { " · not sent yet" }
                        }
                    }
                    path d=(format!("M{} {}l-6 -10h12z", n(x), n(NOTIFY_Y + 5.0)))
                        fill=(if m.sent_at.is_some() { FAIL } else { "#ffffff" }) stroke=(INK) {}
                    @if lane.is_some() {
                        text x=(n(x - 4.0)) y=(n(NOTIFY_Y + 19.0)) fill=(INK) { (label) }
                    }
                }
            }
            @if check.notifications.is_empty() {
                (empty_row(scale, NOTIFY_Y, "no notification kept"))
            }
        }
    }
}

/// Swatches of the four results and the symbols of the marks.
fn legend() -> Markup {
    let results = [
        CheckResult::Pass,
        CheckResult::Fail,
        CheckResult::Unknown,
        CheckResult::Pending,
    ];
    let swatches: Vec<Swatch> = results
        .iter()
        .enumerate()
        .map(|(i, result)| Swatch {
            x: i as f64 * 100.0,
            fill: result_fill(*result),
            stroke_width: 0.5,
            dash: None,
            label: result.to_string(),
        })
        .collect();
    let symbols = html! {
        circle cx="412" cy="-3" r="5" fill=(INK) {}
        text x="421" y="1" fill=(INK) { "PAST event" }
        path d="M512 -9l6 6l-6 6l-6 -6z" fill=(INK) {}
        text x="523" y="1" fill=(INK) { "FUTURE event" }
        circle cx="628" cy="-3" r="5" fill="#ffffff" stroke=(INK) stroke-width="1.5" {}
        text x="637" y="1" fill=(INK) { "time unknown" }
        path d="M742 2l-6 -10h12z" fill=(FAIL) stroke=(INK) {}
        text x="752" y="1" fill=(INK) { "notification" }
    };
    style::legend(LEGEND_Y, &swatches, symbols)
}
