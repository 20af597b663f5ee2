//! The native fast path: common rule shapes compiled to Rust closures.
//!
//! The CEL interpreter looks every name up by string, boxes every intermediate value and
//! builds a scope per loop iteration. For the shapes templates actually use — boolean logic,
//! comparisons, event fields, `size`, indexing, time arithmetic, `in` over a literal list and
//! the `exists` / `all` / `exists_one` / `filter` macros — this module resolves every name at
//! compile time and builds a tree of closures that read the events in place: no allocation, no
//! lookups. Anything else returns `None` and the rule runs on the interpreter. The semantics,
//! errors included (`error || true` is `true`), follow the interpreter's; differential tests
//! in `tests/native_vs_interpreter.rs` hold them to it.
//!
//! On top of that general tree, a comprehension whose predicate only reads the element's
//! infallible fields compiles a second time to a specialised loop (see "The specialised
//! path" below): a plain boolean test per element, values that do not depend on the element
//! computed once per evaluation, `filter(…).size()` counted without building a list and
//! `filter` chains fused. It falls back to the general tree for any evaluation where that
//! precomputation fails, so the two can never disagree on errors.

use std::cmp::Ordering;
use std::rc::Rc;

use cel::common::ast::{
    CallExpr, ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators,
};
use cel::{Context, Value};
use chrono::{DateTime, TimeDelta, Utc};

use super::{RuleError, RuleInput};
use crate::model::{Event, RecordPhase};

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
    pub(super) fn eval(&self, input: &RuleInput<'_>) -> Result<bool, RuleError> {
        let frame = Frame {
            input: *input,
            consts: &self.consts,
            slots: [None; MAX_SLOTS],
        };
        match (self.root)(&frame)? {
            NVal::Bool(value) => Ok(value),
            other => Err(error(format!(
                "rule returned {}, not a bool",
                other.type_name()
            ))),
        }
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

type Node = Box<dyn for<'a> Fn(&Frame<'a>) -> Res<'a> + Send + Sync>;
type Res<'a> = Result<NVal<'a>, RuleError>;

#[derive(Clone, Copy)]
struct Frame<'a> {
    input: RuleInput<'a>,
    consts: &'a [String],
    /// The events bound by the enclosing comprehensions, outermost first.
    slots: [Option<Item<'a>>; MAX_SLOTS],
}

impl<'a> Frame<'a> {
    /// This frame with `item` bound to a comprehension's variable.
    fn bind(&self, slot: usize, item: Item<'a>) -> Frame<'a> {
        let mut inner = *self;
        inner.slots[slot] = Some(item);
        inner
    }
}

/// One record as a rule sees it.
#[derive(Clone, Copy)]
struct Item<'a> {
    event: &'a Event,
    phase: RecordPhase,
}

/// A list of records: phases of the history in place, or the result of a `filter`.
#[derive(Clone)]
enum Seq<'a> {
    Phases {
        past: &'a [Event],
        future: &'a [Event],
    },
    Items(Rc<Vec<Item<'a>>>),
}

impl<'a> Seq<'a> {
    fn len(&self) -> usize {
        match self {
            Seq::Phases { past, future } => past.len() + future.len(),
            Seq::Items(items) => items.len(),
        }
    }

    fn get(&self, index: usize) -> Option<Item<'a>> {
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

