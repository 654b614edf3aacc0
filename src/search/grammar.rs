//! The query grammar (SPEC §8), parsed once in Rust and compiled into an
//! FTS5 `MATCH` expression and a PostgreSQL `tsquery`. User text never
//! reaches either database as syntax: only folded words (alphanumeric
//! characters, see [`super::fold`]) do, always quoted.
//!
//! ```text
//! query  := term (space term)*
//! term   := "-"? (word | "\"" words "\"")
//! ```
//! Words are ANDed; a quoted phrase matches its words next to each other,
//! in order; `-` excludes; the last word, when it is the query's last term
//! and not quoted, also matches as a prefix. A term the tokenizer splits
//! (`e-mail`) is a phrase of its parts.

use crate::error::{AppError, AppResult};

use super::fold::words;

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// The most words a query may hold (phrases and exclusions included).
pub const MAX_QUERY_WORDS: usize = 10;
/// The shortest last word that also matches as a prefix (a one-letter
/// prefix would match most of the vocabulary).
pub const MIN_PREFIX_CHARS: usize = 2;

/// One term of a query, its words folded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Clause {
    /// One word; `prefix` when it also matches as a prefix.
    Word { word: String, prefix: bool },
    /// Words next to each other, in order.
    Phrase(Vec<String>),
}

/// A parsed query: what must match, and what must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    pub include: Vec<Clause>,
    pub exclude: Vec<Clause>,
    /// The vocabulary words the prefix word completes to, when they are
    /// few (set by [`super::typo`]): matched as those words on SQLite, which
    /// has no prefix index for prefixes of more than 4 characters and
    /// would merge every matching word's postings for each query.
    pub completions: Option<Vec<String>>,
}

fn bad(why: &str) -> AppError {
    AppError::bad_input(format!("search query: {why}"))
}

/// Parses `text`; an empty, too long or malformed query is `BAD_USER_INPUT`.
pub fn parse(text: &str) -> AppResult<Query> {
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(bad(&format!("at most {MAX_QUERY_CHARS} characters")));
    }
    let mut query = Query {
        include: Vec::new(),
        exclude: Vec::new(),
        completions: None,
    };
    // Whether the last term added was a bare positive word.
    let mut last_bare = false;
    let mut count = 0;
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let negated = rest.starts_with('-');
        if negated {
            rest = &rest[1..];
        }
        let (clause, quoted) = if let Some(open) = rest.strip_prefix('"') {
            let Some(close) = open.find('"') else {
                return Err(bad("a quote is not closed"));
            };
            let inner: Vec<String> = words(&open[..close]).map(|(_, w)| w).collect();
            rest = &open[close + 1..];
            if inner.is_empty() {
                return Err(bad("a quoted phrase holds no word"));
            }
            (Clause::Phrase(inner), true)
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            let mut parts: Vec<String> = words(&rest[..end]).map(|(_, w)| w).collect();
            rest = &rest[end..];
            match parts.len() {
                0 => continue,
                1 => (
                    Clause::Word {
                        word: parts.remove(0),
                        prefix: false,
                    },
                    false,
                ),
                _ => (Clause::Phrase(parts), false),
            }
        };
        count += match &clause {
            Clause::Word { .. } => 1,
            Clause::Phrase(words) => words.len(),
        };
        if count > MAX_QUERY_WORDS {
            return Err(bad(&format!("at most {MAX_QUERY_WORDS} words")));
        }
        last_bare = !negated && !quoted && matches!(clause, Clause::Word { .. });
        if negated {
            query.exclude.push(clause);
        } else {
            query.include.push(clause);
        }
    }
    if query.include.is_empty() {
        return Err(bad(if query.exclude.is_empty() {
            "the query holds no word"
        } else {
            "the query only excludes words"
        }));
    }
    if last_bare {
        if let Some(Clause::Word { word, prefix }) = query.include.last_mut() {
            *prefix = word.chars().count() >= MIN_PREFIX_CHARS;
        }
    }
    Ok(query)
}

/// The typo variants of the query's words: for each clause of
/// `Query::include`, the vocabulary words that also match it (empty for
/// phrases and for words too short for a typo).
pub type Expansions = Vec<Vec<String>>;

