//! The JSON Schemas of the template and monitors files (`templates/template.schema.json`,
//! `docs/monitors.schema.json`) must be what the loader's types generate — CI fails on drift —
//! and every shipped template and every example in the docs must validate against them.
//! After an intended format change: `UPDATE_SCHEMAS=1 cargo test -p status-check --test it
//! schemas`.

use std::path::{Path, PathBuf};

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Compares (or, with UPDATE_SCHEMAS=1, rewrites) a committed schema file; the schema.
fn committed(schema: impl serde::Serialize, file: &str, command: &str) -> Value {
    let generated = serde_json::to_string_pretty(&schema).unwrap() + "\n";
    let path = repo().join(file);
    if std::env::var("UPDATE_SCHEMAS").is_ok_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{file} is out of date; regenerate it with `status-check {command} > {file}` or \
         UPDATE_SCHEMAS=1 cargo test -p status-check --test it schemas"
    );
    serde_json::from_str(&generated).unwrap()
}

fn template_schema() -> Value {
    committed(
        status_check_engine::template::file_schema(),
        "templates/template.schema.json",
        "templates schema",
    )
}

fn monitors_schema() -> Value {
    committed(
        status_check_engine::monitor::files::file_schema(),
        "docs/monitors.schema.json",
        "monitors schema",
    )
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The problems the schema finds in `document`, one line each.
fn problems(schema: &Value, document: &Value) -> Vec<String> {
    let validator = jsonschema::validator_for(schema).expect("a valid JSON Schema");
    validator
        .iter_errors(document)
        .map(|e| format!("{}: {e}", e.instance_path))
        .collect()
}

/// The fenced ```yaml blocks of a Markdown file that contain `marker`.
fn yaml_blocks(file: &str, marker: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join(file)).unwrap();
    text.split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .filter(|block| block.contains(marker))
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_committed_schemas_match_the_loaders_types() {
    let template = template_schema();
    assert_eq!(template["title"], "status-check template");
    assert!(
        template["properties"]["resources"].is_object(),
        "{template}"
    );
    let monitors = monitors_schema();
    assert_eq!(monitors["title"], "status-check monitors");
    // The same output from the binary.
    for (args, schema) in [
        (["templates", "schema"], &template),
        (["monitors", "schema"], &monitors),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_status-check"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success());
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(&printed, schema, "{args:?}");
    }
}

#[test]
fn every_shipped_template_carries_the_modeline_and_validates() {
    let schema = template_schema();
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("templates"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(
            text.lines().next(),
            Some("# yaml-language-server: $schema=template.schema.json"),
            "{}: the editor modeline is the first line",
            file.display()
        );
        assert_eq!(
            problems(&schema, &yaml(&text)),
            Vec::<String>::new(),
            "{}",
            file.display()
        );
    }
}

#[test]
fn the_examples_in_the_docs_validate() {
    let templates = yaml_blocks("docs/templates.md", "resources:");
    assert!(!templates.is_empty());
    let schema = template_schema();
    for block in &templates {
        assert_eq!(
            problems(&schema, &yaml(block)),
            Vec::<String>::new(),
            "{block}"
        );
    }
    let monitors = yaml_blocks("docs/monitors.md", "ruleId");
    assert!(!monitors.is_empty());
    let schema = monitors_schema();
    for block in &monitors {
        assert_eq!(
            problems(&schema, &yaml(block)),
            Vec::<String>::new(),
            "{block}"
        );
    }
}

#[test]
fn the_schemas_refuse_what_the_loader_refuses() {
    let schema = template_schema();
    let valid = "name: robot-is-charging\nversion: 1\nresources:\n  pastEvents:\n    \
                 dependsOn: [A]\n    PASS: 'true'\n";
    assert_eq!(problems(&schema, &yaml(valid)), Vec::<String>::new());
    for (broken, why) in [
        (valid.replace("version: 1", "version: 0"), "version 0"),
        (
            valid.replace("robot-is-charging", "Robot Is Charging"),
            "a bad name",
        ),
        (format!("{valid}pollUntillEnd: true\n"), "a misspelt key"),
        (valid.replace("PASS:", "PASSED:"), "an unknown outcome"),
        (
            valid.replace("'true'", &format!("'{}'", "x".repeat(1025))),
            "a rule too long",
        ),
        (valid.replace("version: 1\n", ""), "no version"),
    ] {
        assert!(
            !problems(&schema, &yaml(&broken)).is_empty(),
            "the schema accepts {why}"
        );
    }
    let monitors = monitors_schema();
    let list = "- robotId: 42\n  ruleId: r\n  eventType: E\n  window: 2h\n  \
                daily: {start: \"08:00\", end: \"22:00\"}\n  actions: [{type: alarm, eventName: A}]\n";
    assert_eq!(problems(&monitors, &yaml(list)), Vec::<String>::new());
    assert!(!problems(&monitors, &yaml(&list.replace("window:", "windw:"))).is_empty());
}