    fn for_each(&self, mut f: impl FnMut(Item<'a>) -> Step) -> Step {
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

enum Step {
    Continue,
    Stop,
}

/// A history list a rule names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ListVar {
    Events,
    Past,
    Future,
}

impl ListVar {
    fn seq<'a>(self, frame: &Frame<'a>) -> Seq<'a> {
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
enum NVal<'a> {
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
    fn type_name(&self) -> &'static str {
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

fn error(message: String) -> RuleError {
    RuleError { message }
}

fn no_overload(op: &str, args: &[&NVal<'_>]) -> RuleError {
    let types: Vec<_> = args.iter().map(|arg| arg.type_name()).collect();
    error(format!(
        "found no matching overload for '{op}' applied to '({})'",
        types.join(", ")
    ))
}

/// What the compiler knows of a value's type. `Scalar` is any non-container value whose exact
/// type is only known at run time (a nullable field, a `since` that may be null).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ty {
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
    fn is_container(self) -> bool {
        matches!(self, Ty::Event | Ty::Seq)
    }

    fn is_arithmetic(self) -> bool {
        matches!(self, Ty::Int | Ty::Time | Ty::Dur)
    }
}

#[derive(Default)]
struct Compiler {
    consts: Vec<String>,
    /// Comprehension variables in scope, outermost first; the index is the slot.
    scopes: Vec<String>,
    /// How many comprehensions took the specialised path (for tests).
    fast_loops: usize,
}

impl Compiler {
    fn expr(&mut self, expr: &IdedExpr) -> Option<(Node, Ty)> {
        match &expr.expr {
            Expr::Literal(literal) => self.literal(literal),
            Expr::Ident(name) => self.ident(name),
            Expr::Select(select) if !select.test => {
                let (operand, ty) = self.expr(&select.operand)?;
                (ty == Ty::Event).then_some(())?;
                field(operand, &select.field)
            }
            Expr::Call(call) => self.call(expr, call),
            Expr::Comprehension(comprehension) => self.comprehension(comprehension),
            _ => None,
        }
    }

    fn literal(&mut self, literal: &LiteralValue) -> Option<(Node, Ty)> {
        match literal {
            LiteralValue::Boolean(value) => {
                let value = *value.inner();
                Some((Box::new(move |_| Ok(NVal::Bool(value))), Ty::Bool))
            }
            LiteralValue::Int(value) => {
                let value = *value.inner();
                Some((Box::new(move |_| Ok(NVal::Int(value))), Ty::Int))
            }
            LiteralValue::String(value) => {
                let index = self.constant(value.inner());
                Some((
                    Box::new(move |frame| Ok(NVal::Str(&frame.consts[index]))),
                    Ty::Str,
                ))
            }
            LiteralValue::Null => Some((Box::new(|_| Ok(NVal::Null)), Ty::Null)),
            _ => None,
        }
    }

    fn constant(&mut self, value: &str) -> usize {
        self.consts.push(value.to_owned());
        self.consts.len() - 1
    }

    fn ident(&mut self, name: &str) -> Option<(Node, Ty)> {
        if let Some(slot) = self.scopes.iter().rposition(|scope| scope == name) {
            let node: Node = Box::new(move |frame| match frame.slots[slot] {
                Some(item) => Ok(NVal::Event(item)),
                None => Err(error("unbound comprehension variable".to_owned())),
            });
            return Some((node, Ty::Event));
        }
        let time = |at: DateTime<Utc>| NVal::Time(at);
        let optional_time = |at: Option<DateTime<Utc>>| at.map_or(NVal::Null, NVal::Time);
        let (node, ty): (Node, Ty) = match name {
            // A past rule sees no future records: its input has none.
            "events" => (
                Box::new(|frame| {
                    Ok(NVal::Seq(Seq::Phases {
                        past: frame.input.past(),
                        future: frame.input.future(),
                    }))
                }),
                Ty::Seq,
            ),
            "past" => (
                Box::new(|frame| {
                    Ok(NVal::Seq(Seq::Phases {
                        past: frame.input.past(),
                        future: &[],
                    }))
                }),
                Ty::Seq,
            ),
            "future" => (
                Box::new(|frame| {
                    Ok(NVal::Seq(Seq::Phases {
                        past: &[],
                        future: frame.input.future(),
                    }))
                }),
                Ty::Seq,
            ),
            "now" => (
                Box::new(move |frame| Ok(time(frame.input.vars().now))),
                Ty::Time,
            ),
            "plannedAt" => (
                Box::new(move |frame| Ok(time(frame.input.vars().planned_at))),
                Ty::Time,
            ),
            "since" => (
                Box::new(move |frame| Ok(optional_time(frame.input.vars().since))),
                Ty::Scalar,
            ),
            "until" => (
                Box::new(move |frame| Ok(optional_time(frame.input.vars().until))),
                Ty::Scalar,
            ),
            "robotId" => (
                Box::new(|frame| Ok(NVal::Int(frame.input.vars().robot_id))),
                Ty::Int,
            ),
            _ => return None,
        };
        Some((node, ty))
    }

    fn call(&mut self, whole: &IdedExpr, call: &CallExpr) -> Option<(Node, Ty)> {
        let name = call.func_name.as_str();
        match (call.target.as_deref(), call.args.as_slice()) {
            (None, [left, right]) if name == operators::LOGICAL_AND => {
                let (left, _) = self.expr(left)?;
                let (right, _) = self.expr(right)?;
                Some((logical(left, right, false), Ty::Bool))
            }
            (None, [left, right]) if name == operators::LOGICAL_OR => {
                let (left, _) = self.expr(left)?;
                let (right, _) = self.expr(right)?;
                Some((logical(left, right, true), Ty::Bool))
            }
            (None, [operand]) if name == operators::LOGICAL_NOT => {
                let (operand, _) = self.expr(operand)?;
                let node: Node = Box::new(move |frame| match operand(frame)? {
                    NVal::Bool(value) => Ok(NVal::Bool(!value)),
                    other => Err(no_overload("!_", &[&other])),
                });
                Some((node, Ty::Bool))
            }
            (None, [operand]) if name == operators::NEGATE => {
                let (operand, ty) = self.expr(operand)?;
                (ty == Ty::Int).then_some(())?;
                let node: Node = Box::new(move |frame| match operand(frame)? {
                    NVal::Int(value) => value
                        .checked_neg()
                        .map(NVal::Int)
                        .ok_or_else(|| error("integer overflow".to_owned())),
                    other => Err(no_overload("-_", &[&other])),
                });
                Some((node, Ty::Int))
            }
            (None, [condition, then, otherwise]) if name == operators::CONDITIONAL => {
                let (condition, _) = self.expr(condition)?;
                let (then, then_ty) = self.expr(then)?;
                let (otherwise, otherwise_ty) = self.expr(otherwise)?;
                let ty = if then_ty == otherwise_ty {
                    then_ty
                } else if then_ty.is_container() || otherwise_ty.is_container() {
                    return None;
                } else {
                    Ty::Scalar
                };
                let node: Node = Box::new(move |frame| match condition(frame)? {
                    NVal::Bool(true) => then(frame),
                    NVal::Bool(false) => otherwise(frame),
                    other => Err(no_overload("_?_:_", &[&other])),
                });
                Some((node, ty))
            }
            (None, [left_expr, right_expr])
                if name == operators::EQUALS || name == operators::NOT_EQUALS =>
            {
                let negate = name == operators::NOT_EQUALS;
                // `x == "literal"` (either side): only the other side is evaluated.
                let literal = Lit::of(right_expr)
                    .map(|lit| (lit, right_expr, left_expr))
                    .or_else(|| Lit::of(left_expr).map(|lit| (lit, left_expr, right_expr)));
                if let Some((literal, literal_expr, other)) = literal {
                    let (other, ty) = match self.bounded_size(other, literal_expr) {
                        Some(compiled) => compiled,
                        None => self.expr(other)?,
                    };
                    (!ty.is_container()).then_some(())?;
                    let node: Node =
                        Box::new(move |frame| Ok(NVal::Bool(literal.eq(&other(frame)?) != negate)));
                    return Some((node, Ty::Bool));
                }
                let (left, left_ty) = self.expr(left_expr)?;
                let (right, right_ty) = self.expr(right_expr)?;
                (!left_ty.is_container() && !right_ty.is_container()).then_some(())?;
                let node: Node = Box::new(move |frame| {
                    let left = left(frame)?;
                    let right = right(frame)?;
                    Ok(NVal::Bool(scalar_eq(&left, &right) != negate))
                });
                Some((node, Ty::Bool))
            }
            (None, [left_expr, right_expr]) => {
                let accept: fn(Ordering) -> bool = match name {
                    operators::LESS => Ordering::is_lt,
                    operators::LESS_EQUALS => Ordering::is_le,
                    operators::GREATER => Ordering::is_gt,
                    operators::GREATER_EQUALS => Ordering::is_ge,
                    operators::ADD | operators::SUBSTRACT => {
                        return self.arithmetic(name == operators::ADD, left_expr, right_expr);
                    }
                    operators::INDEX => return self.index(left_expr, right_expr),
                    operators::IN => return self.in_list(left_expr, right_expr),
                    _ => return None,
                };
                let (left, left_ty) = match self.bounded_size(left_expr, right_expr) {
                    Some(compiled) => compiled,
                    None => self.expr(left_expr)?,
                };
                let (right, right_ty) = match self.bounded_size(right_expr, left_expr) {
                    Some(compiled) => compiled,
                    None => self.expr(right_expr)?,
                };
                let orderable = |ty: Ty| !ty.is_container() && ty != Ty::Bool;
                (orderable(left_ty) && orderable(right_ty)).then_some(())?;
                let op = name.to_owned();
                let node: Node = Box::new(move |frame| {
                    let left = left(frame)?;
                    let right = right(frame)?;
                    compare(&left, &right)
                        .map(|ordering| NVal::Bool(accept(ordering)))
                        .ok_or_else(|| no_overload(&op, &[&left, &right]))
                });
                Some((node, Ty::Bool))
            }
            (None, [operand]) if name == "size" => self.size(operand),
            (Some(target), []) if name == "size" => self.size(target),
            (
                None,
                [
                    IdedExpr {
                        expr: Expr::Literal(LiteralValue::String(_)),
                        ..
                    },
                ],
            ) if name == "duration" || name == "timestamp" => constant_time(whole),
            (Some(target), [argument])
                if matches!(name, "contains" | "startsWith" | "endsWith") =>
            {
                let (target, target_ty) = self.expr(target)?;
                let (argument, argument_ty) = self.expr(argument)?;
                let stringy = |ty| matches!(ty, Ty::Str | Ty::Scalar);
                (stringy(target_ty) && stringy(argument_ty)).then_some(())?;
                let test: fn(&str, &str) -> bool = match name {
                    "contains" => |s, p| s.contains(p),
                    "startsWith" => |s, p| s.starts_with(p),
                    _ => |s, p| s.ends_with(p),
                };
                let op = name.to_owned();
                let node: Node = Box::new(move |frame| match (target(frame)?, argument(frame)?) {
                    (NVal::Str(s), NVal::Str(p)) => Ok(NVal::Bool(test(s, p))),
                    (s, p) => Err(no_overload(&op, &[&s, &p])),
                });
                Some((node, Ty::Bool))
            }
            _ => None,
        }
    }

    fn arithmetic(&mut self, add: bool, left: &IdedExpr, right: &IdedExpr) -> Option<(Node, Ty)> {
        let (left, left_ty) = self.expr(left)?;
        let (right, right_ty) = self.expr(right)?;
        // A nullable operand (`until`, `e.level`) is fine beside a known arithmetic one: both
        // paths then fail alike on null. Two of them could be strings, which `+` concatenates.
        let ty = match (add, left_ty, right_ty) {
            (_, Ty::Int, Ty::Int) => Ty::Int,
            (_, Ty::Time, Ty::Dur) | (true, Ty::Dur, Ty::Time) => Ty::Time,
            (false, Ty::Time, Ty::Time) | (_, Ty::Dur, Ty::Dur) => Ty::Dur,
            (_, Ty::Scalar, other) | (_, other, Ty::Scalar) if other.is_arithmetic() => Ty::Scalar,
            _ => return None,
        };
        let op = if add {
            operators::ADD
        } else {
            operators::SUBSTRACT
        };
        let node: Node = Box::new(move |frame| {
            let left = left(frame)?;
            let right = right(frame)?;
            let overflow = || error(format!("overflow from '{op}'"));
            let value = match (add, &left, &right) {
                (true, NVal::Int(a), NVal::Int(b)) => a.checked_add(*b).map(NVal::Int),
                (false, NVal::Int(a), NVal::Int(b)) => a.checked_sub(*b).map(NVal::Int),
                (true, NVal::Time(t), NVal::Dur(d)) | (true, NVal::Dur(d), NVal::Time(t)) => {
                    t.checked_add_signed(*d).map(NVal::Time)
                }
                (false, NVal::Time(t), NVal::Dur(d)) => t.checked_sub_signed(*d).map(NVal::Time),
                (false, NVal::Time(a), NVal::Time(b)) => {
                    Some(NVal::Dur(a.signed_duration_since(*b)))
                }
                (true, NVal::Dur(a), NVal::Dur(b)) => a.checked_add(b).map(NVal::Dur),
                (false, NVal::Dur(a), NVal::Dur(b)) => a.checked_sub(b).map(NVal::Dur),
                _ => return Err(no_overload(op, &[&left, &right])),
            };
            value.ok_or_else(overflow)
        });
        Some((node, ty))
    }

    /// `events`, `past` or `future` itself (not a comprehension variable of that name).
    fn list_var(&self, expr: &IdedExpr) -> Option<ListVar> {
        let Expr::Ident(name) = &expr.expr else {
            return None;
        };
        if self.scopes.iter().any(|scope| scope == name) {
            return None;
        }
        match name.as_str() {
            "events" => Some(ListVar::Events),
            "past" => Some(ListVar::Past),
            "future" => Some(ListVar::Future),
            _ => None,
        }
    }

    /// `list[list.size() - 1]` (or `size(list)`) for a history list: its last record.
    fn last_of(&self, list: &IdedExpr, index: &IdedExpr) -> Option<ListVar> {
        let var = self.list_var(list)?;
        let Expr::Call(sub) = &index.expr else {
            return None;
        };
        let [size, one] = sub.args.as_slice() else {
            return None;
        };
        (sub.func_name == operators::SUBSTRACT && sub.target.is_none()).then_some(())?;
        matches!(&one.expr, Expr::Literal(LiteralValue::Int(i)) if *i.inner() == 1).then_some(())?;
        let Expr::Call(size) = &size.expr else {
            return None;
        };
        let operand = match (size.target.as_deref(), size.args.as_slice()) {
            (Some(target), []) | (None, [target]) if size.func_name == "size" => target,
            _ => return None,
        };
        (self.list_var(operand)? == var).then_some(var)
    }

    fn index(&mut self, list: &IdedExpr, index: &IdedExpr) -> Option<(Node, Ty)> {
        if let Some(var) = self.last_of(list, index) {
            let node: Node = Box::new(move |frame| {
                let seq = var.seq(frame);
                match seq.len().checked_sub(1).and_then(|last| seq.get(last)) {
                    Some(item) => Ok(NVal::Event(item)),
                    None => Err(error("Index out of bounds: -1".to_owned())),
                }
            });
            return Some((node, Ty::Event));
        }
        let (list, list_ty) = self.expr(list)?;
        let (index, index_ty) = self.expr(index)?;
        (list_ty == Ty::Seq && index_ty == Ty::Int).then_some(())?;
        let node: Node = Box::new(move |frame| {
            let (NVal::Seq(seq), NVal::Int(i)) = (list(frame)?, index(frame)?) else {
                return Err(error("list index of the wrong type".to_owned()));
            };
            usize::try_from(i)
                .ok()
                .and_then(|i| seq.get(i))
                .map(NVal::Event)
                .ok_or_else(|| error(format!("Index out of bounds: {i}")))
        });
        Some((node, Ty::Event))
    }

    /// `x in [literal, …]`.
    fn in_list(&mut self, needle: &IdedExpr, list: &IdedExpr) -> Option<(Node, Ty)> {
        let Expr::List(list) = &list.expr else {
            return None;
        };
        if !list.optional_indices.is_empty() {
            return None;
        }
        let (needle, needle_ty) = self.expr(needle)?;
        (!needle_ty.is_container()).then_some(())?;
        let items = list
            .elements
            .iter()
            .map(|element| match &element.expr {
                Expr::Literal(literal) => self.literal(literal).map(|(node, _)| node),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let node: Node = Box::new(move |frame| {
            let needle = needle(frame)?;
            for item in &items {
                if scalar_eq(&needle, &item(frame)?) {
                    return Ok(NVal::Bool(true));
                }
            }
            Ok(NVal::Bool(false))
        });
        Some((node, Ty::Bool))
    }

    fn size(&mut self, operand_expr: &IdedExpr) -> Option<(Node, Ty)> {
        self.size_up_to(operand_expr, usize::MAX)
    }

    /// `expr` when it is `size(…)` / `….size()` compared with the int literal `other`: the
    /// size, where a `filter` count stops at `other + 1` — enough to decide the comparison
    /// (`filter(…).size() <= 3` need not count past 4).
    fn bounded_size(&mut self, expr: &IdedExpr, other: &IdedExpr) -> Option<(Node, Ty)> {
        let Expr::Literal(LiteralValue::Int(k)) = &other.expr else {
            return None;
        };
        let Expr::Call(call) = &expr.expr else {
            return None;
        };
        let operand = match (call.target.as_deref(), call.args.as_slice()) {
            (None, [operand]) | (Some(operand), []) if call.func_name == "size" => operand,
            _ => return None,
        };
        let limit = usize::try_from(k.inner().saturating_add(1).max(0)).unwrap_or(usize::MAX);
        self.size_up_to(operand, limit)
    }

    /// `size` of `operand_expr`; a `filter` count stops at `limit`.
    fn size_up_to(&mut self, operand_expr: &IdedExpr, limit: usize) -> Option<(Node, Ty)> {
        if let Some(list) = self.list_var(operand_expr) {
            let node: Node = Box::new(move |frame| Ok(NVal::Int(list.seq(frame).len() as i64)));
            return Some((node, Ty::Int));
        }
        let (operand, ty) = self.expr(operand_expr)?;
        matches!(ty, Ty::Seq | Ty::Str).then_some(())?;
        let node: Node = Box::new(move |frame| match operand(frame)? {
            NVal::Seq(seq) => Ok(NVal::Int(seq.len() as i64)),
            NVal::Str(s) => Ok(NVal::Int(s.chars().count() as i64)),
            other => Err(no_overload("size", &[&other])),
        });
        // `list.filter(e, p).size()`: count the matches without building the list.
        if let Expr::Comprehension(c) = &operand_expr.expr
            && Shape::of(c) == Some(Shape::Filter)
            && let Some(fast) = self.fast_loop(c)
        {
            return Some((fast.into_node(LoopOp::Count(limit), node), Ty::Int));
        }
        Some((node, Ty::Int))
    }

    /// The `exists`, `all`, `exists_one` and `filter` macros, recognised by their expansion.
    fn comprehension(&mut self, c: &ComprehensionExpr) -> Option<(Node, Ty)> {
        let (general, ty) = self.general_comprehension(c)?;
        let op = match Shape::of(c)? {
            Shape::Exists => LoopOp::Any,
            Shape::All => LoopOp::All,
            Shape::ExistsOne => LoopOp::ExistsOne,
            Shape::Filter => LoopOp::Collect,
        };
        match self.fast_loop(c) {
            Some(fast) => Some((fast.into_node(op, general), ty)),
            None => Some((general, ty)),
        }
    }

    /// A comprehension on the general path: the predicate is a node tree run per element.
    fn general_comprehension(&mut self, c: &ComprehensionExpr) -> Option<(Node, Ty)> {
        if c.iter_var2.is_some() || self.scopes.len() >= MAX_SLOTS {
            return None;
        }
        let shape = Shape::of(c)?;
        let (range, range_ty) = self.expr(&c.iter_range)?;
        (range_ty == Ty::Seq).then_some(())?;
        let slot = self.scopes.len();
        self.scopes.push(c.iter_var.clone());
        let predicate = self.expr(shape.predicate(c)?);
        self.scopes.pop();
        let (predicate, _) = predicate?;
        let node: Node = match shape {
            Shape::Exists | Shape::All => {
                let absorbing = shape == Shape::Exists;
                Box::new(move |frame| {
                    let NVal::Seq(seq) = range(frame)? else {
                        return Err(error("comprehension over a non-list".to_owned()));
                    };
                    let mut decided = false;
                    let mut pending = None;
                    seq.for_each(|item| match predicate(&frame.bind(slot, item)) {
                        Ok(NVal::Bool(value)) if value == absorbing => {
                            decided = true;
                            Step::Stop
                        }
                        Ok(NVal::Bool(_)) => Step::Continue,
                        Ok(other) => {
                            let op = if absorbing { "_||_" } else { "_&&_" };
                            pending = Some(no_overload(op, &[&NVal::Bool(!absorbing), &other]));
                            Step::Continue
                        }
                        Err(e) => {
                            pending = Some(e);
                            Step::Continue
                        }
                    });
                    match pending {
                        _ if decided => Ok(NVal::Bool(absorbing)),
                        Some(e) => Err(e),
                        None => Ok(NVal::Bool(!absorbing)),
                    }
                })
            }
            Shape::ExistsOne => Box::new(move |frame| {
                let NVal::Seq(seq) = range(frame)? else {
                    return Err(error("comprehension over a non-list".to_owned()));
                };
                let mut count = 0usize;
                let mut failure = None;
                seq.for_each(|item| match predicate(&frame.bind(slot, item)) {
                    Ok(NVal::Bool(value)) => {
                        count += usize::from(value);
                        Step::Continue
                    }
                    Ok(other) => {
                        failure = Some(no_overload("_?_:_", &[&other]));
                        Step::Stop
                    }
                    Err(e) => {
                        failure = Some(e);
                        Step::Stop
                    }
                });
                failure.map_or(Ok(NVal::Bool(count == 1)), Err)
            }),
            Shape::Filter => Box::new(move |frame| {
                let NVal::Seq(seq) = range(frame)? else {
                    return Err(error("comprehension over a non-list".to_owned()));
                };
                let mut kept = Vec::new();
                let mut failure = None;
                seq.for_each(|item| match predicate(&frame.bind(slot, item)) {
                    Ok(NVal::Bool(value)) => {
                        if value {
                            kept.push(item);
                        }
                        Step::Continue
                    }
                    Ok(other) => {
                        failure = Some(no_overload("_?_:_", &[&other]));
                        Step::Stop
                    }
                    Err(e) => {
                        failure = Some(e);
                        Step::Stop
                    }
                });
                failure.map_or(Ok(NVal::Seq(Seq::Items(Rc::new(kept)))), Err)
            }),
        };
        let ty = if shape == Shape::Filter {
            Ty::Seq
        } else {
            Ty::Bool
        };
        Some((node, ty))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Exists,
    All,
    ExistsOne,
    Filter,
}

impl Shape {
    fn of(c: &ComprehensionExpr) -> Option<Shape> {
        let accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(name) if *name == c.accu_var);
        let call = |e: &IdedExpr, name: &str, arity: usize| match &e.expr {
            Expr::Call(call)
                if call.func_name == name && call.target.is_none() && call.args.len() == arity =>
            {
                Some(call.args.clone())
            }
            _ => None,
        };
        let int = |e: &IdedExpr, value: i64| matches!(&e.expr, Expr::Literal(LiteralValue::Int(i)) if *i.inner() == value);
        match &c.accu_init.expr {
            Expr::Literal(LiteralValue::Boolean(init)) if accu(&c.result) => {
                let op = if *init.inner() {
                    operators::LOGICAL_AND
                } else {
                    operators::LOGICAL_OR
                };
                let args = call(&c.loop_step, op, 2)?;
                accu(&args[0]).then_some(if *init.inner() {
                    Shape::All
                } else {
                    Shape::Exists
                })
            }
            Expr::Literal(LiteralValue::Int(init)) if *init.inner() == 0 => {
                let result = call(&c.result, operators::EQUALS, 2)?;
                let step = call(&c.loop_step, operators::CONDITIONAL, 3)?;
                let add = call(&step[1], operators::ADD, 2)?;
                (accu(&result[0])
                    && int(&result[1], 1)
                    && accu(&step[2])
                    && accu(&add[0])
                    && int(&add[1], 1))
                .then_some(Shape::ExistsOne)
            }
            Expr::List(init) if init.elements.is_empty() && accu(&c.result) => {
                let step = call(&c.loop_step, operators::CONDITIONAL, 3)?;
                let add = call(&step[1], operators::ADD, 2)?;
                let appends_iter_var = match &add[1].expr {
                    Expr::List(list) => {
                        list.optional_indices.is_empty()
                            && matches!(list.elements.as_slice(),
                                [IdedExpr { expr: Expr::Ident(name), .. }] if *name == c.iter_var)
                    }
                    _ => false,
                };
                (accu(&step[2]) && accu(&add[0]) && appends_iter_var).then_some(Shape::Filter)
            }
            _ => None,
        }
    }

    /// The per-element test inside the loop step.
    fn predicate(self, c: &ComprehensionExpr) -> Option<&IdedExpr> {
        let Expr::Call(step) = &c.loop_step.expr else {
            return None;
        };
        match self {
            Shape::Exists | Shape::All => step.args.get(1),
            Shape::ExistsOne | Shape::Filter => step.args.first(),
        }
    }
}

fn logical(left: Node, right: Node, or: bool) -> Node {
    // Mirrors the interpreter: the left side short-circuits; an error on one side is
    // absorbed when the other side decides the result on its own.
    let op = if or { "_||_" } else { "_&&_" };
    Box::new(move |frame| {
        let left = left(frame);
        if let Ok(NVal::Bool(value)) = left
            && value == or
        {
            return Ok(NVal::Bool(or));
        }
        let right = right(frame)?;
        match (left, right) {
            (Ok(NVal::Bool(_)), NVal::Bool(right)) => Ok(NVal::Bool(right)),
            (Err(_), NVal::Bool(right)) if right == or => Ok(NVal::Bool(or)),
            (Err(e), _) => Err(e),
            (Ok(left), right) => Err(no_overload(op, &[&left, &right])),
        }
    })
}

fn field(operand: Node, name: &str) -> Option<(Node, Ty)> {
    let (get, ty): (fn(Item<'_>) -> NVal<'_>, Ty) = match name {
        "id" => (|item| NVal::Int(item.event.id), Ty::Int),
        "name" => (|item| NVal::Str(&item.event.name), Ty::Str),
        "createdAt" => (|item| NVal::Time(item.event.created_at), Ty::Time),
        "phase" => (|item| NVal::Str(item.phase.as_str()), Ty::Str),
        "level" => (
            |item| item.event.level.map_or(NVal::Null, NVal::Int),
            Ty::Scalar,
        ),
        "referenceId" => (
            |item| {
                item.event
                    .reference_id
                    .as_deref()
                    .map_or(NVal::Null, NVal::Str)
            },
            Ty::Scalar,
        ),
        _ => return None,
    };
    let node: Node = Box::new(move |frame| match operand(frame)? {
        NVal::Event(item) => Ok(get(item)),
        other => Err(no_overload("_._", &[&other])),
    });
    Some((node, ty))
}

/// `duration("1h")` / `timestamp("…")` of a literal: computed once by the interpreter itself,
/// so the value is exactly the interpreter's. A literal it rejects stays on the interpreter.
fn constant_time(call: &IdedExpr) -> Option<(Node, Ty)> {
    match Value::resolve(call, &Context::default()).ok()? {
        Value::Duration(d) => Some((Box::new(move |_| Ok(NVal::Dur(d))), Ty::Dur)),
        Value::Timestamp(t) => {
            let t = t.with_timezone(&Utc);
            Some((Box::new(move |_| Ok(NVal::Time(t))), Ty::Time))
        }
        _ => None,
    }
}

/// A string or int literal an equality compares with.
enum Lit {
    Str(Box<str>),
    Int(i64),
}

impl Lit {
    fn of(expr: &IdedExpr) -> Option<Lit> {
        match &expr.expr {
            Expr::Literal(LiteralValue::String(s)) => Some(Lit::Str(Box::from(s.inner()))),
            Expr::Literal(LiteralValue::Int(i)) => Some(Lit::Int(*i.inner())),
            _ => None,
        }
    }

    /// `scalar_eq(value, literal)`.
    #[inline]
    fn eq(&self, value: &NVal<'_>) -> bool {
        match (self, value) {
            (Lit::Str(a), NVal::Str(b)) => **a == **b,
            (Lit::Int(a), NVal::Int(b)) => a == b,
            _ => false,
        }
    }
}

fn scalar_eq(left: &NVal<'_>, right: &NVal<'_>) -> bool {
    match (left, right) {
        (NVal::Bool(a), NVal::Bool(b)) => a == b,
        (NVal::Int(a), NVal::Int(b)) => a == b,
        (NVal::Str(a), NVal::Str(b)) => a == b,
        (NVal::Time(a), NVal::Time(b)) => a == b,
        (NVal::Dur(a), NVal::Dur(b)) => a == b,
        (NVal::Null, NVal::Null) => true,
        _ => false,
    }
}

fn compare(left: &NVal<'_>, right: &NVal<'_>) -> Option<Ordering> {
    match (left, right) {
        (NVal::Int(a), NVal::Int(b)) => Some(a.cmp(b)),
        (NVal::Str(a), NVal::Str(b)) => Some(a.cmp(b)),
        (NVal::Time(a), NVal::Time(b)) => Some(a.cmp(b)),
        (NVal::Dur(a), NVal::Dur(b)) => Some(a.cmp(b)),
        _ => None,
    }
}

// ---- The specialised path: infallible per-element predicates ----
//
// Inside a comprehension, a predicate that only reads the infallible fields of the element
// (`id`, `name`, `phase`, `createdAt`) and compares them with literals or with values that do
// not depend on the element compiles a second time, to a [`Fast`] tree: a plain
// `(&Event, RecordPhase) -> bool` test with no `Result`, no `NVal`, no allocation. The values
// that do not depend on the element ("invariants": `now`, `plannedAt - duration("30m")`,
// `since`, an enclosing comprehension's `a.id`, …) are general nodes evaluated **once** per
// evaluation of the comprehension. When one of them errors or has an unexpected type at run
// time (a null `since`), or the range is not a list, that evaluation takes the general path
// instead — so errors, and the way `&&`, `||` and the macros absorb them, stay exactly the
// interpreter's. Given invariants of the expected types, every `Fast` test is total and equal
// to the general path's `Ok(bool)` for the same element.

/// Most invariants of one kind a specialised comprehension may use.
const MAX_INVARIANTS: usize = 4;

/// A per-element test that cannot fail.
#[derive(Clone, Debug)]
enum Fast {
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
    Int(IOp, Cmp, IOp),
    IntIn(IOp, Vec<i64>),
    Time(TOp, Cmp, TOp),
    Dur(DOp, Cmp, DOp),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn of(name: &str) -> Option<Cmp> {
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
enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
}

/// A string operand.
#[derive(Clone, Debug)]
enum SOp {
    Name,
    Phase,
    Lit(Box<str>),
    Inv(usize),
}

/// An int operand.
#[derive(Clone, Copy, Debug)]
enum IOp {
    Id,
    Lit(i64),
    Inv(usize),
}

/// A timestamp operand.
#[derive(Clone, Copy, Debug)]
enum TOp {
    CreatedAt,
    Inv(usize),
}

/// A duration operand: `a - b` of two timestamps cannot fail.
#[derive(Clone, Copy, Debug)]
enum DOp {
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
enum Kind {
    Bool,
    Int,
    Str,
    Time,
    Dur,
}

/// A value that does not depend on the element, computed once per evaluation.
struct Invariant {
    node: Node,
    kind: Kind,
    index: usize,
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
    fn not(self) -> Fast {
        match self {
            Fast::Not(inner) => *inner,
            Fast::Const(value) => Fast::Const(!value),
            other => Fast::Not(Box::new(other)),
        }
    }

    fn and(self, other: Fast) -> Fast {
        Fast::And(Box::new(self), Box::new(other))
    }

    fn or(self, other: Fast) -> Fast {
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
            Fast::Int(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
            Fast::IntIn(needle, list) => list.contains(&needle.get(event, invs)),
            Fast::Time(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
            Fast::Dur(a, cmp, b) => cmp.test(&a.get(event, invs), &b.get(event, invs)),
        }
    }
}

/// Counts the elements of `seq` that pass `test`, stopping at `limit`.
#[inline(always)]
fn count_where(seq: &Seq<'_>, limit: usize, test: impl Fn(&Event, RecordPhase) -> bool) -> usize {
    let mut count = 0;
    match seq {
        Seq::Phases { past, future } => {
            for (events, phase) in [(*past, RecordPhase::Past), (*future, RecordPhase::Future)] {
                for event in events {
                    if test(event, phase) {
                        count += 1;
                        if count >= limit {
                            return count;
                        }
                    }
                }
            }
        }
        Seq::Items(items) => {
            for item in items.iter() {
                if test(item.event, item.phase) {
                    count += 1;
                    if count >= limit {
                        return count;
                    }
                }
            }
        }
    }
    count
}

/// [`count_where`] for a [`Fast`] test, with the hot leaf's loop monomorphised.
fn count_matching(seq: &Seq<'_>, pred: &Fast, invs: &Invs<'_>, limit: usize) -> usize {
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
enum LoopOp {
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
struct FastLoop {
    range: Node,
    pred: Fast,
    invariants: Vec<Invariant>,
}

impl FastLoop {
    /// The specialised node; `general` computes the same value on the general path, for the
    /// evaluations whose invariants fail.
    fn into_node(self, op: LoopOp, general: Node) -> Node {
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
            Ok(match op {
                LoopOp::Any => NVal::Bool(count_matching(&seq, &pred, &invs, 1) == 1),
                LoopOp::All => NVal::Bool(count_matching(&seq, &pred, &invs, 1) == 0),
                LoopOp::ExistsOne => NVal::Bool(count_matching(&seq, &pred, &invs, 2) == 1),
                LoopOp::Count(limit) => NVal::Int(count_matching(&seq, &pred, &invs, limit) as i64),
                LoopOp::Collect => {
                    NVal::Seq(Seq::Items(Rc::new(collect_matching(&seq, &pred, &invs))))
                }
            })
        })
    }
}

/// Whether `expr` mentions the identifier `name` anywhere (conservatively: also where an inner
/// comprehension rebinds it).
fn mentions(expr: &IdedExpr, name: &str) -> bool {
    let entry = |entry: &EntryExpr| match entry {
        EntryExpr::MapEntry(e) => mentions(&e.key, name) || mentions(&e.value, name),
        EntryExpr::StructField(f) => mentions(&f.value, name),
    };
    match &expr.expr {
        Expr::Ident(ident) => ident == name,
        Expr::Call(call) => {
            call.target.as_deref().is_some_and(|t| mentions(t, name))
                || call.args.iter().any(|a| mentions(a, name))
        }
        Expr::Select(select) => mentions(&select.operand, name),
        Expr::List(list) => list.elements.iter().any(|e| mentions(e, name)),
        Expr::Map(map) => map.entries.iter().any(|e| entry(&e.expr)),
        Expr::Struct(s) => s.entries.iter().any(|e| entry(&e.expr)),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .any(|e| mentions(e, name)),
        Expr::Literal(_) | Expr::Unspecified => false,
    }
}

/// An operand of a specialised comparison.
enum Operand {
    Str(SOp),
    Int(IOp),
    Time(TOp),
    Dur(DOp),
    /// An invariant whose type is only known at run time (`since`): it takes the kind of the
    /// other operand, checked at run time.
    Unknown(Node),
}

/// The invariants of one specialised comprehension while it compiles.
#[derive(Default)]
struct InvariantSet {
    list: Vec<Invariant>,
}

impl InvariantSet {
    fn add(&mut self, node: Node, kind: Kind) -> Option<usize> {
        let index = self.list.iter().filter(|i| i.kind == kind).count();
        (index < MAX_INVARIANTS).then_some(())?;
        self.list.push(Invariant { node, kind, index });
        Some(index)
    }
}

impl Compiler {
    /// The specialised form of comprehension `c`, when its predicate (and that of any `filter`
    /// feeding it) has one.
    fn fast_loop(&mut self, c: &ComprehensionExpr) -> Option<FastLoop> {
        let mut invariants = InvariantSet::default();
        let (range, pred) = self.fast_range_and_pred(c, &mut invariants)?;
        self.fast_loops += 1;
        Some(FastLoop {
            range,
            pred,
            invariants: invariants.list,
        })
    }

    fn fast_range_and_pred(
        &mut self,
        c: &ComprehensionExpr,
        invariants: &mut InvariantSet,
    ) -> Option<(Node, Fast)> {
        if c.iter_var2.is_some() || self.scopes.len() >= MAX_SLOTS {
            return None;
        }
        let shape = Shape::of(c)?;
        let predicate = shape.predicate(c)?;
        // A `filter` feeding this comprehension fuses into its test.
        let mark = invariants.list.len();
        let fused = match &c.iter_range.expr {
            Expr::Comprehension(inner) if Shape::of(inner) == Some(Shape::Filter) => {
                let fused = self.fast_range_and_pred(inner, invariants);
                if fused.is_none() {
                    invariants.list.truncate(mark);
                }
                fused
            }
            _ => None,
        };
        let (range, filter) = match fused {
            Some((range, filter)) => (range, Some(filter)),
            None => {
                let (range, ty) = self.expr(&c.iter_range)?;
                (ty == Ty::Seq).then_some(())?;
                (range, None)
            }
        };
        let pred = self.fast(predicate, &c.iter_var, invariants)?;
        let pred = match (shape, filter) {
            (_, None) => pred,
            // Over the kept elements only: `all` holds where the filter drops the element.
            (Shape::All, Some(filter)) => filter.not().or(pred),
            (_, Some(filter)) => filter.and(pred),
        };
        Some((range, pred))
    }

    /// `expr`, a per-element boolean of variable `var`, as a [`Fast`] test.
    fn fast(&mut self, expr: &IdedExpr, var: &str, invs: &mut InvariantSet) -> Option<Fast> {
        if !mentions(expr, var) {
            if let Expr::Literal(LiteralValue::Boolean(value)) = &expr.expr {
                return Some(Fast::Const(*value.inner()));
            }
            let (node, ty) = self.expr(expr)?;
            return match ty {
                Ty::Bool | Ty::Scalar => invs.add(node, Kind::Bool).map(Fast::Inv),
                _ => None,
            };
        }
        let Expr::Call(call) = &expr.expr else {
            return None;
        };
        let name = call.func_name.as_str();
        match (call.target.as_deref(), call.args.as_slice()) {
            (None, [a, b]) if name == operators::LOGICAL_AND => {
                Some(self.fast(a, var, invs)?.and(self.fast(b, var, invs)?))
            }
            (None, [a, b]) if name == operators::LOGICAL_OR => {
                Some(self.fast(a, var, invs)?.or(self.fast(b, var, invs)?))
            }
            (None, [a]) if name == operators::LOGICAL_NOT => Some(self.fast(a, var, invs)?.not()),
            (None, [a, b]) if Cmp::of(name).is_some() => {
                let cmp = Cmp::of(name)?;
                let a = self.operand(a, var, invs)?;
                let b = self.operand(b, var, invs)?;
                match resolve_pair(a, b, invs)? {
                    (Operand::Str(SOp::Name), Operand::Str(SOp::Lit(s))) if cmp == Cmp::Eq => {
                        Some(Fast::NameEq(s))
                    }
                    (Operand::Str(SOp::Lit(s)), Operand::Str(SOp::Name)) if cmp == Cmp::Eq => {
                        Some(Fast::NameEq(s))
                    }
                    (Operand::Str(SOp::Name), Operand::Str(SOp::Lit(s))) if cmp == Cmp::Ne => {
                        Some(Fast::NameEq(s).not())
                    }
                    (Operand::Str(a), Operand::Str(b)) => Some(Fast::Str(a, cmp, b)),
                    (Operand::Int(a), Operand::Int(b)) => Some(Fast::Int(a, cmp, b)),
                    (Operand::Time(a), Operand::Time(b)) => Some(Fast::Time(a, cmp, b)),
                    (Operand::Dur(a), Operand::Dur(b)) => Some(Fast::Dur(a, cmp, b)),
                    _ => None,
                }
            }
            (None, [needle, list]) if name == operators::IN => {
                let Expr::List(list) = &list.expr else {
                    return None;
                };
                list.optional_indices.is_empty().then_some(())?;
                let literal = |e: &IdedExpr| match &e.expr {
                    Expr::Literal(literal) => Some(literal.clone()),
                    _ => None,
                };
                let items = list
                    .elements
                    .iter()
                    .map(literal)
                    .collect::<Option<Vec<_>>>()?;
                match self.operand(needle, var, invs)? {
                    Operand::Str(needle) => {
                        let items = items
                            .into_iter()
                            .map(|item| match item {
                                LiteralValue::String(s) => Some(Box::from(s.inner())),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?;
                        Some(Fast::StrIn(needle, items))
                    }
                    Operand::Int(needle) => {
                        let items = items
                            .into_iter()
                            .map(|item| match item {
                                LiteralValue::Int(i) => Some(*i.inner()),
                                _ => None,
                            })
                            .collect::<Option<Vec<_>>>()?;
                        Some(Fast::IntIn(needle, items))
                    }
                    _ => None,
                }
            }
            (Some(target), [argument])
                if matches!(name, "contains" | "startsWith" | "endsWith") =>
            {
                let f = match name {
                    "contains" => StrFn::Contains,
                    "startsWith" => StrFn::StartsWith,
                    _ => StrFn::EndsWith,
                };
                let target = self.operand(target, var, invs)?;
                let argument = self.operand(argument, var, invs)?;
                match resolve_pair(target, argument, invs)? {
                    (Operand::Str(a), Operand::Str(b)) => Some(Fast::StrFn(f, a, b)),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// An operand of a comparison inside a per-element predicate of `var`.
    fn operand(&mut self, expr: &IdedExpr, var: &str, invs: &mut InvariantSet) -> Option<Operand> {
        if !mentions(expr, var) {
            match &expr.expr {
                Expr::Literal(LiteralValue::String(s)) => {
                    return Some(Operand::Str(SOp::Lit(Box::from(s.inner()))));
                }
                Expr::Literal(LiteralValue::Int(i)) => {
                    return Some(Operand::Int(IOp::Lit(*i.inner())));
                }
                _ => {}
            }
            let (node, ty) = self.expr(expr)?;
            return match ty {
                Ty::Int => Some(Operand::Int(IOp::Inv(invs.add(node, Kind::Int)?))),
                Ty::Str => Some(Operand::Str(SOp::Inv(invs.add(node, Kind::Str)?))),
                Ty::Time => Some(Operand::Time(TOp::Inv(invs.add(node, Kind::Time)?))),
                Ty::Dur => Some(Operand::Dur(DOp::Inv(invs.add(node, Kind::Dur)?))),
                Ty::Scalar => Some(Operand::Unknown(node)),
                _ => None,
            };
        }
        match &expr.expr {
            Expr::Select(select) if !select.test => {
                let Expr::Ident(ident) = &select.operand.expr else {
                    return None;
                };
                (ident == var).then_some(())?;
                // `level` and `referenceId` may be null: they stay on the general path.
                match select.field.as_str() {
                    "id" => Some(Operand::Int(IOp::Id)),
                    "name" => Some(Operand::Str(SOp::Name)),
                    "phase" => Some(Operand::Str(SOp::Phase)),
                    "createdAt" => Some(Operand::Time(TOp::CreatedAt)),
                    _ => None,
                }
            }
            // Timestamp minus timestamp is the one per-element arithmetic that cannot fail.
            Expr::Call(call)
                if call.func_name == operators::SUBSTRACT
                    && call.target.is_none()
                    && call.args.len() == 2 =>
            {
                let a = self.operand(&call.args[0], var, invs)?;
                let b = self.operand(&call.args[1], var, invs)?;
                let time = |operand: Operand, invs: &mut InvariantSet| match operand {
                    Operand::Time(t) => Some(t),
                    Operand::Unknown(node) => invs.add(node, Kind::Time).map(TOp::Inv),
                    _ => None,
                };
                let a = time(a, invs)?;
                let b = time(b, invs)?;
                Some(Operand::Dur(DOp::Diff(a, b)))
            }
            _ => None,
        }
    }
}

/// Gives an operand of unknown kind the kind of the other one.
fn resolve_pair(a: Operand, b: Operand, invs: &mut InvariantSet) -> Option<(Operand, Operand)> {
    let known = |unknown: Node, other: &Operand, invs: &mut InvariantSet| -> Option<Operand> {
        Some(match other {
            Operand::Str(_) => Operand::Str(SOp::Inv(invs.add(unknown, Kind::Str)?)),
            Operand::Int(_) => Operand::Int(IOp::Inv(invs.add(unknown, Kind::Int)?)),
            Operand::Time(_) => Operand::Time(TOp::Inv(invs.add(unknown, Kind::Time)?)),
            Operand::Dur(_) => Operand::Dur(DOp::Inv(invs.add(unknown, Kind::Dur)?)),
            Operand::Unknown(_) => return None,
        })
    };
    match (a, b) {
        (Operand::Unknown(a), b) => Some((known(a, &b, invs)?, b)),
        (a, Operand::Unknown(b)) => {
            let b = known(b, &a, invs)?;
            Some((a, b))
        }
        pair => Some(pair),
    }
}

#[cfg(test)]
mod tests {
    use super::super::interpreted::CelRule;
    use super::*;

    /// How many comprehensions of `source` take the specialised path (`None`: not native).
    fn fast_loops(source: &str) -> Option<usize> {
        let rule = CelRule::parse(source, 24).unwrap();
        compile(rule.expression()).map(|pred| pred.fast_loops)
    }

    #[test]
    fn common_predicates_take_the_specialised_path() {
        for source in [
            r#"events.exists(e, e.name == "X")"#,
            r#"events.all(e, e.name != "X")"#,
            r#"events.exists_one(e, "X" == e.name)"#,
            r#"past.exists(e, e.name == "A" && e.createdAt >= plannedAt - duration("30m"))"#,
            r#"past.exists(e, now - e.createdAt < duration("30m"))"#,
            r#"events.all(e, e.createdAt >= since)"#,
            r#"events.exists(e, e.name in ["A", "B"] || e.id in [1, 2])"#,
            r#"events.exists(e, !e.name.startsWith("A") && e.phase.endsWith("URE"))"#,
            r#"events.exists(e, e.name.contains("B") && robotId == 42)"#,
            r#"events.exists(e, e.id > events.size() - 3)"#,
            r#"events.exists(e, e.createdAt == until)"#,
        ] {
            assert_eq!(fast_loops(source), Some(1), "{source}");
        }
    }

    #[test]
    fn filter_counts_and_chains_are_fused() {
        // size(filter) counts (1) on top of the filter's own specialised list (1).
        assert_eq!(
            fast_loops(r#"past.filter(e, e.name == "A").size() > 3"#),
            Some(2)
        );
        assert_eq!(fast_loops(r#"size(past.filter(e, e.id > 2)) > 3"#), Some(2));
        // filter(…).exists(…): the filter alone, and the fused whole; likewise a chain: the
        // inner filter, the fused outer one, and the fused count.
        assert_eq!(
            fast_loops(r#"events.filter(e, e.name == "A").exists(x, x.id > 3)"#),
            Some(2)
        );
        assert_eq!(
            fast_loops(r#"events.filter(e, e.name == "A").filter(x, x.id > 3).size() == 1"#),
            Some(3)
        );
    }

    #[test]
    fn fallible_or_nullable_predicates_stay_general() {
        for source in [
            r#"events.exists(e, e.level > 1)"#,
            r#"events.exists(e, e.referenceId == null)"#,
            r#"events.exists(e, e.createdAt + duration("1h") > now)"#,
            r#"events.exists(e, e.id + 1 > 3)"#,
            r#"events.exists(e, e.name == "A" || e.level == 2)"#,
            r#"events.exists(e, e.name in ["A", 1])"#,
            r#"events.exists(e, e.id == "A")"#,
        ] {
            assert_eq!(fast_loops(source), Some(0), "{source}");
        }
        // The inner loop reads `a.id` once per outer element; the outer one is general.
        assert_eq!(
            fast_loops(r#"events.exists(a, events.exists(b, a.id != b.id && a.name == b.name))"#),
            Some(1)
        );
    }
}
