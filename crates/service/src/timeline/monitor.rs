//! The picture of a monitor's local day: the session, its windows as bars by how they ended,
//! the watched events, and the alarms with their reference ids — on an axis from the day's
//! local midnight to the next (23 or 25 hours on a daylight-saving day).

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use maud::{Markup, html};

use super::axis::{Scale, from_timestamp, human_duration, ticks};
use super::style::{
    self, BLUE, FAIL, INK, MUTED, Reference, SKY, Swatch, axis, bar_label, clean, defs, empty_row,
    label_width, n, place_labels, reference_marks,
};
use super::{MonitorDay, WIDTH, WindowBar, WindowOutcome, Zone};

const LEFT: f64 = 112.0;
const RIGHT: f64 = WIDTH - 24.0;
const WINDOWS_Y: f64 = 84.0;
const BAR_HEIGHT: f64 = 22.0;
const EVENTS_Y: f64 = 138.0;
const ALARMS_Y: f64 = 174.0;
const ALARM_LANES: usize = 3;
const AXIS_Y: f64 = 250.0;
const LEGEND_Y: f64 = 312.0;
const HEIGHT: f64 = 340.0;
const REFERENCE_CHARS: usize = 60;
const SESSION_ENDED: &str = "#8c8c8c";

/// The day's bounds: local midnight to the next local midnight in `zone`.
pub fn day_bounds(date: NaiveDate, zone: &Zone) -> (DateTime<Utc>, DateTime<Utc>) {
    let midnight = |date: NaiveDate| {
        // Beyond jiff's years (±9999) the day saturates rather than panics.
        let civil = jiff::civil::Date::new(
            i16::try_from(date.year()).unwrap_or(i16::MAX),
            i8::try_from(date.month()).unwrap_or(1),
            i8::try_from(date.day()).unwrap_or(1),
        )
        .unwrap_or(if date.year() < 0 {
            jiff::civil::Date::MIN
        } else {
            jiff::civil::Date::MAX
        })
        .at(0, 0, 0, 0);
        zone.tz
            .to_ambiguous_timestamp(civil)
            .compatible()
            .map(from_timestamp)
            .unwrap_or_default()
    };
    let next = date.succ_opt().unwrap_or(date);
    (midnight(date), midnight(next))
}

/// The monitor's day as SVG, in the monitor's timezone `zone`.
pub fn monitor_svg(day: &MonitorDay, zone: &Zone) -> String {
    let (start, end) = day_bounds(day.date, zone);
    let scale = Scale::new(start, end, LEFT, RIGHT);
    let ticks = ticks(&scale, &zone.tz, 64.0);
    let fmt = |at: DateTime<Utc>| zone.format(at);
    let title = format!(
        "Monitor {} · robot {} · watches {}",
        clean(&day.rule_id),
        day.robot_id,
        clean(&day.event_type)
    );
    let summary = summary_text(day, start, end);
    let markup = html! {
        svg xmlns="http://www.w3.org/2000/svg" class="timeline monitor-timeline"
            width=(n(WIDTH)) height=(n(HEIGHT)) viewBox=(format!("0 0 {} {}", n(WIDTH), n(HEIGHT)))
            role="img" aria-label=(format!("{title}: {summary}"))
            data-start=(start.to_rfc3339()) data-end=(end.to_rfc3339())
            font-family="ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace" font-size="11" {
            title { (title) ": " (summary) }
            (defs())
            rect width="100%" height="100%" fill="#ffffff" {}
            text class="heading" x="8" y="18" font-size="13" font-weight="bold" fill=(INK) { (title) }
            text class="outcome" x="8" y="36" font-size="12" fill=(INK) { (summary) }
            g class="row-names" fill=(MUTED) {
                text x="8" y=(n(WINDOWS_Y + 15.0)) { "windows" }
                text x="8" y=(n(EVENTS_Y + 4.0)) { "events" }
                text x="8" y=(n(ALARMS_Y + 4.0)) { "alarms" }
            }
            (session(day, &scale, &fmt))
            (window_bars(&day.windows, &scale, &fmt))
            (event_marks(day, &scale, &fmt))
            (alarm_marks(day, &scale, &fmt))
            (axis(&scale, &ticks, AXIS_Y, &zone.name))
            (legend())
        }
    };
    markup.into_string()
}

