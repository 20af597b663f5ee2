//! Rules: one CEL boolean expression each, compiled at template load.
//!
//! Every rule is compiled twice where it can be: once for the CEL interpreter (the reference,
//! able to run any rule) and, when its shape is one the [`native`] compiler knows, once to a
//! tree of native closures over the events as they are. Evaluation takes the native path when
//! there is one; tests check both paths agree.

mod interpreted;
mod native;
mod references;
mod vars;

use std::fmt;
use std::sync::OnceLock;

use crate::model::{CheckResult, Event};

pub use interpreted::CelLists;
pub use vars::{RuleVars, VARIABLES};

/// Bounds on what a template may ask of the engine (SPEC §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest rule text, in characters.
    pub max_rule_len: usize,
    /// Deepest nesting of brackets, calls and comprehensions in a rule.
    pub max_nesting: u16,
    /// Most records a check may hold; taking in one more ends the check FAILED.
    pub history_cap: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rule_len: 1024,
            max_nesting: 24,
            history_cap: 10_000,
        }
    }
}

/// Why a rule was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleCompileError {
    #[error("rule is empty")]
    Empty,
    #[error("rule is {len} characters long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("syntax error: {0}")]
    Syntax(String),
    #[error("unknown variable or function '{0}' (variables: {vars})", vars = VARIABLES.join(", "))]
    UnknownReference(String),
}

/// A rule that failed while it ran. It counts as false.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RuleError {}

/// Everything a rule sees (SPEC §4.2), borrowed from the check's history.
///
/// `past` and `future` are each sorted oldest first by (event time, event id); `events` is
/// `past` followed by `future` — or only `past`, for a past rule.
#[derive(Clone, Copy)]
pub struct RuleInput<'a> {
    past: &'a [Event],
    future: &'a [Event],
    past_only: bool,
    vars: &'a RuleVars,
    /// The same events as CEL values, converted on first use by an interpreted rule and kept
    /// by the history from then on.
    cel: &'a OnceLock<CelLists>,
}

impl<'a> RuleInput<'a> {
    /// `past` and `future` are the whole sorted history; `past_only` hides `future` from the
    /// rule (past rules).
    pub fn new(
        past: &'a [Event],
        future: &'a [Event],
        past_only: bool,
        vars: &'a RuleVars,
        cel: &'a OnceLock<CelLists>,
    ) -> Self {
        RuleInput {
            past,
            future,
            past_only,
            vars,
            cel,
        }
    }

    pub fn vars(&self) -> &'a RuleVars {
        self.vars
    }

    fn past(&self) -> &'a [Event] {
        self.past
    }

    /// The future records the rule may see.
    fn future(&self) -> &'a [Event] {
        if self.past_only { &[] } else { self.future }
    }

    fn cel_lists(&self) -> &'a CelLists {
        self.cel
            .get_or_init(|| CelLists::new(self.past, self.future))
    }
}

/// One compiled rule.
pub struct Rule {
    source: String,
    interpreted: interpreted::CelRule,
    native: Option<native::Pred>,
    /// Why `native` is `None`.
    fallback: Option<Fallback>,
}

/// Why a rule runs on the interpreter instead of natively. Shipped rules must not (SPEC §10);
/// `templates validate` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The native compiler has no form for part of the rule: that part, when a scan of the rule
    /// can name it (`'%'`, `'matches'`, `has()`, a `map` comprehension).
    Unsupported(Option<String>),
    /// The native form disagreed with the interpreter on a trial input at load: a bug in the
    /// native compiler, worth reporting.
    DisagreedOnTrial,
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fallback::Unsupported(Some(part)) => {
                write!(f, "the native compiler does not support {part}")
            }
            Fallback::Unsupported(None) => f.write_str(
                "the native compiler does not support this combination of operands and types",
            ),
            Fallback::DisagreedOnTrial => f.write_str(
                "its native form disagreed with the interpreter on a trial input (a bug in the \
                 native compiler)",
            ),
        }
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("source", &self.source)
            .field("native", &self.native.is_some())
            .finish()
    }
}