impl Query {
    /// The FTS5 expression, every word behind the view's token tag (see
    /// [`super::index`]): the include clauses (with their typo variants,
    /// when given) ANDed, then each exclusion.
    pub fn fts5(&self, tag: &str, expansions: Option<&Expansions>) -> String {
        let mut out = self.fts5_include(tag, expansions);
        for c in &self.exclude {
            out.push_str(&format!(" NOT {}", fts5_clause(tag, c, &[])));
        }
        out
    }

    /// Include clause `i` as FTS5 text (its typo variants when given; the
    /// prefix word as its completions when known).
    pub fn fts5_clause(&self, tag: &str, i: usize, expansions: Option<&Expansions>) -> String {
        let Some(clause) = self.include.get(i) else {
            return String::new();
        };
        let variants = expansions
            .and_then(|e| e.get(i))
            .map_or(&[][..], Vec::as_slice);
        match (clause, &self.completions) {
            (Clause::Word { prefix: true, word }, Some(words)) => {
                let mut all: Vec<&String> = words.iter().chain(variants).collect();
                if all.is_empty() {
                    all.push(word);
                }
                let ors: Vec<String> = all.iter().map(|w| format!("\"{tag}{w}\"")).collect();
                format!("({})", ors.join(" OR "))
            }
            _ => fts5_clause(tag, clause, variants),
        }
    }

    /// The include clauses alone, ANDed and parenthesized.
    pub fn fts5_include(&self, tag: &str, expansions: Option<&Expansions>) -> String {
        let include: Vec<String> = (0..self.include.len())
            .map(|i| self.fts5_clause(tag, i, expansions))
            .collect();
        format!("({})", include.join(" AND "))
    }

    /// The PostgreSQL `tsquery` text (cast with `::tsquery`, which takes
    /// lexemes as written).
    pub fn tsquery(&self, expansions: Option<&Expansions>) -> String {
        let mut parts = vec![self.tsquery_include(expansions, false)];
        for c in &self.exclude {
            parts.push(format!("!{}", tsquery_clause(c, &[], false)));
        }
        parts.join(" & ")
    }

    /// The include clauses alone, ANDed and parenthesized; with `strong`,
    /// each word only where it has weight A (a `STRING` field).
    pub fn tsquery_include(&self, expansions: Option<&Expansions>, strong: bool) -> String {
        let include: Vec<String> = self
            .include
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let variants = expansions
                    .and_then(|e| e.get(i))
                    .map_or(&[][..], Vec::as_slice);
                tsquery_clause(c, variants, strong)
            })
            .collect();
        format!("({})", include.join(" & "))
    }
}

/// One clause as `tsquery` text: a word (with its prefix and its typo
/// variants ORed) or a phrase; with `strong`, only at weight A.
pub fn tsquery_clause(clause: &Clause, variants: &[String], strong: bool) -> String {
    let weight = if strong { "A" } else { "" };
    match clause {
        Clause::Word { word, prefix } => {
            let star = if *prefix {
                ":*"
            } else if strong {
                ":"
            } else {
                ""
            };
            let mut out = format!("({}{star}{weight}", lexeme(word));
            for v in variants {
                let tail = if strong { ":A" } else { "" };
                out.push_str(&format!(" | {}{tail}", lexeme(v)));
            }
            out.push(')');
            out
        }
        Clause::Phrase(words) => {
            let tail = if strong { ":A" } else { "" };
            let parts: Vec<String> = words
                .iter()
                .map(|w| format!("{}{tail}", lexeme(w)))
                .collect();
            format!("({})", parts.join(" <-> "))
        }
    }
}

/// One clause as FTS5 text: a word (with its prefix star and its typo
/// variants ORed) or a phrase, each token behind `tag`.
pub fn fts5_clause(tag: &str, clause: &Clause, variants: &[String]) -> String {
    match clause {
        Clause::Word { word, prefix } => {
            let star = if *prefix { "*" } else { "" };
            let mut out = format!("(\"{tag}{word}\"{star}");
            for v in variants {
                out.push_str(&format!(" OR \"{tag}{v}\""));
            }
            out.push(')');
            out
        }
        Clause::Phrase(words) => {
            let tagged: Vec<String> = words.iter().map(|w| format!("{tag}{w}")).collect();
            format!("\"{}\"", tagged.join(" "))
        }
    }
}

