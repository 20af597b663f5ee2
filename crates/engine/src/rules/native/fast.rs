//! The specialised path: infallible per-element predicates, run as plain loops.
//!
//! Inside a comprehension, a predicate that only reads the infallible fields of the element
//! (`id`, `name`, `phase`, `createdAt`) and compares them with literals or with values that do
//! not depend on the element compiles a second time, to a [`Fast`] tree: a plain
//! `(&Event, RecordPhase) -> bool` test with no `Result`, no `NVal`, no allocation. The values
//! that do not depend on the element ("invariants": `now`, `plannedAt - duration("30m")`,
//! `since`, an enclosing comprehension's `a.id`, …) are general nodes evaluated **once** per
//! evaluation of the comprehension. When one of them errors or has an unexpected type at run
//! time (a null `since`), or the range is not a list, that evaluation takes the general path
//! instead — so errors, and the way `&&`, `||` and the macros absorb them, stay exactly the
//! interpreter's. Given invariants of the expected types, every `Fast` test is total and equal
//! to the general path's `Ok(bool)` for the same element.
//!
//! This module holds the tests and the loops that run them; `fast_compiler` builds them.

use std::rc::Rc;

use cel::common::ast::operators;
use chrono::{DateTime, TimeDelta, Utc};

use super::values::{Frame, Item, NVal, Node, Seq};
use crate::model::{Event, RecordPhase};

/// Most invariants of one kind a specialised comprehension may use.
pub(super) const MAX_INVARIANTS: usize = 4;

/// A per-element test that cannot fail.
#[derive(Clone, Debug)]
pub(super) enum Fast {
    Const(bool),
    /// A boolean invariant.
    Inv(usize),
    Not(Box<Fast>),
    And(Box<Fast>, Box<Fast>),
    Or(Box<Fast>, Box<Fast>),
    /// `e.name == "literal"`: the hot leaf, given its own loop.
    NameEq(Box<str>),
    Str(SOp, Cmp, SOp),
    StrIn(SOp, Vec<Box<str>>),
    StrFn(StrFn, SOp, SOp),
    /// `s.matches("pattern")`, the pattern compiled at load.
    Matches(SOp, regex::Regex),
    Int(IOp, Cmp, IOp),
    IntIn(IOp, Vec<i64>),
    Time(TOp, Cmp, TOp),
    Dur(DOp, Cmp, DOp),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    pub(super) fn of(name: &str) -> Option<Cmp> {
        Some(match name {
            operators::EQUALS => Cmp::Eq,
            operators::NOT_EQUALS => Cmp::Ne,
            operators::LESS => Cmp::Lt,
            operators::LESS_EQUALS => Cmp::Le,
            operators::GREATER => Cmp::Gt,
            operators::GREATER_EQUALS => Cmp::Ge,
            _ => return None,
        })
    }

    #[inline]
    fn test<T: Ord + ?Sized>(self, a: &T, b: &T) -> bool {
        match self {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

/// A string operand.
#[derive(Clone, Debug)]
pub(super) enum SOp {
    Name,
    Phase,
    Lit(Box<str>),
    Inv(usize),
}

/// An int operand.
#[derive(Clone, Copy, Debug)]
pub(super) enum IOp {
    Id,
    Lit(i64),
    Inv(usize),
}

/// A timestamp operand.
#[derive(Clone, Copy, Debug)]
pub(super) enum TOp {
    CreatedAt,
    Inv(usize),
}

/// A duration operand: `a - b` of two timestamps cannot fail.
#[derive(Clone, Copy, Debug)]
pub(super) enum DOp {
    Diff(TOp, TOp),
    Inv(usize),
}

/// The invariants' values for one evaluation of a specialised comprehension.
#[derive(Clone, Copy)]
struct Invs<'a> {
    bools: [bool; MAX_INVARIANTS],
    ints: [i64; MAX_INVARIANTS],
    strs: [&'a str; MAX_INVARIANTS],
    times: [DateTime<Utc>; MAX_INVARIANTS],
    durs: [TimeDelta; MAX_INVARIANTS],
}

impl Invs<'_> {
    const EMPTY: Invs<'static> = Invs {
        bools: [false; MAX_INVARIANTS],
        ints: [0; MAX_INVARIANTS],
        strs: [""; MAX_INVARIANTS],
        times: [DateTime::<Utc>::MIN_UTC; MAX_INVARIANTS],
        durs: [TimeDelta::zero(); MAX_INVARIANTS],
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    Int,
    Str,
    Time,
    Dur,
}

/// A value that does not depend on the element, computed once per evaluation.
pub(super) struct Invariant {
    pub(super) node: Node,
    pub(super) kind: Kind,
    pub(super) index: usize,
}

/// Evaluates the invariants; `None` (take the general path) when one errors or is not of the
/// kind the specialised test was compiled for.
fn prepare<'a>(invariants: &[Invariant], frame: &Frame<'a>) -> Option<Invs<'a>> {
    let mut invs = Invs::EMPTY;
    for invariant in invariants {
        let i = invariant.index;
        match ((invariant.node)(frame).ok()?, invariant.kind) {
            (NVal::Bool(v), Kind::Bool) => invs.bools[i] = v,
            (NVal::Int(v), Kind::Int) => invs.ints[i] = v,
            (NVal::Str(v), Kind::Str) => invs.strs[i] = v,
            (NVal::Time(v), Kind::Time) => invs.times[i] = v,
            (NVal::Dur(v), Kind::Dur) => invs.durs[i] = v,
            _ => return None,
        }
    }
    Some(invs)
}

