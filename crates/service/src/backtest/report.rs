//! The backtest's report (SPEC §14): counts, the stored → candidate matrix, the changed and
//! the not comparable checks; as text for people or as one JSON object (docs/templates.md).

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::compare::{MatrixResult, Outcome, PartsAt, Verdict};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub examined: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub not_comparable: u64,
}

/// Which check a verdict is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Examined {
    pub check_id: i64,
    pub robot_id: i64,
    /// The template version the check ran with.
    pub stored_version: i64,
}

/// A changed check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    #[serde(flatten)]
    pub check: Examined,
    pub stored: Outcome,
    pub candidate: Outcome,
    pub parts_at: PartsAt,
    /// Judged with events read from Megazord's incomings (`--megazord`).
    pub from_megazord: bool,
}

/// A check that could not be judged from its records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotComparable {
    #[serde(flatten)]
    pub check: Examined,
    /// The event names the candidate depends on that the check never recorded.
    pub missing: Vec<String>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    pub name: String,
    pub version: u32,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Period {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
}

/// What `--megazord` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MegazordUse {
    pub url: String,
    /// Checks judged with events read from Megazord.
    pub checks: u64,
    /// Incomings requests made.
    pub requests: u64,
    /// Checks whose events Megazord could not supply: judged from their records alone.
    pub unread: u64,
    /// Why the last of those could not be read.
    pub last_error: Option<String>,
}

/// `check 12 robot 3 (v1)`, as the text report lists a check.
impl std::fmt::Display for Examined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "check {} robot {} (v{})",
            self.check_id, self.robot_id, self.stored_version
        )
    }
}

/// The whole report; `--json` prints it as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub template: TemplateInfo,
    pub period: Period,
    /// The robots asked for (`--robot`); empty: every robot.
    pub robots: Vec<i64>,
    /// The stored versions of the template the database holds, highest first.
    pub stored_versions: Vec<i64>,
    pub summary: Summary,
    /// Stored result → candidate result → how many checks (comparable ones only).
    pub matrix: BTreeMap<MatrixResult, BTreeMap<MatrixResult, u64>>,
    pub changes: Vec<Change>,
    pub not_comparable: Vec<NotComparable>,
    pub megazord: Option<MegazordUse>,
    /// Whether `--limit` stopped the read before the period's end.
    pub limited: bool,
    /// Where the changed checks' timelines were written (`--svg-dir`):
    /// `check-{id}-stored.svg` and `check-{id}-candidate.svg`.
    pub svg_dir: Option<String>,
    /// The database was never migrated by this service (the Node service's, before the
    /// cut-over): every check was read as the Node service wrote it.
    pub never_migrated: bool,
}

impl Report {
    pub fn new(template: TemplateInfo, period: Period, robots: Vec<i64>) -> Report {
        let mut matrix = BTreeMap::new();
        for stored in [
            MatrixResult::Pass,
            MatrixResult::Fail,
            MatrixResult::Unknown,
        ] {
            matrix.insert(
                stored,
                MatrixResult::COLUMNS.iter().map(|c| (*c, 0)).collect(),
            );
        }
        Report {
            template,
            period,
            robots,
            stored_versions: Vec::new(),
            summary: Summary::default(),
            matrix,
            changes: Vec::new(),
            not_comparable: Vec::new(),
            megazord: None,
            limited: false,
            svg_dir: None,
            never_migrated: false,
        }
    }

