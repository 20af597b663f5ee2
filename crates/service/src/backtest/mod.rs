//! `status-check templates backtest` (SPEC §14): had this template version been live, which
//! checks would have ended differently? Answered from the ended checks the database holds,
//! read-only, page by page, each replayed through the candidate by the engine's lifecycle.
//!
//! - `compare`: one check, replayed and compared (pure).
//! - `report`: the counts, the matrix, the changed checks; text or JSON.
//! - here: the read (keyset pages of [`PAGE_SIZE`] checks), Megazord for what the records
//!   lack (`--megazord`, [`MEGAZORD_CONCURRENCY`] calls at a time), the progress bar.

pub mod compare;
pub mod period;
pub mod report;
pub mod svg;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use futures_util::StreamExt as _;
use status_check_engine::{Event, Limits, Template};

use crate::store::{EndedChecksPage, ReadOnlyStore, StoredCheck};
use crate::template_files::load_file;
use crate::upstream::megazord::HttpMegazord;
use crate::upstream::{Megazord, UpstreamConfig};
use compare::{Compared, Needs, StoredVersion, compare};
use report::{Examined, MegazordUse, Period, Report, TemplateInfo};

/// Checks read per page (one read transaction each).
pub const PAGE_SIZE: usize = 500;

/// Megazord calls in flight at once.
pub const MEGAZORD_CONCURRENCY: usize = 8;

/// What to backtest.
#[derive(Debug, Clone)]
pub struct Options {
    pub file: PathBuf,
    /// `sqlite:…`, a file path, or `mysql://…`.
    pub database: String,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub robots: Vec<i64>,
    /// Examine at most this many checks.
    pub limit: Option<u64>,
    /// Megazord's base URL, to read the events the records lack.
    pub megazord: Option<String>,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Write each changed check's timelines (stored and candidate) as SVG here.
    pub svg_dir: Option<PathBuf>,
    /// The history cap and rule cost budget the service ran with (`HISTORY_CAP`,
    /// `RULE_COST_BUDGET`): a replay under other limits could end a check otherwise.
    pub limits: Limits,
}

/// Something that watches the backtest go (the progress bar).
pub trait Progress {
    /// The number of checks to examine, once known.
    fn total(&self, total: u64);
    fn advance(&self, checks: u64);
    fn finish(&self);
}

/// No progress shown.
pub struct Quiet;

impl Progress for Quiet {
    fn total(&self, _: u64) {}
    fn advance(&self, _: u64) {}
    fn finish(&self) {}
}

/// A progress bar on stderr: count, rate and time left.
pub struct Bar(indicatif::ProgressBar);

impl Bar {
    pub fn new() -> Bar {
        let bar =
            indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} checks  {per_sec}  {eta} left",
            )
            .expect("a valid progress template"),
        );
        Bar(bar)
    }
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Progress for Bar {
    fn total(&self, total: u64) {
        self.0.set_length(total);
    }
    fn advance(&self, checks: u64) {
        self.0.inc(checks);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// Loads the candidate, or says what is wrong with it.
pub fn load_candidate(file: &std::path::Path, limits: &Limits) -> anyhow::Result<Template> {
    load_file(file, limits).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "{} is not a valid template:\n{}",
            file.display(),
            lines.join("\n")
        )
    })
}

