//! Ranked hits: the query compiled for the database, run within the
//! project and view (and models), ordered by (bucket, rank, record id), one
//! page after a cursor, within the first [`MAX_HITS`].
//!
//! Buckets come first: an exact hit ranks above every hit that needs a typo
//! variant, and on SQLite, within each, a hit whose every clause matches a
//! `STRING` field above the others. The score is `bucket + rank / (1 +
//! rank)`, higher is better.
//!
//! On SQLite the FTS5 match (behind the view's tag, see [`super::index`])
//! yields the newest [`CANDIDATES`] matching documents of a tier, and
//! [`super::bm25`] ranks them from their words: FTS5 streams a match in
//! rowid order and stops at the limit, so a search of a common word costs
//! at most that many documents, while a ranking inside FTS5 would score
//! every match. Documents changed longest ago are the ones a very common
//! query leaves out. On PostgreSQL, rank is cover density (`ts_rank_cd`,
//! weight A for `STRING`, B for `TEXT`) over every match.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value as DbValue};
use serde::{Deserialize, Serialize};

use super::bm25::Ranker;
use super::grammar::{fts5_clause, Expansions, Query};
use super::index::{tag_prefix, Side};
use crate::error::{AppError, AppResult};

/// The most hits reachable through cursors.
pub const MAX_HITS: i64 = 1_000;
/// `ts_rank_cd`'s weights {D, C, B, A}: A for `STRING`, B for `TEXT`.
const PG_WEIGHTS: &str = "'{0, 0, 0.2, 1}'";

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
    /// The bucket: on SQLite 3 and 2 for exact matches, 1 and 0 for typo
    /// matches; on PostgreSQL 1 exact, 0 typo.
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
    pub side: Side,
    /// Only records of these models (ids), when given.
    pub model_ids: Option<&'a [String]>,
    pub query: &'a Query,
    pub expansions: Option<&'a Expansions>,
    /// 1–100.
    pub limit: i64,
    pub after: Option<&'a str>,
}

/// The most documents one tier of a SQLite search ranks: the newest
/// matches (and so the most hits a tier can reach).
pub const CANDIDATES: i64 = 1_000;
/// How long a counted document frequency is used.
const FREQUENCY_SECONDS: u64 = 60;
/// The most document frequencies an instance keeps.
const MAX_FREQUENCIES: u64 = 100_000;

/// Document frequencies counted by FTS5 for BM25's idf, by (view tag,
/// clause), kept [`FREQUENCY_SECONDS`]: an idf a minute old ranks as well.
pub struct Frequencies(moka::sync::Cache<(i64, String), u64>);

impl Default for Frequencies {
    fn default() -> Self {
        Frequencies(
            moka::sync::Cache::builder()
                .max_capacity(MAX_FREQUENCIES)
                .time_to_live(std::time::Duration::from_secs(FREQUENCY_SECONDS))
                .build(),
        )
    }
}

/// One found hit: `(bucket, rank, record id)`.
type Found = (i64, f64, String);

/// Whether `hit` comes after the cursor `c` in the order.
fn is_after(hit: &Found, c: &Cursor) -> bool {
    let (e, r, id) = hit;
    let cr = f64::from_bits(c.r);
    *e < c.e || (*e == c.e && (*r < cr || (*r == cr && *id > c.id)))
}

/// One page of hits of `req`.
pub async fn hits<C: ConnectionTrait>(
    db: &C,
    req: HitsRequest<'_>,
    frequencies: &Frequencies,
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
    let mut found = if db.get_database_backend() == DbBackend::Postgres {
        pg_hits(db, &req, after.as_ref(), page).await?
    } else {
        sqlite_hits(db, &req, frequencies, after.as_ref(), page).await?
    };
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

/// Up to `page + 1` hits after the cursor on PostgreSQL: the exact tier
/// (bucket 1) first; the typo variants (bucket 0, without the exact hits)
/// only when the exact hits do not fill the page, so a query with enough
/// exact hits never pays for them.
async fn pg_hits<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    after: Option<&Cursor>,
    page: i64,
) -> AppResult<Vec<Found>> {
    let mut found = Vec::new();
    if after.is_none_or(|c| c.e == 1) || req.expansions.is_none() {
        let ts = req.query.tsquery(None);
        found = pg_tier(db, req, &ts, 1, after, page + 1).await?;
    }
    if let Some(expansions) = req.expansions {
        let want = page + 1 - i64::try_from(found.len()).unwrap_or(i64::MAX);
        if want > 0 {
            let ts = format!(
                "({}) & !({})",
                req.query.tsquery(Some(expansions)),
                req.query.tsquery(None)
            );
            found.extend(pg_tier(db, req, &ts, 0, after, want).await?);
        }
    }
    Ok(found)
}