/// `2026-11-20 (24 h) · session 08:00–22:00 · 2 alarms · 5 events`.
pub fn summary_text(day: &MonitorDay, start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    let hours = (end - start).num_hours();
    let session = match day.session {
        Some((from, to)) => format!("session {}", human_duration((to - from).num_seconds())),
        None => "no session that day".to_owned(),
    };
    let count = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    if day.nothing_kept() {
        return format!(
            "{} ({hours} h) · {session} · nothing kept of it: whether an alarm fired is not known",
            day.date
        );
    }
    format!(
        "{} ({hours} h) · {session} · {} · {}",
        day.date,
        count(day.alarms.len(), "alarm", "alarms"),
        count(day.events.len(), "watched event", "watched events")
    )
}

fn session(day: &MonitorDay, scale: &Scale, fmt: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    let (start, end) = day.session.unzip();
    let now = day.now.filter(|now| *now > scale.start && *now < scale.end);
    let references: [Reference; 3] = [
        (start, "session start", "none", "session start"),
        (end, "session end", "none", "session end"),
        (now, "now", "1 3", "now"),
    ];
    let right = scale.right + 20.0;
    html! {
        @if let Some((from, to)) = day.session {
            g class="session" {
                title { "session " (fmt(from)) " to " (fmt(to)) " (" (human_duration((to - from).num_seconds())) ")" }
                rect x=(n(scale.x(from))) y=(n(WINDOWS_Y - 6.0)) width=(n(scale.x(to) - scale.x(from)))
                    height=(n(AXIS_Y - WINDOWS_Y + 6.0)) fill="#f2f2f2" {}
            }
        }
        (reference_marks(scale, fmt, &references, AXIS_Y, right, None))
    }
}

fn outcome_style(outcome: WindowOutcome) -> (&'static str, &'static str, &'static str) {
    // (fill, stroke dash, class)
    match outcome {
        WindowOutcome::Reset => (BLUE, "none", "reset"),
        WindowOutcome::Expired => ("url(#tl-fail)", "none", "expired"),
        WindowOutcome::SessionEnded => (SESSION_ENDED, "none", "session-ended"),
        WindowOutcome::Stopped => (SESSION_ENDED, "2 2", "stopped"),
        WindowOutcome::Open => ("url(#tl-open)", "4 2", "open"),
    }
}

fn window_bars(
    windows: &[WindowBar],
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
) -> Markup {
    html! {
        g class="windows" {
            @for bar in windows {
                @let (x1, x2) = (scale.x(bar.start), scale.x(bar.end));
                @let (fill, dash, class) = outcome_style(bar.outcome);
                @let label = format!("#{}", bar.number);
                g class=(format!("window-bar {class}")) data-outcome=(class) data-number=(bar.number) {
                    title {
                        "window " (bar.number) ": " (fmt(bar.start)) " to " (fmt(bar.end))
                        " (" (human_duration((bar.end - bar.start).num_seconds())) "), " (bar.outcome.describe())
                    }
                    rect x=(n(x1)) y=(n(WINDOWS_Y)) width=(n((x2 - x1).max(1.5))) height=(n(BAR_HEIGHT))
                        fill=(fill) stroke=(INK) stroke-width="0.75" stroke-dasharray=(dash) {}
                    (bar_label(x1, x2, WINDOWS_Y + 15.0, &label))
                }
            }
        }
    }
}

fn event_marks(day: &MonitorDay, scale: &Scale, fmt: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    let name = clean(&day.event_type);
    html! {
        g class="events" {
            @for at in &day.events {
                @let x = scale.x(*at);
                g class="event-mark" {
                    title { (name) " at " (fmt(*at)) }
                    path d=(format!("M{} {}l6 6l-6 6l-6 -6z", n(x), n(EVENTS_Y - 6.0))) fill=(INK) {}
                }
            }
            @if day.events.is_empty() {
                (empty_row(scale, EVENTS_Y, "none kept"))
            }
        }
    }
}