    /// Counts one check's verdict.
    pub fn add(&mut self, check: Examined, verdict: Verdict, from_megazord: bool) {
        self.summary.examined += 1;
        let mut count = |stored: &Outcome, candidate: &Outcome| {
            *self
                .matrix
                .entry(stored.result)
                .or_default()
                .entry(candidate.result)
                .or_default() += 1;
        };
        match verdict {
            Verdict::Unchanged { stored } => {
                count(&stored, &stored);
                self.summary.unchanged += 1;
            }
            Verdict::Changed {
                stored,
                candidate,
                parts_at,
            } => {
                count(&stored, &candidate);
                self.summary.changed += 1;
                self.changes.push(Change {
                    check,
                    stored,
                    candidate,
                    parts_at,
                    from_megazord,
                });
            }
            Verdict::NotComparable { missing, reason } => {
                self.summary.not_comparable += 1;
                self.not_comparable.push(NotComparable {
                    check,
                    missing,
                    reason,
                });
            }
        }
    }

    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self)?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl Write) -> std::io::Result<()> {
        let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        let robots = match self.robots.as_slice() {
            [] => "every robot".to_owned(),
            robots => format!(
                "robot {}",
                robots
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        writeln!(
            out,
            "Backtest of {} v{} ({})",
            self.template.name, self.template.version, self.template.file
        )?;
        writeln!(
            out,
            "ended checks created {} .. {}, {robots}{}",
            time(self.period.since),
            time(self.period.until),
            if self.limited {
                " (stopped at --limit)"
            } else {
                ""
            }
        )?;
        if self.never_migrated {
            writeln!(
                out,
                "the database was never migrated by this service: every check is read as the \
                 Node service wrote it"
            )?;
        }
        if self.stored_versions.is_empty() {
            writeln!(
                out,
                "the database holds no version of {}: nothing to compare",
                self.template.name
            )?;
        } else if self.summary.examined == 0 && !self.limited {
            writeln!(
                out,
                "no ended check of {} was created in the period",
                self.template.name
            )?;
        }
        if let Some(megazord) = &self.megazord {
            writeln!(
                out,
                "--megazord {}: {} checks judged with events read from Megazord ({} requests)",
                megazord.url, megazord.checks, megazord.requests
            )?;
            if let Some(error) = &megazord.last_error {
                writeln!(
                    out,
                    "--megazord: {} checks judged from their records alone, their events \
                     unread (last error: {error})",
                    megazord.unread
                )?;
            }
        }
        writeln!(out)?;
        let s = &self.summary;
        writeln!(out, "examined        {:>8}", s.examined)?;
        writeln!(out, "unchanged       {:>8}", s.unchanged)?;
        writeln!(out, "changed         {:>8}", s.changed)?;
        writeln!(out, "not comparable  {:>8}", s.not_comparable)?;
        writeln!(out)?;
        write!(out, "{:<20}", "stored → candidate")?;
        for column in MatrixResult::COLUMNS {
            write!(out, "{:>10}", column.as_str())?;
        }
        writeln!(out)?;
        for (stored, row) in &self.matrix {
            write!(out, "{:<20}", stored.as_str())?;
            for column in MatrixResult::COLUMNS {
                write!(out, "{:>10}", row.get(&column).copied().unwrap_or(0))?;
            }
            writeln!(out)?;
        }
        if !self.changes.is_empty() {
            writeln!(out)?;
            match &self.svg_dir {
                Some(dir) => writeln!(
                    out,
                    "changed checks (timelines in {dir}/check-ID-stored.svg and -candidate.svg):"
                )?,
                None => writeln!(out, "changed checks:")?,
            }
            for change in &self.changes {
                writeln!(
                    out,
                    "  {}: {}  ⇒  {}{}",
                    change.check,
                    change.stored,
                    change.candidate,
                    if change.from_megazord {
                        " (with events from Megazord)"
                    } else {
                        ""
                    }
                )?;
                writeln!(out, "      parts at {}", change.parts_at)?;
            }
        }
        if !self.not_comparable.is_empty() {
            writeln!(out)?;
            writeln!(out, "not comparable:")?;
            for check in &self.not_comparable {
                writeln!(out, "  {}: {}", check.check, check.reason)?;
            }
            if self.megazord.is_none() {
                writeln!(
                    out,
                    "  (--megazord URL reads the missing events from Megazord's incomings)"
                )?;
            }
        }
        Ok(())
    }
}
