//! Ranked hits: the query compiled for the database, run within the
//! project and view (and models), ordered by (bucket, rank, record id), one
//! page after a cursor, within the first [`MAX_HITS`]. The same on both
//! databases.
//!
//! Buckets come first: an exact hit ranks above every hit that needs a typo
//! variant, and within each, a hit whose every clause matches a `STRING`
//! field above the others; then BM25 ([`super::bm25`]). The score is
//! `bucket + rank / (1 + rank)`, higher is better.
//!
//! Each tier's candidates are the newest [`CANDIDATES`] documents it
//! matches: the FTS5 match (behind the view's tag, see [`super::index`])
//! streams in rowid order and stops at the limit, PostgreSQL's GIN match
//! sorts by id; so a search of a common word costs at most that many
//! documents, where a ranking inside the database (FTS5's `bm25()`,
//! `ts_rank_cd`) would score every match. When a tier has more, the newest
//! that many matching in `STRING` fields are added, so a `STRING` hit is
//! never left out for newer `TEXT` ones; documents written longest ago are
//! the ones a very common query leaves out.
//!
//! The match returns ids only; the candidates' words come from
//! [`Stats`]' document cache (a document never changes under its id), and
//! only the ones it lacks are read, in one statement.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value as DbValue};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::bm25::Ranker;
use super::grammar::{tsquery_clause, Expansions, Query};
use super::index::{tag_prefix, Side};
use crate::error::{AppError, AppResult};

/// The most hits reachable through cursors.
pub const MAX_HITS: i64 = 1_000;

/// One hit: a record id and its score.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    pub record_id: String,
    pub score: f64,
}

/// One page of hits.
#[derive(Debug)]
pub struct HitPage {
    pub hits: Vec<Hit>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// Where a page ends: the last hit's place in the order, and how many hits
/// came before it and it.
#[derive(Serialize, Deserialize)]
struct Cursor {
    /// The bucket: 3 and 2 for exact matches (in `STRING` fields or not),
    /// 1 and 0 for typo matches.
    e: i64,
    /// The rank, as the bits of the `f64` (exact round trip).
    r: u64,
    id: String,
    /// Hits up to and including this one.
    n: i64,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    fn decode(text: &str) -> AppResult<Self> {
        let bad = || AppError::bad_input("invalid cursor for search");
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
        let c: Cursor = serde_json::from_slice(&bytes).map_err(|_| bad())?;
        if !(1..=MAX_HITS).contains(&c.n) || !(0..=3).contains(&c.e) {
            return Err(bad());
        }
        Ok(c)
    }
}

/// A statement being written, with placeholders of its backend.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<DbValue>,
}

impl Sql {
    fn push(&mut self, s: &str) -> &mut Self {
        self.text.push_str(s);
        self
    }

    fn bind(&mut self, v: impl Into<DbValue>) -> &mut Self {
        self.values.push(v.into());
        if self.backend == DbBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
        self
    }
}

/// What to find.
pub struct HitsRequest<'a> {
    pub project_id: &'a str,
    /// The view, as [`view`] read it (`None`: it has no document).
    pub view: Option<&'a View>,
    pub side: Side,
    /// Only records of these models (ids), when given.
    pub model_ids: Option<&'a [String]>,
    pub query: &'a Query,
    pub expansions: Option<&'a Expansions>,
    /// 1–100.
    pub limit: i64,
    pub after: Option<&'a str>,
}

/// The most documents one tier of a search ranks: the newest matches (and
/// so the most hits a tier can reach).
pub const CANDIDATES: i64 = 1_000;
/// How long counted statistics (document frequencies; PostgreSQL's view
/// sizes) are used: an idf a minute old ranks as well.
const STATS_SECONDS: u64 = 60;
/// The most statistics an instance keeps.
const MAX_STATS: u64 = 100_000;
/// The most bytes of documents' words an instance keeps ([`Stats::docs`]).
pub const DOCS_CACHE_BYTES: u64 = 48 * 1024 * 1024;
/// About how many documents that is (a few hundred bytes each): the
/// cache's own sizing hint.
const DOCS_CACHE_ITEMS: usize = 100_000;

