//! Full-text search over records (SPEC §8): the index kept by the record
//! writes, the query grammar, typo tolerance, ranking, snippets. Below
//! `content` in the layers (content's writes call [`index`], as they call
//! `events`); the `search` read itself, with its view rules and record
//! loading, is `crate::content::search`.
//!
//! | module | holds |
//! |---|---|
//! | [`bm25`] | ranking: BM25 from the candidates' words, the same on both databases |
//! | [`fold`] | the one tokenizer: words, case and diacritics folded |
//! | [`grammar`] | the query grammar, compiled to FTS5 `MATCH` text and a `tsquery` |
//! | [`index`] | one document per record per view, written in the change's transaction |
//! | [`typo`] | each view's vocabulary as an `fst` set, cached per project; Levenshtein variants |
//! | [`hits`] | ranked hits of one page: the newest 1,000 candidates of a tier (their words kept by document id), buckets, then BM25; cursors within the first 1,000 |
//! | [`snippet`] | highlights built from the record's data with `<mark>` |
//! | [`reindex`] | rebuilding a project's index (`quire admin search reindex`, and after the migration) |

pub mod bm25;
pub mod fold;
pub mod grammar;
pub mod hits;
pub mod index;
pub mod reindex;
pub mod snippet;
pub mod typo;

use sea_orm::ConnectionTrait;

use crate::error::{AppError, AppResult};

pub use hits::{Hit, HitPage};
pub use index::{Side, TextFields};
pub use snippet::{Highlight, Matcher};

/// The most hits one page holds.
pub const MAX_LIMIT: i64 = 100;

/// What a search asks for, once the view and models are settled.
pub struct SearchRequest<'a> {
    pub project_id: &'a str,
    pub side: Side,
    /// Only records of these models (ids), when given.
    pub model_ids: Option<&'a [String]>,
    pub query: &'a str,
    pub limit: i64,
    pub after: Option<&'a str>,
}

/// One page of hits, and what marks the matched words in them.
pub struct Found {
    pub page: HitPage,
    pub matcher: Matcher,
}

/// The search engine of an instance: the cached vocabularies and
/// ranking statistics.
#[derive(Default)]
pub struct Searcher {
    typos: typo::Typos,
    stats: hits::Stats,
}

impl Searcher {
    /// One page of hits of `req`: a malformed query, limit or cursor is
    /// `BAD_USER_INPUT`.
    pub async fn find<C: ConnectionTrait>(
        &self,
        db: &C,
        req: SearchRequest<'_>,
    ) -> AppResult<Found> {
        if !(1..=MAX_LIMIT).contains(&req.limit) {
            return Err(AppError::bad_input(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let mut query = grammar::parse(req.query)?;
        let sqlite = db.get_database_backend() == sea_orm::DbBackend::Sqlite;
        let view = hits::view(db, req.project_id, req.side, &self.stats).await?;
        let version = view.as_ref().and_then(|v| v.vocab_version);
        let expansions = self
            .typos
            .expand(db, req.project_id, req.side, version, &mut query, sqlite)
            .await?;
        let page = hits::hits(
            db,
            hits::HitsRequest {
                project_id: req.project_id,
                view: view.as_ref(),
                side: req.side,
                model_ids: req.model_ids,
                query: &query,
                expansions: expansions.as_ref(),
                limit: req.limit,
                after: req.after,
            },
            &self.stats,
        )
        .await?;
        Ok(Found {
            page,
            matcher: Matcher::new(&query, expansions.as_ref()),
        })
    }
}
