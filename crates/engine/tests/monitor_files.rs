//! The two monitor file formats (SPEC §12): the `MONITORS_FILE` list (YAML or JSON) and the
//! old job service's JSON, and errors that name the monitor and the field.

use status_check_engine::monitor::{
    Action, Monitor, MonitorError, parse_job_service_config, parse_monitor_list, parse_monitors,
};

const LIST_YAML: &str = r#"
# Two monitors for robot 42.
- robotId: 42
  ruleId: no-toilet
  eventType: TOILET_ACTIVITY
  window: 2h
  timezone: Europe/Amsterdam
  daily: {start: "08:00", end: "22:00"}
  actions:
    - type: alarm
      eventName: NO_TOILET_ACTIVITY_ALARM
- robotId: "42"
  ruleId: night
  eventType: BED_EXIT
  window: 1h30m
  daily: {start: "00:00", end: "24:00"}
  actions: [{type: alarm, eventName: NIGHT_ALARM, level: 3}]
  enabled: false
"#;

const JOB_SERVICE_JSON: &str = r#"{
  "robots": [
    {
      "robotId": "42",
      "name": "Room 12",
      "timezone": "Europe/Amsterdam",
      "enabled": true,
      "monitoringRules": [
        {
          "ruleId": "toilet-activity",
          "description": "Toilet visits during the day",
          "eventType": "TOILET_ACTIVITY",
          "windowDurationMinutes": 120,
          "dailyWindow": {"startTime": "08:00", "endTime": "22:00"},
          "actions": [{"type": "alarm", "config": {"eventName": "NO_TOILET_ACTIVITY_ALARM"}}]
        }
      ]
    },
    {
      "robotId": 7,
      "enabled": false,
      "monitoringRules": [
        {
          "ruleId": "toilet-activity",
          "eventType": "TOILET_ACTIVITY",
          "windowDurationMinutes": 90,
          "dailyWindow": {"startTime": "07:30", "endTime": "24:00"},
          "actions": [{"type": "alarm", "config": {"eventName": "NO_TOILET_ACTIVITY_ALARM", "level": 2}}]
        }
      ]
    }
  ]
}"#;

fn alarm(monitor: &Monitor, i: usize) -> (&str, Option<u8>) {
    match &monitor.actions()[i] {
        Action::Alarm { event_name, level } => (event_name.as_str(), *level),
    }
}