/// What searches keep between them: counted statistics for BM25, kept
/// [`STATS_SECONDS`], and the documents read for ranking.
pub struct Stats {
    /// Documents of the view matching a clause, by (project, view, clause
    /// as the database's match text).
    frequencies: moka::sync::Cache<(String, Side, String), u64>,
    /// PostgreSQL: a view's (documents, words). SQLite keeps them exact in
    /// `search_tags`, moved by every write (one writer, no contention).
    views: moka::sync::Cache<(String, Side), (u64, u64)>,
    /// Documents read for ranking, by id, up to [`DOCS_CACHE_BYTES`]. A
    /// document never changes under its id (a change deletes it and writes
    /// a new one; ids are never reused: `AUTOINCREMENT` on SQLite, a
    /// sequence on PostgreSQL), and the match decides which ids a search
    /// sees, so an entry is never stale: a deleted document is only never
    /// asked for again.
    docs: quick_cache::sync::Cache<i64, Arc<Doc>, DocWeight>,
}

/// A cached document's weight: its bytes ([`Doc::weight`]).
#[derive(Clone)]
struct DocWeight;

impl quick_cache::Weighter<i64, Arc<Doc>> for DocWeight {
    fn weight(&self, _id: &i64, doc: &Arc<Doc>) -> u64 {
        doc.weight()
    }
}

impl Default for Stats {
    fn default() -> Self {
        let ttl = std::time::Duration::from_secs(STATS_SECONDS);
        Stats {
            frequencies: moka::sync::Cache::builder()
                .max_capacity(MAX_STATS)
                .time_to_live(ttl)
                .build(),
            views: moka::sync::Cache::builder()
                .max_capacity(MAX_STATS)
                .time_to_live(ttl)
                .build(),
            docs: quick_cache::sync::Cache::with_weighter(
                DOCS_CACHE_ITEMS,
                DOCS_CACHE_BYTES,
                DocWeight,
            ),
        }
    }
}

/// One found hit: `(bucket, rank, record id)`.
type Found = (i64, f64, String);

/// Whether the hit `(e, r, id)` comes after the cursor `c` in the order.
fn is_after((e, r, id): (i64, f64, &str), c: &Cursor) -> bool {
    let cr = f64::from_bits(c.r);
    e < c.e || (e == c.e && (r < cr || (r == cr && id > c.id.as_str())))
}

/// One page of hits of `req`.
pub async fn hits<C: ConnectionTrait>(
    db: &C,
    req: HitsRequest<'_>,
    stats: &Stats,
) -> AppResult<HitPage> {
    let after = req.after.map(Cursor::decode).transpose()?;
    let before = after.as_ref().map_or(0, |c| c.n);
    let page = req.limit.min(MAX_HITS - before);
    if page <= 0 {
        return Ok(HitPage {
            hits: Vec::new(),
            has_next_page: false,
            end_cursor: None,
        });
    }
    let mut found = tiers(db, &req, stats, after.as_ref(), page).await?;
    let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let more = count(found.len()) > page;
    found.truncate(usize::try_from(page).unwrap_or(0));
    let end_cursor = found.last().map(|(e, r, id)| {
        Cursor {
            e: *e,
            r: r.to_bits(),
            id: id.clone(),
            n: before + count(found.len()),
        }
        .encode()
    });
    let has_next_page = more && before + count(found.len()) < MAX_HITS;
    let hits = found
        .into_iter()
        .map(|(e, r, record_id)| {
            let r = r.max(0.0);
            Hit {
                record_id,
                score: e as f64 + r / (1.0 + r),
            }
        })
        .collect();
    Ok(HitPage {
        hits,
        has_next_page,
        end_cursor,
    })
}

