//! The monitors the configuration names (SPEC §12): `MONITORS_FILE` (a YAML or JSON list, or
//! the old job service's shape) and `TOILET_MONITORING_CONFIG` (the job service's JSON, inline
//! or the path of a file). Every error names the file (or the key), the monitor and the field;
//! the same monitor in both is an error too.

use std::path::Path;

use status_check_engine::monitor::{
    Monitor, MonitorError, parse_job_service_config, parse_monitors,
};

/// What one source parsed to.
type Parsed = Result<Vec<Monitor>, Vec<MonitorError>>;

/// The monitors of both sources; `None` when neither is configured (then nothing is synced, and
/// no monitor a file wrote before is disabled).
pub fn load(
    monitors_file: Option<&Path>,
    toilet_monitoring_config: Option<&str>,
) -> anyhow::Result<Option<Vec<Monitor>>> {
    if monitors_file.is_none() && toilet_monitoring_config.is_none() {
        return Ok(None);
    }
    let mut errors: Vec<String> = Vec::new();
    let mut parsed: Vec<(String, Parsed)> = Vec::new();
    if let Some(path) = monitors_file {
        match std::fs::read_to_string(path) {
            Ok(text) => parsed.push((path.display().to_string(), parse_monitors(&text))),
            Err(e) => errors.push(format!(
                "MONITORS_FILE: cannot read {}: {e}",
                path.display()
            )),
        }
    }
    if let Some(value) = toilet_monitoring_config {
        if value.trim_start().starts_with('{') {
            parsed.push((
                "TOILET_MONITORING_CONFIG".to_owned(),
                parse_job_service_config(value),
            ));
        } else {
            match std::fs::read_to_string(value) {
                Ok(text) => parsed.push((value.to_owned(), parse_job_service_config(&text))),
                Err(e) => errors.push(format!(
                    "TOILET_MONITORING_CONFIG: cannot read {value} (neither inline JSON nor a \
                     readable file): {e}"
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

    #[test]
    fn nothing_configured_syncs_nothing() {
        assert!(load(None, None).unwrap().is_none());
    }

    #[test]
    fn both_sources_load_and_errors_name_the_file_monitor_and_field() {
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("monitors.yaml");
        std::fs::write(&list, LIST).unwrap();
        let job = dir.path().join("toilet.json");
        std::fs::write(&job, JOB).unwrap();
        let from_files = load(Some(&list), Some(job.to_str().unwrap()))
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
        assert_eq!(
            load(None, Some(JOB)).unwrap().unwrap().len(),
            1,
            "inline JSON"
        );

        std::fs::write(&list, LIST.replace("22:00", "07:00")).unwrap();
        let error = load(Some(&list), None).unwrap_err().to_string();
        assert!(
            error.contains("monitors.yaml: monitor [0] (robot 42, rule no-toilet): daily.end:"),
            "{error}"
        );
        let error = load(None, Some(&JOB.replace("Europe/Amsterdam", "Nowhere/City")))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("TOILET_MONITORING_CONFIG: monitor robots[0] (robot 43): timezone:"),
            "{error}"
        );
        let error = load(None, Some("/no/such/file.json"))
            .unwrap_err()
            .to_string();
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
        let error = load(Some(&list), Some(JOB)).unwrap_err().to_string();
        assert!(
            error.contains(
                "TOILET_MONITORING_CONFIG: monitor (robot 43, rule toilet): ruleId: also in"
            ),
            "{error}"
        );
    }
}
