//! Highlights: for each searchable field of a hit where the query matched,
//! a snippet of the field's text with the matched words wrapped in
//! `<mark>`…`</mark>` and everything else HTML-escaped. Built in Rust from
//! the record's data in the view searched (never from the other view), with
//! the tokenizer of the index, so both databases give the same markup.

use std::collections::HashSet;

use serde_json::Value;

use super::fold::words;
use super::grammar::{Clause, Expansions, Query};
use super::index::TextFields;

/// Words shown before the first match when a field is cut.
const WORDS_BEFORE: usize = 8;
/// The most words a snippet shows.
const SNIPPET_WORDS: usize = 32;

/// What marks a word: the query's words and their typo variants, the last
/// word as a prefix, and phrases (excluded words never match).
#[derive(Debug, Default)]
pub struct Matcher {
    words: HashSet<String>,
    prefixes: Vec<String>,
    phrases: Vec<Vec<String>>,
}

impl Matcher {
    /// The matcher of `query` with its typo variants.
    pub fn new(query: &Query, expansions: Option<&Expansions>) -> Self {
        let mut m = Matcher::default();
        for (i, clause) in query.include.iter().enumerate() {
            match clause {
                Clause::Word { word, prefix } => {
                    m.words.insert(word.clone());
                    if *prefix {
                        m.prefixes.push(word.clone());
                    }
                    if let Some(variants) = expansions.and_then(|e| e.get(i)) {
                        m.words.extend(variants.iter().cloned());
                    }
                }
                Clause::Phrase(words) => m.phrases.push(words.clone()),
            }
        }
        m
    }

    fn word_matches(&self, word: &str) -> bool {
        self.words.contains(word) || self.prefixes.iter().any(|p| word.starts_with(p.as_str()))
    }
}

/// One field's highlight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Highlight {
    pub field: String,
    pub snippet: String,
}

/// The highlights of `data` (the view's data of a hit): one per `STRING`
/// then `TEXT` field with a match.
pub fn highlights(matcher: &Matcher, fields: &TextFields, data: &Value) -> Vec<Highlight> {
    fields
        .strong
        .iter()
        .chain(&fields.weak)
        .filter_map(|name| {
            let text = data.get(name)?.as_str()?;
            let snippet = snippet(matcher, text)?;
            Some(Highlight {
                field: name.clone(),
                snippet,
            })
        })
        .collect()
}

/// `text` (cut around its first match when long) with its matches marked,
/// `None` when nothing matches.
pub fn snippet(matcher: &Matcher, text: &str) -> Option<String> {
    let tokens: Vec<_> = words(text).collect();
    let mut marked: Vec<bool> = tokens
        .iter()
        .map(|(_, w)| matcher.word_matches(w))
        .collect();
    for phrase in &matcher.phrases {
        if phrase.len() > tokens.len() {
            continue;
        }
        for i in 0..=tokens.len() - phrase.len() {
            if tokens[i..i + phrase.len()]
                .iter()
                .zip(phrase)
                .all(|((_, w), p)| w == p)
            {
                marked[i..i + phrase.len()].fill(true);
            }
        }
    }
    let first = marked.iter().position(|m| *m)?;
    let (from, to) = if tokens.len() <= SNIPPET_WORDS {
        (0, tokens.len())
    } else {
        let from = first.saturating_sub(WORDS_BEFORE);
        let to = (from + SNIPPET_WORDS).min(tokens.len());
        (to.saturating_sub(SNIPPET_WORDS), to)
    };
    let start = if from == 0 { 0 } else { tokens[from].0.start };
    let end = if to == tokens.len() {
        text.len()
    } else {
        tokens[to - 1].0.end
    };
    let mut out = String::with_capacity(end - start + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (i, (range, _)) in tokens.iter().enumerate().take(to).skip(from) {
        escape_into(&mut out, &text[at..range.start]);
        if marked[i] {
            out.push_str("<mark>");
            escape_into(&mut out, &text[range.clone()]);
            out.push_str("</mark>");
        } else {
            escape_into(&mut out, &text[range.clone()]);
        }
        at = range.end;
    }
    escape_into(&mut out, &text[at..end]);
    if end < text.len() {
        out.push('…');
    }
    Some(out)
}

/// Appends `text` HTML-escaped (safe in element content and attribute
/// values).
fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::search::grammar::parse;
    use serde_json::json;

    fn matcher(q: &str) -> Matcher {
        Matcher::new(&parse(q).unwrap(), None)
    }

    #[test]
    fn matches_are_marked_and_the_rest_escaped() {
        let m = matcher("cafe");
        assert_eq!(
            snippet(&m, "<script>alert('Café')</script> & more").unwrap(),
            "&lt;script&gt;alert(&#39;<mark>Café</mark>&#39;)&lt;/script&gt; &amp; more"
        );
        assert_eq!(snippet(&m, "nothing here"), None);
    }

    #[test]
    fn prefixes_phrases_and_variants() {
        let m = matcher("\"red bike\" bicy");
        assert_eq!(
            snippet(&m, "A red bike, a red car, Bicycles!").unwrap(),
            "A <mark>red</mark> <mark>bike</mark>, a red car, <mark>Bicycles</mark>!"
        );
        let q = parse("colour").unwrap();
        let m = Matcher::new(&q, Some(&vec![vec!["color".to_owned()]]));
        assert_eq!(snippet(&m, "Color").unwrap(), "<mark>Color</mark>");
    }

    #[test]
    fn long_text_is_cut_around_the_first_match() {
        let text = format!("{} needle {}", "lorem ".repeat(50), "ipsum ".repeat(50));
        let s = snippet(&matcher("needle"), &text).unwrap();
        assert!(s.starts_with('…') && s.ends_with('…'), "{s}");
        assert_eq!(s.matches("lorem").count(), WORDS_BEFORE);
        assert_eq!(s.split_whitespace().count(), SNIPPET_WORDS);
        assert!(s.contains("<mark>needle</mark>"));
    }

    #[test]
    fn highlights_follow_the_fields() {
        let fields = TextFields {
            strong: vec!["title".into()],
            weak: vec!["body".into()],
        };
        let h = highlights(
            &matcher("bike"),
            &fields,
            &json!({"title": "Bike", "body": "no", "other": "bike"}),
        );
        assert_eq!(
            h,
            [Highlight {
                field: "title".into(),
                snippet: "<mark>Bike</mark>".into()
            }]
        );
    }
}
