//! Naming what keeps a rule off the native path, for `templates validate`. A scan for the
//! constructs the native compiler never handles; it does not repeat the compiler's type
//! checks, so a rule refused for its types (a string `+`) gets no name.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};

use super::MAX_SLOTS;
use super::comprehensions::Shape;

/// The functions and operators the native compiler has a form for (for some operand types).
const SUPPORTED_CALLS: &[&str] = &[
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::NEGATE,
    operators::CONDITIONAL,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::LESS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::GREATER_EQUALS,
    operators::ADD,
    operators::SUBSTRACT,
    operators::INDEX,
    operators::IN,
    "size",
    "duration",
    "timestamp",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
];

/// The first part of `expr` the native compiler never handles, described for a person.
pub(in crate::rules) fn unsupported_part(expr: &IdedExpr) -> Option<String> {
    scan(expr, 0)
}

fn scan(expr: &IdedExpr, depth: usize) -> Option<String> {
    match &expr.expr {
        Expr::Literal(
            LiteralValue::Boolean(_)
            | LiteralValue::Int(_)
            | LiteralValue::String(_)
            | LiteralValue::Null,
        )
        | Expr::Ident(_) => None,
        Expr::Literal(_) => Some("this kind of literal (only bool, int, string and null)".into()),
        Expr::Select(select) if select.test => Some("has()".into()),
        Expr::Select(select) => scan(&select.operand, depth),
        Expr::Call(call) if !SUPPORTED_CALLS.contains(&call.func_name.as_str()) => {
            Some(format!("'{}'", call.func_name.trim_matches('_')))
        }
        // `x in [...]` takes only a list of literals.
        Expr::Call(call) if call.func_name == operators::IN => {
            let [needle, list] = call.args.as_slice() else {
                return None;
            };
            match &list.expr {
                Expr::List(list)
                    if list.optional_indices.is_empty()
                        && list
                            .elements
                            .iter()
                            .all(|e| matches!(e.expr, Expr::Literal(_))) =>
                {
                    scan(needle, depth)
                        .or_else(|| list.elements.iter().find_map(|e| scan(e, depth)))
                }
                _ => Some("'in' over anything but a list of literals".into()),
            }
        }
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .find_map(|e| scan(e, depth)),
        Expr::Comprehension(c) => {
            let Some(shape) = Shape::of(c).filter(|_| c.iter_var2.is_none()) else {
                return Some("this comprehension (only exists, all, exists_one and filter)".into());
            };
            if depth >= MAX_SLOTS {
                return Some(format!("more than {MAX_SLOTS} nested comprehensions"));
            }
            scan(&c.iter_range, depth)
                .or_else(|| shape.predicate(c).and_then(|p| scan(p, depth + 1)))
        }
        Expr::List(_) => Some("a list literal (only after 'in')".into()),
        Expr::Map(_) | Expr::Struct(_) => Some("a map or message literal".into()),
        Expr::Unspecified => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::interpreted::CelRule;

    fn part(source: &str) -> Option<String> {
        let rule = CelRule::parse(source, 24).unwrap();
        assert!(
            super::super::compile(rule.expression()).is_none(),
            "{source}"
        );
        unsupported_part(rule.expression())
    }

    #[test]
    fn names_what_the_native_compiler_lacks() {
        for (source, expected) in [
            (r#"events.exists(e, e.id % 2 == 0)"#, "'%'"),
            (r#"events.exists(e, string(e.id) == "1")"#, "'string'"),
            (r#"events.exists(e, has(e.level))"#, "has()"),
            (
                r#"events.map(e, e.id).size() > 1"#,
                "this comprehension (only exists, all, exists_one and filter)",
            ),
            (
                r#"events.size() > 1.5"#,
                "this kind of literal (only bool, int, string and null)",
            ),
            (r#"[1, 2].size() == 2"#, "a list literal (only after 'in')"),
            (
                r#"robotId in [robotId]"#,
                "'in' over anything but a list of literals",
            ),
        ] {
            assert_eq!(part(source).as_deref(), Some(expected), "{source}");
        }
        // Refused for its types, which the scan does not check.
        assert_eq!(part(r#"events[0].name + "x" == "Ax""#), None);
    }
}
