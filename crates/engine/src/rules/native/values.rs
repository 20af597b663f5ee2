//! What a native rule computes with: its values, the lists of records it walks, the frame a
//! closure reads, and the types the compiler tracks.

use std::cell::Cell;
use std::rc::Rc;

use chrono::{DateTime, TimeDelta, Utc};

use super::MAX_SLOTS;
use crate::model::{Event, RecordPhase};
use crate::rules::{RuleError, RuleInput};

/// A compiled piece of a rule: reads the frame, returns a value or the interpreter's error.
pub(super) type Node = Box<dyn for<'a> Fn(&Frame<'a>) -> Res<'a> + Send + Sync>;
pub(super) type Res<'a> = Result<NVal<'a>, RuleError>;

#[derive(Clone, Copy)]
pub(super) struct Frame<'a> {
    pub(super) input: RuleInput<'a>,
    pub(super) consts: &'a [String],
    /// The events bound by the enclosing comprehensions, outermost first.
    pub(super) slots: [Option<Item<'a>>; MAX_SLOTS],
    /// What the evaluation has spent so far, and may spend.
    pub(super) cost: &'a Cell<u64>,
    pub(super) budget: u64,
}

impl<'a> Frame<'a> {
    /// Spends `units` of the budget; an error once the evaluation has spent more than it.
    #[inline]
    pub(super) fn charge(&self, units: u64) -> Result<(), RuleError> {
        let spent = self.cost.get().saturating_add(units);
        self.cost.set(spent);
        if spent > self.budget {
            Err(over_budget(self.budget))
        } else {
            Ok(())
        }
    }

    /// This frame with `item` bound to a comprehension's variable.
    pub(super) fn bind(&self, slot: usize, item: Item<'a>) -> Frame<'a> {
        let mut inner = *self;
        inner.slots[slot] = Some(item);
        inner
    }
}

/// One record as a rule sees it.
#[derive(Clone, Copy)]
pub(super) struct Item<'a> {
    pub(super) event: &'a Event,
    pub(super) phase: RecordPhase,
}

/// A list of records: phases of the history in place, or the result of a `filter`.
#[derive(Clone)]
pub(super) enum Seq<'a> {
    Phases {
        past: &'a [Event],
        future: &'a [Event],
    },
    Items(Rc<Vec<Item<'a>>>),
}

impl<'a> Seq<'a> {
    pub(super) fn len(&self) -> usize {
        match self {
            Seq::Phases { past, future } => past.len() + future.len(),
            Seq::Items(items) => items.len(),
        }
    }

    pub(super) fn get(&self, index: usize) -> Option<Item<'a>> {
        match self {
            Seq::Phases { past, future } => match past.get(index) {
                Some(event) => Some(Item {
                    event,
                    phase: RecordPhase::Past,
                }),
                None => future.get(index - past.len()).map(|event| Item {
                    event,
                    phase: RecordPhase::Future,
                }),
            },
            Seq::Items(items) => items.get(index).copied(),
        }
    }

    pub(super) fn for_each(&self, mut f: impl FnMut(Item<'a>) -> Step) -> Step {
        match self {
            Seq::Phases { past, future } => {
                let past = past.iter().map(|event| (event, RecordPhase::Past));
                let future = future.iter().map(|event| (event, RecordPhase::Future));
                for (event, phase) in past.chain(future) {
                    if let Step::Stop = f(Item { event, phase }) {
                        return Step::Stop;
                    }
                }
            }
            Seq::Items(items) => {
                for item in items.iter() {
                    if let Step::Stop = f(*item) {
                        return Step::Stop;
                    }
                }
            }
        }
        Step::Continue
    }
}

pub(super) enum Step {
    Continue,
    Stop,
}

/// A history list a rule names.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum ListVar {
    Events,
    Past,
    Future,
}

impl ListVar {
    pub(super) fn seq<'a>(self, frame: &Frame<'a>) -> Seq<'a> {
        let input = &frame.input;
        match self {
            ListVar::Events => Seq::Phases {
                past: input.past(),
                future: input.future(),
            },
            ListVar::Past => Seq::Phases {
                past: input.past(),
                future: &[],
            },
            ListVar::Future => Seq::Phases {
                past: &[],
                future: input.future(),
            },
        }
    }
}

/// A value while a native rule runs.
///
/// `repr(C)` puts the payload at an aligned offset after the tag: with the default layout the
/// compiler packs one-byte payloads (a bool, a record's phase) beside the tag and copies the
/// values between closures with unaligned loads that stall on the bytes just stored.
#[derive(Clone)]
#[repr(C)]
pub(super) enum NVal<'a> {
    Bool(bool),
    Int(i64),
    Str(&'a str),
    Time(DateTime<Utc>),
    Dur(TimeDelta),
    Null,
    Event(Item<'a>),
    Seq(Seq<'a>),
}

impl NVal<'_> {
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            NVal::Bool(_) => "bool",
            NVal::Int(_) => "int",
            NVal::Str(_) => "string",
            NVal::Time(_) => "timestamp",
            NVal::Dur(_) => "duration",
            NVal::Null => "null",
            NVal::Event(_) => "map",
            NVal::Seq(_) => "list",
        }
    }
}

pub(super) fn error(message: String) -> RuleError {
    RuleError { message }
}

pub(super) fn over_budget(budget: u64) -> RuleError {
    error(format!(
        "rule exceeded the cost budget of {budget} per evaluation (one unit per element that \
         exists, all, exists_one, filter or map visits)"
    ))
}

pub(super) fn no_overload(op: &str, args: &[&NVal<'_>]) -> RuleError {
    let types: Vec<_> = args.iter().map(|arg| arg.type_name()).collect();
    error(format!(
        "found no matching overload for '{op}' applied to '({})'",
        types.join(", ")
    ))
}

/// What the compiler knows of a value's type. `Scalar` is any non-container value whose exact
/// type is only known at run time (a nullable field, a `since` that may be null).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum Ty {
    Bool,
    Int,
    Str,
    Time,
    Dur,
    Null,
    Scalar,
    Event,
    Seq,
}

impl Ty {
    pub(super) fn is_container(self) -> bool {
        matches!(self, Ty::Event | Ty::Seq)
    }

    pub(super) fn is_arithmetic(self) -> bool {
        matches!(self, Ty::Int | Ty::Time | Ty::Dur)
    }
}