/// The view searched: its size, on SQLite its token tag, and its
/// vocabulary's version, read in one statement per search.
pub struct View {
    /// The tag before its tokens (SQLite; empty on PostgreSQL).
    prefix: String,
    docs: u64,
    words: u64,
    /// `search_vocab`'s version, `None` when the view has no vocabulary.
    pub vocab_version: Option<i64>,
}

/// The view of `project_id` and `side`, `None` when it has no document
/// (SQLite).
pub async fn view<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    side: Side,
    stats: &Stats,
) -> AppResult<Option<View>> {
    let backend = db.get_database_backend();
    let size = |n: i64| u64::try_from(n).unwrap_or(0);
    if backend == DbBackend::Postgres {
        let key = (project_id.to_owned(), side);
        let (docs, words) = match stats.views.get(&key) {
            Some(counts) => counts,
            None => {
                let row = db
                    .query_one(Statement::from_sql_and_values(
                        backend,
                        "SELECT count(*) AS docs, coalesce(sum(len), 0)::bigint AS words \
                         FROM search_docs WHERE project_id = $1 AND view = $2",
                        [project_id.into(), side.code().into()],
                    ))
                    .await?
                    .ok_or_else(|| AppError::internal("a count returned no row"))?;
                let counts = (
                    size(row.try_get("", "docs")?),
                    size(row.try_get("", "words")?),
                );
                stats.views.insert(key, counts);
                counts
            }
        };
        let vocab_version = match db
            .query_one(Statement::from_sql_and_values(
                backend,
                "SELECT version FROM search_vocab WHERE project_id = $1 AND view = $2",
                [project_id.into(), side.code().into()],
            ))
            .await?
        {
            Some(row) => Some(row.try_get("", "version")?),
            None => None,
        };
        return Ok(Some(View {
            prefix: String::new(),
            docs,
            words,
            vocab_version,
        }));
    }
    let Some(row) = db
        .query_one(Statement::from_sql_and_values(
            backend,
            "SELECT t.tag AS tag, t.docs AS docs, t.words AS words, \
             (SELECT v.version FROM search_vocab v \
              WHERE v.project_id = t.project_id AND v.view = t.view) AS version \
             FROM search_tags t WHERE t.project_id = ? AND t.view = ?",
            [project_id.into(), side.code().into()],
        ))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(View {
        prefix: tag_prefix(row.try_get("", "tag")?)?,
        docs: size(row.try_get("", "docs")?),
        words: size(row.try_get("", "words")?),
        vocab_version: row.try_get("", "version")?,
    }))
}

/// Up to `page + 1` hits after the cursor: the exact tier (buckets 3 and
/// 2), then, when it does not fill the page, the typo tier (buckets 1 and
/// 0: typo matches that are not exact ones), so a query with enough exact
/// hits never pays for its typo variants.
async fn tiers<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    stats: &Stats,
    after: Option<&Cursor>,
    page: i64,
) -> AppResult<Vec<Found>> {
    let Some(view) = req.view else {
        return Ok(Vec::new());
    };
    let pg = db.get_database_backend() == DbBackend::Postgres;
    let q = req.query;
    let want = usize::try_from(page + 1).unwrap_or(0);
    let mut found = Vec::new();
    let exact = if pg {
        q.tsquery(None)
    } else {
        q.fts5(&view.prefix, None)
    };
    // Its hits all match in `STRING` fields (and match `full`).
    let strong = |expansions: Option<&Expansions>, full: &str| {
        if pg {
            format!("{} & ({full})", q.tsquery_include(expansions, true))
        } else {
            format!(
                "{{strong}} : {} AND ({full})",
                q.fts5_include(&view.prefix, expansions)
            )
        }
    };
    if after.is_none_or(|c| c.e >= 2) || req.expansions.is_none() {
        let tier = Tier {
            strong: strong(None, &exact),
            matches: exact.clone(),
            expansions: None,
            base: 2,
        };
        found = tier.hits(db, req, stats, view, after, want).await?;
    }
    if let Some(expansions) = req.expansions {
        if found.len() < want {
            let matches = if pg {
                format!("({}) & !({exact})", q.tsquery(Some(expansions)))
            } else {
                format!("{} NOT ({exact})", q.fts5(&view.prefix, Some(expansions)))
            };
            let tier = Tier {
                strong: strong(Some(expansions), &matches),
                matches,
                expansions: Some(expansions),
                base: 0,
            };
            let typo = tier
                .hits(db, req, stats, view, after, want - found.len())
                .await?;
            found.extend(typo);
        }
    }
    Ok(found)
}

