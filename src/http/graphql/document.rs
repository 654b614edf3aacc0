//! The document stage: parse the query once, learn everything later stages
//! need from one place ([`Facts`]: the operation's kind, aliases,
//! introspection, whether the answer may be cached), and apply the limits
//! async-graphql does not apply itself (the size of the query text, before
//! parsing; aliases; introspection for public keys; mutations over GET; the
//! size of a `where` given in variables, before the variables become
//! async-graphql values). Depth and complexity are set on the schema.

use async_graphql::parser::types::{
    ExecutableDocument, OperationDefinition, OperationType, Selection, SelectionSet,
};
use async_graphql::{PathSegment, ServerError, Value as GqlValue, Variables};
use serde_json::{Map, Value};

use super::request::Params;
use crate::auth::principal::Principal;
use crate::config::Config;
use crate::content::query::check_where_size;
use crate::error::{AppError, Code};

/// Root fields that read content: a cacheable operation selects at least one.
const CONTENT_ROOT_FIELDS: [&str; 3] = ["records", "record", "search"];

/// What a parsed document asks for.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// The kind of the operation that would run; `None` when the name
    /// selects nothing or several operations leave it open.
    pub kind: Option<OperationType>,
    /// Aliased fields in every operation and fragment, as written
    /// (fragments are counted once, not per spread).
    pub aliases: usize,
    /// Whether any selection names `__schema` or `__type`.
    pub introspection: bool,
    /// Whether the answer may go to the read cache: a query whose root
    /// fields are `records`, `record` or `search` (at least one; none with a
    /// `preview` argument other than a literal `false`) and `__typename`.
    /// (`{ __typename }` alone is the GraphQL floor the load harness
    /// measures; it is never cached.)
    pub cacheable: bool,
}

impl Facts {
    /// Reads the facts of `doc` for the operation `operation_name` selects.
    pub fn of(doc: &ExecutableDocument, operation_name: Option<&str>) -> Self {
        let operation = select(doc, operation_name);
        let mut facts = Facts {
            kind: operation.map(|op| op.ty),
            cacheable: is_cacheable(doc, operation),
            ..Facts::default()
        };
        // Iterative, so a hostile document cannot exhaust the stack here.
        let mut stack: Vec<&SelectionSet> = doc
            .operations
            .iter()
            .map(|(_, op)| &op.node.selection_set.node)
            .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
            .collect();
        while let Some(set) = stack.pop() {
            for item in &set.items {
                match &item.node {
                    Selection::Field(f) => {
                        if f.node.alias.is_some() {
                            facts.aliases += 1;
                        }
                        let name = f.node.name.node.as_str();
                        facts.introspection |= name == "__schema" || name == "__type";
                        stack.push(&f.node.selection_set.node);
                    }
                    Selection::InlineFragment(f) => stack.push(&f.node.selection_set.node),
                    Selection::FragmentSpread(_) => {}
                }
            }
        }
        facts
    }

    /// The label of the request metric.
    pub fn label(&self) -> &'static str {
        match self.kind {
            Some(OperationType::Query) => "query",
            Some(OperationType::Mutation) => "mutation",
            Some(OperationType::Subscription) => "subscription",
            None => "invalid",
        }
    }
}

/// The operation `name` selects (the only one when no name is given).
fn select<'a>(doc: &'a ExecutableDocument, name: Option<&str>) -> Option<&'a OperationDefinition> {
    let mut ops = doc.operations.iter();
    match name {
        Some(name) => ops
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| &op.node),
        None => match (ops.next(), ops.next()) {
            (Some((_, only)), None) => Some(&only.node),
            _ => None,
        },
    }
}

/// One operation, checked and ready to run, or already answered with a
/// parse or validation error (which still counts against the budget).
pub enum Prepared {
    Run {
        request: Box<async_graphql::Request>,
        label: &'static str,
        /// Whether its answer may go to the read cache.
        cacheable: bool,
    },
    Answered(Box<async_graphql::Response>, &'static str),
}

impl Prepared {
    /// The label of the request metric.
    pub fn label(&self) -> &'static str {
        match self {
            Prepared::Run { label, .. } | Prepared::Answered(_, label) => label,
        }
    }

    /// Whether this operation will run and its answer may be cached.
    pub fn is_cacheable(&self) -> bool {
        matches!(
            self,
            Prepared::Run {
                cacheable: true,
                ..
            }
        )
    }
}

