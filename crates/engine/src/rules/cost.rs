//! The static cost estimate of a rule (SPEC §13 "Resource bounds"), computed once at load.
//!
//! Cost is counted in the unit the native evaluator counts at run time: **one per element a
//! comprehension (`exists`, `all`, `exists_one`, `filter`, `map`) visits**. Everything else a
//! rule does is bounded by its length (at most 1,024 characters), so only what can grow with
//! the history is counted. The estimate is an upper bound of that count as a polynomial in `n`,
//! the number of records the rule sees: `events`, `past` and `future` each hold at most `n`; a
//! list literal holds as many elements as it is written with; a record is a map of six fields.
//! Besides comprehensions, `in` and `==` / `!=` over a list are charged its length (the
//! interpreter walks it), and so is copying a list built from the history (`+`, putting it in
//! a literal) — but for a `filter`'s or `map`'s own accumulator, appended in place.
//!
//! Template validation refuses a rule whose estimate has degree 2 or more — a comprehension over
//! the history inside another one (`events.all(a, events.all(b, …))`) — and the interpreter
//! path, which cannot count as it goes, checks the estimate for the actual `n` against the
//! budget before it runs.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, operators};

/// How many fields a record has (`id`, `name`, `createdAt`, `phase`, `level`, `referenceId`).
const RECORD_FIELDS: u64 = 6;

/// A polynomial in `n` with non-negative coefficients, lowest degree first; arithmetic
/// saturates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CostBound {
    coefficients: Vec<u64>,
}

impl CostBound {
    fn constant(c: u64) -> CostBound {
        CostBound {
            coefficients: vec![c],
        }
        .trimmed()
    }

    fn history() -> CostBound {
        CostBound {
            coefficients: vec![0, 1],
        }
    }

    fn trimmed(mut self) -> CostBound {
        while self.coefficients.last() == Some(&0) {
            self.coefficients.pop();
        }
        self
    }

    fn zip(&self, other: &CostBound, f: impl Fn(u64, u64) -> u64) -> CostBound {
        let len = self.coefficients.len().max(other.coefficients.len());
        let at = |p: &CostBound, i: usize| p.coefficients.get(i).copied().unwrap_or(0);
        CostBound {
            coefficients: (0..len).map(|i| f(at(self, i), at(other, i))).collect(),
        }
        .trimmed()
    }

    fn plus(&self, other: &CostBound) -> CostBound {
        self.zip(other, u64::saturating_add)
    }

    /// An upper bound of both (coefficient by coefficient, as `n ≥ 0`).
    fn join(&self, other: &CostBound) -> CostBound {
        self.zip(other, u64::max)
    }

    fn times(&self, other: &CostBound) -> CostBound {
        let (a, b) = (&self.coefficients, &other.coefficients);
        if a.is_empty() || b.is_empty() {
            return CostBound::default();
        }
        let mut product = vec![0u64; a.len() + b.len() - 1];
        for (i, x) in a.iter().enumerate() {
            for (j, y) in b.iter().enumerate() {
                product[i + j] = product[i + j].saturating_add(x.saturating_mul(*y));
            }
        }
        CostBound {
            coefficients: product,
        }
        .trimmed()
    }

    /// The power of `n` the cost grows with: 0 constant, 1 linear, 2 quadratic, …
    pub fn degree(&self) -> usize {
        self.coefficients.len().saturating_sub(1)
    }

    /// The bound for a history of `n` records.
    pub fn at(&self, n: usize) -> u64 {
        let n = n as u64;
        self.coefficients
            .iter()
            .rev()
            .fold(0u64, |acc, c| acc.saturating_mul(n).saturating_add(*c))
    }
}

/// What the estimate knows of a value: how long it may be (a list or map) and what its
/// elements may be. A scalar has length 0 and no elements.
#[derive(Debug, Clone, Default)]
struct Shape {
    len: CostBound,
    elem: Option<Box<Shape>>,
}

impl Shape {
    fn scalar() -> Shape {
        Shape::default()
    }

    fn record() -> Shape {
        Shape {
            len: CostBound::constant(RECORD_FIELDS),
            elem: None,
        }
    }

    fn history() -> Shape {
        Shape {
            len: CostBound::history(),
            elem: Some(Box::new(Shape::record())),
        }
    }

    fn element(&self) -> Shape {
        self.elem.as_deref().cloned().unwrap_or_default()
    }

    fn join(&self, other: &Shape) -> Shape {
        let elem = match (&self.elem, &other.elem) {
            (Some(a), Some(b)) => Some(Box::new(a.join(b))),
            (Some(e), None) | (None, Some(e)) => Some(e.clone()),
            (None, None) => None,
        };
        Shape {
            len: self.len.join(&other.len),
            elem,
        }
    }
}

/// Named functions that return a scalar whatever their arguments.
const SCALAR_FUNCTIONS: &[&str] = &[
    "size",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "duration",
    "timestamp",
    "int",
    "uint",
    "double",
    "string",
    "bool",
    "bytes",
    "type",
];