/// Up to `page + 1` hits after the cursor on SQLite: the exact tier
/// (buckets 3 and 2), then, when it does not fill the page, the typo tier
/// (buckets 1 and 0: typo matches that are not exact ones).
async fn sqlite_hits<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    frequencies: &Frequencies,
    after: Option<&Cursor>,
    page: i64,
) -> AppResult<Vec<Found>> {
    let backend = db.get_database_backend();
    let Some(view) = db
        .query_one(Statement::from_sql_and_values(
            backend,
            "SELECT tag, docs, words FROM search_tags WHERE project_id = ? AND view = ?",
            [req.project_id.into(), req.side.code().into()],
        ))
        .await?
    else {
        return Ok(Vec::new());
    };
    let view = View {
        tag: view.try_get("", "tag")?,
        docs: view.try_get("", "docs")?,
        words: view.try_get("", "words")?,
    };
    let prefix = tag_prefix(view.tag)?;
    let want = usize::try_from(page + 1).unwrap_or(0);
    let mut found = Vec::new();
    let exact = req.query.fts5(&prefix, None);
    if after.is_none_or(|c| c.e >= 2) || req.expansions.is_none() {
        let tier = Tier {
            fts: exact.clone(),
            include: req.query.fts5_include(&prefix, None),
            expansions: None,
            base: 2,
        };
        found = sqlite_tier(db, req, frequencies, &view, &tier, after).await?;
        found.truncate(want);
    }
    if let Some(expansions) = req.expansions {
        if found.len() < want {
            let tier = Tier {
                fts: format!(
                    "{} NOT ({exact})",
                    req.query.fts5(&prefix, Some(expansions))
                ),
                include: req.query.fts5_include(&prefix, Some(expansions)),
                expansions: Some(expansions),
                base: 0,
            };
            let mut typo = sqlite_tier(db, req, frequencies, &view, &tier, after).await?;
            typo.truncate(want - found.len());
            found.extend(typo);
        }
    }
    Ok(found)
}

/// A view's tag and counts (`search_tags`).
struct View {
    tag: i64,
    docs: i64,
    words: i64,
}

/// One tier of a SQLite search.
struct Tier<'a> {
    /// What its hits match (FTS5).
    fts: String,
    /// Its include clauses alone (FTS5).
    include: String,
    /// The typo variants it allows.
    expansions: Option<&'a Expansions>,
    /// Its lower bucket.
    base: i64,
}

/// One SQLite tier's hits after the cursor, best first: the newest
/// [`CANDIDATES`] documents matching it (and when those are not all, also
/// the newest that many matching in `STRING` fields, so those are never
/// left out for newer `TEXT` matches), ranked by [`Ranker`]; a hit matching
/// in `STRING` fields gets bucket `base + 1`, others `base`.
async fn sqlite_tier<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    frequencies: &Frequencies,
    view: &View,
    tier: &Tier<'_>,
    after: Option<&Cursor>,
) -> AppResult<Vec<Found>> {
    let mut rows = candidates(db, req, &tier.fts).await?;
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    if rows.len() >= usize::try_from(CANDIDATES).unwrap_or(usize::MAX) {
        let strong = format!("{{strong}} : {} AND ({})", tier.include, tier.fts);
        let seen: std::collections::HashSet<String> =
            rows.iter().map(|c| c.record_id.clone()).collect();
        rows.extend(
            candidates(db, req, &strong)
                .await?
                .into_iter()
                .filter(|c| !seen.contains(&c.record_id)),
        );
    }
    let no_variants = Vec::new();
    let variants = tier.expansions.unwrap_or(&no_variants);
    let prefix = tag_prefix(view.tag)?;
    let mut df = Vec::with_capacity(req.query.include.len());
    for (i, clause) in req.query.include.iter().enumerate() {
        let text = fts5_clause(
            &prefix,
            clause,
            variants.get(i).map_or(&[][..], Vec::as_slice),
        );
        df.push(frequency(db, frequencies, view.tag, text).await?);
    }
    let docs = u64::try_from(view.docs).unwrap_or(0);
    let words = u64::try_from(view.words).unwrap_or(0);
    let ranker = Ranker::new(req.query, variants, &df, docs, words);
    let mut found = Vec::with_capacity(rows.len());
    for c in rows {
        let scored = ranker.score(&c.strong, &c.weak);
        let hit = (
            tier.base + i64::from(scored.strong),
            scored.rank,
            c.record_id,
        );
        if after.is_none_or(|c| is_after(&hit, c)) {
            found.push(hit);
        }
    }
    found.sort_by(|a, b| {
        b.0.cmp(&a.0)
            .then(b.1.total_cmp(&a.1))
            .then_with(|| a.2.cmp(&b.2))
    });
    Ok(found)
}

