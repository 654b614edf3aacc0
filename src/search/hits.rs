//! Ranked hits: the query compiled for the database, run within the
//! project and view (and models), ordered by (exact match, rank, id), one
//! page after a cursor, within the first [`MAX_HITS`].
//!
//! Rank is BM25 on SQLite (FTS5 `bm25`, `STRING` column weighted
//! [`STRONG_WEIGHT`] times `TEXT`) and cover density on PostgreSQL
//! (`ts_rank_cd`, weight A for `STRING`, B for `TEXT`). A hit that matches
//! without typo variants ranks above every hit that needs one. The score
//! is `exact + rank / (1 + rank)`: in `[0, 2)`, higher is better.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value as DbValue};
use serde::{Deserialize, Serialize};

use super::grammar::{Expansions, Query};
use super::index::Side;
use crate::error::{AppError, AppResult};

/// The most hits reachable through cursors.
pub const MAX_HITS: i64 = 1_000;
/// How much a `STRING` match counts against a `TEXT` one (SQLite).
pub const STRONG_WEIGHT: f64 = 5.0;
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
    /// 1 for an exact match, 0 for a typo match.
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
        if !(1..=MAX_HITS).contains(&c.n) || !(0..=1).contains(&c.e) {
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

/// One page of hits of `req`.
pub async fn hits<C: ConnectionTrait>(db: &C, req: HitsRequest<'_>) -> AppResult<HitPage> {
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
    // Exact hits rank above typo hits: the exact query first; the typo
    // variants (without the exact hits) only when the exact hits do not
    // fill the page, so a query with enough exact hits never pays for them.
    let mut found = Vec::new();
    let in_exact_tier = after.as_ref().is_none_or(|c| c.e == 1);
    if in_exact_tier || req.expansions.is_none() {
        let (fts, ts) = (req.query.fts5(None), req.query.tsquery(None));
        found = tier(db, &req, &fts, &ts, 1, after.as_ref(), page + 1).await?;
    }
    if let Some(expansions) = req.expansions {
        let want = page + 1 - i64::try_from(found.len()).unwrap_or(i64::MAX);
        if want > 0 {
            let fts = format!(
                "({}) NOT ({})",
                req.query.fts5(Some(expansions)),
                req.query.fts5(None)
            );
            let ts = format!(
                "({}) & !({})",
                req.query.tsquery(Some(expansions)),
                req.query.tsquery(None)
            );
            found.extend(tier(db, &req, &fts, &ts, 0, after.as_ref(), want).await?);
        }
    }
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
                score: if e > 0 { 1.0 } else { 0.0 } + r / (1.0 + r),
            }
        })
        .collect();
    Ok(HitPage {
        hits,
        has_next_page,
        end_cursor,
    })
}

/// One tier's hits (`ex`: 1 exact, 0 typo) after the cursor, best first:
/// `(ex, rank, record id)`.
async fn tier<C: ConnectionTrait>(
    db: &C,
    req: &HitsRequest<'_>,
    fts: &str,
    tsquery: &str,
    ex: i64,
    after: Option<&Cursor>,
    limit: i64,
) -> AppResult<Vec<(i64, f64, String)>> {
    let backend = db.get_database_backend();
    let mut sql = Sql {
        backend,
        text: String::from("WITH h AS MATERIALIZED (SELECT d.record_id AS record_id, "),
        values: Vec::new(),
    };
    if backend == DbBackend::Postgres {
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
    } else {
        sql.push(&format!(
            "-bm25(search_fts, {STRONG_WEIGHT:.1}, 1.0) AS r, {ex} AS ex"
        ))
        .push(
            // CROSS JOIN: SQLite's planner must start from the match (else
            // it walks the project's documents, one match each).
            " FROM search_fts CROSS JOIN search_docs d ON d.id = search_fts.rowid \
             WHERE search_fts MATCH ",
        )
        .bind(fts.to_owned())
        .push(" AND d.project_id = ")
        .bind(req.project_id)
        .push(" AND d.view = ")
        .bind(req.side.code());
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