/// Parses and checks one operation: parse errors and limit violations are
/// answered here; a mutation over GET is refused (405).
pub fn prepare(
    config: &Config,
    principal: &Principal,
    params: Params,
    over_get: bool,
) -> Result<Prepared, AppError> {
    // Before parsing: the parser builds a tree many times the text's size.
    let max = config.max_query_bytes;
    if params.query.len() > max {
        let e = ServerError::new(
            format!(
                "the query text is {} bytes; at most {max} are allowed (QUIRE_MAX_QUERY_BYTES)",
                params.query.len()
            ),
            None,
        );
        return Ok(answered(e, Code::GraphqlValidationFailed, "invalid"));
    }
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    let operation_name = request.operation_name.clone();
    let doc = match request.parsed_query() {
        Ok(doc) => doc,
        Err(e) => {
            let e = ServerError {
                message: one_line_parse_error(&e),
                ..e
            };
            return Ok(answered(e, Code::GraphqlParseFailed, "invalid"));
        }
    };
    let facts = Facts::of(doc, operation_name.as_deref());
    let label = facts.label();
    if over_get
        && matches!(
            facts.kind,
            Some(OperationType::Mutation | OperationType::Subscription)
        )
    {
        return Err(AppError::MethodNotAllowed(
            "mutations are accepted over POST only".into(),
        ));
    }
    let refusal = if facts.aliases > config.max_aliases {
        Some(format!(
            "the document has {} aliases; at most {} are allowed",
            facts.aliases, config.max_aliases
        ))
    } else if facts.introspection && principal.is_public() && !config.public_introspection {
        Some("introspection is disabled for public keys".to_owned())
    } else {
        None
    };
    if let Some(message) = refusal {
        let e = ServerError::new(message, None);
        return Ok(answered(e, Code::GraphqlValidationFailed, label));
    }
    if let Some(vars) = params.variables {
        // Before the variables are copied into async-graphql's values (and
        // then into the resolver's argument): a `where` over its size
        // limit is refused while it is still one JSON tree.
        if let Some(e) = oversized_where(doc, &vars) {
            return Ok(Prepared::Answered(
                Box::new(async_graphql::Response::from_errors(vec![e])),
                label,
            ));
        }
        request = request.variables(Variables::from_json(Value::Object(vars)));
    }
    Ok(Prepared::Run {
        request: Box::new(request),
        label,
        cacheable: facts.cacheable,
    })
}

/// The refusal of the first `where` argument (of any field, in any
/// operation or fragment) that takes a variable whose value is over the
/// `where` size limit: `BAD_USER_INPUT` on that field, as the resolver
/// would answer it.
fn oversized_where(doc: &ExecutableDocument, vars: &Map<String, Value>) -> Option<ServerError> {
    let mut stack: Vec<&SelectionSet> = doc
        .operations
        .iter()
        .map(|(_, op)| &op.node.selection_set.node)
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .collect();
    while let Some(set) = stack.pop() {
        for item in &set.items {
            let field = match &item.node {
                Selection::Field(f) => f,
                Selection::InlineFragment(f) => {
                    stack.push(&f.node.selection_set.node);
                    continue;
                }
                Selection::FragmentSpread(_) => continue,
            };
            stack.push(&field.node.selection_set.node);
            let Some(arg) = field.node.get_argument("where") else {
                continue;
            };
            // Every variable the argument uses, wherever it sits in it
            // (the literal is small: the query text is bounded).
            let checked = arg.node.clone().into_const_with(|name| {
                match vars.get(name.as_str()).map(check_where_size) {
                    Some(Err(refusal)) => Err(refusal),
                    _ => Ok(GqlValue::Null),
                }
            });
            if let Err(refusal) = checked {
                let mut e = async_graphql::Error::from(refusal).into_server_error(field.pos);
                e.path = vec![PathSegment::Field(
                    field.node.response_key().node.to_string(),
                )];
                return Some(e);
            }
        }
    }
    None
}

/// The parser's message in one line with its position: "syntax error at
/// line 1, column 3: expected selection" rather than a multi-line drawing.
fn one_line_parse_error(e: &ServerError) -> String {
    let expected = e
        .message
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("= "))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            e.message
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty() && !l.starts_with("-->") && !l.starts_with('|'))
                .unwrap_or("unreadable document")
                .to_owned()
        });
    match e.locations.first() {
        Some(pos) => format!(
            "syntax error at line {}, column {}: {expected}",
            pos.line, pos.column
        ),
        None => format!("syntax error: {expected}"),
    }
}

/// Restates async-graphql's depth and complexity refusals with the limit
/// that was crossed, so a client knows how far to cut its query.
pub fn explain_limits(resp: &mut async_graphql::Response, config: &Config) {
    for e in &mut resp.errors {
        match e.message.as_str() {
            "Query is nested too deep." => {
                e.message = format!(
                    "the query is nested too deep: at most {} levels are allowed (QUIRE_MAX_DEPTH)",
                    config.max_depth
                );
            }
            "Query is too complex." => {
                e.message = format!(
                    "the query is too complex: at most {} fields are allowed (QUIRE_MAX_COMPLEXITY)",
                    config.max_complexity
                );
            }
            _ => {}
        }
    }
}

