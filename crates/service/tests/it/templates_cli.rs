//! The `status-check templates` command, run as a user would: the real binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn status_check(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_status-check"))
        .args(args)
        .current_dir(repo())
        .env_remove("TEMPLATES_DIR")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn validate_accepts_the_shipped_templates() {
    let output = status_check(&["templates", "validate", "templates"]);
    assert!(output.status.success(), "{}", stdout(&output));
    assert!(stdout(&output).contains("templates valid"));
}

/// Megazord refuses a subscription that repeats an event name: a template that lists one
/// twice still works (the service subscribes to it once), and `validate` says so.
#[test]
fn validate_warns_about_a_repeated_dependency_and_still_accepts_the_template() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("twice.yaml"),
        "name: twice\nversion: 1\nresources:\n  futureEvents: {dependsOn: [A, B, A, A], \
         PASS: 'future.size() > 0'}\n",
    )
    .unwrap();
    let output = status_check(&["templates", "validate", dir.path().to_str().unwrap()]);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    let warnings: Vec<&str> = text.lines().filter(|l| l.contains("warning")).collect();
    assert_eq!(warnings.len(), 1, "{text}");
    assert!(
        warnings[0].contains(
            "twice.yaml: resources.futureEvents.dependsOn: warning: A is listed more than once"
        ),
        "{text}"
    );
    assert!(text.contains("1 templates valid"), "{text}");
}

#[test]
fn validate_names_file_line_field_and_reason_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.yaml"),
        "name: typo\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'evnts.size() > 0'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("unknown-key.yaml"),
        "name: unknown-key\nversion: 1\npollUntillEnd: true\nresources:\n  pastEvents: {dependsOn: [A], PASS: 'true'}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("good.yaml"),
        "name: good\nversion: 1\nresources:\n  pastEvents: {dependsOn: [A], PASS: 'past.size() > 0'}\n",
    )
    .unwrap();
    let output = status_check(&["templates", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let typo = text.lines().find(|l| l.contains("typo.yaml")).expect(&text);
    assert!(
        typo.contains(
            "typo.yaml:6: resources.pastEvents.PASS: unknown variable or function 'evnts'"
        ),
        "{typo}"
    );
    let key = text
        .lines()
        .find(|l| l.contains("unknown-key.yaml"))
        .expect(&text);
    assert!(
        key.contains("unknown-key.yaml:3:") && key.contains("pollUntillEnd"),
        "{key}"
    );
    assert!(!text.contains("good.yaml"), "{text}");
    assert!(text.contains("2 problems found"), "{text}");
}

#[test]
fn validate_refuses_rules_whose_cost_grows_faster_than_linearly_with_the_history() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cubic.yaml"),
        "name: cubic\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'events.all(a, events.all(b, events.all(c, a.id <= c.id)))'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("square.yaml"),
        "name: square\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'past.size() > 0'\n    FAIL: 'events.all(a, events.all(b, a.id <= b.id))'\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("linear.yaml"),
        "name: linear\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'events.all(a, a.id > 0)'\n",
    )
    .unwrap();
    let output = status_check(&["templates", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    let line = |file: &str| {
        text.lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file}: {text}"))
            .to_owned()
    };
    let cubic = line("cubic.yaml");
    assert!(
        cubic.contains(
            "cubic.yaml:6: resources.pastEvents.PASS: nested comprehension over the history: \
             cost grows with the cube of the history length"
        ),
        "{cubic}"
    );
    let square = line("square.yaml");
    assert!(
        square.contains(
            "square.yaml:7: resources.pastEvents.FAIL: nested comprehension over the history: \
             cost grows with the square of the history length"
        ),
        "{square}"
    );
    assert!(!text.contains("linear.yaml"), "{text}");
    assert!(text.contains("2 problems found"), "{text}");
}