/// The cost bound of `expr`.
pub(super) fn estimate(expr: &IdedExpr) -> CostBound {
    let mut scopes = Vec::new();
    walk(expr, &mut scopes).1
}

fn walk(expr: &IdedExpr, scopes: &mut Vec<(String, Shape)>) -> (Shape, CostBound) {
    match &expr.expr {
        Expr::Literal(_) | Expr::Unspecified => (Shape::scalar(), CostBound::default()),
        Expr::Ident(name) => {
            let shape = match scopes.iter().rev().find(|(bound, _)| bound == name) {
                Some((_, shape)) => shape.clone(),
                None if matches!(name.as_str(), "events" | "past" | "future") => Shape::history(),
                None => Shape::scalar(),
            };
            (shape, CostBound::default())
        }
        Expr::Select(select) => {
            let (operand, cost) = walk(&select.operand, scopes);
            let shape = if select.test {
                Shape::scalar()
            } else {
                operand.element()
            };
            (shape, cost)
        }
        Expr::Call(call) => {
            let mut cost = CostBound::default();
            let mut shapes = Vec::new();
            for e in call.target.as_deref().into_iter().chain(&call.args) {
                let (shape, c) = walk(e, scopes);
                cost = cost.plus(&c);
                shapes.push(shape);
            }
            let name = call.func_name.as_str();
            let longest = shapes
                .iter()
                .fold(CostBound::default(), |acc, s| acc.join(&s.len));
            let shape = match (name, shapes.as_slice()) {
                (operators::INDEX, [list, _]) => list.element(),
                (operators::ADD, [a, b]) => {
                    // Joining lists copies both: charged, but for the accumulator a `filter`
                    // or `map` appends to (`@result`, which no rule can name), whose growth
                    // is the elements the comprehension visits.
                    if !is_accumulator(call.target.as_deref().or(call.args.first())) {
                        cost = cost.plus(&copied(a)).plus(&copied(b));
                    }
                    Shape {
                        len: a.len.plus(&b.len),
                        elem: a.join(b).elem,
                    }
                }
                (operators::CONDITIONAL, [_, a, b]) => a.join(b),
                (operators::IN, [_, list]) => {
                    cost = cost.plus(&list.len);
                    Shape::scalar()
                }
                (operators::EQUALS | operators::NOT_EQUALS, _) => {
                    cost = cost.plus(&longest);
                    Shape::scalar()
                }
                _ if !name.starts_with(|c: char| c.is_ascii_alphabetic())
                    || SCALAR_FUNCTIONS.contains(&name) =>
                {
                    Shape::scalar()
                }
                // Anything else may hand back what it was given.
                _ => shapes.iter().fold(Shape::scalar(), |acc, s| acc.join(s)),
            };
            (shape, cost)
        }
        Expr::List(list) => {
            let mut cost = CostBound::default();
            let mut elem = None::<Shape>;
            for e in &list.elements {
                let (shape, c) = walk(e, scopes);
                // A list (the history) put into a literal is copied into it.
                cost = cost.plus(&c).plus(&copied(&shape));
                elem = Some(elem.map_or(shape.clone(), |acc| acc.join(&shape)));
            }
            let shape = Shape {
                len: CostBound::constant(list.elements.len() as u64),
                elem: elem.map(Box::new),
            };
            (shape, cost)
        }
        Expr::Map(map) => {
            let mut cost = CostBound::default();
            let mut elem = None::<Shape>;
            for entry in &map.entries {
                let EntryExpr::MapEntry(e) = &entry.expr else {
                    continue;
                };
                let (_, key_cost) = walk(&e.key, scopes);
                let (shape, value_cost) = walk(&e.value, scopes);
                cost = cost.plus(&key_cost).plus(&value_cost).plus(&copied(&shape));
                elem = Some(elem.map_or(shape.clone(), |acc| acc.join(&shape)));
            }
            let shape = Shape {
                len: CostBound::constant(map.entries.len() as u64),
                elem: elem.map(Box::new),
            };
            (shape, cost)
        }
        Expr::Struct(s) => {
            let cost = s.entries.iter().fold(CostBound::default(), |acc, entry| {
                let value = match &entry.expr {
                    EntryExpr::StructField(f) => &f.value,
                    EntryExpr::MapEntry(e) => &e.value,
                };
                acc.plus(&walk(value, scopes).1)
            });
            (Shape::scalar(), cost)
        }
        Expr::Comprehension(c) => {
            let (range, range_cost) = walk(&c.iter_range, scopes);
            let (init, init_cost) = walk(&c.accu_init, scopes);
            let element = range.element();
            // A list or map accumulator (`filter`, `map`) grows by at most one per element.
            let accumulates = matches!(c.accu_init.expr, Expr::List(_) | Expr::Map(_));
            let accu = |elem: Option<Box<Shape>>| {
                if accumulates {
                    Shape {
                        len: range.len.plus(&init.len),
                        elem,
                    }
                } else {
                    init.clone()
                }
            };
            let mark = scopes.len();
            scopes.push((c.iter_var.clone(), element.clone()));
            if let Some(var2) = &c.iter_var2 {
                scopes.push((var2.clone(), element.clone()));
            }
            scopes.push((c.accu_var.clone(), accu(init.elem.clone())));
            let (_, cond_cost) = walk(&c.loop_cond, scopes);
            let (step, step_cost) = walk(&c.loop_step, scopes);
            scopes.pop();
            let elem = match (&init.elem, &step.elem) {
                (Some(a), Some(b)) => Some(Box::new(a.join(b))),
                (a, b) => a.clone().or_else(|| b.clone()),
            };
            scopes.push((c.accu_var.clone(), accu(elem)));
            let (result, result_cost) = walk(&c.result, scopes);
            scopes.truncate(mark);
            let per_element = CostBound::constant(1).plus(&cond_cost).plus(&step_cost);
            let cost = range_cost
                .plus(&init_cost)
                .plus(&range.len.times(&per_element))
                .plus(&result_cost);
            (result, cost)
        }
    }
}

