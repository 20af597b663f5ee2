//! Rules: one CEL boolean expression each, compiled at template load.
//!
//! Every rule is compiled twice where it can be: once for the CEL interpreter (the reference,
//! able to run any rule) and, when its shape is one the [`native`] compiler knows, once to a
//! tree of native closures over the events as they are. Evaluation takes the native path when
//! there is one; tests check both paths agree.
//!
//! Every evaluation has a cost budget ([`Limits::cost_budget`]): counted as it runs on the
//! native path, checked from the static estimate (`cost`) before running on the interpreter.
//! `matches()` patterns must be literals and are compiled once, natively (`regexes`).

mod bounds;
mod cost;
mod interpreted;
mod native;
mod references;
mod regexes;
mod vars;

use std::fmt;
use std::sync::OnceLock;

use crate::model::{CheckResult, Event};

pub use cost::CostBound;
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
    /// Most cost units one evaluation of one rule may spend: one per element a comprehension
    /// (`exists`, `all`, `exists_one`, `filter`, `map`) visits. Past it the rule errors (and
    /// counts as false).
    pub cost_budget: u64,
}

/// Deepest a rule's expression tree may be (operators chained, calls, comprehensions):
/// everything that walks a rule recurses that deep.
pub const MAX_DEPTH: usize = 32;

/// Most comprehensions one rule may hold: compiling a chain of them (`events.filter(…)
/// .filter(…)…`) natively takes time that grows steeply with their number, and no rule needs
/// many (the shipped ones use two at most).
pub const MAX_COMPREHENSIONS: usize = 8;

/// The default [`Limits::cost_budget`]: ten times what the costliest shipped rule spends over a
/// history at the default cap of 10,000 records (toilet-activity's PASS: two
/// `filter(…).size()` counts that find nothing, 20,000; `tests/cost.rs` measures it) — twenty
/// full passes over a capped history. At the benchmarked speeds that is under a millisecond
/// on the specialised native path, about 12 ms on the general one and 0.25–0.5 s on the
/// interpreter (1.2–2.7 µs per element).
pub const DEFAULT_COST_BUDGET: u64 = 200_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rule_len: 1024,
            max_nesting: 24,
            history_cap: 10_000,
            cost_budget: DEFAULT_COST_BUDGET,
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
    #[error(
        "rule is {depth} operations deep, more than the limit of {max} (a long chain of \
         operators: split it, or use a list and `in` / `exists`)"
    )]
    TooDeep { depth: usize, max: usize },
    #[error(
        "rule has {count} comprehensions (exists, all, exists_one, filter, map), more than the \
         limit of {max}"
    )]
    TooManyComprehensions { count: usize, max: usize },
    #[error(
        "rule may visit up to {bound} elements even over a history of {records} records, more \
         than the cost budget of {budget} per evaluation: it could never run to its end"
    )]
    OverBudget {
        bound: u64,
        records: usize,
        budget: u64,
    },
    #[error("unknown variable or function '{0}' (variables: {vars})", vars = VARIABLES.join(", "))]
    UnknownReference(String),
    #[error(
        "matches() needs a literal pattern (a string in quotes), so that it is compiled once, \
         at load; a pattern computed while the rule runs would be compiled on every call"
    )]
    DynamicRegex,
    #[error("matches() pattern {pattern:?} is not a valid regular expression: {reason}")]
    InvalidRegex { pattern: String, reason: String },
    #[error(
        "a rule using matches() must run natively, where its pattern is compiled once at load \
         (the interpreter compiles it on every call); this one does not: {0}"
    )]
    RegexNotNative(Fallback),
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

    /// How many records the rule sees.
    fn len(&self) -> usize {
        self.past.len() + self.future().len()
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
    /// The static bound of what an evaluation costs, by history length.
    cost: CostBound,
    /// [`Limits::cost_budget`] when the rule was compiled.
    budget: u64,
    /// Whether the rule calls `matches()` (and so must stay native).
    uses_regex: bool,
    /// Whether it is `exists` over the events with a test of each alone
    /// ([`Rule::holds_once_any_event_does`]).
    exists_of_each: bool,
}