fn errors(result: Result<Vec<Monitor>, Vec<MonitorError>>) -> Vec<String> {
    result
        .expect_err("the file should be refused")
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

#[test]
fn a_yaml_list_of_monitors_with_defaults() {
    let monitors = parse_monitor_list(LIST_YAML).unwrap();
    assert_eq!(monitors.len(), 2);
    let day = &monitors[0];
    assert_eq!(
        (day.robot_id(), day.rule_id().as_str(), day.event_type()),
        (42, "no-toilet", "TOILET_ACTIVITY")
    );
    assert_eq!(day.window().as_seconds(), 7200);
    assert_eq!(day.timezone().name(), "Europe/Amsterdam");
    assert_eq!(
        (
            day.daily().start().to_string(),
            day.daily().end().to_string()
        ),
        ("08:00".to_owned(), "22:00".to_owned())
    );
    assert_eq!(
        alarm(day, 0),
        ("NO_TOILET_ACTIVITY_ALARM", None),
        "without a level the alarm is posted without one (Megazord's schema decides)"
    );
    assert!(day.enabled(), "enabled defaults to true");
    let night = &monitors[1];
    assert_eq!(
        night.robot_id(),
        42,
        "a robot id may be written as a string"
    );
    assert_eq!(night.window().to_string(), "1h30m");
    assert_eq!(
        night.timezone().name(),
        "UTC",
        "the timezone defaults to UTC"
    );
    assert_eq!(night.daily().end().to_string(), "24:00");
    assert_eq!(alarm(night, 0), ("NIGHT_ALARM", Some(3)));
    assert!(!night.enabled());
}

#[test]
fn a_json_list_reads_the_same_and_the_canonical_definition_round_trips() {
    let monitors = parse_monitor_list(LIST_YAML).unwrap();
    let definitions: Vec<_> = monitors.iter().map(Monitor::definition).collect();
    let json = serde_json::to_string_pretty(&definitions).unwrap();
    assert!(json.contains("\"eventName\": \"NIGHT_ALARM\""), "{json}");
    assert_eq!(parse_monitor_list(&json).unwrap(), monitors);
    assert_eq!(parse_monitors(&json).unwrap(), monitors);
    // Tabs indent JSON files too.
    assert_eq!(parse_monitors(&json.replace("  ", "\t")).unwrap(), monitors);
}

#[test]
fn unquoted_yaml_times_are_times() {
    let text = "- {robotId: 1, ruleId: a, eventType: E, window: 4s, daily: {start: 08:05, end: 24:00}, \
                actions: [{type: alarm, eventName: X}]}";
    let monitor = &parse_monitors(text).unwrap()[0];
    assert_eq!(monitor.daily().start().minutes(), 8 * 60 + 5);
    assert_eq!(monitor.daily().end().to_string(), "24:00");
}

#[test]
fn an_empty_file_has_no_monitors() {
    assert_eq!(parse_monitors("").unwrap(), []);
    assert_eq!(parse_monitors("# nothing yet\n").unwrap(), []);
    assert_eq!(parse_monitors("[]").unwrap(), []);
}

#[test]
fn the_job_service_json_reads_into_monitors() {
    let monitors = parse_job_service_config(JOB_SERVICE_JSON).unwrap();
    assert_eq!(parse_monitors(JOB_SERVICE_JSON).unwrap(), monitors);
    assert_eq!(monitors.len(), 2);
    let first = &monitors[0];
    assert_eq!(
        (first.robot_id(), first.rule_id().as_str()),
        (42, "toilet-activity")
    );
    assert_eq!(first.window().as_seconds(), 120 * 60);
    assert_eq!(first.timezone().name(), "Europe/Amsterdam");
    assert_eq!(first.daily().start().to_string(), "08:00");
    assert_eq!(alarm(first, 0), ("NO_TOILET_ACTIVITY_ALARM", None));
    assert!(first.enabled());
    let second = &monitors[1];
    assert_eq!(second.robot_id(), 7);
    assert_eq!(second.timezone().name(), "UTC");
    assert_eq!(second.window().to_string(), "1h30m");
    assert_eq!(alarm(second, 0), ("NO_TOILET_ACTIVITY_ALARM", Some(2)));
    assert!(!second.enabled(), "a disabled robot disables its rules");
}

#[test]
fn the_job_service_config_may_be_yaml_too() {
    let yaml = r#"
robots:
  - robotId: 42
    timezone: Europe/Amsterdam
    monitoringRules:
      - ruleId: toilet-activity
        eventType: TOILET_ACTIVITY
        windowDurationMinutes: 120
        dailyWindow: {startTime: "08:00", endTime: "22:00"}
        actions: [{type: alarm, config: {eventName: NO_TOILET_ACTIVITY_ALARM}}]
"#;
    let json_monitors = parse_job_service_config(JOB_SERVICE_JSON).unwrap();
    assert_eq!(parse_monitors(yaml).unwrap()[0], json_monitors[0]);
}

#[test]
fn validation_errors_name_the_monitor_and_the_field() {
    let text = r#"
- robotId: 42
  ruleId: no-toilet
  eventType: TOILET_ACTIVITY
  window: 2h
  daily: {start: "08:00", end: "07:00"}
  actions: [{type: alarm}]
- robotId: 43
  ruleId: Not_Valid
  eventType: TOILET_ACTIVITY
  window: 0s
  timezone: Europe/Atlantis
  daily: {start: "08:00", end: "25:00"}
  actions: [{type: email, eventName: X}, {type: alarm, eventName: Y, level: 300}]
- robotId: 44
  ruleId: short-day
  eventType: TOILET_ACTIVITY
  window: 3h
  daily: {start: "08:00", end: "10:00"}
  actions: []
"#;
    let errors = errors(parse_monitor_list(text));
    let expected = [
        "monitor [0] (robot 42, rule no-toilet): daily.end: ",
        "monitor [0] (robot 42, rule no-toilet): actions[0].eventName: is missing",
        "monitor [1] (robot 43): ruleId: \"Not_Valid\" is not a rule id",
        "monitor [1] (robot 43): window: \"0s\": is shorter than 1s",
        "monitor [1] (robot 43): timezone: \"Europe/Atlantis\" is not an IANA timezone",
        "monitor [1] (robot 43): daily.end: \"25:00\" is not a time",
        "monitor [1] (robot 43): actions[0].type: \"email\" is not an action type",
        "monitor [1] (robot 43): actions[1].level: 300 is not a level",
        "monitor [2] (robot 44, rule short-day): window: 3h is longer than the daily session",
        "monitor [2] (robot 44, rule short-day): actions: lists no action",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, prefix) in errors.iter().zip(expected) {
        assert!(
            error.starts_with(prefix),
            "{error:?} should start with {prefix:?}"
        );
    }
}

#[test]
fn missing_fields_are_named() {
    let errors = errors(parse_monitor_list("- ruleId: x\n"));
    assert_eq!(
        errors,
        [
            "monitor [0] (rule x): robotId: is missing",
            "monitor [0] (rule x): eventType: is missing",
            "monitor [0] (rule x): window: is missing",
            "monitor [0] (rule x): daily: is missing",
            "monitor [0] (rule x): actions: is missing",
        ]
    );
}

#[test]
fn syntax_and_type_errors_name_the_line_monitor_and_field() {
    let unknown_field = "- robotId: 42\n  ruleId: a\n- robotId: 43\n  windw: 2h\n";
    let error = &parse_monitor_list(unknown_field).unwrap_err()[0];
    assert_eq!(error.line, Some(4));
    assert_eq!(error.monitor.as_ref().unwrap().position, "[1]");
    assert_eq!(error.field, "windw");
    assert!(error.message.contains("unknown field `windw`"), "{error}");
    let with_file = error.clone().with_source("monitors.yaml").to_string();
    assert!(
        with_file.starts_with("monitors.yaml:4: monitor [1]: windw: unknown field"),
        "{with_file}"
    );

    let wrong_type = "- robotId: 42\n  daily: {start: [8]}\n";
    let error = &parse_monitor_list(wrong_type).unwrap_err()[0];
    assert_eq!((error.line, error.field.as_str()), (Some(2), "daily.start"));

    let bad_robot = "[{\"robotId\": \"forty-two\"}]";
    let error = &parse_monitors(bad_robot).unwrap_err()[0];
    assert_eq!(error.field, "robotId");
    assert!(error.message.contains("not a robot id"), "{error}");

    let broken = "- robotId: 42\n  ruleId: [unclosed\n";
    let error = &parse_monitor_list(broken).unwrap_err()[0];
    assert!(error.line.is_some(), "{error}");

    let not_a_list = "robotId: 42\n";
    let error = &parse_monitor_list(not_a_list).unwrap_err()[0];
    assert_eq!(error.monitor, None, "{error}");
}

#[test]
fn a_monitor_named_twice_is_refused() {
    let text = r#"
- {robotId: 42, ruleId: a, eventType: E, window: 1h, daily: {start: "08:00", end: "22:00"}, actions: [{type: alarm, eventName: X}]}
- {robotId: 42, ruleId: a, eventType: F, window: 2h, daily: {start: "08:00", end: "22:00"}, actions: [{type: alarm, eventName: X}]}
"#;
    assert_eq!(
        errors(parse_monitor_list(text)),
        [
            "monitor [1] (robot 42, rule a): ruleId: robot 42 already has a monitor with rule id a (at [0])"
        ]
    );
}

#[test]
fn job_service_errors_use_its_own_field_names() {
    let text = r#"{"robots": [
      {"robotId": 42, "timezone": "Nowhere/City", "monitoringRules": [
        {"ruleId": "a", "eventType": "E", "windowDurationMinutes": 0,
         "dailyWindow": {"startTime": "08:00", "endTime": "7pm"},
         "actions": [{"type": "alarm", "config": {}}]},
        {"ruleId": "b", "eventType": "E", "windowDurationMinutes": 60,
         "dailyWindow": {"startTime": "08:00", "endTime": "09:00"},
         "actions": [{"type": "alarm"}]}
      ]},
      {"robotId": 43, "monitoringRules": [
        {"ruleId": "a", "eventType": "E", "windowDurationMinutes": 120,
         "dailyWindow": {"startTime": "08:00", "endTime": "09:00"},
         "actions": [{"type": "alarm", "config": {"eventName": "X"}}]}
      ]},
      {"monitoringRules": []}
    ]}"#;
    let errors = errors(parse_job_service_config(text));
    let expected = [
        // Reported once for the robot, not once per rule.
        "monitor robots[0] (robot 42): timezone: \"Nowhere/City\" is not an IANA timezone",
        "monitor robots[0].monitoringRules[0] (robot 42, rule a): windowDurationMinutes: 0 is not a window: use 1 to 1440 minutes",
        "monitor robots[0].monitoringRules[0] (robot 42, rule a): dailyWindow.endTime: \"7pm\" is not a time",
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for (error, prefix) in errors.iter().zip(expected) {
        assert!(
            error.starts_with(prefix),
            "{error:?} should start with {prefix:?}"
        );
    }
}

