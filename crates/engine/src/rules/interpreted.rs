//! The CEL interpreter path (`cel` crate): the reference every rule can run on.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use cel::common::types::{CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::parser::Expression;
use cel::{Context, Env, ExecutionError, Value};
use chrono::{DateTime, Utc};

use super::{RuleCompileError, RuleError, RuleInput, TrialError};
use crate::model::{Event, RecordPhase};

/// The standard CEL environment; immutable once built, shared by every rule. Without the
/// optional syntax (`a[?i]`, `a.?f`, `[?x]`): its values would hide a history list from the
/// cost estimate, and no rule needs them.
pub(super) static ENV: LazyLock<Arc<Env>> =
    LazyLock::new(|| Arc::new(Env::stdlib().with_optional_support(false)));

pub(super) struct CelRule {
    expression: Expression,
}

impl CelRule {
    pub(super) fn parse(source: &str, max_nesting: u16) -> Result<CelRule, RuleCompileError> {
        let expression = ENV
            .parser()
            .max_recursion_depth(max_nesting)
            .parse(source)
            .map_err(|errors| RuleCompileError::Syntax(one_line(&errors.to_string())))?;
        Ok(CelRule { expression })
    }

    pub(super) fn expression(&self) -> &Expression {
        &self.expression
    }

    fn run(&self, input: &RuleInput<'_>) -> Result<Value, ExecutionError> {
        let bindings = Bindings::new(input);
        let mut context = Context::with_env(Arc::clone(&ENV));
        context.set_variable_resolver(&bindings);
        Value::resolve(&self.expression, &context)
    }

    pub(super) fn evaluate(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        match self.run(input) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(RuleError {
                message: format!("rule returned {}, not a bool", other.type_of()),
            }),
            Err(error) => Err(RuleError {
                message: error.to_string(),
            }),
        }
    }

    pub(super) fn trial(&self, input: &RuleInput<'_>) -> Result<bool, TrialError> {
        match self.run(input) {
            Ok(Value::Bool(value)) => Ok(value),
            Ok(other) => Err(TrialError::NotBoolean(other.type_of().to_string())),
            Err(ExecutionError::NoSuchKey(name)) => Err(TrialError::UnknownField(name.to_string())),
            Err(error) => Err(TrialError::Runtime(error.to_string())),
        }
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The history as CEL values, built once per record and kept in step with the history, so an
/// evaluation only borrows them.
#[derive(Debug, Default, Clone)]
pub struct CelLists {
    past: CelList<'static>,
    future: CelList<'static>,
    all: CelList<'static>,
}

impl CelLists {
    /// Converts sorted past and future events.
    pub fn new(past: &[Event], future: &[Event]) -> CelLists {
        let convert = |events: &[Event], phase| {
            events
                .iter()
                .map(|event| event_value(event, phase))
                .collect::<Vec<_>>()
        };
        let past = convert(past, RecordPhase::Past);
        let future = convert(future, RecordPhase::Future);
        let all = past.iter().chain(&future).cloned().collect::<Vec<_>>();
        CelLists {
            past: past.into(),
            future: future.into(),
            all: all.into(),
        }
    }

    /// Inserts one event at `index` of its phase's sorted list.
    pub fn insert(&mut self, phase: RecordPhase, index: usize, event: &Event) {
        let value = event_value(event, phase);
        let past_len = self.past.len();
        let all_index = match phase {
            RecordPhase::Past => index,
            RecordPhase::Future => past_len + index,
        };
        insert_into(&mut self.all, all_index, value.clone());
        let list = match phase {
            RecordPhase::Past => &mut self.past,
            RecordPhase::Future => &mut self.future,
        };
        insert_into(list, index, value);
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }
}

fn insert_into(list: &mut CelList<'static>, index: usize, value: Box<dyn Val>) {
    let mut items = std::mem::take(list).into_inner();
    items.insert(index, value);
    *list = items.into();
}

fn event_value(event: &Event, phase: RecordPhase) -> Box<dyn Val> {
    let mut map: HashMap<CelMapKey<'static>, Box<dyn Val>> = HashMap::with_capacity(6);
    map.insert("id".into(), Box::new(CelInt::from(event.id)));
    map.insert("name".into(), Box::new(CelString::from(event.name.clone())));
    map.insert("createdAt".into(), Box::new(timestamp(event.created_at)));
    map.insert("phase".into(), Box::new(CelString::from(phase.as_str())));
    map.insert(
        "level".into(),
        match event.level {
            Some(level) => Box::new(CelInt::from(level)),
            None => Box::new(CelNull),
        },
    );
    map.insert(
        "referenceId".into(),
        match &event.reference_id {
            Some(reference) => Box::new(CelString::from(reference.clone())),
            None => Box::new(CelNull),
        },
    );
    Box::new(CelMap::from(map))
}

fn timestamp(at: DateTime<Utc>) -> CelTimestamp {
    CelTimestamp::from(at.fixed_offset())
}

static EMPTY: LazyLock<CelList<'static>> = LazyLock::new(CelList::default);

/// Resolves the variables of SPEC §4.2 by borrowing the converted lists.
struct Bindings<'a> {
    input: &'a RuleInput<'a>,
}

impl<'a> Bindings<'a> {
    fn new(input: &'a RuleInput<'a>) -> Self {
        Bindings { input }
    }
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let input = self.input;
        let lists = input.cel_lists();
        let optional_time = |at: Option<DateTime<Utc>>| match at {
            Some(at) => CowVal::owned(timestamp(at)),
            None => CowVal::owned(CelNull),
        };
        let vars = input.vars();
        let value = match variable {
            "events" if input.past_only => CowVal::Borrowed(&lists.past),
            "events" => CowVal::Borrowed(&lists.all),
            "past" => CowVal::Borrowed(&lists.past),
            "future" if input.past_only => CowVal::Borrowed(&*EMPTY),
            "future" => CowVal::Borrowed(&lists.future),
            "now" => CowVal::owned(timestamp(vars.now)),
            "since" => optional_time(vars.since),
            "until" => optional_time(vars.until),
            "plannedAt" => CowVal::owned(timestamp(vars.planned_at)),
            "robotId" => CowVal::owned(CelInt::from(vars.robot_id)),
            _ => return None,
        };
        Some(value)
    }
}