/// A matching document: its record and folded words.
struct Candidate {
    record_id: String,
    strong: String,
    weak: String,
}

/// The newest [`CANDIDATES`] documents of the request's view (and models)
/// matching `fts`.
async fn candidates<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    fts: &str,
) -> AppResult<Vec<Candidate>> {
    let backend = db.get_database_backend();
    let mut sql = Sql {
        backend,
        text: String::from(
            // CROSS JOIN: the planner must start from the match, which FTS5
            // streams newest first and stops at the limit.
            "SELECT d.record_id AS record_id, d.strong AS strong, d.weak AS weak \
             FROM search_fts CROSS JOIN search_docs d ON d.id = search_fts.rowid \
             WHERE search_fts MATCH ",
        ),
        values: Vec::new(),
    };
    sql.bind(fts.to_owned())
        .push(" AND d.project_id = ")
        .bind(req.project_id)
        .push(" AND d.view = ")
        .bind(req.side.code());
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
    sql.push(" ORDER BY search_fts.rowid DESC LIMIT ")
        .bind(CANDIDATES);
    let rows = db
        .query_all(Statement::from_sql_and_values(
            backend, sql.text, sql.values,
        ))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Candidate {
                record_id: row.try_get("", "record_id")?,
                strong: row.try_get("", "strong")?,
                weak: row.try_get("", "weak")?,
            })
        })
        .collect()
}

/// How many of the view's documents match `clause` (FTS5 text), from the
/// cache or counted.
async fn frequency<C: ConnectionTrait>(
    db: &C,
    frequencies: &Frequencies,
    tag: i64,
    clause: String,
) -> AppResult<u64> {
    let key = (tag, clause);
    if let Some(n) = frequencies.0.get(&key) {
        return Ok(n);
    }
    let row = db
        .query_one(Statement::from_sql_and_values(
            db.get_database_backend(),
            "SELECT count(*) AS n FROM search_fts WHERE search_fts MATCH ?",
            [key.1.clone().into()],
        ))
        .await?;
    let n: i64 = match row {
        Some(row) => row.try_get("", "n")?,
        None => 0,
    };
    let n = u64::try_from(n).unwrap_or(0);
    frequencies.0.insert(key, n);
    Ok(n)
}

/// One PostgreSQL tier's hits (`ex`: 1 exact, 0 typo) after the cursor,
/// best first.
async fn pg_tier<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    tsquery: &str,
    ex: i64,
    after: Option<&Cursor>,
    limit: i64,
) -> AppResult<Vec<Found>> {
    let backend = db.get_database_backend();
    let mut sql = Sql {
        backend,
        text: String::from("WITH h AS MATERIALIZED (SELECT d.record_id AS record_id, "),
        values: Vec::new(),
    };
    sql.push(&format!("ts_rank_cd({PG_WEIGHTS}::float4[], d.tsv, "))
        .bind(tsquery.to_owned())
        .push(&format!("::tsquery)::float8 AS r, {ex}::bigint AS ex"))
        .push(" FROM search_docs d WHERE d.project_id = ")
        .bind(req.project_id)
        .push(" AND d.view = ")
        .bind(req.side.code())
        .push(" AND d.tsv @@ ")
        .bind(tsquery.to_owned())
        .push("::tsquery");
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
    sql.push(") SELECT record_id, r, ex FROM h");
    if let Some(c) = after {
        let r = f64::from_bits(c.r);
        sql.push(" WHERE ex < ")
            .bind(c.e)
            .push(" OR (ex = ")
            .bind(c.e)
            .push(" AND (r < ")
            .bind(r)
            .push(" OR (r = ")
            .bind(r)
            .push(" AND record_id > ")
            .bind(c.id.clone())
            .push(")))");
    }
    sql.push(" ORDER BY r DESC, record_id ASC LIMIT ")
        .bind(limit);
    let rows = db
        .query_all(Statement::from_sql_and_values(
            backend, sql.text, sql.values,
        ))
        .await?;
    let mut found = Vec::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("", "record_id")?;
        let r: f64 = row.try_get("", "r")?;
        let e: i64 = row.try_get("", "ex")?;
        found.push((e, r, id));
    }
    Ok(found)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

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
