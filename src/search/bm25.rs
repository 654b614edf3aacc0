//! Ranking, the same on both databases: BM25 computed by quire from each
//! candidate's folded words (`search_docs.strong` and `.weak`), not by
//! FTS5's `bm25()` or PostgreSQL's `ts_rank_cd`, which score every match
//! (and `bm25()` rescans each query word's posting list for its document
//! frequency on every query): most of a search's time on a large project.
//!
//! Per include clause (a word with its prefix and typo variants, or a
//! phrase): `tf` counts its matches, a `STRING` match [`STRONG_WEIGHT`]
//! times a `TEXT` one; the document frequencies come from
//! [`super::hits`] (counted by the database, cached a while). The score is
//! `Σ idf · tf·(k1+1) / (tf + k1·(1 − b + b·len/avglen))` with the usual
//! `k1 = 1.2`, `b = 0.75` and `idf = ln(1 + (N − n + 0.5)/(n + 0.5))`.

use rustc_hash::FxHashMap;

use super::grammar::{Clause, Query, MAX_QUERY_WORDS};
use super::index::FIELD_SEPARATOR;

/// How much a `STRING` match counts against a `TEXT` one.
pub const STRONG_WEIGHT: f64 = 5.0;
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// What every candidate of one query is scored against.
pub struct Ranker<'a> {
    /// Each word a word clause counts (its word and its typo variants), to
    /// the clauses it counts for (bit `i`: clause `i`): one lookup per
    /// document word, however many variants the query has.
    words: FxHashMap<&'a str, u16>,
    /// A bit per (length, first byte) of those words ([`shape`]): most
    /// document words miss it, and skip the lookup.
    shapes: Box<[u64; SHAPE_WORDS]>,
    /// Prefix word clauses: `(clause, word)`.
    prefixes: Vec<(usize, &'a str)>,
    /// Phrase clauses: `(clause, words)`.
    phrases: Vec<(usize, &'a [String])>,
    /// Each clause's idf.
    idf: Vec<f64>,
    avg_len: f64,
}

/// A candidate's score parts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scored {
    /// Whether every include clause matches a `STRING` field.
    pub strong: bool,
    /// Its BM25 (0 or more).
    pub rank: f64,
}

impl<'a> Ranker<'a> {
    /// `variants[i]` are clause `i`'s typo variants (none for the exact
    /// tier); `df[i]` how many of the view's `docs` documents match it;
    /// `words` the view's total document length.
    pub fn new(
        query: &'a Query,
        variants: &'a [Vec<String>],
        df: &[u64],
        docs: u64,
        words: u64,
    ) -> Self {
        let n = docs.max(1) as f64;
        let mut ranker = Ranker {
            words: FxHashMap::default(),
            shapes: Box::new([0; SHAPE_WORDS]),
            prefixes: Vec::new(),
            phrases: Vec::new(),
            idf: Vec::new(),
            avg_len: (words as f64 / n).max(1.0),
        };
        // The grammar allows at most that many words, so that many clauses.
        for (i, clause) in query.include.iter().take(MAX_QUERY_WORDS).enumerate() {
            let d = df.get(i).copied().unwrap_or(0) as f64;
            ranker
                .idf
                .push((1.0 + (n - d + 0.5) / (d + 0.5)).ln().max(0.0));
            match clause {
                Clause::Word { word, prefix } => {
                    let these = variants.get(i).map_or(&[][..], Vec::as_slice);
                    for w in std::iter::once(word).chain(these) {
                        *ranker.words.entry(w.as_str()).or_default() |= 1 << i;
                        let at = shape(w.as_bytes());
                        ranker.shapes[at / 64] |= 1 << (at % 64);
                    }
                    if *prefix {
                        ranker.prefixes.push((i, word.as_str()));
                    }
                }
                Clause::Phrase(words) => ranker.phrases.push((i, words.as_slice())),
            }
        }
        ranker
    }

    /// The score of a document of `len` words whose folded words are
    /// `strong` and `weak` (space-separated, fields split by the separator
    /// token; perhaps only their start).
    pub fn score(&self, strong: &str, weak: &str, len: u32) -> Scored {
        self.finish(&self.strong_pass(strong), weak, len)
    }

    /// The first half of [`Ranker::score`]: the matches in the `STRING`
    /// words, which settle the bucket (whether every clause matches
    /// there). Ranking reads the `TEXT` words only of the buckets a page
    /// needs.
    pub fn strong_pass(&self, strong: &str) -> Partial {
        let mut counts = [[0u32; 2]; MAX_QUERY_WORDS];
        self.count(strong, 0, &mut counts);
        let strong = counts.iter().take(self.idf.len()).all(|[s, _]| *s > 0);
        Partial { counts, strong }
    }

    /// The rest of [`Ranker::score`]: the `TEXT` words' matches, and BM25.
    pub fn finish(&self, partial: &Partial, weak: &str, len: u32) -> Scored {
        let mut counts = partial.counts;
        self.count(weak, 1, &mut counts);
        let norm = K1 * (1.0 - B + B * f64::from(len) / self.avg_len);
        let mut rank = 0.0;
        for (idf, [s, w]) in self.idf.iter().zip(counts) {
            let tf = STRONG_WEIGHT * f64::from(s) + f64::from(w);
            if tf > 0.0 {
                rank += idf * tf * (K1 + 1.0) / (tf + norm);
            }
        }
        Scored {
            strong: partial.strong,
            rank,
        }
    }

