//! The HTML of the support pages: server-rendered, no script, no asset from outside (the
//! style sheet is inline, the pictures are inline SVG), readable at a phone's width (tables
//! and pictures scroll inside their box). `maud` escapes everything spliced in.

use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::checks::CheckSummary;
use crate::checks::view::CheckDto;
use crate::monitors::StoredMonitor;
use crate::support::{CheckView, MONITOR_HISTORY_NOTE};
use crate::timeline::axis::human_duration;
use crate::timeline::{MonitorDay, PastWindow, Zone, check_svg, monitor_svg};

const STYLE: &str = "
:root{color-scheme:light;font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1a1a1a;background:#fff}
body{margin:0 auto;max-width:1000px;padding:0 12px 40px}
header{border-bottom:1px solid #ccc;margin-bottom:12px;padding:8px 0}
header a{margin-right:12px}
h1{font-size:1.3rem;margin:12px 0 4px}h2{font-size:1.1rem;margin:20px 0 6px}
a{color:#0057a0}
.outcome{font-size:1.05rem;font-weight:600;margin:4px 0 10px}
.picture,.table{overflow-x:auto;-webkit-overflow-scrolling:touch;border:1px solid #ddd;margin:8px 0}
.picture svg{display:block}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e4e4;vertical-align:top}
th{background:#f4f4f4;white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
form.filters{display:flex;flex-wrap:wrap;gap:8px;align-items:end;margin:8px 0}
form.filters label{display:flex;flex-direction:column;font-size:.85rem}
form.filters input,form.filters select{font:inherit;padding:4px;max-width:11rem}
.note{color:#555;font-size:.9rem}
.pager{display:flex;gap:16px;margin:8px 0}
.PASS{color:#006b4f;font-weight:600}.FAIL{color:#a33b00;font-weight:600}.UNKNOWN{color:#8a3f6e;font-weight:600}
";

/// The frame of every page.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // No icon to fetch: the browser would ask for /favicon.ico otherwise.
                link rel="icon" href="data:,";
                title { (title) " · status-check" }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/internal/ui/" { "Checks and monitors" }
                }
                main { (body) }
            }
        }
    }
}

/// A table in its scrolling box: the head, a row an item, or one row saying there is none.
fn table(
    id: Option<&str>,
    head: &[&str],
    rows: impl IntoIterator<Item = Markup>,
    none: &str,
) -> Markup {
    let rows: Vec<Markup> = rows.into_iter().collect();
    html! {
        div.table {
            table id=[id] {
                thead { tr { @for name in head { th { (name) } } } }
                tbody {
                    @for row in &rows { (row) }
                    @if rows.is_empty() { tr { td colspan=(head.len()) { (none) } } }
                }
            }
        }
    }
}

fn result_class(result: &str) -> &str {
    match result {
        "PASS" | "FAIL" | "UNKNOWN" => result,
        _ => "",
    }
}

/// Query values of the list page, as the form shows them back.
#[derive(Debug, Clone, Default)]
pub struct ListForm {
    pub robot: String,
    pub template: String,
    pub result: String,
    pub from: String,
    pub to: String,
    pub tz: String,
    pub limit: String,
}

impl ListForm {
    /// The list's address with these filters and `before` (the next page).
    pub fn href(&self, before: Option<i64>) -> String {
        let mut query = url_query(&[
            ("robot", &self.robot),
            ("template", &self.template),
            ("result", &self.result),
            ("from", &self.from),
            ("to", &self.to),
            ("tz", &self.tz),
            ("limit", &self.limit),
        ]);
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        format!("/internal/ui/?{}", query.join("&"))
    }
}

fn url_query(pairs: &[(&str, &String)]) -> Vec<String> {
    pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", percent_encode(value)))
        .collect()
}

/// Percent-encodes a query value (every byte but unreserved ones).
pub fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/internal/ui/`: recent checks by filter, and the monitors.
pub fn list_page(
    form: &ListForm,
    zone: &Zone,
    checks: &[CheckSummary],
    next_before: Option<i64>,
    page_size: usize,
    monitors: &[(StoredMonitor, String)],
) -> Markup {
    let tz_query = if form.tz.is_empty() {
        String::new()
    } else {
        format!("?tz={}", percent_encode(&form.tz))
    };
    layout(
        "Checks and monitors",
        html! {
            h1 { "Status checks" }
            form.filters method="get" action="/internal/ui/" {
                label { "Robot" input type="text" name="robot" inputmode="numeric" value=(form.robot) placeholder="42"; }
                label { "Template" input type="text" name="template" value=(form.template) placeholder="robot-is-charging"; }
                label { "Result"
                    select name="result" {
                        @for option in ["", "PENDING", "PASS", "FAIL", "UNKNOWN"] {
                            option value=(option) selected[form.result == option] {
                                @if option.is_empty() { "any" } @else { (option) }
                            }
                        }
                    }
                }
                label { "Created from" input type="date" name="from" value=(form.from); }
                label { "to (inclusive)" input type="date" name="to" value=(form.to); }
                label { "Timezone" input type="text" name="tz" value=(form.tz) placeholder="UTC"; }
                button type="submit" { "Show" }
            }
            p.note { "Newest first, " (page_size) " a page. Times in " (zone.name) "." }
            (table(None, &["Check", "Robot", "Template", "Phase", "Result", "Next step", "Planned at", "Created"], checks.iter().map(|check| html! {
                tr {
                    td.num { a href=(format!("/internal/ui/checks/{}{tz_query}", check.id)) { (check.id) } }
                    td.num { (check.robot_id) }
                    td { (check.template_name) " v" (check.template_version) }
                    td { (check.phase) }
                    td class=(result_class(&check.result)) { (check.result) }
                    td.num { @if let Some(step) = check.next_step_id { (step) } @else { "—" } }
                    td { (zone.format(check.planned_at)) }
                    td { @if let Some(at) = check.created_at { (zone.format(at)) } @else { "—" } }
                }
            }), "No check matches."))
            div.pager {
                @if let Some(before) = next_before {
                    a href=(form.href(Some(before))) rel="next" { "Older checks →" }
                }
            }
            h2 { "Monitors" }
            (table(None, &["Robot", "Rule", "Watches", "Window", "Timezone", "Open window", "Alarms today"], monitors.iter().map(|(stored, today)| {
                let monitor = &stored.monitor;
                html! {
                    tr {
                        td.num { (monitor.robot_id()) }
                        td { a href=(format!("/internal/ui/monitors/{}/{}?date={today}", monitor.robot_id(), monitor.rule_id().as_str())) { (monitor.rule_id().as_str()) } }
                        td { (monitor.event_type()) }
                        td { (monitor.window().to_string()) }
                        td { (monitor.timezone().name()) }
                        td {
                            @match stored.state.window {
                                Some(window) => { "#" (window.window_number) " until " (Zone::named(monitor.timezone().name()).unwrap_or_else(|_| Zone::utc()).format(window.window_end)) }
                                None => {
                                    @if !monitor.enabled() { "disabled" }
                                    @else if let Some(problem) = &stored.state.problem { "no session open: " (problem) }
                                    @else { "no session open" }
                                }
                            }
                        }
                        td.num { @match stored.state.window { Some(window) => { (window.alarms_sent()) } None => { "—" } } }
                    }
                }
            }), "No monitor."))
        },
    )
}

/// `/internal/ui/checks/{id}`: the timeline and, under it, the same facts as tables.
pub fn check_page(view: &CheckView, zone: &Zone, now: DateTime<Utc>) -> Markup {
    let timeline = crate::support::check_timeline(view, now);
    let dto = CheckDto::from(&view.check);
    let outcome = crate::timeline::check_outcome_text(&timeline);
    let past = match timeline.past {
        PastWindow::None => "none".to_owned(),
        PastWindow::Unbounded => format!("unbounded, up to {}", zone.format(timeline.created_at)),
        PastWindow::Since(since) => format!(
            "{} to {} ({})",
            zone.format(since),
            zone.format(timeline.created_at),
            human_duration((timeline.created_at - since).num_seconds())
        ),
    };
    let future = match timeline.deadline {
        None => "none".to_owned(),
        Some(deadline) => format!(
            "{} to {} ({})",
            zone.format(timeline.created_at),
            zone.format(deadline),
            human_duration((deadline - timeline.created_at).num_seconds())
        ),
    };
    let facts: Vec<(&str, String)> = vec![
        ("Robot", dto.robot_id.to_string()),
        (
            "Template",
            format!("{} v{}", dto.status_check, dto.template_version),
        ),
        (
            "Step / scheduled / script version",
            format!(
                "{} / {} / {}",
                dto.step_id, dto.scheduled_id, dto.script_version_id
            ),
        ),
        ("Planned at", zone.format(view.check.key.planned_at)),
        ("Created (anchor)", zone.format(timeline.created_at)),
        ("Past window", past),
        ("Future window (deadline)", future),
        ("pollUntilEnd", timeline.poll_until_end.to_string()),
        ("Phase", dto.phase.clone()),
        ("Result", dto.result.clone()),
        (
            "Next step",
            dto.next_step_id
                .map_or_else(|| "—".to_owned(), |id| id.to_string()),
        ),
        (
            "Subscription",
            dto.subscription_id
                .map_or_else(|| "—".to_owned(), |id| id.to_string()),
        ),
        ("Last change", zone.format(view.check.updated_at)),
    ];
    let title = format!("Check {}", dto.id);
    layout(
        &title,
        html! {
            h1 { (title) " · robot " (dto.robot_id) " · " (dto.status_check) " v" (dto.template_version) }
            p.outcome #outcome { (outcome) }
            (zone_form(&format!("/internal/ui/checks/{}", dto.id), zone))
            div.picture { (PreEscaped(check_svg(&timeline, zone))) }
            h2 { "Facts" }
            div.table { table #facts { tbody { @for (name, value) in &facts { tr { th scope="row" { (name) } td { (value) } } } } } }
            h2 { "Records (" (timeline.records.len()) ")" }
            (table(Some("records"), &["#", "Phase", "Event", "Incoming id", "Event time", "Recorded", "Result after it"], timeline.records.iter().map(|record| html! {
                tr {
                    td.num { (record.order) }
                    td { (record.phase.as_str()) }
                    td.mono { (record.event_name) }
                    td.num { @if let Some(id) = record.incoming_event_id { (id) } @else { "—" } }
                    td { @match record.event_at { Some(at) => { (zone.format(at)) } None => { "not stored" } } }
                    td { (zone.format(record.recorded_at)) }
                    td class=(result_class(&record.result.to_string())) { (record.result.to_string()) }
                }
            }), "No record."))
            h2 { "Notifications to the robot (" (view.notifications.len()) ")" }
            (table(Some("notifications"), &["Seq", "Phase", "Result", "Next step", "Decided", "Sent"], timeline.notifications.iter().map(|n| html! {
                tr {
                    td.num { (n.seq) }
                    td { (n.phase) }
                    td class=(result_class(&n.result)) { (n.result) }
                    td.num { @if let Some(step) = n.next_step_id { (step) } @else { "—" } }
                    td { (zone.format(n.created_at)) }
                    td { @match (n.sent_at, &n.given_up) { (Some(at), _) => { (zone.format(at)) } (None, Some(why)) => { (why) } (None, None) => { "not yet" } } }
                }
            }), "None kept (sent notifications are purged after the retention)."))
        },
    )
}

fn zone_form(action: &str, zone: &Zone) -> Markup {
    html! {
        form.filters method="get" action=(action) {
            label { "Timezone" input type="text" name="tz" value=(zone.name) placeholder="Europe/Amsterdam"; }
            button type="submit" { "Show" }
        }
    }
}

/// What the alarms table says of a day whose session should have run and of which nothing is
/// kept: not "no alarm", which nobody can know.
const NOTHING_KEPT: &str = "Nothing kept for this day, so whether an alarm fired is not known: \
     a day before the monitor existed or older than the retention (OUTBOX_RETENTION_SECS), a \
     disabled monitor, or a session that could not open (see Problem above).";

/// `/internal/ui/monitors/{robotId}/{ruleId}?date=`: the day's picture and tables.
pub fn monitor_page(stored: &StoredMonitor, day: &MonitorDay, zone: &Zone) -> Markup {
    let monitor = &stored.monitor;
    let base = format!(
        "/internal/ui/monitors/{}/{}",
        monitor.robot_id(),
        monitor.rule_id().as_str()
    );
    let (start, end) = crate::timeline::day_bounds(day.date, zone);
    let summary = crate::timeline::monitor_summary_text(day, start, end);
    let title = format!(
        "Monitor {} · robot {}",
        monitor.rule_id().as_str(),
        monitor.robot_id()
    );
    layout(
        &title,
        html! {
            h1 { (title) " · watches " (monitor.event_type()) }
            p.outcome #outcome { (summary) }
            nav.pager {
                @if let Some(previous) = day.date.pred_opt() { a href=(format!("{base}?date={previous}")) { "← " (previous) } }
                @if let Some(next) = day.date.succ_opt() { a href=(format!("{base}?date={next}")) { (next) " →" } }
            }
            div.picture { (PreEscaped(monitor_svg(day, zone))) }
            p.note { (MONITOR_HISTORY_NOTE) }
            h2 { "Facts" }
            div.table { table #facts { tbody {
                tr { th scope="row" { "Watches" } td.mono { (monitor.event_type()) } }
                tr { th scope="row" { "Window" } td { (monitor.window().to_string()) } }
                tr { th scope="row" { "Timezone" } td { (zone.name) } }
                tr { th scope="row" { "Session" } td { @match day.session { Some((from, to)) => { (zone.format(from)) " to " (zone.format(to)) } None => { "none that day" } } } }
                tr { th scope="row" { "Enabled" } td { (monitor.enabled()) } }
                @if let Some(problem) = &stored.state.problem {
                    tr { th scope="row" { "Problem" } td.problem { (problem) } }
                }
                tr { th scope="row" { "Actions" } td.mono {
                    @for action in monitor.definition().actions.unwrap_or_default() {
                        (action.kind.unwrap_or_default()) " " (action.event_name.unwrap_or_default())
                        @if let Some(level) = action.level { " (level " (level) ")" }
                        br;
                    }
                } }
            } } }
            h2 { "Windows (" (day.windows.len()) ")" }
            (table(Some("windows"), &["#", "From", "To", "Length", "How it ended"], day.windows.iter().map(|bar| html! {
                tr {
                    td.num { (bar.number) }
                    td { (zone.format(bar.start)) }
                    td { (zone.format(bar.end)) }
                    td { (human_duration((bar.end - bar.start).num_seconds())) }
                    td { (bar.outcome.describe()) }
                }
            }), "None kept for this day."))
            h2 { "Alarms (" (day.alarms.len()) ")" }
            (table(Some("alarms"), &["Window", "Reference", "Event", "Decided", "Posted"], day.alarms.iter().map(|alarm| html! {
                tr {
                    td.num { (alarm.window_number) }
                    td.mono { (alarm.reference_id) }
                    td.mono { (alarm.event_name) }
                    td { (zone.format(alarm.at)) }
                    td { @match alarm.sent_at { Some(at) => { (zone.format(at)) } None => { "not yet (retrying)" } } }
                }
            }), if day.nothing_kept() { NOTHING_KEPT } else { "No alarm that day." }))
        },
    )
}
