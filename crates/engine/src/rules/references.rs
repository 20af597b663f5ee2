//! Static check of the names a rule uses: every free variable must be one of SPEC §4.2 and
//! every function one the CEL environment has — whether or not a trial run reaches it.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};
use std::sync::Arc;

use cel::{Context, ExecutionError, Value};

use super::VARIABLES;

/// The first unknown variable or function `expr` uses.
pub(super) fn unknown_reference(expr: &IdedExpr) -> Option<String> {
    let mut bound = Vec::new();
    find(expr, &mut bound, VARIABLES)
}

/// The first variable `expr` reads other than `bound` — a rule variable (`now`, `events`, …)
/// included.
pub(super) fn free_variable(expr: &IdedExpr, bound: &[String]) -> Option<String> {
    find(expr, &mut bound.to_vec(), &[])
}

fn find(expr: &IdedExpr, bound: &mut Vec<String>, globals: &[&str]) -> Option<String> {
    match &expr.expr {
        Expr::Ident(name) => {
            let known = bound.iter().any(|b| b == name) || globals.contains(&name.as_str());
            (!known).then(|| name.clone())
        }
        Expr::Call(call) => {
            if is_named_function(&call.func_name) && !function_exists(&call.func_name) {
                return Some(call.func_name.clone());
            }
            call.target
                .iter()
                .map(|target| &**target)
                .chain(&call.args)
                .find_map(|e| find(e, bound, globals))
        }
        Expr::Select(select) => find(&select.operand, bound, globals),
        Expr::List(list) => list.elements.iter().find_map(|e| find(e, bound, globals)),
        Expr::Map(map) => map
            .entries
            .iter()
            .find_map(|entry| entry_find(&entry.expr, bound, globals)),
        Expr::Struct(s) => s
            .entries
            .iter()
            .find_map(|entry| entry_find(&entry.expr, bound, globals)),
        Expr::Comprehension(c) => {
            if let Some(name) =
                find(&c.iter_range, bound, globals).or_else(|| find(&c.accu_init, bound, globals))
            {
                return Some(name);
            }
            let scope = bound.len();
            bound.push(c.iter_var.clone());
            bound.extend(c.iter_var2.clone());
            bound.push(c.accu_var.clone());
            let found = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .find_map(|e| find(e, bound, globals));
            bound.truncate(scope);
            found
        }
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

fn entry_find(entry: &EntryExpr, bound: &mut Vec<String>, globals: &[&str]) -> Option<String> {
    match entry {
        EntryExpr::MapEntry(e) => {
            find(&e.key, bound, globals).or_else(|| find(&e.value, bound, globals))
        }
        EntryExpr::StructField(f) => find(&f.value, bound, globals),
    }
}

/// Operators (`_+_`, `!_`, `@in`, …) are always there; named functions may not be.
fn is_named_function(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphabetic())
}

/// Asks the interpreter itself: calling an unknown function, globally or as a method, is an
/// undeclared reference; a known one fails on its arguments instead.
fn function_exists(name: &str) -> bool {
    let parser = || super::interpreted::ENV.parser();
    [format!("{name}()"), format!("null.{name}()")]
        .iter()
        .filter_map(|probe| parser().parse(probe).ok())
        .any(|expr| {
            !matches!(
                Value::resolve(
                    &expr,
                    &Context::with_env(Arc::clone(&super::interpreted::ENV))
                ),
                Err(ExecutionError::UndeclaredReference(_))
            )
        })
}