impl Rule {
    pub fn compile(source: &str, limits: &Limits) -> Result<Rule, RuleCompileError> {
        let len = source.chars().count();
        if source.trim().is_empty() {
            return Err(RuleCompileError::Empty);
        }
        if len > limits.max_rule_len {
            return Err(RuleCompileError::TooLong {
                len,
                max: limits.max_rule_len,
            });
        }
        let interpreted = interpreted::CelRule::parse(source, limits.max_nesting)?;
        if let Some(name) = references::unknown_reference(interpreted.expression()) {
            return Err(RuleCompileError::UnknownReference(name));
        }
        let native = native::compile(interpreted.expression());
        let fallback = native
            .is_none()
            .then(|| Fallback::Unsupported(native::unsupported_part(interpreted.expression())));
        Ok(Rule {
            source: source.to_owned(),
            interpreted,
            native,
            fallback,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this rule runs as native code rather than through the interpreter.
    pub fn is_native(&self) -> bool {
        self.native.is_some()
    }

    /// Why this rule runs on the interpreter; `None` when it runs natively.
    pub fn fallback(&self) -> Option<&Fallback> {
        self.fallback.as_ref()
    }

    /// Evaluates the rule: native when possible, else interpreted. Never panics.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        match &self.native {
            Some(pred) => pred.eval(input),
            None => self.evaluate_interpreted(input),
        }
    }

    /// Evaluates the rule with the CEL interpreter, whatever its shape: the reference the
    /// native path is tested against.
    pub fn evaluate_interpreted(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        self.interpreted.evaluate(input)
    }

    /// The interpreter's verdict on a trial input, keeping the error kind that template
    /// validation needs to tell a broken rule from one that merely errors on this data.
    pub(crate) fn trial(&self, input: &RuleInput<'_>) -> Result<bool, TrialError> {
        self.interpreted.trial(input)
    }

    /// Drops the native form when it disagrees with the interpreter on `input` — a safety
    /// net: the differential tests are meant to make this never happen.
    pub(crate) fn keep_native_if_agrees(&mut self, input: &RuleInput<'_>) {
        if let Some(native) = &self.native {
            let agree = match (native.eval(input), self.evaluate_interpreted(input)) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !agree {
                self.native = None;
                self.fallback = Some(Fallback::DisagreedOnTrial);
            }
        }
    }
}

/// What trial evaluation at load found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrialError {
    /// A field of an event that does not exist.
    UnknownField(String),
    /// The rule produced something other than a boolean.
    NotBoolean(String),
    /// Any other run-time error: acceptable at load (it may depend on the data).
    Runtime(String),
}

/// The rules of one template phase, tried in the order PASS, FAIL, UNKNOWN.
#[derive(Debug, Default)]
pub struct PhaseRules {
    pub depends_on: Vec<String>,
    pub pass: Option<Rule>,
    pub fail: Option<Rule>,
    pub unknown: Option<Rule>,
}

/// The result of evaluating one phase's rules, with any rule that failed while running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub result: CheckResult,
    pub errors: Vec<RuleFailure>,
}

/// A rule that errored during an evaluation (it counted as false).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// Which rule: `PASS`, `FAIL` or `UNKNOWN`.
    pub outcome: CheckResult,
    pub error: RuleError,
}

impl PhaseRules {
    /// The rules present, in evaluation order.
    pub fn rules(&self) -> impl Iterator<Item = (CheckResult, &Rule)> {
        [
            (CheckResult::Pass, self.pass.as_ref()),
            (CheckResult::Fail, self.fail.as_ref()),
            (CheckResult::Unknown, self.unknown.as_ref()),
        ]
        .into_iter()
        .filter_map(|(outcome, rule)| rule.map(|rule| (outcome, rule)))
    }

    pub(crate) fn rules_mut(&mut self) -> impl Iterator<Item = (CheckResult, &mut Rule)> {
        [
            (CheckResult::Pass, self.pass.as_mut()),
            (CheckResult::Fail, self.fail.as_mut()),
            (CheckResult::Unknown, self.unknown.as_mut()),
        ]
        .into_iter()
        .filter_map(|(outcome, rule)| rule.map(|rule| (outcome, rule)))
    }

    /// Whether the phase has any rule. A phase without one (only in a template built with
    /// [`Template::without_rules`](crate::Template::without_rules)) records events without
    /// deciding anything.
    pub fn has_rules(&self) -> bool {
        self.rules().next().is_some()
    }

    /// The first rule that is true decides; none true → `PENDING`.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Evaluation {
        let mut errors = Vec::new();
        for (outcome, rule) in self.rules() {
            match rule.evaluate(input) {
                Ok(true) => {
                    return Evaluation {
                        result: outcome,
                        errors,
                    };
                }
                Ok(false) => {}
                Err(error) => errors.push(RuleFailure { outcome, error }),
            }
        }
        Evaluation {
            result: CheckResult::Pending,
            errors,
        }
    }
}
