//! Micro-Managers client (SPEC §5.1): fetches a script step.

use async_trait::async_trait;
use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::http::{ClientBuildError, UpstreamHttp, malformed};
use super::{MicroManagers, NextCommand, ScriptStep, StepRef, UpstreamConfig, UpstreamError};

/// The service label in errors, logs and metrics.
pub const SERVICE: &str = "micro-managers";

/// `next.type` of a step whose next steps are chosen by command.
const MULTIPLE_CHOICE: &str = "multipleChoice";

/// [`MicroManagers`] over HTTP.
#[derive(Debug, Clone)]
pub struct HttpMicroManagers {
    http: UpstreamHttp,
}

impl HttpMicroManagers {
    pub fn new(config: &UpstreamConfig) -> Result<Self, ClientBuildError> {
        Ok(HttpMicroManagers {
            http: UpstreamHttp::new(SERVICE, config)?,
        })
    }
}

#[async_trait]
impl MicroManagers for HttpMicroManagers {
    async fn script_step(
        &self,
        step: StepRef,
        call_ref: &str,
    ) -> Result<ScriptStep, UpstreamError> {
        let url = self.http.url([
            "internal".to_owned(),
            "v5".to_owned(),
            "scripts".to_owned(),
            "robots".to_owned(),
            step.robot_id.to_string(),
            "scripts".to_owned(),
            "steps".to_owned(),
            step.step_id.to_string(),
        ]);
        self.http
            .request(
                "script_step",
                call_ref,
                Method::GET,
                &url,
                |answer| match answer.status {
                    StatusCode::OK => answer.json::<StepDocument>(SERVICE)?.into_step(),
                    StatusCode::NOT_FOUND => Err(UpstreamError::NotFound { service: SERVICE }),
                    _ => Err(answer.unexpected(SERVICE)),
                },
            )
            .await
    }
}

/// The 200 body of the step route. Unknown fields are ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepDocument {
    step: StepDto,
    node: NodeDto,
    #[serde(default)]
    next: Option<NextDto>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StepDto {
    id: i64,
    script_version_id: i64,
    step_type: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeDto {
    #[serde(rename = "type")]
    node_type: String,
    /// Only on `statusCheck` nodes.
    #[serde(default)]
    status_check_name: Option<String>,
    #[serde(default)]
    past_interval: Option<i64>,
    #[serde(default)]
    future_interval: Option<i64>,
}

/// `next`: its shape depends on its type, so the choices are only read for `multipleChoice`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NextDto {
    #[serde(rename = "type", default)]
    next_type: Option<String>,
    #[serde(default)]
    multiple_choice: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ChoiceDto {
    #[serde(default)]
    primary_command: Option<String>,
    #[serde(default)]
    commands: Option<Vec<String>>,
    #[serde(default)]
    next_step_id: Option<i64>,
}

impl StepDocument {
    fn into_step(self) -> Result<ScriptStep, UpstreamError> {
        let (next_type, choices) = match self.next {
            None => (String::new(), None),
            Some(next) => (next.next_type.unwrap_or_default(), next.multiple_choice),
        };
        let next = match choices {
            Some(choices) if next_type == MULTIPLE_CHOICE && !choices.is_null() => {
                let choices: Vec<ChoiceDto> = serde_json::from_value(choices)
                    .map_err(|e| malformed(SERVICE, "next.multipleChoice", e))?;
                choices
                    .into_iter()
                    // A choice without a command or a next step leads nowhere a check can go.
                    .filter_map(|choice| {
                        Some(NextCommand {
                            command: choice.primary_command?,
                            commands: choice.commands.unwrap_or_default(),
                            next_step_id: choice.next_step_id?,
                        })
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        Ok(ScriptStep {
            step_id: self.step.id,
            script_version_id: self.step.script_version_id,
            step_type: self.step.step_type,
            node_type: self.node.node_type,
            status_check_name: self.node.status_check_name,
            past_interval: self.node.past_interval.unwrap_or(0),
            future_interval: self.node.future_interval.unwrap_or(0),
            next_type,
            next,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<ScriptStep, UpstreamError> {
        serde_json::from_str::<StepDocument>(json)
            .expect("parses")
            .into_step()
    }

    #[test]
    fn other_node_types_and_missing_next_are_fine() {
        let step = parse(
            r#"{"step":{"id":1,"scriptVersionId":2,"stepType":"say"},
                "node":{"type":"say","text":"hi"}}"#,
        )
        .unwrap();
        assert_eq!(step.node_type, "say");
        assert_eq!(step.status_check_name, None);
        assert_eq!((step.past_interval, step.future_interval), (0, 0));
        assert_eq!(step.next_type, "");
        assert!(step.next.is_empty());
    }

    #[test]
    fn next_of_another_type_has_no_choices() {
        let step = parse(
            r#"{"step":{"id":1,"scriptVersionId":2,"stepType":"say"},
                "node":{"type":"say","pastInterval":null},
                "next":{"type":"goto","nextStepId":5,"multipleChoice":"whatever"}}"#,
        )
        .unwrap();
        assert_eq!(step.next_type, "goto");
        assert!(step.next.is_empty());
        assert_eq!(step.past_interval, 0);
    }

    #[test]
    fn incomplete_choices_are_skipped_and_bad_ones_refused() {
        let step = parse(
            r#"{"step":{"id":1,"scriptVersionId":2,"stepType":"statusCheck"},
                "node":{"type":"statusCheck"},
                "next":{"type":"multipleChoice","multipleChoice":[
                  {"primaryCommand":"pass","nextStepId":null},
                  {"primaryCommand":"fail","nextStepId":7}]}}"#,
        )
        .unwrap();
        assert_eq!(
            step.next,
            vec![NextCommand {
                command: "fail".into(),
                commands: vec![],
                next_step_id: 7
            }]
        );
        let bad = parse(
            r#"{"step":{"id":1,"scriptVersionId":2,"stepType":"statusCheck"},
                "node":{"type":"statusCheck"},
                "next":{"type":"multipleChoice","multipleChoice":{"a":1}}}"#,
        );
        assert!(matches!(bad, Err(UpstreamError::Invalid { .. })), "{bad:?}");
    }
}