impl SOp {
    #[inline]
    fn get<'s>(&'s self, event: &'s Event, phase: RecordPhase, invs: &Invs<'s>) -> &'s str {
        match self {
            SOp::Name => &event.name,
            SOp::Phase => phase.as_str(),
            SOp::Lit(s) => s,
            SOp::Inv(i) => invs.strs[*i],
        }
    }
}

impl IOp {
    #[inline]
    fn get(self, event: &Event, invs: &Invs<'_>) -> i64 {
        match self {
            IOp::Id => event.id,
            IOp::Lit(v) => v,
            IOp::Inv(i) => invs.ints[i],
        }
    }
}

impl TOp {
    #[inline]
    fn get(self, event: &Event, invs: &Invs<'_>) -> DateTime<Utc> {
        match self {
            TOp::CreatedAt => event.created_at,
            TOp::Inv(i) => invs.times[i],
        }
    }
}

impl DOp {
    #[inline]
    fn get(self, event: &Event, invs: &Invs<'_>) -> TimeDelta {
        match self {
            DOp::Diff(a, b) => a.get(event, invs).signed_duration_since(b.get(event, invs)),
            DOp::Inv(i) => invs.durs[i],
        }
    }
}

impl Fast {
    pub(super) fn not(self) -> Fast {
        match self {
            Fast::Not(inner) => *inner,
            Fast::Const(value) => Fast::Const(!value),
            other => Fast::Not(Box::new(other)),
        }
    }

    pub(super) fn and(self, other: Fast) -> Fast {
        Fast::And(Box::new(self), Box::new(other))
    }

    pub(super) fn or(self, other: Fast) -> Fast {
        Fast::Or(Box::new(self), Box::new(other))
    }

