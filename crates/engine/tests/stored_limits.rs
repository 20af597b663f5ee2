//! A template that the production tables could not hold is refused at load, and the error
//! names the field and the limit (SPEC §6: description VARCHAR(1024), rule text
//! VARCHAR(1024), dependency lists VARCHAR(512), version SMALLINT UNSIGNED).

use status_check_engine::{Limits, Template};

fn yaml(description: &str, version: u32, depends_on: &[String], rule: &str) -> String {
    let names = depends_on
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "name: limits\nversion: {version}\ndescription: \"{description}\"\nisActive: true\n\
         pollUntilEnd: false\npoller: {{pastInterval: 60, futureInterval: 0}}\nresources:\n  \
         pastEvents:\n    dependsOn: [{names}]\n    PASS: '{rule}'\n"
    )
}

fn errors(text: &str) -> Vec<String> {
    let limits = Limits {
        // Above the column, so only the stored limit can refuse the rule.
        max_rule_len: 4096,
        ..Limits::default()
    };
    match Template::from_yaml(text, "limits.yaml", &limits) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn one_event() -> Vec<String> {
    vec!["E".to_owned()]
}

#[test]
fn a_template_within_every_limit_loads() {
    let rule = format!("events.size() > 0{}", " && true".repeat(100));
    assert!(rule.len() <= 1024);
    let text = yaml(&"d".repeat(1024), 65_535, &one_event(), &rule);
    assert_eq!(errors(&text), Vec::<String>::new());
}

#[test]
fn an_overlong_description_is_refused_naming_the_column() {
    let errors = errors(&yaml(&"d".repeat(1025), 1, &one_event(), "true"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("description"), "{}", errors[0]);
    assert!(errors[0].contains("1025 characters"), "{}", errors[0]);
    assert!(errors[0].contains("1024"), "{}", errors[0]);
}

#[test]
fn an_overlong_rule_is_refused_naming_the_column() {
    let rule = format!("true{}", " && true".repeat(200));
    assert!(rule.len() > 1024);
    let errors = errors(&yaml("d", 1, &one_event(), &rule));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("resources.pastEvents.PASS"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("raw_expression"), "{}", errors[0]);
}

#[test]
fn an_overlong_dependency_list_is_refused_naming_the_column() {
    // 40 names of 12 characters take 40 * 15 + 1 = 601 characters as JSON.
    let names: Vec<String> = (0..40).map(|i| format!("EVENT_NAME{i:02}")).collect();
    let errors = errors(&yaml("d", 1, &names, "true"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("resources.pastEvents.dependsOn"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("512"), "{}", errors[0]);
}

#[test]
fn a_version_beyond_the_column_is_refused() {
    let errors = errors(&yaml("d", 65_536, &one_event(), "true"));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("65535"), "{}", errors[0]);
}
