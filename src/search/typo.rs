//! Typo tolerance: a query word of 5 or more characters also matches the
//! vocabulary words one edit away, 9 or more two edits (SPEC §8), found
//! with a Levenshtein automaton over an `fst` set of the view's
//! vocabulary (`search_terms`). The automaton comes from
//! `levenshtein_automata`'s parametric builders, made once per budget: a
//! word's automaton then takes microseconds, where building one from
//! scratch (`fst`'s own) took milliseconds for two typos, per new word.
//!
//! Each view's set is cached per project with the version it was built at
//! (`search_vocab`, moved in the transaction that adds a word): a search
//! reads the version with its view ([`super::hits::view`]) and rebuilds
//! the set only when it moved, so every instance sees new words as soon as their write
//! commits. Words are never removed from the vocabulary before a reindex:
//! a stale word expands to a variant that matches nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use std::sync::LazyLock;

use fst::{Automaton, IntoStreamer, Set, Streamer};
use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::grammar::{Clause, Expansions, Query};
use super::index::{Side, MIN_TERM_CHARS};
use crate::error::{AppError, AppResult};

/// Shortest word that matches with one typo.
pub const ONE_TYPO_CHARS: usize = 5;
/// Shortest word that matches with two typos.
pub const TWO_TYPOS_CHARS: usize = 9;
/// The most variants one query word expands to (closest first).
pub const MAX_VARIANTS: usize = 8;
/// The most completions of a prefix word matched as words (more: as a
/// prefix).
pub const MAX_COMPLETIONS: usize = 16;
/// The most views whose vocabulary is held in memory.
pub const MAX_CACHED_VIEWS: usize = 256;
/// The most query words whose variants a cached vocabulary remembers.
const MAX_REMEMBERED_WORDS: usize = 1024;

/// The parametric automata builders for one and two typos (plain
/// Levenshtein: a transposition is two edits).
static BUILDERS: LazyLock<[LevenshteinAutomatonBuilder; 2]> = LazyLock::new(|| {
    [
        LevenshteinAutomatonBuilder::new(1, false),
        LevenshteinAutomatonBuilder::new(2, false),
    ]
});

/// A word's Levenshtein automaton, walked over the vocabulary's `fst`.
struct Typo(DFA);

impl Automaton for Typo {
    type State = u32;

    fn start(&self) -> u32 {
        self.0.initial_state()
    }

    fn is_match(&self, state: &u32) -> bool {
        matches!(self.0.distance(*state), Distance::Exact(_))
    }

    fn can_match(&self, state: &u32) -> bool {
        *state != SINK_STATE
    }

    fn accept(&self, state: &u32, byte: u8) -> u32 {
        self.0.transition(*state, byte)
    }
}

/// One view's vocabulary, as of `version`.
struct Vocab {
    version: i64,
    set: Set<Vec<u8>>,
    /// Variants already found, by query word.
    remembered: Mutex<HashMap<String, Arc<Vec<String>>>>,
}

/// The cached vocabularies of an instance.
#[derive(Default)]
pub struct Typos {
    views: Mutex<HashMap<(String, Side), Arc<Vocab>>>,
}

impl Typos {
    /// The typo variants of `query`'s words in the view, whose vocabulary
    /// is at `version` (`None`: it has none), `None` when no word has any.
    /// On SQLite (`completions`), also sets the query's prefix completions
    /// when they are at most [`MAX_COMPLETIONS`].
    pub async fn expand<C: ConnectionTrait>(
        &self,
        db: &C,
        project_id: &str,
        side: Side,
        version: Option<i64>,
        query: &mut Query,
        completions: bool,
    ) -> AppResult<Option<Expansions>> {
        let eligible = query.include.iter().any(|c| match c {
            Clause::Word { word, .. } => word.chars().count() >= ONE_TYPO_CHARS,
            Clause::Phrase(_) => false,
        });
        let prefix = match query.include.last() {
            Some(Clause::Word { word, prefix: true }) if completions => {
                Some(word.clone()).filter(|w| w.chars().count() >= MIN_TERM_CHARS)
            }
            _ => None,
        };
        if !eligible && prefix.is_none() {
            return Ok(None);
        }
        let Some(version) = version else {
            return Ok(None);
        };
        let Some(vocab) = self.vocab(db, project_id, side, version).await? else {
            return Ok(None);
        };
        if let Some(prefix) = prefix {
            query.completions = vocab.completions(&prefix);
        }
        if !eligible {
            return Ok(None);
        }
        let mut any = false;
        let expansions: Expansions = query
            .include
            .iter()
            .map(|c| match c {
                Clause::Word { word, .. } => {
                    let found = vocab.variants(word);
                    any |= !found.is_empty();
                    Vec::clone(&found)
                }
                Clause::Phrase(_) => Vec::new(),
            })
            .collect();
        Ok(any.then_some(expansions))
    }

