//! Golden tests: every shipped template has a fixtures file in `templates/fixtures/`, and each
//! case in it replays to exactly the expected steps and outcome.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use status_check_engine::replay::{SampleEvent, replay};
use status_check_engine::{CheckPhase, CheckResult, Limits, Template};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    now: Option<DateTime<Utc>>,
    events: Vec<SampleEvent>,
    steps: Vec<ExpectedStep>,
    #[serde(rename = "final")]
    outcome: ExpectedFinal,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedStep {
    step: String,
    #[serde(default)]
    skipped: Option<String>,
    result: CheckResult,
    phase: CheckPhase,
}

#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct ExpectedFinal {
    phase: CheckPhase,
    result: CheckResult,
    next: Option<String>,
}

fn templates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../templates")
}

fn shipped_templates() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(templates_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn at_least_four_templates_ship() {
    assert!(shipped_templates().len() >= 4);
}

#[test]
fn every_shipped_template_replays_its_fixtures() {
    let mut checked = 0;
    for path in shipped_templates() {
        let text = std::fs::read_to_string(&path).unwrap();
        let template = Template::from_yaml(&text, &path.display().to_string(), &Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        let stem = path.file_stem().unwrap().to_string_lossy();
        let fixture_path = templates_dir()
            .join("fixtures")
            .join(format!("{stem}.json"));
        let fixture: Fixture = serde_json::from_str(
            &std::fs::read_to_string(&fixture_path)
                .unwrap_or_else(|e| panic!("{} has no fixtures: {e}", path.display())),
        )
        .unwrap_or_else(|e| panic!("{}: {e}", fixture_path.display()));
        assert!(
            fixture.cases.len() >= 3,
            "{}: at least three cases",
            fixture_path.display()
        );
        for case in &fixture.cases {
            let outcome = replay(&template, &case.events, case.now);
            let steps: Vec<ExpectedStep> = outcome
                .steps
                .iter()
                .map(|step| ExpectedStep {
                    step: step.step.clone(),
                    skipped: step.skipped.clone(),
                    result: step.result,
                    phase: step.phase,
                })
                .collect();
            let context = format!("{stem} / {}", case.name);
            assert_eq!(steps, case.steps, "{context}: steps");
            assert_eq!(
                ExpectedFinal {
                    phase: outcome.phase,
                    result: outcome.result,
                    next: outcome.next_command.clone(),
                },
                case.outcome,
                "{context}: final"
            );
            // No shipped rule errors on a fixture (none is named for one).
            assert!(
                outcome.rule_errors.is_empty(),
                "{context}: rule errors {:?}",
                outcome.rule_errors
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} cases replayed");
}
