//! `status-check templates validate | list | test` (SPEC §4.5).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use status_check_engine::Limits;
use status_check_engine::replay::{SampleEvent, replay};

use crate::template_files::{load_dir, load_file};

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Check every template in DIR; exits non-zero with one line per problem. Rules that run
    /// on the interpreter instead of natively are reported too, without changing the exit code.
    Validate {
        /// Folder of YAML templates.
        #[arg(env = "TEMPLATES_DIR", default_value = "templates")]
        dir: PathBuf,
    },
    /// List the templates in DIR.
    List {
        #[arg(env = "TEMPLATES_DIR", default_value = "templates")]
        dir: PathBuf,
    },
    /// Replay sample events through a template as the service would.
    Test {
        /// The template file.
        file: PathBuf,
        /// JSON array of {"id"?, "name", "createdAt", "phase": "PAST"|"FUTURE"}.
        #[arg(long)]
        events: PathBuf,
        /// The check's creation time (RFC 3339); default: just after the last PAST event.
        #[arg(long)]
        now: Option<DateTime<Utc>>,
        /// Also draw the replay as an SVG timeline into this file (docs/operations.md).
        #[arg(long, value_name = "OUT.svg")]
        svg: Option<PathBuf>,
    },
    /// Replay the ended checks of the database through a new version of a template and
    /// report which would have ended differently (read-only; docs/templates.md).
    Backtest(Box<BacktestArgs>),
    /// Print the JSON Schema of a template file (committed as templates/template.schema.json).
    Schema,
}

#[derive(Debug, clap::Args)]
pub struct BacktestArgs {
    /// The candidate template file.
    pub file: PathBuf,
    /// The database to read (never written): `sqlite://FILE`, a file path, or
    /// `mysql://USER:PASSWORD@HOST:PORT/DB` (a user with only SELECT suffices).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database: String,
    /// Checks created since: a span back from now (7d, 36h, 90m, 2w), a time (RFC 3339) or
    /// a date (YYYY-MM-DD).
    #[arg(long, default_value = crate::backtest::period::DEFAULT_SINCE)]
    pub since: String,
    /// Checks created before (same forms as --since); default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// Only this robot's checks (repeatable).
    #[arg(long = "robot", value_name = "ID")]
    pub robots: Vec<i64>,
    /// Examine at most N checks (the oldest first).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
    /// Megazord Events' base URL: read the events the checks never recorded from its
    /// incomings instead of reporting those checks as not comparable.
    #[arg(long, value_name = "URL")]
    pub megazord: Option<String>,
    /// Write each changed check's timeline as both versions saw it into DIR
    /// (check-ID-stored.svg, check-ID-candidate.svg).
    #[arg(long, value_name = "DIR")]
    pub svg_dir: Option<PathBuf>,
    /// Most records one check may hold, as the service ran with: a check ended at the cap
    /// replays as it ended only under the same cap.
    #[arg(long, env = "HISTORY_CAP", value_name = "N", default_value_t = Limits::default().history_cap as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub history_cap: u64,
    /// The rule cost budget the service ran with.
    #[arg(long, env = "RULE_COST_BUDGET", value_name = "N", default_value_t = Limits::default().cost_budget, value_parser = clap::value_parser!(u64).range(1..))]
    pub rule_cost_budget: u64,
}