#[test]
fn job_service_type_errors_name_the_rule_and_field() {
    let text = r#"{"robots": [{"robotId": 42, "monitoringRules": [
        {"ruleId": "a", "windowDurationMinutes": "two hours"}]}]}"#;
    let error = &parse_job_service_config(text).unwrap_err()[0];
    assert_eq!(
        error.monitor.as_ref().unwrap().position,
        "robots[0].monitoringRules[0]"
    );
    assert_eq!(error.field, "windowDurationMinutes");
    assert_eq!(error.line, Some(2));

    let error = &parse_job_service_config(r#"{"robot": []}"#).unwrap_err()[0];
    assert_eq!(error.field, "robots");
    assert!(
        error.to_string().starts_with("robots: is missing"),
        "{error}"
    );
}

/// `MONITORING_CONFIG` of the monitoring job service in the public Tinybots dev compose file,
/// verbatim.
const COMPOSE_MONITORING_CONFIG: &str = r#"{"robots":[{"robotId":1,"timezone":"Europe/Amsterdam","enabled":true,"monitoringRules":[{"ruleId":"toilet-activity-2hr","eventName":"TOILET_ACTIVITY","windowDurationMinutes":1,"dailyWindow":{"startTime":"00:01","endTime":"23:59"},"actions":[{"type":"ALARM","config":{"eventName":"NO_TOILET_ACTIVITY_ALARM"}}]}]}]}"#;

