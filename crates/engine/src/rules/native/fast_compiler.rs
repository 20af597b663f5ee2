//! Compiling a comprehension's predicate to the specialised path ([`Fast`] tests, see
//! `fast`): which operands are fields of the element, which are invariants computed once, and
//! how a `filter` feeding another comprehension fuses into its test. Anything it cannot
//! express returns `None`, and the comprehension stays on the general path.

use cel::common::ast::{ComprehensionExpr, EntryExpr, Expr, IdedExpr, LiteralValue, operators};

use super::MAX_SLOTS;
use super::comprehensions::Shape;
use super::fast::{
    Cmp, DOp, Fast, FastLoop, IOp, Invariant, Kind, MAX_INVARIANTS, SOp, StrFn, TOp,
};
use super::general::Compiler;
use super::values::{Node, Ty};

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
    pub(super) fn fast_loop(&mut self, c: &ComprehensionExpr) -> Option<FastLoop> {
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
            (Some(target), [pattern]) | (None, [target, pattern]) if name == "matches" => {
                let regex = crate::rules::regexes::compile(pattern).ok()?;
                match self.operand(target, var, invs)? {
                    Operand::Str(s) => Some(Fast::Matches(s, regex)),
                    Operand::Unknown(node) => {
                        Some(Fast::Matches(SOp::Inv(invs.add(node, Kind::Str)?), regex))
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
    use super::super::compile;
    use crate::rules::interpreted::CelRule;

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
            r#"events.exists(e, e.name.matches("^CHARGING_") && matches(e.phase, "PAST"))"#,
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
            r#"events.exists(e, e.referenceId.matches("^ref-"))"#,
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
