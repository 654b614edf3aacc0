//! The index: one document per record per view (draft, published), written
//! by the record writes of `crate::content` in their own transaction, so a
//! change is searchable (or gone) when its mutation returns.
//!
//! The published document is built from `published_data` only: draft text
//! never enters it, so no published-view search can match or show it.
//!
//! Tables (migrations `m20261128_000060_search`, `m20261129_000090_search_views`):
//! - `search_docs`: the document's id, project, view, record and model, its
//!   folded words (`strong`, `weak`) and their count, from which
//!   [`super::bm25`] ranks; on PostgreSQL also its `tsvector` (GIN index);
//! - `search_tags` (SQLite): a tag per project and view, with the view's
//!   document and word counts;
//! - `search_fts` (SQLite): a contentless FTS5 table whose rowid is the
//!   document's id, columns `strong` (the `STRING` fields) and `weak` (the
//!   `TEXT` fields). Every token is written behind its view's tag
//!   ([`tag_prefix`]), so a match only ever reads the posting lists of one
//!   project's view: every query starts with the project;
//! - `search_terms`: each view's vocabulary (words of 4 or more characters,
//!   never removed until a reindex), and `search_vocab`: its version, moved
//!   in the transaction that adds a word (see [`super::typo`]).
//!
//! Both databases get the same tokens from [`super::fold`], with the same
//! positions: fields are separated by one position (on SQLite a separator
//! token no query can produce), so a phrase never spans two fields.

use std::collections::{BTreeMap, BTreeSet};

use entity::{models, records};
use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, Statement, Value as DbValue};
use serde_json::Value;

use super::fold::words;
use super::grammar::lexeme;
use crate::error::AppResult;

/// The most positions a document indexes (PostgreSQL's `tsvector` stops at
/// 16,383; both databases stop at this one).
pub const MAX_POSITIONS: usize = 16_000;
/// The most positions one word keeps in a document (PostgreSQL keeps 256).
const MAX_WORD_POSITIONS: usize = 256;
/// The shortest word kept in the vocabulary (a typo needs 5 characters,
/// and one deletion leaves 4).
pub const MIN_TERM_CHARS: usize = 4;
/// The token between two fields on SQLite (not alphanumeric, so no query
/// word is ever this).
pub const FIELD_SEPARATOR: &str = "§";
/// Base-36 digits of a view's tag (60 million views).
const TAG_DIGITS: u32 = 5;

