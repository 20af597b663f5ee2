//! Micro-Managers (SPEC §5.1): the script steps robots run.
//!
//! - `GET /internal/v5/scripts/robots/{robotId}/scripts/steps/{stepId}` — the contract: the
//!   step document, or 404 for an unknown step. Steps belong to the script every robot runs.
//! - `POST /sim/steps` — adds (or replaces) a status-check step:
//!   `{"stepId"?, "statusCheckName", "pastInterval"?, "futureInterval"?, "next": {"pass": 124, …}}`;
//!   answers 201 with the step document.
//! - `GET /sim/steps` — every step document.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::problem::{Problem, rejection};

/// The script version of every simulated step (one demo script).
pub const SCRIPT_VERSION_ID: i64 = 789;

/// A status-check step: which template it runs, its windows, and where each command leads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DemoStep {
    #[serde(default)]
    pub step_id: Option<i64>,
    pub status_check_name: String,
    /// Seconds; 0 → the template's default.
    #[serde(default)]
    pub past_interval: i64,
    /// Seconds; 0 → the template's default.
    #[serde(default)]
    pub future_interval: i64,
    /// Command (`pass`, `fail`, `unknown`, …) → next step id.
    pub next: BTreeMap<String, i64>,
}

impl DemoStep {
    /// A step running `template` with its default windows, whose `pass`/`fail`/`unknown`
    /// commands lead to `step_id * 10 + 1`, `+ 2`, `+ 3`.
    pub fn for_template(step_id: i64, template: &str) -> Self {
        DemoStep {
            step_id: Some(step_id),
            status_check_name: template.to_string(),
            past_interval: 0,
            future_interval: 0,
            next: [("pass", 1), ("fail", 2), ("unknown", 3)]
                .into_iter()
                .map(|(command, offset)| (command.to_string(), step_id * 10 + offset))
                .collect(),
        }
    }

    /// The document Micro-Managers answers for this step.
    fn document(&self, step_id: i64) -> Value {
        let choices: Vec<Value> = self
            .next
            .iter()
            .map(|(command, next)| {
                json!({"intentionType": "command", "primaryCommand": command,
                       "commands": [command], "nextStepId": next})
            })
            .collect();
        json!({
            "step": {"id": step_id, "scriptVersionId": SCRIPT_VERSION_ID, "stepType": "statusCheck"},
            "node": {"type": "statusCheck", "statusCheckName": self.status_check_name,
                     "pastInterval": self.past_interval, "futureInterval": self.future_interval},
            "next": {"type": "multipleChoice", "multipleChoice": choices},
        })
    }
}

/// The Micro-Managers simulator. Cheap to clone; clones share their steps.
#[derive(Debug, Clone, Default)]
pub struct MicroManagersSim {
    steps: Arc<RwLock<Steps>>,
}

#[derive(Debug, Default)]
struct Steps {
    by_id: BTreeMap<i64, Value>,
    last_id: i64,
}

/// First id given to a step added without one.
const FIRST_STEP_ID: i64 = 1000;

impl MicroManagersSim {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one demo step per template, ids 101, 102, … in the order given; returns them.
    pub fn seed_demo<'a>(&self, templates: impl IntoIterator<Item = &'a str>) -> Vec<DemoStep> {
        templates
            .into_iter()
            .zip(101..)
            .map(|(template, step_id)| {
                let step = DemoStep::for_template(step_id, template);
                self.add_step(step.clone());
                step
            })
            .collect()
    }

    /// Adds or replaces a step; returns its id (a new one when the step has none).
    pub fn add_step(&self, step: DemoStep) -> i64 {
        let mut steps = self.steps.write().unwrap_or_else(|e| e.into_inner());
        let step_id = step.step_id.unwrap_or_else(|| {
            steps.last_id = steps.last_id.max(FIRST_STEP_ID - 1).saturating_add(1);
            steps.last_id
        });
        steps.last_id = steps.last_id.max(step_id);
        steps.by_id.insert(step_id, step.document(step_id));
        step_id
    }

    /// The step document, as the contract route answers it.
    pub fn step(&self, step_id: i64) -> Option<Value> {
        let steps = self.steps.read().unwrap_or_else(|e| e.into_inner());
        steps.by_id.get(&step_id).cloned()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/internal/v5/scripts/robots/{robot_id}/scripts/steps/{step_id}",
                get(get_step),
            )
            .route("/sim/steps", post(post_step).get(list_steps))
            .with_state(self.clone())
    }
}

async fn get_step(
    State(sim): State<MicroManagersSim>,
    path: Result<Path<(i64, i64)>, axum::extract::rejection::PathRejection>,
) -> Result<Json<Value>, Problem> {
    let Path((_robot_id, step_id)) = path.map_err(|e| rejection("path", e))?;
    sim.step(step_id)
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no step {step_id}")))
}

async fn post_step(
    State(sim): State<MicroManagersSim>,
    body: Result<Json<DemoStep>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), Problem> {
    let Json(step) = body.map_err(|e| rejection("body", e.body_text()))?;
    if step.status_check_name.trim().is_empty() {
        return Err(Problem::bad_field(
            "statusCheckName",
            "statusCheckName must not be empty",
        ));
    }
    if step.step_id.is_some_and(|id| !(1..i64::MAX).contains(&id)) {
        return Err(Problem::bad_field(
            "stepId",
            "stepId must be a positive integer below 2^63-1",
        ));
    }
    if step.past_interval < -1 {
        return Err(Problem::bad_field(
            "pastInterval",
            "pastInterval must be -1 (unbounded) or ≥ 0 seconds",
        ));
    }
    if step.future_interval < 0 {
        return Err(Problem::bad_field(
            "futureInterval",
            "futureInterval must be ≥ 0 seconds",
        ));
    }
    if step.next.is_empty() {
        return Err(Problem::bad_field(
            "next",
            "next must map at least one command to a step id",
        ));
    }
    let step_id = sim.add_step(step);
    let document = sim.step(step_id).unwrap_or(Value::Null);
    Ok((StatusCode::CREATED, Json(document)))
}

async fn list_steps(State(sim): State<MicroManagersSim>) -> Json<Vec<Value>> {
    let steps = sim.steps.read().unwrap_or_else(|e| e.into_inner());
    Json(steps.by_id.values().cloned().collect())
}