pub fn run(command: TemplatesCommand, out: &mut impl Write) -> anyhow::Result<i32> {
    let limits = Limits::default();
    match command {
        TemplatesCommand::Backtest(args) => backtest(*args, out),
        TemplatesCommand::Schema => {
            let schema = status_check_engine::template::file_schema();
            writeln!(out, "{}", serde_json::to_string_pretty(&schema)?)?;
            Ok(0)
        }
        TemplatesCommand::Validate { dir } => {
            let loaded = load_dir(&dir, &limits)
                .with_context(|| format!("cannot read the folder {}", dir.display()))?;
            for error in &loaded.errors {
                writeln!(out, "{error}")?;
            }
            // A warning, not an error: the rule works, only slower (SPEC §10 "Rules").
            let mut fallbacks = 0;
            for (path, template) in &loaded.templates {
                for (key, phase) in [
                    ("pastEvents", &template.past),
                    ("futureEvents", &template.future),
                ] {
                    let Some(phase) = phase else { continue };
                    for name in phase.repeated_dependencies() {
                        writeln!(
                            out,
                            "{}: resources.{key}.dependsOn: warning: {name} is listed more than \
                             once (Megazord refuses a repeated name; the service subscribes to \
                             it once)",
                            path.display()
                        )?;
                    }
                    for (outcome, rule) in phase.rules() {
                        if let Some(why) = rule.fallback() {
                            fallbacks += 1;
                            writeln!(
                                out,
                                "{}: resources.{key}.{outcome}: runs on the interpreter (not the native path): {why}",
                                path.display()
                            )?;
                        }
                    }
                }
            }
            if loaded.errors.is_empty() {
                let note = match fallbacks {
                    0 => String::new(),
                    1 => ", 1 rule runs on the interpreter".to_owned(),
                    n => format!(", {n} rules run on the interpreter"),
                };
                writeln!(
                    out,
                    "{} templates valid in {}{note}",
                    loaded.templates.len(),
                    dir.display()
                )?;
                Ok(0)
            } else {
                writeln!(out, "{} problems found", loaded.errors.len())?;
                Ok(1)
            }
        }
        TemplatesCommand::List { dir } => {
            let loaded = load_dir(&dir, &limits)
                .with_context(|| format!("cannot read the folder {}", dir.display()))?;
            for (path, template) in &loaded.templates {
                let native = [&template.past, &template.future]
                    .into_iter()
                    .flatten()
                    .flat_map(|phase| phase.rules())
                    .filter(|(_, rule)| rule.is_native())
                    .count();
                let rules = [&template.past, &template.future]
                    .into_iter()
                    .flatten()
                    .flat_map(|phase| phase.rules())
                    .count();
                writeln!(
                    out,
                    "{:<28} v{:<3} {:<8} past {:>6}s future {:>6}s  {native}/{rules} rules native  {}",
                    template.name.as_str(),
                    template.version,
                    if template.is_active {
                        "active"
                    } else {
                        "inactive"
                    },
                    template.poller.past_interval,
                    template.poller.future_interval,
                    file_name(path),
                )?;
            }
            for error in &loaded.errors {
                writeln!(out, "{error}")?;
            }
            Ok(i32::from(!loaded.errors.is_empty()))
        }
        TemplatesCommand::Test {
            file,
            events,
            now,
            svg,
        } => {
            let template = match load_file(&file, &limits) {
                Ok(template) => template,
                Err(errors) => {
                    for error in errors {
                        writeln!(out, "{error}")?;
                    }
                    return Ok(1);
                }
            };
            let text = std::fs::read_to_string(&events)
                .with_context(|| format!("cannot read {}", events.display()))?;
            let samples: Vec<SampleEvent> = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a valid events file", events.display()))?;
            let outcome = replay(&template, &samples, now);
            writeln!(
                out,
                "{} v{}, check created at {}",
                template.name,
                template.version,
                outcome.anchor.to_rfc3339_opts(SecondsFormat::AutoSi, true)
            )?;
            for step in &outcome.steps {
                let event = step.event.as_deref().unwrap_or("-");
                let skipped = step
                    .skipped
                    .as_ref()
                    .map(|why| format!(" (skipped: {why})"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{:<8} {event}{skipped} -> {} {}",
                    step.step, step.result, step.phase
                )?;
            }
            for error in &outcome.rule_errors {
                writeln!(out, "rule error: {error}")?;
            }
            // The final line stays last (SPEC §4.5).
            if let Some(path) = svg {
                let timeline = super::replay_svg::replay_timeline(&template, &samples, &outcome);
                let picture = crate::timeline::check_svg(&timeline, &crate::timeline::Zone::utc());
                std::fs::write(&path, picture)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                writeln!(out, "timeline written to {}", path.display())?;
            }
            writeln!(
                out,
                "final: phase {} result {} next command {}",
                outcome.phase,
                outcome.result,
                outcome.next_command.as_deref().unwrap_or("none")
            )?;
            Ok(0)
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `templates backtest`: the report on `out`; errors (cannot run) go to the caller, which
/// prints them on stderr.
fn backtest(args: BacktestArgs, out: &mut impl Write) -> anyhow::Result<i32> {
    use std::io::IsTerminal as _;

    use crate::backtest::{self, Bar, Options, Quiet, period};

    let now = Utc::now();
    let since = period::parse(&args.since, now).map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let until = match &args.until {
        Some(until) => period::parse(until, now).map_err(|e| anyhow::anyhow!("--until: {e}"))?,
        None => now,
    };
    let options = Options {
        file: args.file,
        database: args.database,
        since,
        until,
        robots: args.robots,
        limit: args.limit,
        megazord: args.megazord,
        progress: std::io::stderr().is_terminal(),
        svg_dir: args.svg_dir,
        limits: Limits {
            history_cap: usize::try_from(args.history_cap).unwrap_or(usize::MAX),
            cost_budget: args.rule_cost_budget,
            ..Limits::default()
        },
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = if options.progress {
        runtime.block_on(backtest::run(&options, &Bar::new()))?
    } else {
        runtime.block_on(backtest::run(&options, &Quiet))?
    };
    // Off a terminal nothing but the report (SPEC §14): the text report says it too.
    if report.summary.examined == 0 && options.progress {
        eprintln!(
            "note: no ended check of {} was created in the period{}",
            report.template.name,
            if report.stored_versions.is_empty() {
                " (the database holds no version of it)"
            } else {
                ""
            }
        );
    }
    if args.json {
        report.write_json(out)?;
    } else {
        report.write_text(out)?;
    }
    Ok(0)
}