/// The text before every token of the view with `tag` in `search_fts`:
/// fixed width (the FTS5 prefix indexes, `8 9 10`, are the 2-, 3- and
/// 4-character prefixes of the word after it), ending in `_`, which no
/// folded word holds.
pub fn tag_prefix(tag: i64) -> AppResult<String> {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut n = u64::try_from(tag)
        .ok()
        .filter(|n| *n < 36u64.pow(TAG_DIGITS))
        .ok_or_else(|| crate::error::AppError::internal("search view tag out of range"))?;
    let mut out = vec![b'_'; TAG_DIGITS as usize + 1];
    for at in (0..TAG_DIGITS as usize).rev() {
        out[at] = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `words` (space-separated) with each word behind `tag` (separators stay
/// bare: no query can name them).
fn tagged(tag: &str, words: &[String]) -> String {
    let mut out = String::with_capacity(words.iter().map(|w| w.len() + tag.len() + 1).sum());
    for w in words {
        if !out.is_empty() {
            out.push(' ');
        }
        if w != FIELD_SEPARATOR {
            out.push_str(tag);
        }
        out.push_str(w);
    }
    out
}

/// Which of a record's two documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    Draft,
    Published,
}

impl Side {
    /// Its value in the `view` columns.
    pub fn code(self) -> &'static str {
        match self {
            Side::Draft => "d",
            Side::Published => "p",
        }
    }
}

/// The searchable fields of a model: `STRING` (weighted higher) and `TEXT`.
#[derive(Clone, Debug, Default)]
pub struct TextFields {
    pub strong: Vec<String>,
    pub weak: Vec<String>,
}

impl TextFields {
    /// Read from a model row's field list (`[{"name", "type"}, …]`).
    pub fn of(model: &models::Model) -> Self {
        let mut out = TextFields::default();
        for field in model.fields.as_array().into_iter().flatten() {
            let name = field.get("name").and_then(Value::as_str);
            let kind = field.get("type").and_then(Value::as_str);
            match (name, kind) {
                (Some(name), Some("STRING")) => out.strong.push(name.to_owned()),
                (Some(name), Some("TEXT")) => out.weak.push(name.to_owned()),
                _ => {}
            }
        }
        out
    }

    /// Whether the model has any searchable field.
    pub fn is_empty(&self) -> bool {
        self.strong.is_empty() && self.weak.is_empty()
    }
}

/// A document's tokens, as both databases store them.
#[derive(Debug, Default)]
struct Doc {
    /// SQLite's `strong` and `weak` columns: folded words and separators.
    strong: Vec<String>,
    weak: Vec<String>,
    /// PostgreSQL's: each word's positions (1-based) and weight.
    positions: BTreeMap<String, Vec<(usize, char)>>,
    /// Its vocabulary words.
    terms: BTreeSet<String>,
}

impl Doc {
    fn build(fields: &TextFields, data: &Value) -> Self {
        let mut doc = Doc::default();
        // Positions count from 1 on PostgreSQL; on SQLite each column counts
        // from 0, the weak column after the strong one (the gap keeps
        // phrases inside a field on both).
        let mut pos = 0usize;
        for (names, weight, strong) in [(&fields.strong, 'A', true), (&fields.weak, 'B', false)] {
            let mut first = true;
            for name in names {
                let Some(text) = data.get(name).and_then(Value::as_str) else {
                    continue;
                };
                let column = if strong {
                    &mut doc.strong
                } else {
                    &mut doc.weak
                };
                if !first {
                    column.push(FIELD_SEPARATOR.to_owned());
                    pos += 1;
                }
                for (_, word) in words(text) {
                    if pos >= MAX_POSITIONS {
                        break;
                    }
                    pos += 1;
                    first = false;
                    let at = doc.positions.entry(word.clone()).or_default();
                    if at.len() < MAX_WORD_POSITIONS {
                        at.push((pos, weight));
                    }
                    if word.chars().count() >= MIN_TERM_CHARS {
                        doc.terms.insert(word.clone());
                    }
                    column.push(word);
                }
            }
            // The gap between the columns.
            pos += 1;
        }
        doc
    }

    fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// How many words it indexes (BM25's document length).
    fn len(&self) -> usize {
        self.strong
            .iter()
            .chain(&self.weak)
            .filter(|w| *w != FIELD_SEPARATOR)
            .count()
    }

    /// The `tsvector` literal.
    fn tsvector(&self) -> String {
        let mut out = String::new();
        for (word, at) in &self.positions {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&lexeme(word));
            out.push(':');
            let list: Vec<String> = at.iter().map(|(p, w)| format!("{p}{w}")).collect();
            out.push_str(&list.join(","));
        }
        out
    }
}

/// Keeps the index in step with a record write: `before` is the row as it
/// was (`None` for a create), `after` as it is now. Each view's document
/// is rewritten only when that view's data changed.
pub async fn record_written(
    txn: &DatabaseTransaction,
    model: &models::Model,
    before: Option<&records::Model>,
    after: &records::Model,
) -> AppResult<()> {
    let fields = TextFields::of(model);
    if fields.is_empty() {
        return Ok(());
    }
    let draft_changed = before.is_none_or(|b| b.draft_data != after.draft_data);
    if draft_changed {
        let data = Some(&after.draft_data);
        write_doc(txn, &fields, after, Side::Draft, data, before.is_some()).await?;
    }
    let published_before = before.and_then(|b| b.published_data.as_ref());
    if published_before != after.published_data.as_ref() {
        let data = after.published_data.as_ref();
        write_doc(txn, &fields, after, Side::Published, data, before.is_some()).await?;
    }
    Ok(())
}

/// Removes a deleted record's documents.
pub async fn record_deleted(txn: &DatabaseTransaction, record: &records::Model) -> AppResult<()> {
    for side in [Side::Draft, Side::Published] {
        remove_doc(txn, &record.id, side).await?;
    }
    Ok(())
}

