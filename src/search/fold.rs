//! Words and folding: the one tokenizer for the index, the query and the
//! snippets. Done in Rust, so SQLite and PostgreSQL index and match exactly
//! the same tokens (neither database tokenizes or folds anything itself).
//!
//! A word is a run of alphanumeric characters (combining marks stay with
//! their letter); folding decomposes it (NFKD), drops the combining marks,
//! lower-cases it and keeps only alphanumeric characters, so `Café`,
//! `CAFÉ` and `cafe` are all `cafe`.

use std::ops::Range;

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// The longest folded word, in characters; longer ones are cut (the same
/// way everywhere).
pub const MAX_WORD_CHARS: usize = 64;

/// `word` folded: decomposed, without diacritics, lower case, alphanumeric
/// characters only, at most [`MAX_WORD_CHARS`]. May be empty.
pub fn fold(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = 0;
    for c in word.nfkd() {
        if is_combining_mark(c) || !c.is_alphanumeric() {
            continue;
        }
        for lower in c.to_lowercase() {
            if chars == MAX_WORD_CHARS {
                return out;
            }
            out.push(lower);
            chars += 1;
        }
    }
    out
}

/// Whether `c` belongs to a word.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || is_combining_mark(c)
}

/// The words of `text`: each word's byte range in `text` and its folded
/// form (words that fold to nothing are left out).
pub fn words(text: &str) -> impl Iterator<Item = (Range<usize>, String)> + '_ {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || loop {
        let (start, _) = loop {
            let (i, c) = rest.next()?;
            if is_word_char(c) {
                break (i, c);
            }
        };
        let mut end = text.len();
        while let Some(&(i, c)) = rest.peek() {
            if !is_word_char(c) {
                end = i;
                break;
            }
            rest.next();
        }
        let folded = fold(&text[start..end]);
        if !folded.is_empty() {
            return Some((start..end, folded));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folded(text: &str) -> Vec<String> {
        words(text).map(|(_, w)| w).collect()
    }

    #[test]
    fn case_and_diacritics_fold_away() {
        assert_eq!(fold("Café"), "cafe");
        assert_eq!(fold("CAFE\u{301}"), "cafe");
        assert_eq!(fold("Ærøskøbing"), "ærøskøbing");
        assert_eq!(fold("ﬁne"), "fine");
        assert_eq!(fold("Straße"), "straße");
        assert_eq!(fold("½"), "12");
    }

    #[test]
    fn words_split_on_anything_not_alphanumeric() {
        assert_eq!(
            folded("Hello, wörld! e-mail <script>x</script>"),
            ["hello", "world", "e", "mail", "script", "x", "script"]
        );
        let text = "a Café b";
        let spans: Vec<_> = words(text).map(|(r, _)| &text[r]).collect();
        assert_eq!(spans, ["a", "Café", "b"]);
        assert!(folded("  --  ").is_empty());
    }

    #[test]
    fn long_words_are_cut() {
        let long = "a".repeat(100);
        assert_eq!(fold(&long).chars().count(), MAX_WORD_CHARS);
    }
}