fn answered(mut e: ServerError, code: Code, label: &'static str) -> Prepared {
    code.mark(&mut e);
    Prepared::Answered(
        Box::new(async_graphql::Response::from_errors(vec![e])),
        label,
    )
}

/// Whether the operation `operation_name` selects in `doc` may be cached: a
/// query whose root fields are `records`, `record` or `search` (at least one; none
/// with a `preview` argument other than a literal `false`) and
/// `__typename`. (`{ __typename }` alone is the GraphQL floor the load
/// harness measures; it is never cached.)
fn is_cacheable(doc: &ExecutableDocument, operation: Option<&OperationDefinition>) -> bool {
    let Some(operation) = operation else {
        return false;
    };
    let mut content = false;
    operation.ty == OperationType::Query
        && root_is_cacheable(doc, &operation.selection_set.node, 0, &mut content)
        && content
}

/// Whether every root field (through fragments) is a published-view
/// content read or `__typename`; sets `content` when one reads content.
fn root_is_cacheable(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    depth: usize,
    content: &mut bool,
) -> bool {
    // Fragments that spread each other are a validation error; stop early.
    if depth > 8 {
        return false;
    }
    set.items.iter().all(|item| match &item.node {
        Selection::Field(field) => {
            let field = &field.node;
            let name = field.name.node.as_str();
            if name == "__typename" {
                return true;
            }
            let published = field.arguments.iter().all(|(arg, value)| {
                arg.node.as_str() != "preview"
                    || value.node.clone().into_const() == Some(GqlValue::Boolean(false))
            });
            *content |= CONTENT_ROOT_FIELDS.contains(&name);
            CONTENT_ROOT_FIELDS.contains(&name) && published
        }
        Selection::FragmentSpread(spread) => doc
            .fragments
            .get(&spread.node.fragment_name.node)
            .is_some_and(|f| {
                root_is_cacheable(doc, &f.node.selection_set.node, depth + 1, content)
            }),
        Selection::InlineFragment(inline) => {
            root_is_cacheable(doc, &inline.node.selection_set.node, depth + 1, content)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cacheable(query: &str, operation: Option<&str>) -> bool {
        let Ok(doc) = async_graphql::parser::parse_query(query) else {
            panic!("{query} does not parse");
        };
        Facts::of(&doc, operation).cacheable
    }

    #[test]
    fn caches_published_reads_only() {
        assert!(cacheable(
            "{ records(modelKey: \"page\") { items { id } } }",
            None
        ));
        assert!(cacheable(
            "query Q($id: ID!) { record(id: $id) { id } __typename }",
            Some("Q")
        ));
        assert!(cacheable(
            "{ a: record(id: \"1\", preview: false) { id } }",
            None
        ));
        assert!(cacheable(
            "{ ...F } fragment F on Query { records(modelKey: \"p\") { totalCount } }",
            None
        ));
        assert!(cacheable(
            "{ ... on Query { record(id: \"1\") { id } } }",
            None
        ));

        assert!(!cacheable(
            "{ records(modelKey: \"p\", preview: true) { items { id } } }",
            None
        ));
        assert!(!cacheable(
            "query($p: Boolean) { record(id: \"1\", preview: $p) { id } }",
            None
        ));
        assert!(!cacheable(
            "{ record(id: \"1\") { id } viewer { rateLimit { remaining } } }",
            None
        ));
        assert!(!cacheable(
            "{ ...F } fragment F on Query { viewer { key { id } } }",
            None
        ));
        assert!(!cacheable("{ ... on Query { models { key } } }", None));
        assert!(!cacheable("mutation { deleteRecord(id: \"1\") }", None));
        assert!(!cacheable("{ __schema { types { name } } }", None));
        assert!(!cacheable("{ __typename }", None));
        assert!(!cacheable(
            "query A { record(id: \"1\") { id } } query B { viewer { key { id } } }",
            Some("B")
        ));
        assert!(!cacheable(
            "query A { record(id: \"1\") { id } } query B { record(id: \"2\") { id } }",
            None
        ));
        assert!(!cacheable(
            "{ ...F } fragment F on Query { ...G } fragment G on Query { ...F }",
            None
        ));
    }

    #[test]
    fn counts_aliases_everywhere() {
        let doc = async_graphql::parser::parse_query(
            "{ a: viewer { k: key { id } } ...F } fragment F on Query { b: viewer { key { id } } }",
        )
        .map_err(|e| e.to_string());
        let facts = doc.as_ref().map(|d| Facts::of(d, None));
        assert_eq!(facts.map(|f| (f.aliases, f.introspection)), Ok((3, false)));
    }

    #[test]
    fn finds_introspection_in_fragments() {
        let doc = async_graphql::parser::parse_query(
            "{ ...F } fragment F on Query { __type(name: \"Query\") { name } }",
        )
        .map_err(|e| e.to_string());
        assert_eq!(doc.map(|d| Facts::of(&d, None).introspection), Ok(true));
    }
}