    /// Adds each clause's matches in `text` to `counts[clause][column]`:
    /// one pass over the words, nothing allocated.
    fn count(&self, text: &str, column: usize, counts: &mut [[u32; 2]; MAX_QUERY_WORDS]) {
        let mut recent = [""; MAX_QUERY_WORDS];
        let mut seen = 0usize;
        let bytes = text.as_bytes();
        let mut start = 0;
        while start < bytes.len() {
            // Words are short: a plain loop finds the space sooner
            // than `split`'s vectorized search.
            let end = bytes[start..]
                .iter()
                .position(|&b| b == b' ')
                .map_or(bytes.len(), |k| start + k);
            let token = text.get(start..end).unwrap_or("");
            start = end + 1;
            let Some(&first) = token.as_bytes().first() else {
                continue;
            };
            if token == FIELD_SEPARATOR {
                // No phrase spans two fields.
                seen = 0;
                continue;
            }
            let at = shape(token.as_bytes());
            let mut matched = if self.shapes[at / 64] & (1 << (at % 64)) != 0 {
                self.words.get(token).copied().unwrap_or(0)
            } else {
                0
            };
            for &(i, word) in &self.prefixes {
                if word.as_bytes().first() == Some(&first) && token.starts_with(word) {
                    matched |= 1 << i;
                }
            }
            if !self.phrases.is_empty() {
                recent[seen % MAX_QUERY_WORDS] = token;
                seen += 1;
                for &(i, words) in &self.phrases {
                    if phrase_ends_at(words, &recent, seen) {
                        matched |= 1 << i;
                    }
                }
            }
            while matched != 0 {
                let i = matched.trailing_zeros() as usize;
                matched &= matched - 1;
                if let Some(count) = counts.get_mut(i) {
                    count[column] += 1;
                }
            }
        }
    }
}

/// A candidate's matches in its `STRING` words ([`Ranker::strong_pass`]).
#[derive(Clone, Copy, Debug)]
pub struct Partial {
    counts: [[u32; 2]; MAX_QUERY_WORDS],
    /// Whether every include clause matches a `STRING` field.
    pub strong: bool,
}

/// `u64`s of [`Ranker::shapes`]: a bit per (length up to 63, first byte).
const SHAPE_WORDS: usize = 64 * 256 / 64;

/// A word's bit in [`Ranker::shapes`].
fn shape(word: &[u8]) -> usize {
    (word.len().min(63) << 8) | usize::from(word.first().copied().unwrap_or(0))
}

/// Whether the phrase `words` ends at the newest of the words seen so far
/// in this field (`recent`, a ring of the last [`MAX_QUERY_WORDS`], `seen`
/// of them in all).
fn phrase_ends_at(words: &[String], recent: &[&str; MAX_QUERY_WORDS], seen: usize) -> bool {
    let n = words.len();
    n > 0
        && n <= seen
        && n <= MAX_QUERY_WORDS
        && words
            .iter()
            .rev()
            .enumerate()
            .all(|(k, w)| recent[(seen - 1 - k) % MAX_QUERY_WORDS] == w)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use crate::search::grammar::parse;

    fn ranker<'a>(q: &'a Query, variants: &'a [Vec<String>], df: &[u64]) -> Ranker<'a> {
        Ranker::new(q, variants, df, 1000, 10_000)
    }

    #[test]
    fn a_string_match_is_strong_and_outranks_a_text_one() {
        let q = parse("garden").unwrap();
        let r = ranker(&q, &[], &[10]);
        let title = r.score("big garden", "some words here", 5);
        let body = r.score("big house", "a garden here", 5);
        assert!(title.strong && !body.strong);
        assert!(title.rank > body.rank, "{title:?} {body:?}");
        // Not every clause in a STRING field: not strong.
        let q = parse("garden house").unwrap();
        let r = ranker(&q, &[], &[10, 10]);
        assert!(!r.score("big garden", "a house", 4).strong);
        assert!(r.score("garden § house", "", 2).strong);
    }

    #[test]
    fn more_matches_and_shorter_documents_rank_higher_rare_words_count_more() {
        let q = parse("cat dog").unwrap();
        let r = ranker(&q, &[], &[10, 10]);
        let twice = r.score("", "cat cat dog x", 4);
        let once = r.score("", "cat dog x y", 4);
        let long = r.score("", "cat dog x y z w v u t s r q p o", 14);
        assert!(twice.rank > once.rank && once.rank > long.rank);
        // `dog` rare, `cat` common: two dogs beat two cats.
        let r = ranker(&q, &[], &[900, 5]);
        assert!(r.score("", "cat dog dog x", 4).rank > r.score("", "cat cat dog x", 4).rank);
    }

    #[test]
    fn prefixes_variants_and_phrases_are_counted_as_matched() {
        let q = parse(r#""big bike" bicy"#).unwrap();
        let r = ranker(&q, &[], &[3, 3]);
        let s = r.score("big bike § bicycle", "", 3);
        assert!(s.strong && s.rank > 0.0);
        // A phrase across the field separator, or out of order, is no match.
        assert!(!r.score("big § bike bicycle", "", 3).strong);
        assert!(!r.score("bike big bicycle", "", 3).strong);
        let q = parse("restaurant").unwrap();
        let variants = vec![vec!["resturant".to_owned()]];
        let r = ranker(&q, &variants, &[3]);
        assert!(r.score("resturant", "", 1).strong);
        assert_eq!(ranker(&q, &[], &[3]).score("resturant", "", 1).rank, 0.0);
    }
}
