//! `matches()` patterns (SPEC §13: "regexes compiled once"). The interpreter (`cel` crate)
//! compiles the pattern on every call, so a rule may only use `matches` with a literal
//! pattern, and only when it runs natively: the native compiler compiles each pattern once, at
//! load. This module checks the patterns a rule uses, before either compiler sees it.

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use regex::Regex;

use super::RuleCompileError;

/// The pattern argument of a `matches` call (`s.matches(p)` or `matches(s, p)`).
pub(super) fn pattern_of(call: &cel::common::ast::CallExpr) -> Option<&IdedExpr> {
    if call.func_name != "matches" {
        return None;
    }
    match (call.target.as_deref(), call.args.as_slice()) {
        (Some(_), [pattern]) | (None, [_, pattern]) => Some(pattern),
        _ => None,
    }
}

/// Compiles a literal pattern, with the refusal a rule gets when it is not one.
pub(super) fn compile(pattern: &IdedExpr) -> Result<Regex, RuleCompileError> {
    let Expr::Literal(LiteralValue::String(text)) = &pattern.expr else {
        return Err(RuleCompileError::DynamicRegex);
    };
    Regex::new(text.inner()).map_err(|e| RuleCompileError::InvalidRegex {
        pattern: text.inner().to_string(),
        reason: {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default().trim();
            last.strip_prefix("error: ").unwrap_or(last).to_owned()
        },
    })
}

/// How many `matches` calls `expr` makes; an error for the first pattern that is not a valid
/// literal.
pub(super) fn check(expr: &IdedExpr) -> Result<usize, RuleCompileError> {
    let mut found = 0;
    visit(expr, &mut found)?;
    Ok(found)
}

fn visit(expr: &IdedExpr, found: &mut usize) -> Result<(), RuleCompileError> {
    let entry = |entry: &EntryExpr, found: &mut usize| match entry {
        EntryExpr::MapEntry(e) => visit(&e.key, found).and_then(|()| visit(&e.value, found)),
        EntryExpr::StructField(f) => visit(&f.value, found),
    };
    match &expr.expr {
        Expr::Call(call) => {
            if let Some(pattern) = pattern_of(call) {
                compile(pattern)?;
                *found += 1;
            }
            for e in call.target.as_deref().into_iter().chain(&call.args) {
                visit(e, found)?;
            }
            Ok(())
        }
        Expr::Select(select) => visit(&select.operand, found),
        Expr::List(list) => list.elements.iter().try_for_each(|e| visit(e, found)),
        Expr::Map(map) => map.entries.iter().try_for_each(|e| entry(&e.expr, found)),
        Expr::Struct(s) => s.entries.iter().try_for_each(|e| entry(&e.expr, found)),
        Expr::Comprehension(c) => [
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ]
        .into_iter()
        .try_for_each(|e| visit(e, found)),
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Ok(()),
    }
}