/// Runs the backtest. Errors only when it cannot run: an invalid template file, a
/// database that cannot be opened or read, a Megazord client that cannot be built.
pub async fn run(options: &Options, progress: &dyn Progress) -> anyhow::Result<Report> {
    let limits = options.limits;
    let candidate = load_candidate(&options.file, &limits)?;
    if options.since >= options.until {
        anyhow::bail!(
            "the period is empty: --since {} is not before --until {}",
            options.since,
            options.until
        );
    }
    let database = ReadOnlyStore::describe(&options.database);
    let db = ReadOnlyStore::open(&options.database)
        .await
        .with_context(|| format!("cannot open the database ({database})"))?;
    let versions = db
        .template_versions(candidate.name.as_str())
        .await
        .with_context(|| format!("cannot read the template versions from the {database}"))?;
    let mut report = Report::new(
        TemplateInfo {
            name: candidate.name.to_string(),
            version: candidate.version,
            file: options.file.display().to_string(),
        },
        Period {
            since: options.since,
            until: options.until,
        },
        options.robots.clone(),
    );
    report.stored_versions = versions.iter().map(|v| v.version).collect();
    report.never_migrated = db.production_only();
    let stored: HashMap<i64, (i64, Result<StoredVersion, String>)> = versions
        .iter()
        .map(|v| {
            let deps = v
                .definition
                .as_ref()
                .map(StoredVersion::of)
                .map_err(|problem| format!("version {}: {problem}", v.version));
            (v.id, (v.version, deps))
        })
        .collect();
    let template_ids: Vec<i64> = versions.iter().map(|v| v.id).collect();
    let megazord = match &options.megazord {
        Some(url) => {
            report.megazord = Some(MegazordUse {
                url: url.clone(),
                ..MegazordUse::default()
            });
            Some(Arc::new(
                HttpMegazord::new(&UpstreamConfig::new(url.clone()))
                    .context("cannot build the Megazord client")?,
            ))
        }
        None => None,
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    if let Some(dir) = &options.svg_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the folder {}", dir.display()))?;
        report.svg_dir = Some(dir.display().to_string());
    }
    let context = Context {
        stored: &stored,
        candidate: &candidate,
        limits,
        megazord: megazord.as_deref(),
        run_id: &run_id,
        svg_dir: options.svg_dir.as_deref(),
    };

    let page_of = |after: i64, limit: usize| EndedChecksPage {
        template_ids: &template_ids,
        robots: &options.robots,
        since: options.since,
        until: options.until,
        after,
        limit,
    };
    let mut after = db
        .ended_checks_start(options.since)
        .await
        .with_context(|| format!("cannot read the checks from the {database}"))?;
    let mut examined: u64 = 0;
    let mut total_known = false;
    loop {
        let want = match options.limit {
            Some(limit) if examined >= limit => {
                // Cut off only when a check is left unexamined.
                report.limited = !db
                    .ended_checks(&page_of(after, 1))
                    .await
                    .with_context(|| format!("cannot read the checks from the {database}"))?
                    .is_empty();
                break;
            }
            Some(limit) => PAGE_SIZE.min(usize::try_from(limit - examined).unwrap_or(PAGE_SIZE)),
            None => PAGE_SIZE,
        };
        let page = page_of(after, want);
        if !total_known {
            total_known = true;
            if options.progress {
                let total = db
                    .count_ended_checks(&page)
                    .await
                    .with_context(|| format!("cannot read the checks from the {database}"))?;
                progress.total(options.limit.map_or(total, |limit| total.min(limit)));
            }
        }
        let checks = db
            .ended_checks(&page)
            .await
            .with_context(|| format!("cannot read the checks from the {database}"))?;
        let Some(last) = checks.last() else { break };
        after = last.id;
        let read = checks.len();
        judge_page(&checks, &context, &mut report).await?;
        examined += read as u64;
        progress.advance(read as u64);
        if read < want {
            break;
        }
    }
    progress.finish();
    report.changes.sort_by_key(|change| change.check.check_id);
    report
        .not_comparable
        .sort_by_key(|not_comparable| not_comparable.check.check_id);
    Ok(report)
}

/// What judging a check needs besides the check.
struct Context<'a> {
    /// Template id → (version, its dependencies when readable).
    stored: &'a HashMap<i64, (i64, Result<StoredVersion, String>)>,
    candidate: &'a Template,
    limits: Limits,
    megazord: Option<&'a HttpMegazord>,
    run_id: &'a str,
    svg_dir: Option<&'a std::path::Path>,
}