#[test]
fn validate_reports_a_rule_that_runs_on_the_interpreter_without_failing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("slow.yaml"),
        "name: slow\nversion: 1\nresources:\n  pastEvents:\n    dependsOn: [A]\n    PASS: 'past.exists(e, e.name == \"A\")'\n    FAIL: 'past.exists(e, e.id % 2 == 0)'\n",
    )
    .unwrap();
    let file = dir.path().join("slow.yaml");
    let output = status_check(&["templates", "validate", dir.path().to_str().unwrap()]);
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{text}");
    let expected = format!(
        "{}: resources.pastEvents.FAIL: runs on the interpreter (not the native path): \
         the native compiler does not support '%'",
        file.display()
    );
    assert!(text.lines().any(|line| line == expected), "{text}");
    assert!(!text.contains("pastEvents.PASS"), "{text}");
    assert!(
        text.contains("1 templates valid in") && text.contains("1 rule runs on the interpreter"),
        "{text}"
    );
}

#[test]
fn the_shipped_templates_run_natively() {
    let output = status_check(&["templates", "validate", "templates"]);
    let text = stdout(&output);
    assert!(!text.contains("runs on the interpreter"), "{text}");
    assert!(!text.contains("run on the interpreter"), "{text}");
}

#[test]
fn two_files_with_the_same_name_and_version_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        "name: twice\nversion: 3\nresources:\n  pastEvents: {dependsOn: [A], PASS: 'true'}\n";
    std::fs::write(dir.path().join("a.yaml"), yaml).unwrap();
    std::fs::write(dir.path().join("b.yml"), yaml).unwrap();
    let output = status_check(&["templates", "validate", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stdout(&output).contains("twice version 3 is already defined"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn list_shows_every_shipped_template() {
    let output = status_check(&["templates", "list", "templates"]);
    assert!(output.status.success());
    let text = stdout(&output);
    for name in [
        "robot-is-charging",
        "resident-activity",
        "medication-box-opened",
        "toilet-activity",
    ] {
        assert!(text.contains(name), "{name} missing from {text}");
    }
}

#[test]
fn test_replays_events_and_ends_with_the_outcome() {
    let output = status_check(&[
        "templates",
        "test",
        "templates/robot-is-charging.v1.yaml",
        "--events",
        "templates/examples/charging-soon.events.json",
        "--now",
        "2026-11-20T08:00:00Z",
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[1].starts_with("PAST") && lines[1].ends_with("PENDING FUTURE"),
        "{text}"
    );
    assert!(
        lines[3].starts_with("FUTURE") && lines[3].contains("CHARGING_STARTED #3"),
        "{text}"
    );
    assert!(lines[3].ends_with("PASS COMPLETED"), "{text}");
    assert_eq!(
        lines[4],
        "final: phase COMPLETED result PASS next command pass"
    );
}

#[test]
fn test_with_a_bad_events_file_says_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.json");
    std::fs::write(&events, r#"[{"name": "X", "phase": "SOON"}]"#).unwrap();
    let output = status_check(&[
        "templates",
        "test",
        "templates/robot-is-charging.v1.yaml",
        "--events",
        events.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a valid events file"), "{stderr}");
}

#[test]
fn test_draws_the_replay_as_an_svg_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("replay.svg");
    let output = status_check(&[
        "templates",
        "test",
        "templates/robot-is-charging.v1.yaml",
        "--events",
        "templates/examples/charging-soon.events.json",
        "--now",
        "2026-11-20T08:00:00Z",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stdout(&output));
    let printed = stdout(&output);
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines
            .last()
            .is_some_and(|line| line.starts_with("final: phase")),
        "the final line comes last: {printed}"
    );
    assert!(lines.contains(&format!("timeline written to {}", svg.display()).as_str()));
    let text = std::fs::read_to_string(&svg).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("the file is XML");
    let class_count = |class: &str| {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    };
    let events: Vec<serde_json::Value> = serde_json::from_str(
        &std::fs::read_to_string(repo().join("templates/examples/charging-soon.events.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        class_count("event-mark"),
        events.len(),
        "one mark per event taken in"
    );
    let outcome = doc
        .descendants()
        .find(|n| n.attribute("class") == Some("outcome"))
        .and_then(|n| n.text())
        .unwrap();
    assert_eq!(outcome, "COMPLETED · PASS · next step of the pass command");
    assert!(text.contains("Replay of robot-is-charging v1"));

    let unwritable = dir.path().join("no-such-folder/replay.svg");
    let output = status_check(&[
        "templates",
        "test",
        "templates/robot-is-charging.v1.yaml",
        "--events",
        "templates/examples/charging-soon.events.json",
        "--svg",
        unwritable.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot write"));
}
