//! The monitors the configuration names (SPEC §12): `MONITORS_FILE` (a YAML or JSON list, or
//! the job service's shape), `MONITORING_CONFIG` (the monitoring job service's own variable,
//! exactly as that service is deployed) and `TOILET_MONITORING_CONFIG` (an older name of it) —
//! the last two inline JSON or the path of a file. Any may be set; every error names the file
//! (or the key), the monitor and the field, and two sources naming one monitor is an error.

use std::path::PathBuf;

use status_check_engine::monitor::{
    Monitor, MonitorError, parse_job_service_config, parse_monitors,
};

/// What one source parsed to.
type Parsed = Result<Vec<Monitor>, Vec<MonitorError>>;

/// Where monitors are configured; `None` for what is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// `MONITORS_FILE`.
    pub monitors_file: Option<PathBuf>,
    /// `MONITORING_CONFIG`: the job service's own variable, inline JSON or a path.
    pub monitoring_config: Option<String>,
    /// `TOILET_MONITORING_CONFIG`: an older name of it.
    pub toilet_monitoring_config: Option<String>,
}

/// The monitors of every source; `None` when none is configured (then nothing is synced, and
/// no monitor a file wrote before is disabled).
pub fn load(sources: &Sources) -> anyhow::Result<Option<Vec<Monitor>>> {
    if sources.monitors_file.is_none()
        && sources.monitoring_config.is_none()
        && sources.toilet_monitoring_config.is_none()
    {
        return Ok(None);
    }
    let mut errors: Vec<String> = Vec::new();
    let mut parsed: Vec<(String, Parsed)> = Vec::new();
    if let Some(path) = &sources.monitors_file {
        match std::fs::read_to_string(path) {
            Ok(text) => parsed.push((path.display().to_string(), parse_monitors(&text))),
            Err(e) => errors.push(format!(
                "MONITORS_FILE: cannot read {}: {e}",
                path.display()
            )),
        }
    }
    for (key, value) in [
        ("MONITORING_CONFIG", &sources.monitoring_config),
        (
            "TOILET_MONITORING_CONFIG",
            &sources.toilet_monitoring_config,
        ),
    ] {
        let Some(value) = value else { continue };
        if value.trim_start().starts_with('{') {
            parsed.push((key.to_owned(), parse_job_service_config(value)));
        } else {
            match std::fs::read_to_string(value) {
                Ok(text) => parsed.push((value.to_owned(), parse_job_service_config(&text))),
                Err(e) => errors.push(format!(
                    "{key}: cannot read {value} (neither inline JSON nor a readable file): {e}"
                )),
            }
        }
    }
    let mut loaded: Vec<(Monitor, String)> = Vec::new();
    for (source, result) in parsed {
        match result {
            Ok(monitors) => loaded.extend(monitors.into_iter().map(|m| (m, source.clone()))),
            Err(found) => errors.extend(
                found
                    .into_iter()
                    .map(|e| e.with_source(source.clone()).to_string()),
            ),
        }
    }
    for (i, (monitor, source)) in loaded.iter().enumerate() {
        if let Some((_, first)) = loaded[..i].iter().find(|(other, _)| {
            other.robot_id() == monitor.robot_id() && other.rule_id() == monitor.rule_id()
        }) {
            errors.push(format!(
                "{source}: monitor (robot {}, rule {}): ruleId: also in {first}; each monitor \
                 may be configured once",
                monitor.robot_id(),
                monitor.rule_id()
            ));
        }
    }
    if !errors.is_empty() {
        anyhow::bail!("invalid monitors configuration:\n  {}", errors.join("\n  "));
    }
    for (monitor, source) in loaded.iter().filter(|(m, _)| m.window_outlasts_session()) {
        tracing::warn!(
            source,
            robot_id = monitor.robot_id(),
            rule_id = %monitor.rule_id(),
            window = %monitor.window(),
            "the monitor's window is longer than its daily session {}–{}: its windows are cut \
             at the session's end, so it alarms only on a day a clock change lengthens",
            monitor.daily().start(),
            monitor.daily().end(),
        );
    }
    Ok(Some(
        loaded.into_iter().map(|(monitor, _)| monitor).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "- robotId: 42\n  ruleId: no-toilet\n  eventType: TOILET_ACTIVITY\n  \
        window: 2h\n  daily: {start: \"08:00\", end: \"22:00\"}\n  actions: [{type: alarm, \
        eventName: NO_TOILET_ACTIVITY_ALARM}]\n";

    const JOB: &str = r#"{"robots": [{"robotId": "43", "timezone": "Europe/Amsterdam",
        "monitoringRules": [{"ruleId": "toilet", "eventType": "TOILET_ACTIVITY",
        "windowDurationMinutes": 120, "dailyWindow": {"startTime": "08:00", "endTime": "22:00"},
        "actions": [{"type": "alarm", "config": {"eventName": "NO_TOILET_ACTIVITY_ALARM"}}]}]}]}"#;

    fn toilet(value: &str) -> Sources {
        Sources {
            toilet_monitoring_config: Some(value.to_owned()),
            ..Sources::default()
        }
    }

    /// The job service's `MONITORING_CONFIG` in the public Tinybots dev compose file.
    const COMPOSE: &str = r#"{"robots":[{"robotId":1,"timezone":"Europe/Amsterdam","enabled":true,"monitoringRules":[{"ruleId":"toilet-activity-2hr","eventName":"TOILET_ACTIVITY","windowDurationMinutes":1,"dailyWindow":{"startTime":"00:01","endTime":"23:59"},"actions":[{"type":"ALARM","config":{"eventName":"NO_TOILET_ACTIVITY_ALARM"}}]}]}]}"#;

    #[test]
    fn the_job_services_own_variable_loads_inline_or_from_a_file() {
        let inline = load(&Sources {
            monitoring_config: Some(COMPOSE.to_owned()),
            ..Sources::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(inline.len(), 1);
        assert_eq!(inline[0].event_type(), "TOILET_ACTIVITY");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("monitoring.json");
        std::fs::write(&file, COMPOSE).unwrap();
        let from_file = load(&Sources {
            monitoring_config: Some(file.to_str().unwrap().to_owned()),
            ..Sources::default()
        })
        .unwrap()
        .unwrap();
        assert_eq!(from_file, inline);
        // Beside the older variable, one monitor named twice is refused, naming both.
        let error = load(&Sources {
            monitoring_config: Some(COMPOSE.to_owned()),
            toilet_monitoring_config: Some(COMPOSE.to_owned()),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "TOILET_MONITORING_CONFIG: monitor (robot 1, rule toilet-activity-2hr): ruleId: \
                 also in MONITORING_CONFIG"
            ),
            "{error}"
        );
        let error = load(&Sources {
            monitoring_config: Some(COMPOSE.replace("00:01", "25:00")),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "MONITORING_CONFIG: monitor robots[0].monitoringRules[0] (robot 1, rule \
                 toilet-activity-2hr): dailyWindow.startTime:"
            ),
            "{error}"
        );
    }

    #[test]
    fn nothing_configured_syncs_nothing() {
        assert!(load(&Sources::default()).unwrap().is_none());
    }

    #[test]
    fn both_sources_load_and_errors_name_the_file_monitor_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("monitors.yaml");
        std::fs::write(&list, LIST).unwrap();
        let job = dir.path().join("toilet.json");
        std::fs::write(&job, JOB).unwrap();
        let from_files = load(&Sources {
            monitors_file: Some(list.clone()),
            toilet_monitoring_config: Some(job.to_str().unwrap().to_owned()),
            ..Sources::default()
        })
        .unwrap()
        .unwrap();
        let ids: Vec<(i64, String)> = from_files
            .iter()
            .map(|m| (m.robot_id(), m.rule_id().to_string()))
            .collect();
        assert_eq!(
            ids,
            [(42, "no-toilet".to_owned()), (43, "toilet".to_owned())]
        );
        assert_eq!(load(&toilet(JOB)).unwrap().unwrap().len(), 1, "inline JSON");

        std::fs::write(&list, LIST.replace("22:00", "07:00")).unwrap();
        let error = load(&Sources {
            monitors_file: Some(list.clone()),
            ..Sources::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("monitors.yaml: monitor [0] (robot 42, rule no-toilet): daily.end:"),
            "{error}"
        );
        let error = load(&toilet(&JOB.replace("Europe/Amsterdam", "Nowhere/City")))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("TOILET_MONITORING_CONFIG: monitor robots[0] (robot 43): timezone:"),
            "{error}"
        );
        let error = load(&toilet("/no/such/file.json")).unwrap_err().to_string();
        assert!(error.contains("/no/such/file.json"), "{error}");
    }

    #[test]
    fn a_monitor_configured_twice_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("monitors.yaml");
        std::fs::write(
            &list,
            LIST.replace("42", "43").replace("no-toilet", "toilet"),
        )
        .unwrap();
        let error = load(&Sources {
            monitors_file: Some(list.clone()),
            ..toilet(JOB)
        })
        .unwrap_err()
        .to_string();
        assert!(
            error.contains(
                "TOILET_MONITORING_CONFIG: monitor (robot 43, rule toilet): ruleId: also in"
            ),
            "{error}"
        );
    }
}
