//! Bounds on a rule's shape, checked after parsing and before anything walks it
//! recursively: how many comprehensions it holds, and how deep its tree is. Both are counted
//! without recursion, so that the check itself cannot run out of stack.

use cel::common::ast::{EntryExpr, Expr, IdedExpr};

/// How many comprehensions (`exists`, `all`, `exists_one`, `filter`, `map`) `expr` holds, in
/// chains and nested alike: the native compiler's work grows steeply with them.
pub(super) fn comprehensions(expr: &IdedExpr) -> usize {
    let mut count = 0;
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        count += usize::from(matches!(expr.expr, Expr::Comprehension(_)));
        pending.extend(children(expr));
    }
    count
}

/// The depth of `expr`'s tree: every walk over a rule (the estimate, the native compiler,
/// both evaluators) recurses that deep, and the parser's nesting cap does not count a chain of
/// operators (`1 + 1 + … + 1` is 500 deep in 1,024 characters, past a worker thread's stack).
pub(super) fn depth(expr: &IdedExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(expr, 1)];
    while let Some((expr, level)) = pending.pop() {
        deepest = deepest.max(level);
        pending.extend(children(expr).into_iter().map(|child| (child, level + 1)));
    }
    deepest
}

fn children(expr: &IdedExpr) -> Vec<&IdedExpr> {
    match &expr.expr {
        Expr::Literal(_) | Expr::Unspecified | Expr::Ident(_) => Vec::new(),
        Expr::Select(select) => vec![&*select.operand],
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::List(list) => list.elements.iter().collect(),
        Expr::Map(map) => entries(&map.entries),
        Expr::Struct(s) => entries(&s.entries),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
    }
}

fn entries(entries: &[cel::common::ast::IdedEntryExpr]) -> Vec<&IdedExpr> {
    entries
        .iter()
        .flat_map(|entry| match &entry.expr {
            EntryExpr::MapEntry(e) => vec![&e.key, &e.value],
            EntryExpr::StructField(f) => vec![&f.value],
        })
        .collect()
}