/// One tier of a search, as the database's match text (FTS5 or `tsquery`).
struct Tier<'a> {
    /// What its hits match.
    matches: String,
    /// Its hits that match in `STRING` fields.
    strong: String,
    /// The typo variants it allows.
    expansions: Option<&'a Expansions>,
    /// Its lower bucket.
    base: i64,
}

impl Tier<'_> {
    /// Its best `want` hits after the cursor: the newest [`CANDIDATES`]
    /// documents it matches (and when those are not all, also the newest
    /// that many older ones matching in `STRING` fields), ranked by
    /// [`Ranker`]; a hit matching in `STRING` fields gets bucket
    /// `base + 1`, others `base`.
    async fn hits<C: ConnectionTrait>(
        &self,
        db: &C,
        req: &HitsRequest<'_>,
        stats: &Stats,
        view: &View,
        after: Option<&Cursor>,
        want: usize,
    ) -> AppResult<Vec<Found>> {
        let mut ids = candidates(db, req, &self.matches, None).await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if ids.len() >= usize::try_from(CANDIDATES).unwrap_or(usize::MAX) {
            // Only documents older than those: the newer are all in.
            let oldest = ids.iter().copied().min();
            let more = candidates(db, req, &self.strong, oldest).await?;
            ids.extend(more);
        }
        let docs = documents(db, stats, &ids).await?;
        let no_variants = Vec::new();
        let variants = self.expansions.unwrap_or(&no_variants);
        let mut df = Vec::with_capacity(req.query.include.len());
        for (i, clause) in req.query.include.iter().enumerate() {
            let these = variants.get(i).map_or(&[][..], Vec::as_slice);
            let text = if db.get_database_backend() == DbBackend::Postgres {
                tsquery_clause(clause, these, false)
            } else {
                req.query.fts5_clause(&view.prefix, i, self.expansions)
            };
            df.push(frequency(db, req, stats, text).await?);
        }
        let ranker = Ranker::new(req.query, variants, &df, view.docs, view.words);
        // The `STRING` words of every candidate settle its bucket; the
        // `TEXT` words are read bucket by bucket, best first, until the
        // page is full: a common word's title matches spare reading the
        // bodies of the rest.
        let partials: Vec<_> = docs
            .iter()
            // The match already keeps to the view (its tag, or the
            // columns); this keeps a hit out of any other all the same.
            .filter(|doc| doc.project_id() == req.project_id && doc.view() == req.side.code())
            .map(|doc| (ranker.strong_pass(doc.strong()), doc))
            .collect();
        let mut found = Vec::new();
        for strong in [true, false] {
            let bucket = self.base + i64::from(strong);
            if after.is_some_and(|c| bucket > c.e) {
                // All before the cursor.
                continue;
            }
            for (partial, doc) in partials.iter().filter(|(p, _)| p.strong == strong) {
                let scored = ranker.finish(partial, doc.weak(), doc.len);
                let hit = (bucket, scored.rank, doc.record_id());
                if after.is_none_or(|c| is_after(hit, c)) {
                    found.push(hit);
                }
            }
            if found.len() >= want {
                break;
            }
        }
        let order = |a: &(i64, f64, &str), b: &(i64, f64, &str)| {
            b.0.cmp(&a.0)
                .then(b.1.total_cmp(&a.1))
                .then_with(|| a.2.cmp(b.2))
        };
        // Only the best `want` are ordered: a page of a thousand candidates.
        if want > 0 && found.len() > want {
            found.select_nth_unstable_by(want - 1, order);
            found.truncate(want);
        }
        found.sort_by(order);
        Ok(found
            .into_iter()
            .take(want)
            .map(|(e, r, id)| (e, r, id.to_owned()))
            .collect())
    }
}

