//! What both pictures share: colours and patterns that survive colour blindness and a
//! grey-scale print, label placement without overlaps, text that is safe to put in XML, and
//! the time axis drawn under the rows.
//!
//! Colours are the Okabe–Ito palette (distinguishable with every common colour-vision
//! deficiency); each state also has its own pattern and a text label, so nothing depends on
//! hue alone.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use super::axis::{Scale, Tick};
use status_check_engine::CheckResult;

/// Labels are set in a monospace font of this size, so their width is known without a font:
/// `chars × CHAR_WIDTH`.
pub const FONT_SIZE: f64 = 11.0;
pub const CHAR_WIDTH: f64 = FONT_SIZE * 0.62;
/// Free space kept between two labels of one lane.
pub const LABEL_GAP: f64 = 6.0;
/// The longest label drawn; the whole text is in the mark's `<title>`.
pub const MAX_LABEL_CHARS: usize = 32;

pub const PASS: &str = "#009E73";
pub const FAIL: &str = "#D55E00";
pub const UNKNOWN: &str = "#CC79A7";
pub const PENDING: &str = "#D9D9D9";
pub const BLUE: &str = "#0072B2";
pub const SKY: &str = "#56B4E9";
pub const INK: &str = "#1a1a1a";
pub const MUTED: &str = "#5f5f5f";

/// The fill of a result band: a colour and, for the ones that must not be confused in grey,
/// a pattern.
pub fn result_fill(result: CheckResult) -> &'static str {
    match result {
        CheckResult::Pass => "url(#tl-pass)",
        CheckResult::Fail => "url(#tl-fail)",
        CheckResult::Unknown => "url(#tl-unknown)",
        CheckResult::Pending => "url(#tl-pending)",
    }
}

/// The patterns every picture may use (ids `tl-…`).
pub fn defs() -> Markup {
    html! {
        defs {
            pattern id="tl-pass" width="8" height="8" patternUnits="userSpaceOnUse" {
                rect width="8" height="8" fill=(PASS) {}
            }
            pattern id="tl-fail" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(45)" {
                rect width="8" height="8" fill=(FAIL) {}
                rect width="3" height="8" fill="#ffffff" fill-opacity="0.55" {}
            }
            pattern id="tl-unknown" width="8" height="8" patternUnits="userSpaceOnUse" {
                rect width="8" height="8" fill=(UNKNOWN) {}
                circle cx="4" cy="4" r="1.8" fill="#ffffff" {}
            }
            pattern id="tl-pending" width="8" height="8" patternUnits="userSpaceOnUse" {
                rect width="8" height="8" fill=(PENDING) {}
                rect y="3.5" width="8" height="1" fill="#9a9a9a" {}
            }
            pattern id="tl-open" width="8" height="8" patternUnits="userSpaceOnUse" patternTransform="rotate(-45)" {
                rect width="8" height="8" fill="#ffffff" {}
                rect width="1.5" height="8" fill=(SKY) {}
            }
        }
    }
}