    /// The view's vocabulary at `version` (read by the search, with its
    /// view) or later, `None` when it has no word.
    async fn vocab<C: ConnectionTrait>(
        &self,
        db: &C,
        project_id: &str,
        side: Side,
        version: i64,
    ) -> AppResult<Option<Arc<Vocab>>> {
        let backend = db.get_database_backend();
        let terms_sql = if backend == DbBackend::Postgres {
            "SELECT term FROM search_terms WHERE project_id = $1 AND view = $2"
        } else {
            "SELECT term FROM search_terms WHERE project_id = ? AND view = ?"
        };
        let args = || [project_id.into(), side.code().into()];
        let key = (project_id.to_owned(), side);
        if let Some(vocab) = self.lock().get(&key) {
            if vocab.version == version {
                return Ok(Some(Arc::clone(vocab)));
            }
        }
        // Read after the version: the words are those of `version` or later.
        let rows = db
            .query_all(Statement::from_sql_and_values(backend, terms_sql, args()))
            .await?;
        let mut terms = rows
            .iter()
            .map(|r| r.try_get::<String>("", "term"))
            .collect::<Result<Vec<_>, _>>()?;
        terms.sort_unstable();
        terms.dedup();
        let set = Set::from_iter(terms).map_err(|e| AppError::internal(e.to_string()))?;
        let vocab = Arc::new(Vocab {
            version,
            set,
            remembered: Mutex::default(),
        });
        remember(&mut self.lock(), key, Arc::clone(&vocab), MAX_CACHED_VIEWS);
        Ok(Some(vocab))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, Side), Arc<Vocab>>> {
        self.views.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Stores `value` under `key`, first dropping an entry when the map holds
/// `max` already.
fn remember<K: std::hash::Hash + Eq + Clone, V>(
    map: &mut HashMap<K, V>,
    key: K,
    value: V,
    max: usize,
) {
    if map.len() >= max && !map.contains_key(&key) {
        if let Some(old) = map.keys().next().cloned() {
            map.remove(&old);
        }
    }
    map.insert(key, value);
}

impl Vocab {
    /// The vocabulary words starting with `prefix` (of at least
    /// [`MIN_TERM_CHARS`]: every indexed word it completes to is in the
    /// vocabulary), `None` when there are more than [`MAX_COMPLETIONS`].
    fn completions(&self, prefix: &str) -> Option<Vec<String>> {
        let mut upper = prefix.as_bytes().to_vec();
        // No UTF-8 text holds 0xFF: every word with the prefix sorts below.
        upper.push(0xFF);
        let mut stream = self.set.range().ge(prefix).lt(upper).into_stream();
        let mut found = Vec::new();
        while let Some(key) = stream.next() {
            if found.len() == MAX_COMPLETIONS {
                return None;
            }
            found.push(String::from_utf8_lossy(key).into_owned());
        }
        Some(found)
    }

    /// The vocabulary words within the typo budget of `word` (not `word`
    /// itself), closest first, at most [`MAX_VARIANTS`].
    fn variants(&self, word: &str) -> Arc<Vec<String>> {
        let remembered = || self.remembered.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(found) = remembered().get(word) {
            return Arc::clone(found);
        }
        let found = Arc::new(variants(&self.set, word));
        remember(
            &mut remembered(),
            word.to_owned(),
            Arc::clone(&found),
            MAX_REMEMBERED_WORDS,
        );
        found
    }
}

/// The words of `set` within the typo budget of `word`, closest first.
fn variants(set: &Set<Vec<u8>>, word: &str) -> Vec<String> {
    let len = word.chars().count();
    let builder = match len {
        n if n >= TWO_TYPOS_CHARS => &BUILDERS[1],
        n if n >= ONE_TYPO_CHARS => &BUILDERS[0],
        _ => return Vec::new(),
    };
    let mut stream = set.search(Typo(builder.build_dfa(word))).into_stream();
    let mut found: Vec<(usize, String)> = Vec::new();
    while let Some(key) = stream.next() {
        let Ok(term) = std::str::from_utf8(key) else {
            continue;
        };
        if term != word {
            found.push((edit_distance(word, term), term.to_owned()));
        }
        // Plenty to choose the closest from.
        if found.len() >= 64 * MAX_VARIANTS {
            break;
        }
    }
    found.sort();
    found.truncate(MAX_VARIANTS);
    found.into_iter().map(|(_, t)| t).collect()
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(cur).min(row[j])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    fn set(words: &[&str]) -> Set<Vec<u8>> {
        let mut w: Vec<&str> = words.to_vec();
        w.sort_unstable();
        Set::from_iter(w).unwrap()
    }

    #[test]
    fn one_typo_from_five_characters_two_from_nine() {
        let s = set(&[
            "bicycle",
            "bicycles",
            "bycicle",
            "tricycle",
            "cafe",
            "cake",
            "restaurant",
            "restaurnt",
            "restuarant",
            "resturant",
        ]);
        assert_eq!(variants(&s, "cafe"), Vec::<String>::new());
        assert_eq!(variants(&s, "bicycle"), ["bicycles"]);
        assert_eq!(variants(&s, "bicyclr"), ["bicycle"]);
        assert_eq!(
            variants(&s, "restaurant"),
            ["restaurnt", "resturant", "restuarant"]
        );
    }

    #[test]
    fn variants_are_capped_closest_first() {
        let many: Vec<String> = (b'a'..=b'z')
            .map(|c| format!("table{}", c as char))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let found = variants(&set(&refs), "tablez");
        assert_eq!(found.len(), MAX_VARIANTS);
        assert_eq!(found[0], "tablea");
    }

    #[test]
    fn a_prefix_completes_to_its_vocabulary_words_when_few() {
        let vocab = |words: &[&str]| Vocab {
            version: 1,
            set: set(words),
            remembered: Mutex::default(),
        };
        let v = vocab(&["gardd", "garden", "gardener", "gardens", "gate", "gardé"]);
        assert_eq!(
            v.completions("garden").unwrap(),
            ["garden", "gardener", "gardens"]
        );
        assert_eq!(v.completions("gard").unwrap().len(), 5);
        assert_eq!(v.completions("zzzz").unwrap(), Vec::<String>::new());
        let many: Vec<String> = (0..=MAX_COMPLETIONS)
            .map(|i| format!("word{i:02}"))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(vocab(&refs).completions("word"), None);
        assert_eq!(vocab(&refs).completions("word1").unwrap().len(), 7);
    }

    #[test]
    fn distance_counts_characters() {
        assert_eq!(edit_distance("café", "cafe"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn the_cache_holds_at_most_its_bound() {
        let mut map = HashMap::new();
        for i in 0..(MAX_CACHED_VIEWS + 10) {
            remember(&mut map, i, i, MAX_CACHED_VIEWS);
        }
        assert_eq!(map.len(), MAX_CACHED_VIEWS);
        assert_eq!(
            map.get(&(MAX_CACHED_VIEWS + 9)),
            Some(&(MAX_CACHED_VIEWS + 9))
        );
        remember(&mut map, MAX_CACHED_VIEWS + 9, 0, MAX_CACHED_VIEWS);
        assert_eq!(map.len(), MAX_CACHED_VIEWS);
    }
}
