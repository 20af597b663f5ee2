//! The general compiler: every expression the native path knows, as a tree of closures that
//! mirror the interpreter, errors included. The operators are in `operators`, the macros in
//! `comprehensions`; a comprehension whose predicate allows it is also compiled by
//! `fast_compiler`, which this tree falls back on.

use cel::common::ast::{CallExpr, Expr, IdedExpr, LiteralValue, operators};
use cel::{Context, Value};
use chrono::{DateTime, Utc};

use super::comprehensions::Shape;
use super::fast::LoopOp;
use super::operators::logical;
use super::values::{Item, ListVar, NVal, Node, Seq, Ty, error, no_overload};

/// Compiles CEL expressions to [`Node`]s; `None` for anything without a native form.
#[derive(Default)]
pub(super) struct Compiler {
    pub(super) consts: Vec<String>,
    /// Comprehension variables in scope, outermost first; the index is the slot.
    pub(super) scopes: Vec<String>,
    /// How many comprehensions took the specialised path (for tests).
    pub(super) fast_loops: usize,
}

impl Compiler {
    pub(super) fn expr(&mut self, expr: &IdedExpr) -> Option<(Node, Ty)> {
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

    pub(super) fn literal(&mut self, literal: &LiteralValue) -> Option<(Node, Ty)> {
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
            (Some(target), [pattern]) | (None, [target, pattern]) if name == "matches" => {
                self.matches(target, pattern)
            }
            (None, [left, right]) if name == operators::EQUALS => self.equality(false, left, right),
            (None, [left, right]) if name == operators::NOT_EQUALS => {
                self.equality(true, left, right)
            }
            (None, [left, right]) => match name {
                operators::ADD | operators::SUBSTRACT => {
                    self.arithmetic(name == operators::ADD, left, right)
                }
                operators::INDEX => self.index(left, right),
                operators::IN => self.in_list(left, right),
                _ => self.ordering(name, left, right),
            },
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
                self.string_test(name, target, argument)
            }
            _ => None,
        }
    }

    /// `events`, `past` or `future` itself (not a comprehension variable of that name).
    pub(super) fn list_var(&self, expr: &IdedExpr) -> Option<ListVar> {
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

    pub(super) fn index(&mut self, list: &IdedExpr, index: &IdedExpr) -> Option<(Node, Ty)> {
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

    fn size(&mut self, operand_expr: &IdedExpr) -> Option<(Node, Ty)> {
        self.size_up_to(operand_expr, usize::MAX)
    }

    /// `expr` when it is `size(…)` / `….size()` compared with the int literal `other`: the
    /// size, where a `filter` count stops at `other + 1` — enough to decide the comparison
    /// (`filter(…).size() <= 3` need not count past 4).
    pub(super) fn bounded_size(&mut self, expr: &IdedExpr, other: &IdedExpr) -> Option<(Node, Ty)> {
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
    pub(super) fn size_up_to(
        &mut self,
        operand_expr: &IdedExpr,
        limit: usize,
    ) -> Option<(Node, Ty)> {
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
}

/// A field of a record.
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