/// Replaces the record's document of `side` (when `replace`: a new record
/// has none) with one of `data` (none when `data` is `None` or holds no
/// word).
pub(crate) async fn write_doc<C: ConnectionTrait>(
    db: &C,
    fields: &TextFields,
    record: &records::Model,
    side: Side,
    data: Option<&Value>,
    replace: bool,
) -> AppResult<()> {
    if replace {
        remove_doc(db, &record.id, side).await?;
    }
    let Some(data) = data else {
        return Ok(());
    };
    let doc = Doc::build(fields, data);
    if doc.is_empty() {
        return Ok(());
    }
    let backend = db.get_database_backend();
    let base: Vec<DbValue> = vec![
        record.project_id.clone().into(),
        side.code().into(),
        record.id.clone().into(),
        record.model_id.clone().into(),
    ];
    let len = i64::try_from(doc.len()).unwrap_or(i64::MAX);
    if backend == DbBackend::Postgres {
        let mut values = base;
        values.extend([
            doc.tsvector().into(),
            doc.strong.join(" ").into(),
            doc.weak.join(" ").into(),
            len.into(),
        ]);
        db.execute(Statement::from_sql_and_values(
            backend,
            "INSERT INTO search_docs (project_id, view, record_id, model_id, tsv, strong, weak, len) \
             VALUES ($1, $2, $3, $4, $5::tsvector, $6, $7, $8)",
            values,
        ))
        .await?;
    } else {
        // The view's tag, made on its first document; the counts BM25 reads.
        let row = db
            .query_one(Statement::from_sql_and_values(
                backend,
                "INSERT INTO search_tags (project_id, view, docs, words) VALUES (?, ?, 1, ?) \
                 ON CONFLICT (project_id, view) DO UPDATE \
                 SET docs = docs + 1, words = words + excluded.words RETURNING tag",
                [
                    record.project_id.clone().into(),
                    side.code().into(),
                    len.into(),
                ],
            ))
            .await?
            .ok_or_else(|| {
                crate::error::AppError::internal("search_tags upsert returned no tag")
            })?;
        let tag = tag_prefix(row.try_get("", "tag")?)?;
        let (strong, weak) = (doc.strong.join(" "), doc.weak.join(" "));
        let mut values = base;
        values.extend([strong.into(), weak.into(), len.into()]);
        let row = db
            .query_one(Statement::from_sql_and_values(
                backend,
                "INSERT INTO search_docs (project_id, view, record_id, model_id, strong, weak, len) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            ))
            .await?
            .ok_or_else(|| crate::error::AppError::internal("search_docs insert returned no id"))?;
        let id: i64 = row.try_get("", "id")?;
        db.execute(Statement::from_sql_and_values(
            backend,
            "INSERT INTO search_fts (rowid, strong, weak) VALUES (?, ?, ?)",
            [
                id.into(),
                tagged(&tag, &doc.strong).into(),
                tagged(&tag, &doc.weak).into(),
            ],
        ))
        .await?;
    }
    add_terms(db, &record.project_id, side, &doc.terms).await
}

/// Removes the record's document of `side`, if any.
async fn remove_doc<C: ConnectionTrait>(db: &C, record_id: &str, side: Side) -> AppResult<()> {
    let backend = db.get_database_backend();
    if backend == DbBackend::Postgres {
        db.execute(Statement::from_sql_and_values(
            backend,
            "DELETE FROM search_docs WHERE record_id = $1 AND view = $2",
            [record_id.into(), side.code().into()],
        ))
        .await?;
    } else {
        let found = db
            .query_one(Statement::from_sql_and_values(
                backend,
                "DELETE FROM search_docs WHERE record_id = ? AND view = ? \
                 RETURNING id, project_id, len",
                [record_id.into(), side.code().into()],
            ))
            .await?;
        if let Some(row) = found {
            let id: i64 = row.try_get("", "id")?;
            let project_id: String = row.try_get("", "project_id")?;
            let len: i64 = row.try_get("", "len")?;
            db.execute(Statement::from_sql_and_values(
                backend,
                "DELETE FROM search_fts WHERE rowid = ?",
                [id.into()],
            ))
            .await?;
            db.execute(Statement::from_sql_and_values(
                backend,
                "UPDATE search_tags SET docs = docs - 1, words = words - ? \
                 WHERE project_id = ? AND view = ?",
                [len.into(), project_id.into(), side.code().into()],
            ))
            .await?;
        }
    }
    Ok(())
}

/// Adds the document's words to the view's vocabulary; when one is new,
/// moves the vocabulary's version (in this transaction).
async fn add_terms<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    side: Side,
    terms: &BTreeSet<String>,
) -> AppResult<()> {
    let backend = db.get_database_backend();
    let terms: Vec<&String> = terms.iter().collect();
    let mut added = 0;
    for chunk in terms.chunks(300) {
        let mut sql = String::from("INSERT INTO search_terms (project_id, view, term) VALUES ");
        let mut values: Vec<DbValue> = vec![project_id.into(), side.code().into()];
        for (i, term) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            if backend == DbBackend::Postgres {
                sql.push_str(&format!("($1, $2, ${})", i + 3));
            } else {
                sql.push_str(&format!("(?1, ?2, ?{})", i + 3));
            }
            values.push((*term).clone().into());
        }
        sql.push_str(" ON CONFLICT (project_id, view, term) DO NOTHING");
        added += db
            .execute(Statement::from_sql_and_values(backend, sql, values))
            .await?
            .rows_affected();
    }
    if added > 0 {
        let ph = if backend == DbBackend::Postgres {
            "($1, $2, 1)"
        } else {
            "(?, ?, 1)"
        };
        db.execute(Statement::from_sql_and_values(
            backend,
            format!(
                "INSERT INTO search_vocab (project_id, view, version) VALUES {ph} \
                 ON CONFLICT (project_id, view) DO UPDATE SET version = search_vocab.version + 1"
            ),
            [project_id.into(), side.code().into()],
        ))
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields() -> TextFields {
        TextFields {
            strong: vec!["title".into(), "sub".into()],
            weak: vec!["body".into()],
        }
    }

    #[test]
    fn both_databases_get_the_same_words_and_positions() {
        let doc = Doc::build(
            &fields(),
            &json!({"title": "Big Café", "sub": "red", "body": "Big <b>bike</b>", "n": 3}),
        );
        assert_eq!(doc.strong, ["big", "cafe", "§", "red"]);
        assert_eq!(doc.weak, ["big", "b", "bike", "b"]);
        assert_eq!(
            doc.tsvector(),
            "'b':7B,9B 'big':1A,6B 'bike':8B 'cafe':2A 'red':4A"
        );
        assert_eq!(doc.terms.iter().collect::<Vec<_>>(), ["bike", "cafe"]);
        assert_eq!(doc.len(), 7);
        assert_eq!(
            tagged("00001_", &doc.strong),
            "00001_big 00001_cafe § 00001_red"
        );
    }

    #[test]
    fn tags_are_fixed_width_and_bounded() {
        assert_eq!(tag_prefix(1).ok().as_deref(), Some("00001_"));
        assert_eq!(tag_prefix(36).ok().as_deref(), Some("00010_"));
        assert_eq!(tag_prefix(36i64.pow(5) - 1).ok().as_deref(), Some("zzzzz_"));
        assert!(tag_prefix(36i64.pow(5)).is_err());
        assert!(tag_prefix(-1).is_err());
    }

    #[test]
    fn a_document_stops_at_the_position_cap() {
        let body = "word ".repeat(MAX_POSITIONS + 100);
        let doc = Doc::build(&fields(), &json!({ "body": body }));
        assert_eq!(doc.weak.len(), MAX_POSITIONS - 1);
        assert_eq!(doc.positions["word"].len(), MAX_WORD_POSITIONS);
        assert!(Doc::build(&fields(), &json!({"title": " -- "})).is_empty());
    }

    #[test]
    fn model_fields_are_read_from_the_row() {
        let row = models::Model {
            id: "m".into(),
            project_id: "p".into(),
            key: "k".into(),
            name: "n".into(),
            fields: json!([
                {"name": "title", "type": "STRING"},
                {"name": "n", "type": "INTEGER"},
                {"name": "body", "type": "TEXT"}
            ]),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        };
        let f = TextFields::of(&row);
        assert_eq!(
            (f.strong, f.weak),
            (vec!["title".into()], vec!["body".into()])
        );
    }
}
