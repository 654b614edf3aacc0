//! Limits async-graphql does not enforce itself: aliases per document.
//! (Depth and complexity are set on the schema builder.)

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// Counts aliased fields in every operation and fragment of `doc`, as
/// written (fragments are counted once, not per spread).
pub fn count_aliases(doc: &ExecutableDocument) -> usize {
    let ops: usize = doc
        .operations
        .iter()
        .map(|(_, op)| count_in(&op.node.selection_set.node))
        .sum();
    let frags: usize = doc
        .fragments
        .values()
        .map(|f| count_in(&f.node.selection_set.node))
        .sum();
    ops + frags
}

fn count_in(set: &SelectionSet) -> usize {
    // Iterative, so a hostile document cannot exhaust the stack here.
    let mut stack = vec![set];
    let mut n = 0;
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    if f.node.alias.is_some() {
                        n += 1;
                    }
                    stack.push(&f.node.selection_set.node);
                }
                Selection::InlineFragment(f) => stack.push(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_aliases_everywhere() {
        let doc = async_graphql::parser::parse_query(
            "{ a: viewer { k: key { id } } ...F } fragment F on Query { b: viewer { key { id } } }",
        )
        .map_err(|e| e.to_string());
        assert_eq!(doc.as_ref().map(count_aliases), Ok(3));
    }
}