/// A `tsquery`/`tsvector` lexeme, quoted.
pub fn lexeme(word: &str) -> String {
    format!("'{}'", word.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn word(w: &str, prefix: bool) -> Clause {
        Clause::Word {
            word: w.to_owned(),
            prefix,
        }
    }

    fn phrase(ws: &[&str]) -> Clause {
        Clause::Phrase(ws.iter().map(|w| (*w).to_owned()).collect())
    }

    #[test]
    fn words_phrases_exclusions_and_the_last_prefix() {
        let q = parse(r#"Red "Big Bike" -Café bicy"#).unwrap();
        assert_eq!(
            q.include,
            [
                word("red", false),
                phrase(&["big", "bike"]),
                word("bicy", true)
            ]
        );
        assert_eq!(q.exclude, [word("cafe", false)]);
        assert_eq!(
            q.fts5("t_", None),
            r#"(("t_red") AND "t_big t_bike" AND ("t_bicy"*)) NOT ("t_cafe")"#
        );
        assert_eq!(
            q.tsquery(None),
            "(('red') & ('big' <-> 'bike') & ('bicy':*)) & !('cafe')"
        );
        assert_eq!(
            q.tsquery_include(None, true),
            "(('red':A) & ('big':A <-> 'bike':A) & ('bicy':*A))"
        );
    }

    #[test]
    fn no_prefix_when_the_query_ends_otherwise() {
        assert_eq!(
            parse(r#"red "big""#).unwrap().include,
            [word("red", false), phrase(&["big"])]
        );
        let q = parse("red -blue").unwrap();
        assert_eq!(q.include, [word("red", false)]);
        assert_eq!(parse("a").unwrap().include, [word("a", false)]);
    }

    #[test]
    fn split_terms_are_phrases_and_expansions_join_with_or() {
        let q = parse("e-mail bicycle").unwrap();
        assert_eq!(q.include, [phrase(&["e", "mail"]), word("bicycle", true)]);
        let exp = vec![vec![], vec!["bicycles".to_owned()]];
        let mut completed = q.clone();
        completed.completions = Some(vec!["bicycle".into(), "bicycles".into()]);
        assert_eq!(
            completed.fts5("t_", None),
            r#"("t_e t_mail" AND ("t_bicycle" OR "t_bicycles"))"#
        );
        completed.completions = Some(Vec::new());
        assert_eq!(completed.fts5_clause("t_", 1, None), r#"("t_bicycle")"#);
        assert_eq!(
            q.fts5("00001_", Some(&exp)),
            r#"("00001_e 00001_mail" AND ("00001_bicycle"* OR "00001_bicycles"))"#
        );
        assert_eq!(
            q.tsquery(Some(&exp)),
            "(('e' <-> 'mail') & ('bicycle':* | 'bicycles'))"
        );
    }

    #[test]
    fn syntax_never_passes_through() {
        let q = parse(r#"a*b OR NEAR(x) 'y' : & | ! <-> \"#).unwrap();
        for c in q.include.iter().chain(&q.exclude) {
            let ws = match c {
                Clause::Word { word, .. } => vec![word.clone()],
                Clause::Phrase(ws) => ws.clone(),
            };
            assert!(ws
                .iter()
                .all(|w| !w.is_empty() && w.chars().all(char::is_alphanumeric)));
        }
    }

    #[test]
    fn malformed_queries_are_bad_input() {
        for q in [
            "",
            "   ",
            "!!! ---",
            "\"unclosed",
            "red \"big",
            "\"\"",
            "-red",
            "-red -\"big bike\"",
            "a b c d e f g h i j k",
            "a b c d e f g h \"i j k\"",
        ] {
            let err = parse(q).unwrap_err();
            assert_eq!(err.code(), crate::error::Code::BadUserInput, "{q:?}");
        }
        assert!(parse(&"a".repeat(256)).is_ok());
        assert!(parse(&"a".repeat(257)).is_err());
        assert!(parse("a b c d e f g h i j").is_ok());
    }
}