fn alarm_marks(day: &MonitorDay, scale: &Scale, fmt: &dyn Fn(DateTime<Utc>) -> String) -> Markup {
    let mut alarms: Vec<_> = day.alarms.iter().collect();
    alarms.sort_by_key(|alarm| (alarm.at, alarm.window_number));
    let labels: Vec<String> = alarms
        .iter()
        .map(|alarm| {
            let text = clean(&alarm.reference_id);
            if text.chars().count() > REFERENCE_CHARS {
                let mut cut: String = text.chars().take(REFERENCE_CHARS - 1).collect();
                cut.push('…');
                cut
            } else {
                text
            }
        })
        .collect();
    // Right-aligned to the alarm (most alarms fall late in the day's picture).
    let items: Vec<(f64, f64)> = alarms
        .iter()
        .zip(&labels)
        .map(|(alarm, label)| {
            let width = label_width(label);
            ((scale.x(alarm.at) - width + 4.0).max(scale.left), width)
        })
        .collect();
    let lanes = place_labels(&items, ALARM_LANES, scale.right + 20.0);
    html! {
        g class="alarms" {
            @for (((alarm, label), lane), (x_label, _)) in alarms.iter().zip(&labels).zip(&lanes).zip(&items) {
                @let x = scale.x(alarm.at);
                g class="alarm-mark" data-window=(alarm.window_number) {
                    title {
                        "alarm " (clean(&alarm.event_name)) " for window " (alarm.window_number)
                        ", reference " (clean(&alarm.reference_id)) ", decided " (fmt(alarm.at))
                        @match alarm.sent_at {
                            Some(sent) => { ", posted " (fmt(sent)) }
                            None => { ", not posted yet (retrying)" }
                        }
                    }
                    path d=(format!("M{} {}l-7 -12h14z", n(x), n(ALARMS_Y + 6.0)))
                        fill=(if alarm.sent_at.is_some() { FAIL } else { "#ffffff" }) stroke=(INK) {}
                    @if let Some(lane) = lane {
                        @let y = ALARMS_Y + 22.0 + 13.0 * *lane as f64;
                        text class="alarm-label" x=(n(*x_label)) y=(n(y)) fill=(INK) { (label) }
                    }
                }
            }
            @if alarms.is_empty() {
                (empty_row(scale, ALARMS_Y, "no alarm"))
            }
        }
    }
}

/// Swatches of how windows end (a swatch's text sets where the next starts) and the symbols
/// of the marks.
fn legend() -> Markup {
    let outcomes = [
        WindowOutcome::Reset,
        WindowOutcome::Expired,
        WindowOutcome::SessionEnded,
        WindowOutcome::Open,
    ];
    let mut x = 0.0;
    let swatches: Vec<Swatch> = outcomes
        .iter()
        .map(|outcome| {
            let (fill, dash, _) = outcome_style(*outcome);
            let label = format!("window {}", outcome.describe());
            let swatch_x = x;
            x += 27.0 + label_width(&label) + 20.0;
            Swatch {
                x: swatch_x,
                fill,
                stroke_width: 0.75,
                dash: Some(dash),
                label,
            }
        })
        .collect();
    let symbols = html! {
        g transform="translate(0 20)" {
            path d="M6 -9l6 6l-6 6l-6 -6z" fill=(INK) {}
            text x="17" y="1" fill=(INK) { "watched event" }
            path d="M138 2l-7 -12h14z" fill=(FAIL) stroke=(INK) {}
            text x="150" y="1" fill=(INK) { "alarm posted (hollow: not yet)" }
            rect x="420" y="-10" width="22" height="14" fill="#f2f2f2" stroke=(SKY) {}
            text x="447" y="1" fill=(INK) { "session" }
        }
    };
    style::legend(LEGEND_Y, &swatches, symbols)
}

/// For tests: the length of a local day.
#[cfg(test)]
pub fn day_length(date: NaiveDate, zone: &Zone) -> chrono::TimeDelta {
    let (start, end) = day_bounds(date, zone);
    end - start
}
