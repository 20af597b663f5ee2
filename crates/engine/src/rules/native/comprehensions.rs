//! The `exists`, `all`, `exists_one` and `filter` macros: recognised by the comprehension the
//! parser expands them to, and run on the general path with the interpreter's error rules
//! (`exists` ignores an erroring element when another is true; `exists_one` and `filter`
//! stop at the first error).

use std::rc::Rc;

use cel::common::ast::{ComprehensionExpr, Expr, IdedExpr, LiteralValue, operators};

use super::MAX_SLOTS;
use super::fast::LoopOp;
use super::general::Compiler;
use super::values::{NVal, Node, Seq, Step, Ty, error, no_overload};

impl Compiler {
    /// The `exists`, `all`, `exists_one` and `filter` macros, recognised by their expansion.
    pub(super) fn comprehension(&mut self, c: &ComprehensionExpr) -> Option<(Node, Ty)> {
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
                    let mut spent = Ok(());
                    seq.for_each(|item| {
                        spent = frame.charge(1);
                        if spent.is_err() {
                            return Step::Stop;
                        }
                        match predicate(&frame.bind(slot, item)) {
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
                        }
                    });
                    spent?;
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
                seq.for_each(|item| {
                    if let Err(e) = frame.charge(1) {
                        failure = Some(e);
                        return Step::Stop;
                    }
                    match predicate(&frame.bind(slot, item)) {
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
                seq.for_each(|item| {
                    if let Err(e) = frame.charge(1) {
                        failure = Some(e);
                        return Step::Stop;
                    }
                    match predicate(&frame.bind(slot, item)) {
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

/// Whether `expr` is `future.exists(v, P)` or `events.exists(v, P)` whose `P` reads nothing but
/// `v`: true as soon as one event satisfies `P`, whatever the other events and their order.
pub(in crate::rules) fn is_exists_of_each_event(expr: &IdedExpr) -> bool {
    let Expr::Comprehension(c) = &expr.expr else {
        return false;
    };
    let over_events =
        matches!(&c.iter_range.expr, Expr::Ident(name) if name == "future" || name == "events");
    over_events
        && c.iter_var2.is_none()
        && Shape::of(c) == Some(Shape::Exists)
        && Shape::Exists.predicate(c).is_some_and(|p| {
            super::super::references::free_variable(p, std::slice::from_ref(&c.iter_var)).is_none()
        })
}

/// The macros the native path knows, as the parser expands them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Exists,
    All,
    ExistsOne,
    Filter,
}

impl Shape {
    pub(super) fn of(c: &ComprehensionExpr) -> Option<Shape> {
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
    pub(super) fn predicate(self, c: &ComprehensionExpr) -> Option<&IdedExpr> {
        let Expr::Call(step) = &c.loop_step.expr else {
            return None;
        };
        match self {
            Shape::Exists | Shape::All => step.args.get(1),
            Shape::ExistsOne | Shape::Filter => step.args.first(),
        }
    }
}
