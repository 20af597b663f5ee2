//! Operators on the general path: `&&` / `||`, equality, ordering, `+` / `-`, `in` and the
//! string tests (`matches` included), each with the interpreter's overloads and error messages.

use std::cmp::Ordering;

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};

use super::general::Compiler;
use super::values::{NVal, Node, Ty, error, no_overload};

impl Compiler {
    /// `left == right`, or `!=` when `negate`.
    pub(super) fn equality(
        &mut self,
        negate: bool,
        left_expr: &IdedExpr,
        right_expr: &IdedExpr,
    ) -> Option<(Node, Ty)> {
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

    /// `<`, `<=`, `>`, `>=`; `None` for any other operator.
    pub(super) fn ordering(
        &mut self,
        name: &str,
        left_expr: &IdedExpr,
        right_expr: &IdedExpr,
    ) -> Option<(Node, Ty)> {
        let accept: fn(Ordering) -> bool = match name {
            operators::LESS => Ordering::is_lt,
            operators::LESS_EQUALS => Ordering::is_le,
            operators::GREATER => Ordering::is_gt,
            operators::GREATER_EQUALS => Ordering::is_ge,
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

    /// `contains`, `startsWith`, `endsWith` (`name`) of `target` with `argument`.
    pub(super) fn string_test(
        &mut self,
        name: &str,
        target: &IdedExpr,
        argument: &IdedExpr,
    ) -> Option<(Node, Ty)> {
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

    /// `target.matches("pattern")` / `matches(target, "pattern")`: the pattern compiled here,
    /// once (the interpreter compiles it on every call). A pattern that is not a valid literal
    /// was refused before the native compiler runs.
    pub(super) fn matches(&mut self, target: &IdedExpr, pattern: &IdedExpr) -> Option<(Node, Ty)> {
        let regex = crate::rules::regexes::compile(pattern).ok()?;
        let (target, target_ty) = self.expr(target)?;
        matches!(target_ty, Ty::Str | Ty::Scalar).then_some(())?;
        let node: Node = Box::new(move |frame| match target(frame)? {
            NVal::Str(s) => Ok(NVal::Bool(regex.is_match(s))),
            other => Err(no_overload(
                "matches",
                &[&other, &NVal::Str(regex.as_str())],
            )),
        });
        Some((node, Ty::Bool))
    }

    /// `left + right` (`add`) or `left - right` over ints, timestamps and durations, with the
    /// interpreter's overflow errors.
    pub(super) fn arithmetic(
        &mut self,
        add: bool,
        left: &IdedExpr,
        right: &IdedExpr,
    ) -> Option<(Node, Ty)> {
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

    /// `x in [literal, …]`.
    pub(super) fn in_list(&mut self, needle: &IdedExpr, list: &IdedExpr) -> Option<(Node, Ty)> {
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
}

/// `left && right`, or `left || right` when `or`.
pub(super) fn logical(left: Node, right: Node, or: bool) -> Node {
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