    #[inline]
    fn test(&self, event: &Event, phase: RecordPhase, invs: &Invs<'_>) -> bool {
        match self {
            Fast::Const(value) => *value,
            Fast::Inv(i) => invs.bools[*i],
            Fast::Not(inner) => !inner.test(event, phase, invs),
            Fast::And(a, b) => a.test(event, phase, invs) && b.test(event, phase, invs),
            Fast::Or(a, b) => a.test(event, phase, invs) || b.test(event, phase, invs),
            Fast::NameEq(name) => event.name == **name,
            Fast::Str(a, cmp, b) => cmp.test(a.get(event, phase, invs), b.get(event, phase, invs)),
            Fast::StrIn(needle, list) => {
                let needle = needle.get(event, phase, invs);
                list.iter().any(|item| **item == *needle)
            }
            Fast::StrFn(f, a, b) => {
                let (a, b) = (a.get(event, phase, invs), b.get(event, phase, invs));
                match f {
                    StrFn::Contains => a.contains(b),
                    StrFn::StartsWith => a.starts_with(b),
                    StrFn::EndsWith => a.ends_with(b),
                }
            }
            Fast::Matches(s, regex) => regex.is_match(s.get(event, phase, invs)),
            Fast::Int(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
            Fast::IntIn(needle, list) => list.contains(&needle.get(event, invs)),
            Fast::Time(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
            Fast::Dur(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
        }
    }
}

/// Counts the elements of `seq` that pass `test`, stopping at `limit`; also how many
/// elements it visited.
#[inline(always)]
fn count_where(
    seq: &Seq<'_>,
    limit: usize,
    test: impl Fn(&Event, RecordPhase) -> bool,
) -> (usize, usize) {
    let mut count = 0;
    match seq {
        Seq::Phases { past, future } => {
            let mut before = 0;
            for (events, phase) in [(*past, RecordPhase::Past), (*future, RecordPhase::Future)] {
                for (i, event) in events.iter().enumerate() {
                    if test(event, phase) {
                        count += 1;
                        if count >= limit {
                            return (count, before + i + 1);
                        }
                    }
                }
                before += events.len();
            }
        }
        Seq::Items(items) => {
            for (i, item) in items.iter().enumerate() {
                if test(item.event, item.phase) {
                    count += 1;
                    if count >= limit {
                        return (count, i + 1);
                    }
                }
            }
        }
    }
    (count, seq.len())
}

/// [`count_where`] for a [`Fast`] test, with the hot leaf's loop monomorphised.
fn count_matching(seq: &Seq<'_>, pred: &Fast, invs: &Invs<'_>, limit: usize) -> (usize, usize) {
    match pred {
        Fast::NameEq(name) => count_where(seq, limit, |event, _| event.name == **name),
        Fast::And(first, rest) if matches!(**first, Fast::NameEq(_)) => {
            let Fast::NameEq(name) = &**first else {
                unreachable!()
            };
            count_where(seq, limit, |event, phase| {
                event.name == **name && rest.test(event, phase, invs)
            })
        }
        _ => count_where(seq, limit, |event, phase| pred.test(event, phase, invs)),
    }
}

fn collect_matching<'a>(seq: &Seq<'a>, pred: &Fast, invs: &Invs<'_>) -> Vec<Item<'a>> {
    let mut kept = Vec::new();
    let mut keep = |event: &'a Event, phase| {
        if pred.test(event, phase, invs) {
            kept.push(Item { event, phase });
        }
    };
    match seq {
        Seq::Phases { past, future } => {
            past.iter().for_each(|event| keep(event, RecordPhase::Past));
            future
                .iter()
                .for_each(|event| keep(event, RecordPhase::Future));
        }
        Seq::Items(items) => items.iter().for_each(|item| keep(item.event, item.phase)),
    }
    kept
}

/// What a specialised comprehension computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LoopOp {
    /// `exists`
    Any,
    /// `all`
    All,
    /// `exists_one`
    ExistsOne,
    /// `filter(…).size()` / `size(filter(…))`, counting at most this many (a comparison with
    /// the literal `k` only needs to know the count up to `k + 1`)
    Count(usize),
    /// `filter`, when the list itself is needed
    Collect,
}

/// A comprehension compiled to a [`Fast`] test over a base list. A chain of `filter`s feeding
/// it is fused into the test.
pub(super) struct FastLoop {
    pub(super) range: Node,
    pub(super) pred: Fast,
    pub(super) invariants: Vec<Invariant>,
}

impl FastLoop {
    /// The specialised node; `general` computes the same value on the general path, for the
    /// evaluations whose invariants fail.
    pub(super) fn into_node(self, op: LoopOp, general: Node) -> Node {
        let FastLoop {
            range,
            pred,
            invariants,
        } = self;
        // `all(p)` is "no element fails p".
        let pred = if op == LoopOp::All { pred.not() } else { pred };
        Box::new(move |frame| {
            let Ok(NVal::Seq(seq)) = range(frame) else {
                return general(frame);
            };
            let invs = if invariants.is_empty() || seq.len() == 0 {
                Invs::EMPTY
            } else {
                match prepare(&invariants, frame) {
                    Some(invs) => invs,
                    None => return general(frame),
                }
            };
            // The loop is charged what it visited once it is done: a single loop is at most
            // the history long, and nothing nests inside a specialised test.
            let count = |limit| {
                let (count, visited) = count_matching(&seq, &pred, &invs, limit);
                frame.charge(visited as u64).map(|()| count)
            };
            Ok(match op {
                LoopOp::Any => NVal::Bool(count(1)? == 1),
                LoopOp::All => NVal::Bool(count(1)? == 0),
                LoopOp::ExistsOne => NVal::Bool(count(2)? == 1),
                LoopOp::Count(limit) => NVal::Int(count(limit)? as i64),
                LoopOp::Collect => {
                    frame.charge(seq.len() as u64)?;
                    NVal::Seq(Seq::Items(Rc::new(collect_matching(&seq, &pred, &invs))))
                }
            })
        })
    }
}