impl Context<'_> {
    /// The check's version, and its dependencies or why they cannot be read.
    fn version_of(&self, check: &StoredCheck) -> (i64, Result<&StoredVersion, &str>) {
        self.stored.get(&check.template_id).map_or(
            (
                check.template_version,
                Err("its version is not in the database"),
            ),
            |(v, d)| (*v, d.as_ref().map_err(String::as_str)),
        )
    }

    /// Counts a verdict, and draws a changed check's timelines when asked to.
    fn count(
        &self,
        report: &mut Report,
        check: &StoredCheck,
        compared: Compared,
        from_megazord: bool,
    ) -> anyhow::Result<()> {
        let (version, deps) = self.version_of(check);
        if let (Some(dir), Some(run), compare::Verdict::Changed { candidate, .. }) =
            (self.svg_dir, &compared.candidate, &compared.verdict)
        {
            let poll_until_end = deps.is_ok_and(|d| d.poll_until_end);
            svg::write(
                dir,
                check,
                poll_until_end,
                self.candidate,
                run,
                candidate.next_command,
            )
            .with_context(|| format!("cannot write the timelines into {}", dir.display()))?;
        }
        let examined = Examined {
            check_id: check.id,
            robot_id: check.key.robot_id,
            stored_version: version,
        };
        report.add(examined, compared.verdict, from_megazord);
        Ok(())
    }
}

/// Judges one page of checks; those that need events from Megazord get them (bounded
/// concurrency) and are judged again.
async fn judge_page(
    checks: &[StoredCheck],
    context: &Context<'_>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let mut waiting: Vec<(&StoredCheck, Needs, Compared)> = Vec::new();
    for check in checks {
        let (_, deps) = context.version_of(check);
        let compared = compare(check, deps, context.candidate, context.limits, None);
        match (compared.needs.clone(), context.megazord) {
            (Some(needs), Some(_)) => waiting.push((check, needs, compared)),
            _ => context.count(report, check, compared, false)?,
        }
    }
    let Some(megazord) = context.megazord else {
        return Ok(());
    };
    let run_id = context.run_id;
    let fetched: Vec<_> = futures_util::stream::iter(waiting)
        .map(|(check, needs, unread)| async move {
            let (requests, events) = fetch(megazord, check, &needs, run_id).await;
            (check, unread, requests, events)
        })
        .buffered(MEGAZORD_CONCURRENCY)
        .collect()
        .await;
    for (check, unread, requests, events) in fetched {
        let (_, deps) = context.version_of(check);
        let usage = report.megazord.get_or_insert_with(Default::default);
        usage.requests += requests;
        match events {
            Ok(events) => {
                usage.checks += 1;
                let compared = compare(
                    check,
                    deps,
                    context.candidate,
                    context.limits,
                    Some(&events),
                );
                context.count(report, check, compared, true)?;
            }
            // Judged as without `--megazord`: what its records allow.
            Err(error) => {
                usage.unread += 1;
                usage.last_error = Some(error.to_string());
                context.count(report, check, unread, false)?;
            }
        }
    }
    Ok(())
}

/// The incomings of each needed event name, merged (`Call-Ref` = this run and the check), and
/// how many requests were made (the first failure ends the reads).
async fn fetch(
    megazord: &HttpMegazord,
    check: &StoredCheck,
    needs: &Needs,
    run_id: &str,
) -> (u64, Result<Vec<Event>, crate::upstream::UpstreamError>) {
    let call_ref = format!("backtest-{run_id}-check-{}", check.id);
    let mut events = Vec::new();
    let mut requests = 0;
    for (name, since) in &needs.names {
        requests += 1;
        match megazord
            .incomings(check.key.robot_id, name, *since, &call_ref)
            .await
        {
            Ok(found) => events.extend(found),
            Err(error) => return (requests, Err(error)),
        }
    }
    (requests, Ok(events))
}