#[test]
fn the_dev_compose_monitoring_config_loads_verbatim() {
    let monitors = parse_monitors(COMPOSE_MONITORING_CONFIG).unwrap();
    assert_eq!(
        parse_job_service_config(COMPOSE_MONITORING_CONFIG).unwrap(),
        monitors
    );
    assert_eq!(monitors.len(), 1);
    let monitor = &monitors[0];
    assert_eq!(
        (
            monitor.robot_id(),
            monitor.rule_id().as_str(),
            monitor.event_type()
        ),
        (1, "toilet-activity-2hr", "TOILET_ACTIVITY")
    );
    assert_eq!(monitor.window().as_seconds(), 60);
    assert_eq!(monitor.timezone().name(), "Europe/Amsterdam");
    assert_eq!(
        (
            monitor.daily().start().to_string(),
            monitor.daily().end().to_string()
        ),
        ("00:01".to_owned(), "23:59".to_owned())
    );
    assert_eq!(
        alarm(monitor, 0),
        ("NO_TOILET_ACTIVITY_ALARM", None),
        "the job service sets no level: none is sent"
    );
    assert!(monitor.enabled());
}

#[test]
fn the_job_service_spellings_all_read_the_same() {
    let reference = parse_job_service_config(COMPOSE_MONITORING_CONFIG).unwrap();
    for (from, to) in [
        // Older files name the watched event `eventType`.
        (
            r#""eventName":"TOILET_ACTIVITY""#,
            r#""eventType":"TOILET_ACTIVITY""#,
        ),
        // The action type in any case.
        (r#""type":"ALARM""#, r#""type":"alarm""#),
        (r#""type":"ALARM""#, r#""type":"Alarm""#),
        // The robot id as text.
        (r#""robotId":1"#, r#""robotId":"1""#),
    ] {
        let text = COMPOSE_MONITORING_CONFIG.replace(from, to);
        assert_ne!(text, COMPOSE_MONITORING_CONFIG, "{to}");
        assert_eq!(parse_monitors(&text).unwrap(), reference, "{to}");
    }
    // A monitors list takes `type` in any case too.
    let list = "- {robotId: 1, ruleId: a, eventType: E, window: 1m, daily: {start: \"00:01\", \
                end: \"23:59\"}, actions: [{type: ALARM, eventName: X}]}";
    assert!(parse_monitor_list(list).is_ok());
}

#[test]
fn job_service_rules_name_the_watched_event_in_their_own_spelling() {
    let missing = COMPOSE_MONITORING_CONFIG.replace(r#""eventName":"TOILET_ACTIVITY","#, "");
    let missing_errors = errors(parse_job_service_config(&missing));
    assert_eq!(
        missing_errors,
        [
            "monitor robots[0].monitoringRules[0] (robot 1, rule toilet-activity-2hr): \
             eventName: is missing"
        ]
    );
    // A file with both (the job service read `eventName`) loads, watching `eventName`.
    let both = COMPOSE_MONITORING_CONFIG.replace(
        r#""eventName":"TOILET_ACTIVITY","#,
        r#""eventName":"TOILET_ACTIVITY","eventType":"BED_EXIT","#,
    );
    let monitors = parse_job_service_config(&both).unwrap();
    assert_eq!(monitors[0].event_type(), "TOILET_ACTIVITY");
    let other_kind = COMPOSE_MONITORING_CONFIG.replace(r#""type":"ALARM""#, r#""type":"EMAIL""#);
    let kind_errors = errors(parse_job_service_config(&other_kind));
    assert!(
        kind_errors[0].contains("actions[0].type: \"EMAIL\" is not an action type"),
        "{kind_errors:?}"
    );
}

/// The job service ran with a window longer than its daily session, so such a file loads
/// (SPEC §12: unchanged), while a monitors list, written for this service, is told.
#[test]
fn a_job_service_window_longer_than_the_session_loads() {
    let long = COMPOSE_MONITORING_CONFIG
        .replace(
            r#""windowDurationMinutes":1"#,
            r#""windowDurationMinutes":120"#,
        )
        .replace(r#""startTime":"00:01""#, r#""startTime":"08:00""#)
        .replace(r#""endTime":"23:59""#, r#""endTime":"09:00""#);
    let monitors = parse_job_service_config(&long).unwrap();
    assert_eq!(monitors[0].window().as_seconds(), 7200);
    assert!(monitors[0].window_outlasts_session());
    assert!(
        !parse_job_service_config(COMPOSE_MONITORING_CONFIG).unwrap()[0].window_outlasts_session()
    );
    // Its definition reads back (as the store does) as the same monitor.
    let definition = monitors[0].definition();
    assert_eq!(
        Monitor::from_deployed_definition(&definition).unwrap(),
        monitors[0]
    );
    let refused = Monitor::from_definition(&definition).unwrap_err();
    assert_eq!(refused[0].field, "window", "{refused:?}");
}

/// A monitors list may not post one event both with and without a level (the relay could not
/// tell the two posts apart); a deployed definition of that shape still reads back.
#[test]
fn an_event_posted_with_and_without_a_level_is_refused_as_written() {
    let list = "- {robotId: 1, ruleId: a, eventType: T, window: 1m, daily: {start: \"08:00\", \
                end: \"09:00\"}, actions: [{type: alarm, eventName: X}, {type: alarm, \
                eventName: Y}, {type: alarm, eventName: X, level: 3}]}";
    let refused = errors(parse_monitor_list(list));
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(
        refused[0].contains("actions[0].level: is missing while actions[2] posts the same event"),
        "{refused:?}"
    );
    let without_the_level = list.replace(", level: 3", "");
    let monitor = parse_monitor_list(&without_the_level).unwrap().remove(0);
    let mut definition = monitor.definition();
    definition.actions.as_mut().unwrap()[2].level = Some(3);
    assert!(Monitor::from_deployed_definition(&definition).is_ok());
    assert!(Monitor::from_definition(&definition).is_err());
}

/// An event name is 1 to 128 characters — characters, not bytes, as the API's schema and
/// MySQL count them.
#[test]
fn event_names_are_counted_in_characters() {
    let list = |name: &str| {
        format!(
            "- {{robotId: 1, ruleId: a, eventType: {name}, window: 1m, daily: {{start: \"08:00\", \
             end: \"09:00\"}}, actions: [{{type: alarm, eventName: X}}]}}"
        )
    };
    assert!(parse_monitor_list(&list(&"é".repeat(128))).is_ok());
    let errors = errors(parse_monitor_list(&list(&"é".repeat(129))));
    assert!(errors[0].contains("eventType"), "{errors:?}");
}

/// An alarm action without `config.eventName` (or without `config`) posts what the job
/// service posted then: `NO_TOILET_ACTIVITY_ALARM`.
#[test]
fn a_job_service_alarm_without_an_event_name_posts_its_default() {
    for action in [r#"{"type":"ALARM"}"#, r#"{"type":"alarm","config":{}}"#] {
        let text = COMPOSE_MONITORING_CONFIG.replace(
            r#"{"type":"ALARM","config":{"eventName":"NO_TOILET_ACTIVITY_ALARM"}}"#,
            action,
        );
        assert_ne!(text, COMPOSE_MONITORING_CONFIG);
        let monitors = parse_job_service_config(&text).unwrap();
        assert_eq!(
            alarm(&monitors[0], 0),
            ("NO_TOILET_ACTIVITY_ALARM", None),
            "{action}"
        );
    }
    // A monitors list (this service's own format) still names it.
    let own = "- robotId: 1\n  ruleId: a\n  eventType: E\n  window: 1h\n  daily: {start: '08:00', end: '09:00'}\n  actions: [{type: alarm}]\n";
    assert!(
        errors(parse_monitor_list(own))
            .iter()
            .any(|e| e.contains("eventName")),
        "{:?}",
        errors(parse_monitor_list(own))
    );
}