/// Why a rule runs on the interpreter instead of natively. Shipped rules must not (SPEC §10);
/// `templates validate` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// The native compiler has no form for part of the rule: that part, when a scan of the rule
    /// can name it (`'%'`, `has()`, a `map` comprehension).
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
        // Before anything walks the tree recursively.
        let depth = bounds::depth(interpreted.expression());
        if depth > MAX_DEPTH {
            return Err(RuleCompileError::TooDeep {
                depth,
                max: MAX_DEPTH,
            });
        }
        if let Some(name) = references::unknown_reference(interpreted.expression()) {
            return Err(RuleCompileError::UnknownReference(name));
        }
        let count = bounds::comprehensions(interpreted.expression());
        if count > MAX_COMPREHENSIONS {
            return Err(RuleCompileError::TooManyComprehensions {
                count,
                max: MAX_COMPREHENSIONS,
            });
        }
        let uses_regex = regexes::check(interpreted.expression())? > 0;
        let native = native::compile(interpreted.expression());
        let fallback = native
            .is_none()
            .then(|| Fallback::Unsupported(native::unsupported_part(interpreted.expression())));
        if let (true, Some(fallback)) = (uses_regex, &fallback) {
            return Err(RuleCompileError::RegexNotNative(fallback.clone()));
        }
        Ok(Rule {
            source: source.to_owned(),
            cost: cost::estimate(interpreted.expression()),
            budget: limits.cost_budget,
            uses_regex,
            exists_of_each: native::is_exists_of_each_event(interpreted.expression()),
            interpreted,
            native,
            fallback,
        })
    }

    /// Whether the rule is `future.exists(e, P)` or `events.exists(e, P)` with `P` reading only
    /// `e`: true from the first event that satisfies `P` on, whatever came before it or after.
    pub fn holds_once_any_event_does(&self) -> bool {
        self.exists_of_each
    }

    /// The static bound of an evaluation's cost (see [`Limits::cost_budget`]), as a polynomial
    /// in the number of records the rule sees.
    pub fn cost_bound(&self) -> &CostBound {
        &self.cost
    }

    /// Why template validation refuses this rule for its cost: it grows faster than linearly
    /// with the history. `None` when it does not.
    pub fn growth_error(&self) -> Option<String> {
        let degree = self.cost.degree();
        (degree >= 2).then(|| cost::growth_message(degree))
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

    /// Evaluates the rule: native when possible, else interpreted. Never panics. Past the
    /// cost budget the rule errors.
    pub fn evaluate(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        self.evaluate_with_cost(input).0
    }

    /// [`Rule::evaluate`], with the cost it spent: counted as it ran on the native path; on the
    /// interpreter, which cannot count, the static bound for this history, checked against the
    /// budget before running.
    pub fn evaluate_with_cost(&self, input: &RuleInput<'_>) -> (Result<bool, RuleError>, u64) {
        match &self.native {
            Some(pred) => pred.eval(input, self.budget),
            None => {
                let records = input.len();
                let bound = self.cost.at(records);
                if bound > self.budget {
                    let message = format!(
                        "rule may visit up to {bound} elements over {records} records, more \
                         than the cost budget of {} per evaluation (checked before running: \
                         the rule runs on the interpreter, which cannot count as it goes)",
                        self.budget
                    );
                    return (Err(RuleError { message }), bound);
                }
                (self.evaluate_interpreted(input), bound)
            }
        }
    }

    /// Evaluates the rule with the CEL interpreter, whatever its shape: the reference the
    /// native path is tested against.
    pub fn evaluate_interpreted(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        self.interpreted.evaluate(input)
    }

    /// The interpreter's verdict on a trial input, keeping the error kind that template
    /// validation needs to tell a broken rule from one that merely errors on this data. A
    /// rule whose bound over this input is past the budget is not run (nothing would stop it):
    /// it is refused, as it could never run to its end.
    pub(crate) fn trial(&self, input: &RuleInput<'_>) -> Result<bool, TrialError> {
        let records = input.len();
        let bound = self.cost.at(records);
        if bound > self.budget {
            let refusal = RuleCompileError::OverBudget {
                bound,
                records,
                budget: self.budget,
            };
            return Err(TrialError::Refused(refusal.to_string()));
        }
        self.interpreted.trial(input)
    }

    /// Drops the native form when it disagrees with the interpreter on `input` — a safety
    /// net: the differential tests are meant to make this never happen.
    ///
    /// A rule using `matches()` keeps its native form (the interpreter would compile the
    /// pattern on every call): it returns the refusal instead, and the template is refused.
    pub(crate) fn keep_native_if_agrees(
        &mut self,
        input: &RuleInput<'_>,
    ) -> Result<(), RuleCompileError> {
        if let Some(native) = &self.native {
            let agree = match (
                native.eval(input, self.budget).0,
                self.evaluate_interpreted(input),
            ) {
                (Ok(a), Ok(b)) => a == b,
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !agree && self.uses_regex {
                return Err(RuleCompileError::RegexNotNative(Fallback::DisagreedOnTrial));
            }
            if !agree {
                self.native = None;
                self.fallback = Some(Fallback::DisagreedOnTrial);
            }
        }
        Ok(())
    }
}

/// What trial evaluation at load found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TrialError {
    /// A field of an event that does not exist.
    UnknownField(String),
    /// The rule produced something other than a boolean.
    NotBoolean(String),
    /// The rule cannot be run within its budget even on this small input.
    Refused(String),
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
    /// The names `depends_on` lists more than once, each once, in order. Harmless to the
    /// rules, but Megazord refuses a subscription that repeats a name: the service subscribes
    /// to each once, and `templates validate` warns.
    pub fn repeated_dependencies(&self) -> Vec<&str> {
        let mut repeated: Vec<&str> = Vec::new();
        for (i, name) in self.depends_on.iter().enumerate() {
            if self.depends_on[..i].contains(name) && !repeated.contains(&name.as_str()) {
                repeated.push(name);
            }
        }
        repeated
    }

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

    /// Whether the events' order cannot change what the phase decides: it has one rule, and
    /// that rule holds once any event satisfies a test of that event alone
    /// ([`Rule::holds_once_any_event_does`]). Whichever satisfying event comes first, the phase
    /// decides that rule's result — the same outcome in any order (which event is recorded
    /// may differ). Ignores the history cap and the cost budget, which a reordering could
    /// reach only at their bounds.
    pub fn decides_alike_in_any_order(&self) -> bool {
        let mut rules = self.rules();
        matches!((rules.next(), rules.next()), (Some((_, rule)), None) if rule.holds_once_any_event_does())
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