/// What copying a value costs, when that grows with the history (a list built from it);
/// nothing for a record or a literal, whose size the rule's length bounds.
fn copied(shape: &Shape) -> CostBound {
    if shape.len.degree() >= 1 {
        shape.len.clone()
    } else {
        CostBound::default()
    }
}

/// Whether `expr` is a comprehension's accumulator (`@result` in the macros' expansion).
fn is_accumulator(expr: Option<&IdedExpr>) -> bool {
    matches!(expr.map(|e| &e.expr), Some(Expr::Ident(name)) if name.starts_with('@'))
}

/// Why a rule whose bound has `degree` ≥ 2 is refused, for a person.
pub(super) fn growth_message(degree: usize) -> String {
    let power = match degree {
        2 => "the square of the history length".to_owned(),
        3 => "the cube of the history length".to_owned(),
        k => format!("the history length to the power {k}"),
    };
    format!(
        "nested comprehension over the history: cost grows with {power} \
         (a comprehension over events, past or future — or a list built from them — inside \
         another one, or 'in' / '==' over such a list inside one); a rule may walk the history, \
         not walk it again for every record"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::interpreted::CelRule;

    fn bound(source: &str) -> CostBound {
        estimate(CelRule::parse(source, 24).unwrap().expression())
    }

    #[test]
    fn counts_the_elements_comprehensions_visit() {
        assert_eq!(
            bound(r#"events.size() > 0 && events[0].name == "A""#).at(100),
            0
        );
        assert_eq!(bound(r#"events.exists(e, e.name == "A")"#).at(100), 100);
        assert_eq!(
            bound(r#"past.filter(e, e.name == "A").size() >= 1 && past.filter(e, e.name == "A").size() <= 3"#).at(100),
            200
        );
        assert_eq!(
            bound(r#"events.filter(e, e.name == "A").exists(x, x.id > 3)"#).at(100),
            200
        );
        assert_eq!(bound(r#"[1, 2, 3].exists(x, x == robotId)"#).at(100), 3);
        assert_eq!(
            bound(r#"["A", "B"].all(x, events.exists(e, e.name == x))"#).at(100),
            2 + 2 * 100
        );
        assert_eq!(
            bound(r#"events.exists(e, e.name in ["A", "B"])"#).degree(),
            1
        );
    }

    #[test]
    fn nested_comprehensions_over_the_history_are_super_linear() {
        for (source, degree) in [
            (r#"events.all(a, events.all(b, a.id <= b.id))"#, 2),
            (
                r#"events.exists(a, past.filter(b, b.id == a.id).size() > 0)"#,
                2,
            ),
            (
                r#"events.filter(e, e.name == "A").exists(a, events.exists(b, b.id == a.id))"#,
                2,
            ),
            (r#"events.exists(a, a in events)"#, 2),
            (
                r#"events.map(e, events).exists(l, l.exists(x, x.id == 1))"#,
                2,
            ),
            (
                r#"events.all(a, events.all(b, events.all(c, a.id <= c.id)))"#,
                3,
            ),
        ] {
            assert_eq!(bound(source).degree(), degree, "{source}");
        }
        // A record is not the history: its six keys are a constant.
        assert_eq!(
            bound(r#"events.exists(e, e.exists(k, k == "id"))"#).degree(),
            1
        );
        assert_eq!(
            bound(r#"events.exists(e, e.exists(k, k == "id"))"#).at(10),
            10 + 60
        );
    }

    #[test]
    fn arithmetic_saturates() {
        let huge = CostBound::constant(u64::MAX);
        assert_eq!(huge.plus(&huge).at(0), u64::MAX);
        assert_eq!(CostBound::history().times(&huge).at(2), u64::MAX);
        assert_eq!(CostBound::default().degree(), 0);
    }
}
