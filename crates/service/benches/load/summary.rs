//! The run's results: the human-readable summary table and the machine-readable summary
//! (`LOAD_SUMMARY_JSON=FILE`), one JSON object whose keys are the scenarios that ran.

use std::path::Path;

use anyhow::{Context as _, ensure};
use serde_json::{Map, Value, json};

use super::*;

/// The machine-readable summary. Keys SPEC §10's figures are read from (numbers): `create_64`
/// {per_s, p50_ms, p99_ms}, `deliveries` {per_s, limit_per_s}, `deadlines_burst` {per_s,
/// p99_late_ms, max_late_ms, peak_rss_mb}, `startup_ms`; each object may hold more keys.
#[derive(Debug, Default)]
pub(super) struct Summary {
    entries: Map<String, Value>,
}

impl Summary {
    /// Sets `key` (a scenario's figures): call once a scenario has verified what it measured.
    pub(super) fn set(&mut self, key: &str, value: Value) {
        self.entries.insert(key.to_owned(), value);
    }

    pub(super) fn keys(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// The JSON written: the scenarios' entries and `run` (how the figures were made).
    fn document(&self, full: bool) -> Value {
        let mut document = self.entries.clone();
        document.insert(
            "run".to_owned(),
            json!({
                "full": full,
                "release": !cfg!(debug_assertions),
                "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
                "load_average": load_average(),
            }),
        );
        Value::Object(document)
    }

    /// Writes the summary to `path` (pretty-printed, newline-terminated).
    pub(super) fn write(&self, path: &Path, full: bool) -> anyhow::Result<()> {
        let mut text = serde_json::to_string_pretty(&self.document(full))?;
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The 1-minute load average, or -1 where `/proc/loadavg` cannot be read.
pub(super) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(-1.0)
}

/// The fields each well-known key must carry, as numbers.
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "create_64",
        &["per_s", "p50_ms", "p99_ms", "floor_per_s", "floor_p99_ms"],
    ),
    ("deliveries", &["per_s", "limit_per_s"]),
    (
        "deadlines_burst",
        &[
            "per_s",
            "p99_late_ms",
            "max_late_ms",
            "peak_rss_mb",
            "off_p99_late_ms",
            "off_max_late_ms",
        ],
    ),
    (
        "deadlines_peak",
        &[
            "p99_late_ms",
            "max_late_ms",
            "off_p99_late_ms",
            "off_max_late_ms",
        ],
    ),
];

/// Reads a written summary back and checks it: JSON, exactly `expected` scenario keys (plus
/// `run`), every well-known key with its fields as numbers, `startup_ms` a number.
pub(super) fn verify_written(path: &Path, expected: &[String]) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let value: Value = serde_json::from_str(&text).context("the summary is not JSON")?;
    let object = value
        .as_object()
        .context("the summary is not a JSON object")?;
    let mut keys: Vec<&String> = object.keys().filter(|k| *k != "run").collect();
    keys.sort();
    let mut wanted: Vec<&String> = expected.iter().collect();
    wanted.sort();
    ensure!(
        keys == wanted,
        "the summary holds {keys:?}, expected {wanted:?}"
    );
    for (key, fields) in REQUIRED {
        let Some(entry) = object.get(*key) else {
            continue;
        };
        for field in *fields {
            ensure!(
                entry.get(*field).is_some_and(Value::is_number),
                "{key}.{field} is not a number in {entry}"
            );
        }
    }
    if let Some(startup) = object.get("startup_ms") {
        ensure!(startup.is_number(), "startup_ms is not a number: {startup}");
    }
    Ok(())
}

/// A finite figure as JSON (NaN and infinities, which JSON has not, become null).
pub(super) fn num(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

pub(super) fn print_summary(rows: &[Row], full: bool) {
    println!("\nSummary (SPEC §10; limits and ratios measured in this run):");
    let header = ["scenario", "figure", "target", "limit", "ratio", "met?"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|row| {
            let met = match row.met {
                Some(true) => "yes",
                Some(false) => "NO",
                None => "-",
            };
            [
                row.scenario.to_owned(),
                row.figure.clone(),
                row.target.clone(),
                row.limit.clone(),
                row.ratio.clone(),
                met.to_owned(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &cells {
        for (width, cell) in widths.iter_mut().zip(line) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let print = |line: &[String]| {
        let padded: Vec<String> = line
            .iter()
            .zip(widths)
            .map(|(cell, width)| {
                let pad = width.saturating_sub(cell.chars().count());
                format!("{cell}{}", " ".repeat(pad))
            })
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    print(&header.map(str::to_owned));
    for line in &cells {
        print(line);
    }
    if !full {
        println!(
            "(smoke run: tiny sizes, and a debug build under `cargo test`: the figures are not results)"
        );
    }
}