/// The most characters of a document's `STRING` and `TEXT` words read
/// for its rank: a search holds a few thousand candidates, and a document
/// may hold 16,000 words (matches past these count for nothing in the
/// rank; the document still is a hit).
const SCORED_STRONG_CHARS: usize = 1_000;
const SCORED_WEAK_CHARS: usize = 2_000;

/// A document as ranking reads it: its place, its length in words and (the
/// start of) its folded words.
pub struct Doc {
    len: u32,
    /// The project id, the view ([`Side::code`]), the record id and the
    /// `STRING` and `TEXT` words, back to back in one allocation: ranking
    /// reads them in that order, for a thousand documents a search.
    text: Box<str>,
    /// Where each part but the last ends in `text`.
    ends: [u32; 4],
}

impl Doc {
    fn new(parts: [&str; 5], len: u32) -> Self {
        let mut text = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        let mut ends = [0u32; 4];
        for (i, part) in parts.iter().enumerate() {
            text.push_str(part);
            if let Some(end) = ends.get_mut(i) {
                *end = u32::try_from(text.len()).unwrap_or(u32::MAX);
            }
        }
        Doc {
            len,
            text: text.into_boxed_str(),
            ends,
        }
    }

    /// Part `i` of `text`.
    fn part(&self, i: usize) -> &str {
        let at = |k: usize| self.ends.get(k).map_or(self.text.len(), |e| *e as usize);
        let start = if i == 0 { 0 } else { at(i - 1) };
        self.text.get(start..at(i)).unwrap_or("")
    }

    fn project_id(&self) -> &str {
        self.part(0)
    }

    fn view(&self) -> &str {
        self.part(1)
    }

    fn record_id(&self) -> &str {
        self.part(2)
    }

    fn strong(&self) -> &str {
        self.part(3)
    }

    fn weak(&self) -> &str {
        self.part(4)
    }

    /// Its bytes in the cache, with the entry's own keep.
    fn weight(&self) -> u64 {
        u64::try_from(64 + self.text.len()).unwrap_or(u64::MAX)
    }
}

/// `text` (cut at `max` characters by the database) without a last word
/// the cut may have shortened: when it is at least `max` bytes long, it
/// may have been cut (bytes are never fewer than characters).
fn whole_words(text: &str, max: usize) -> &str {
    if text.len() < max {
        return text;
    }
    text.rsplit_once(' ').map_or("", |(whole, _)| whole)
}

/// Separates a document's parts in an aggregated answer (no id or folded
/// word holds it).
const PART: char = '\u{1f}';
/// Separates documents in an aggregated answer.
const ROW: char = '\u{1e}';

