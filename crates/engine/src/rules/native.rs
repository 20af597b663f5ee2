//! The native fast path: common rule shapes compiled to Rust closures.
//!
//! The CEL interpreter looks every name up by string, boxes every intermediate value and
//! builds a scope per loop iteration. For the shapes templates actually use — boolean logic,
//! comparisons, event fields, `size`, indexing, time arithmetic, `in` over a literal list and
//! the `exists` / `all` / `exists_one` / `filter` macros — this module resolves every name at
//! compile time and builds a tree of closures that read the events in place: no allocation, no
//! lookups. Anything else returns `None` and the rule runs on the interpreter. The semantics,
//! errors included (`error || true` is `true`), follow the interpreter's; differential tests
//! in this module and in `tests/native_vs_interpreter.rs` hold them to it.

use std::cmp::Ordering;
use std::rc::Rc;

use cel::common::ast::{CallExpr, ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};
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

/// A value while a native rule runs.
#[derive(Clone)]
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
            (None, [left, right]) if name == operators::EQUALS || name == operators::NOT_EQUALS => {
                let (left, left_ty) = self.expr(left)?;
                let (right, right_ty) = self.expr(right)?;
                (!left_ty.is_container() && !right_ty.is_container()).then_some(())?;
                let negate = name == operators::NOT_EQUALS;
                let node: Node = Box::new(move |frame| {
                    let left = left(frame)?;
                    let right = right(frame)?;
                    Ok(NVal::Bool(scalar_eq(&left, &right) != negate))
                });
                Some((node, Ty::Bool))
            }
            (None, [left, right]) => {
                let accept: fn(Ordering) -> bool = match name {
                    operators::LESS => Ordering::is_lt,
                    operators::LESS_EQUALS => Ordering::is_le,
                    operators::GREATER => Ordering::is_gt,
                    operators::GREATER_EQUALS => Ordering::is_ge,
                    operators::ADD | operators::SUBSTRACT => {
                        return self.arithmetic(name == operators::ADD, left, right);
                    }
                    operators::INDEX => return self.index(left, right),
                    operators::IN => return self.in_list(left, right),
                    _ => return None,
                };
                let (left, left_ty) = self.expr(left)?;
                let (right, right_ty) = self.expr(right)?;
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

    fn index(&mut self, list: &IdedExpr, index: &IdedExpr) -> Option<(Node, Ty)> {
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

    fn size(&mut self, operand: &IdedExpr) -> Option<(Node, Ty)> {
        let (operand, ty) = self.expr(operand)?;
        matches!(ty, Ty::Seq | Ty::Str).then_some(())?;
        let node: Node = Box::new(move |frame| match operand(frame)? {
            NVal::Seq(seq) => Ok(NVal::Int(seq.len() as i64)),
            NVal::Str(s) => Ok(NVal::Int(s.chars().count() as i64)),
            other => Err(no_overload("size", &[&other])),
        });
        Some((node, Ty::Int))
    }

    /// The `exists`, `all`, `exists_one` and `filter` macros, recognised by their expansion.
    fn comprehension(&mut self, c: &ComprehensionExpr) -> Option<(Node, Ty)> {
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
