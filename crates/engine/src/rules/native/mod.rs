//! The native fast path: common rule shapes compiled to Rust closures.
//!
//! The CEL interpreter looks every name up by string, boxes every intermediate value and
//! builds a scope per loop iteration. For the shapes templates actually use — boolean logic,
//! comparisons, event fields, `size`, indexing, time arithmetic, `in` over a literal list,
//! `matches` with a literal pattern (compiled here, once) and
//! the `exists` / `all` / `exists_one` / `filter` macros — this module resolves every name at
//! compile time and builds a tree of closures that read the events in place: no allocation, no
//! lookups. Anything else returns `None` and the rule runs on the interpreter. The semantics,
//! errors included (`error || true` is `true`), follow the interpreter's; differential tests
//! in `tests/native_vs_interpreter.rs` hold them to it.
//!
//! On top of that general tree, a comprehension whose predicate only reads the element's
//! infallible fields compiles a second time to a specialised loop: a plain boolean test per
//! element, values that do not depend on the element computed once per evaluation,
//! `filter(…).size()` counted without building a list and `filter` chains fused. It falls
//! back to the general tree for any evaluation where that precomputation fails, so the two can
//! never disagree on errors.
//!
//! Every comprehension charges the elements it visits to the evaluation's cost (the frame
//! carries the count and the budget); past the budget the rule errors.
//!
//! Where things are:
//! - [`values`]: what a rule computes with (values, record lists, the frame, compile-time types);
//! - [`general`]: the general compiler — names, fields, literals, calls, indexing, `size`;
//! - [`operators`]: logic, equality, ordering, arithmetic, `in`, string tests;
//! - [`comprehensions`]: the four macros, recognised and run on the general path;
//! - [`fast`]: the specialised per-element tests and the loops (bounded counts) that run them;
//! - [`fast_compiler`]: compiling a comprehension's predicate to those tests;
//! - [`unsupported`]: naming what keeps a rule off the native path.

mod comprehensions;
mod fast;
mod fast_compiler;
mod general;
mod operators;
mod unsupported;
mod values;

use std::cell::Cell;

use cel::common::ast::IdedExpr;

use super::{RuleError, RuleInput};
use general::Compiler;
use values::{Frame, NVal, Node, error, over_budget};

pub(super) use comprehensions::is_exists_of_each_event;
pub(super) use unsupported::unsupported_part;

/// How many comprehensions may nest in a natively compiled rule.
const MAX_SLOTS: usize = 4;

/// A rule compiled to closures, with the string constants the closures refer to.
pub(super) struct Pred {
    root: Node,
    consts: Vec<String>,
    /// How many comprehensions compiled to the specialised path.
    #[cfg_attr(not(test), allow(dead_code))]
    fast_loops: usize,
}

impl Pred {
    /// Evaluates the rule, counting its cost (one unit per element a comprehension visits);
    /// past `budget` it errors, whatever the rule would have returned.
    pub(super) fn eval(
        &self,
        input: &RuleInput<'_>,
        budget: u64,
    ) -> (Result<bool, RuleError>, u64) {
        let cost = Cell::new(0);
        let frame = Frame {
            input: *input,
            consts: &self.consts,
            slots: [None; MAX_SLOTS],
            cost: &cost,
            budget,
        };
        let result = (self.root)(&frame);
        // An exceeded budget is never absorbed (`over_budget || true` is still an error).
        if cost.get() > budget {
            return (Err(over_budget(budget)), cost.get());
        }
        let result = match result {
            Ok(NVal::Bool(value)) => Ok(value),
            Ok(other) => Err(error(format!(
                "rule returned {}, not a bool",
                other.type_name()
            ))),
            Err(e) => Err(e),
        };
        (result, cost.get())
    }
}

/// Compiles `expr` when every part of it has a native form.
pub(super) fn compile(expr: &IdedExpr) -> Option<Pred> {
    let mut compiler = Compiler::default();
    let (root, _) = compiler.expr(expr)?;
    Some(Pred {
        root,
        consts: compiler.consts,
        fast_loops: compiler.fast_loops,
    })
}