/// The ids of the newest [`CANDIDATES`] documents of the request's view
/// (and models) matching `matches` (and older than `older_than`, a
/// document id, when given), newest first. On SQLite the view's tag keeps
/// the match to the view, and FTS5 streams it newest first and stops at
/// the limit; only a model filter reads `search_docs`.
async fn candidates<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    matches: &str,
    older_than: Option<i64>,
) -> AppResult<Vec<i64>> {
    let backend = db.get_database_backend();
    let pg = backend == DbBackend::Postgres;
    let mut sql = Sql {
        backend,
        text: String::new(),
        values: Vec::new(),
    };
    if pg {
        sql.push(
            "SELECT string_agg(id::text, ',') AS ids FROM (SELECT d.id AS id \
             FROM search_docs d WHERE d.tsv @@ ",
        )
        .bind(matches.to_owned())
        .push("::tsquery AND d.project_id = ")
        .bind(req.project_id)
        .push(" AND d.view = ")
        .bind(req.side.code());
        if let Some(id) = older_than {
            sql.push(" AND d.id < ").bind(id);
        }
    } else {
        sql.push(
            "SELECT group_concat(id) AS ids FROM (SELECT search_fts.rowid AS id FROM search_fts ",
        );
        if req.model_ids.is_some() {
            // CROSS JOIN: the planner must start from the match.
            sql.push("CROSS JOIN search_docs d ON d.id = search_fts.rowid ");
        }
        sql.push("WHERE search_fts MATCH ").bind(matches.to_owned());
        if let Some(id) = older_than {
            sql.push(" AND search_fts.rowid < ").bind(id);
        }
    }
    if let Some(models) = req.model_ids {
        sql.push(" AND d.model_id IN (");
        for (i, id) in models.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(id.clone());
        }
        sql.push(")");
    }
    sql.push(if pg {
        " ORDER BY d.id DESC LIMIT "
    } else {
        " ORDER BY search_fts.rowid DESC LIMIT "
    })
    .bind(CANDIDATES)
    .push(") c");
    let ids: Option<String> = match db
        .query_one(Statement::from_sql_and_values(
            backend, sql.text, sql.values,
        ))
        .await?
    {
        Some(row) => row.try_get("", "ids")?,
        None => None,
    };
    ids.unwrap_or_default()
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| {
            id.parse()
                .map_err(|_| AppError::internal("a search candidate id is not a number"))
        })
        .collect()
}