/// Text from outside made fit for XML 1.0: characters XML cannot carry at all (most control
/// characters, lone surrogates cannot occur in a `str`) become U+FFFD. The escaping of `<`,
/// `&` and quotes is the template engine's.
pub fn clean(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// A label no longer than [`MAX_LABEL_CHARS`] (ending in `…` when cut).
pub fn short(text: &str) -> String {
    let text = clean(text);
    if text.chars().count() <= MAX_LABEL_CHARS {
        text
    } else {
        let mut cut: String = text.chars().take(MAX_LABEL_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

/// The drawn width of a label.
pub fn label_width(label: &str) -> f64 {
    label.chars().count() as f64 * CHAR_WIDTH
}

/// Places labels, each starting at its anchor x, in up to `lanes` lanes so that no two in a
/// lane overlap; a label that fits in no lane is left out (its mark still carries its whole
/// text in a `<title>`). Items must come in x order; returns each item's lane, or `None`.
pub fn place_labels(items: &[(f64, f64)], lanes: usize, right_edge: f64) -> Vec<Option<usize>> {
    let mut ends = vec![f64::NEG_INFINITY; lanes];
    items
        .iter()
        .map(|&(x, width)| {
            if x + width > right_edge + 0.5 {
                return None;
            }
            let lane = ends.iter().position(|&end| x >= end + LABEL_GAP)?;
            ends[lane] = x + width;
            Some(lane)
        })
        .collect()
}

/// Formats a coordinate with at most two decimals, so the markup stays small.
pub fn n(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded == rounded.trunc() {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded}")
    }
}

/// The baseline of the first lane of reference labels, under the heading and the outcome line
/// every picture starts with.
pub const REF_LABEL_Y: f64 = 60.0;

/// A reference line: (its instant, `None` when not drawn; its label, also its `data-ref`; its
/// dash; what its tooltip calls it).
pub type Reference<'a> = (Option<DateTime<Utc>>, &'a str, &'a str, &'a str);

/// The reference lines, vertical across the rows down to the axis at `bottom`, in time order,
/// their labels above the rows in up to two lanes ending before `label_right` (a label that
/// fits in neither is left out; its mark keeps its tooltip). `stroke_width`: `None`, the
/// default.
pub fn reference_marks(
    scale: &Scale,
    fmt: &dyn Fn(DateTime<Utc>) -> String,
    references: &[Reference<'_>],
    bottom: f64,
    label_right: f64,
    stroke_width: Option<&str>,
) -> Markup {
    let mut lines: Vec<(DateTime<Utc>, &str, &str, &str)> = references
        .iter()
        .filter_map(|&(at, label, dash, name)| at.map(|at| (at, label, dash, name)))
        .collect();
    lines.sort_by_key(|line| line.0);
    let items: Vec<(f64, f64)> = lines
        .iter()
        .map(|(at, label, _, _)| (scale.x(*at) + 2.0, label_width(label)))
        .collect();
    let lanes = place_labels(&items, 2, label_right);
    html! {
        @for ((at, label, dash, name), lane) in lines.iter().zip(&lanes) {
            @let x = scale.x(*at);
            g class="ref-mark" data-ref=(label) {
                title { (name) " " (fmt(*at)) }
                line x1=(n(x)) x2=(n(x)) y1=(n(REF_LABEL_Y + 4.0)) y2=(n(bottom)) stroke=(INK)
                    stroke-width=[stroke_width] stroke-dasharray=(dash) {}
                @if let Some(lane) = lane {
                    text x=(n(x + 2.0)) y=(n(REF_LABEL_Y - 12.0 * *lane as f64)) fill=(INK) { (label) }
                }
            }
        }
    }
}

/// A bar's label, drawn inside it from `x1` when it fits before `x2`, haloed in white so it
/// reads over any fill.
pub fn bar_label(x1: f64, x2: f64, baseline: f64, label: &str) -> Markup {
    html! {
        @if x2 - x1 >= label_width(label) + 6.0 {
            text x=(n(x1 + 3.0)) y=(n(baseline)) fill=(INK) font-weight="bold"
                paint-order="stroke" stroke="#ffffff" stroke-width="3" { (label) }
        }
    }
}

/// What a row says in place of its marks when it has none.
pub fn empty_row(scale: &Scale, y: f64, note: &str) -> Markup {
    html! {
        text x=(n(scale.left)) y=(n(y + 4.0)) fill=(MUTED) { (note) }
    }
}

/// One entry of a legend's first line: a swatch of a fill and what it stands for.
pub struct Swatch {
    pub x: f64,
    pub fill: &'static str,
    pub stroke_width: f64,
    pub dash: Option<&'static str>,
    pub label: String,
}

/// The legend under a picture at `y`: a line of swatches, then the picture's own symbols.
pub fn legend(y: f64, swatches: &[Swatch], symbols: Markup) -> Markup {
    html! {
        g class="legend" transform=(format!("translate(8 {})", n(y))) {
            @for swatch in swatches {
                rect x=(n(swatch.x)) y="-10" width="22" height="14" fill=(swatch.fill) stroke=(INK)
                    stroke-width=(n(swatch.stroke_width)) stroke-dasharray=[swatch.dash] {}
                text x=(n(swatch.x + 27.0)) y="1" fill=(INK) { (swatch.label) }
            }
            (symbols)
        }
    }
}

/// The axis along `y`: a base line, ticks with their labels (thinned like every label) and,
/// where the day changes, the date under the time; then the zone's name.
pub fn axis(scale: &Scale, ticks: &[Tick], y: f64, zone_caption: &str) -> Markup {
    let items: Vec<(f64, f64)> = ticks
        .iter()
        .map(|tick| {
            let width = label_width(&tick.label);
            (scale.x(tick.at) - width / 2.0, width)
        })
        .collect();
    let lanes = place_labels(&items, 1, scale.right + 40.0);
    html! {
        g class="axis" {
            line x1=(n(scale.left)) x2=(n(scale.right)) y1=(n(y)) y2=(n(y)) stroke=(INK) stroke-width="1" {}
            @for (tick, lane) in ticks.iter().zip(&lanes) {
                @let x = scale.x(tick.at);
                line x1=(n(x)) x2=(n(x)) y1=(n(y)) y2=(n(y + 5.0)) stroke=(INK) {}
                @if lane.is_some() {
                    text class="tick" x=(n(x)) y=(n(y + 17.0)) text-anchor="middle" { (tick.label) }
                    @if let Some(date) = &tick.date {
                        @let x = x.min(scale.right + 20.0 - label_width(date) / 2.0);
                        text class="tick-date" x=(n(x)) y=(n(y + 30.0)) text-anchor="middle" fill=(MUTED) {
                            (date)
                        }
                    }
                }
            }
            text class="zone" x=(n(scale.right)) y=(n(y + 44.0)) text-anchor="end" fill=(MUTED) {
                "times in " (zone_caption)
            }
        }
    }
}
