//! Checks async-graphql does not make itself: aliases per document and
//! introspection for public keys (depth and complexity are set on the
//! schema builder).

use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// What a document asks for, as far as the limits care.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DocumentStats {
    /// Aliased fields in every operation and fragment, as written
    /// (fragments are counted once, not per spread).
    pub aliases: usize,
    /// Whether any selection names `__schema` or `__type`.
    pub introspection: bool,
}

/// Walks every selection of `doc` once.
pub fn document_stats(doc: &ExecutableDocument) -> DocumentStats {
    // Iterative, so a hostile document cannot exhaust the stack here.
    let mut stack: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .collect();
    let mut stats = DocumentStats::default();
    while let Some(set) = stack.pop() {
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    if f.node.alias.is_some() {
                        stats.aliases += 1;
                    }
                    let name = f.node.name.node.as_str();
                    stats.introspection |= name == "__schema" || name == "__type";
                    stack.push(&f.node.selection_set.node);
                }
                Selection::InlineFragment(f) => stack.push(&f.node.selection_set.node),
                Selection::FragmentSpread(_) => {}
            }
        }
    }
    stats
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
        let stats = doc.as_ref().map(document_stats);
        assert_eq!(
            stats,
            Ok(DocumentStats {
                aliases: 3,
                introspection: false
            })
        );
    }

    #[test]
    fn finds_introspection_in_fragments() {
        let doc = async_graphql::parser::parse_query(
            "{ ...F } fragment F on Query { __type(name: \"Query\") { name } }",
        )
        .map_err(|e| e.to_string());
        assert_eq!(doc.map(|d| document_stats(&d).introspection), Ok(true));
    }
}