/// The documents with `ids` (those that still exist), from the cache or
/// read in one statement, as one aggregated value (read by
/// [`parse_documents`]; a thousand rows through the driver cost more than
/// the search itself).
async fn documents<C: ConnectionTrait>(
    db: &C,
    stats: &Stats,
    ids: &[i64],
) -> AppResult<Vec<Arc<Doc>>> {
    let mut docs = Vec::with_capacity(ids.len());
    let mut missing = Vec::new();
    for &id in ids {
        match stats.docs.get(&id) {
            Some(doc) => docs.push(doc),
            None => missing.push(id.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok(docs);
    }
    let backend = db.get_database_backend();
    let (part, row) = (u32::from(PART), u32::from(ROW));
    let sql = if backend == DbBackend::Postgres {
        format!(
            "SELECT string_agg(d.id::text || chr({part}) || d.project_id || chr({part}) || d.view \
             || chr({part}) || d.record_id || chr({part}) || d.len::text || chr({part}) \
             || left(d.strong, {SCORED_STRONG_CHARS}) || chr({part}) || left(d.weak, {SCORED_WEAK_CHARS}), \
             chr({row})) AS found FROM search_docs d \
             WHERE d.id = ANY(string_to_array($1, ',')::bigint[])"
        )
    } else {
        format!(
            "SELECT group_concat(d.id || char({part}) || d.project_id || char({part}) || d.view \
             || char({part}) || d.record_id || char({part}) || d.len || char({part}) \
             || substr(d.strong, 1, {SCORED_STRONG_CHARS}) || char({part}) \
             || substr(d.weak, 1, {SCORED_WEAK_CHARS}), char({row})) AS found \
             FROM search_docs d WHERE d.id IN (SELECT value FROM json_each('[' || ? || ']'))"
        )
    };
    let found: Option<String> = match db
        .query_one(Statement::from_sql_and_values(
            backend,
            sql,
            [missing.join(",").into()],
        ))
        .await?
    {
        Some(row) => row.try_get("", "found")?,
        None => None,
    };
    for (id, doc) in parse_documents(found.as_deref().unwrap_or(""))? {
        let doc = Arc::new(doc);
        stats.docs.insert(id, Arc::clone(&doc));
        docs.push(doc);
    }
    Ok(docs)
}

/// The documents of an aggregated answer of [`documents`], with their ids.
fn parse_documents(found: &str) -> AppResult<Vec<(i64, Doc)>> {
    if found.is_empty() {
        return Ok(Vec::new());
    }
    found
        .split(ROW)
        .map(|one| {
            let parts: Vec<&str> = one.splitn(7, PART).collect();
            let [id, project_id, view, record_id, len, strong, weak] = parts[..] else {
                return Err(AppError::internal("a search document without its parts"));
            };
            let id = id
                .parse()
                .map_err(|_| AppError::internal("a search document id is not a number"))?;
            Ok((
                id,
                Doc::new(
                    [
                        project_id,
                        view,
                        record_id,
                        whole_words(strong, SCORED_STRONG_CHARS),
                        whole_words(weak, SCORED_WEAK_CHARS),
                    ],
                    len.parse().unwrap_or(0),
                ),
            ))
        })
        .collect()
}

/// How many of the view's documents match `clause` (the database's match
/// text), from the cache or counted.
async fn frequency<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    stats: &Stats,
    clause: String,
) -> AppResult<u64> {
    let key = (req.project_id.to_owned(), req.side, clause);
    if let Some(n) = stats.frequencies.get(&key) {
        return Ok(n);
    }
    let backend = db.get_database_backend();
    let statement = if backend == DbBackend::Postgres {
        Statement::from_sql_and_values(
            backend,
            "SELECT count(*) AS n FROM search_docs \
             WHERE project_id = $1 AND view = $2 AND tsv @@ $3::tsquery",
            [
                req.project_id.into(),
                req.side.code().into(),
                key.2.clone().into(),
            ],
        )
    } else {
        // The clause's tokens carry the view's tag: only its documents.
        Statement::from_sql_and_values(
            backend,
            "SELECT count(*) AS n FROM search_fts WHERE search_fts MATCH ?",
            [key.2.clone().into()],
        )
    };
    let n: i64 = match db.query_one(statement).await? {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    let n = u64::try_from(n).unwrap_or(0);
    stats.frequencies.insert(key, n);
    Ok(n)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    #[test]
    fn a_cut_text_loses_only_its_last_word() {
        assert_eq!(whole_words("big red", 10), "big red");
        assert_eq!(whole_words("big red bicy", 12), "big red");
        assert_eq!(whole_words("bicycle", 7), "");
        let found = "7\u{1f}p1\u{1f}p\u{1f}r1\u{1f}3\u{1f}big\u{1f}red bike\u{1e}\
                     9\u{1f}p1\u{1f}d\u{1f}r2\u{1f}1\u{1f}\u{1f}cat";
        let rows = parse_documents(found).unwrap();
        assert_eq!(
            rows.iter()
                .map(|(id, d)| (
                    *id,
                    d.project_id(),
                    d.view(),
                    d.record_id(),
                    d.len,
                    d.strong(),
                    d.weak()
                ))
                .collect::<Vec<_>>(),
            [
                (7, "p1", "p", "r1", 3, "big", "red bike"),
                (9, "p1", "d", "r2", 1, "", "cat")
            ]
        );
        assert!(parse_documents("7\u{1f}p1").is_err());
    }

    #[test]
    fn kept_documents_stay_within_their_bytes() {
        let stats = Stats::default();
        let words = "word ".repeat(2_000);
        // 10 KiB each: twice the bound in all.
        let n = 2 * DOCS_CACHE_BYTES / 10_240;
        for id in 0..i64::try_from(n).unwrap() {
            let doc = Doc::new(["p", "p", "r", "", &words], 2_000);
            stats.docs.insert(id, Arc::new(doc));
        }
        assert!(stats.docs.weight() <= DOCS_CACHE_BYTES);
        assert!(stats.docs.weight() > DOCS_CACHE_BYTES / 2);
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = Cursor {
            e: 1,
            r: 0.125f64.to_bits(),
            id: "x".into(),
            n: 20,
        };
        let back = Cursor::decode(&c.encode()).unwrap();
        assert_eq!((back.e, f64::from_bits(back.r), back.n), (1, 0.125, 20));
        for bad in [
            "",
            "!!",
            "eyJ9",
            &URL_SAFE_NO_PAD.encode(r#"{"e":1,"r":0,"id":"x","n":1001}"#),
        ] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }
}
