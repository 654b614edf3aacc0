//! The `search` field (SPEC §8). The rules live in
//! `crate::content::search` and `crate::search`.

use std::sync::Arc;

use async_graphql::{Context, Object, SimpleObject};

use super::content::Record;
use super::types::PageInfo;
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::content::budget::AnswerBudget;
use crate::content::query::DEFAULT_LIMIT;
use crate::content::search::{SearchHit as HitOut, SearchQuery as Request};

#[derive(Default)]
pub struct SearchQuery;

/// One field's matched text: the matched words wrapped in
/// `<mark>`…`</mark>`, everything else HTML-escaped.
#[derive(SimpleObject)]
pub struct SearchHighlight {
    field: String,
    snippet: String,
}

/// One search result.
pub struct SearchHit(HitOut, Vec<SearchHighlight>);

#[Object]
impl SearchHit {
    /// The record, in the view searched.
    async fn record(&self) -> Record {
        Record::from(self.0.record.clone())
    }
    /// Higher is better: exact matches above typo matches.
    async fn score(&self) -> f64 {
        self.0.score
    }
    /// One per `STRING` or `TEXT` field where the query matched.
    async fn highlights(&self) -> &[SearchHighlight] {
        &self.1
    }
}

/// One page of search results, best first.
#[derive(SimpleObject)]
pub struct SearchPage {
    items: Vec<SearchHit>,
    page_info: PageInfo,
}

#[Object]
impl SearchQuery {
    /// Full-text search over the `STRING` and `TEXT` fields of records in
    /// the published view (`preview` as for `records`). Words are ANDed,
    /// `"a phrase"` matches words next to each other, `-word` excludes, the
    /// last word also matches as a prefix; case and diacritics are ignored;
    /// words of 5 or more characters match with one typo, 9 or more with
    /// two. At most 256 characters and 10 words; the first 1,000 hits.
    #[graphql(guard = "RequireScope(Scope::SearchRead).and(RequireScope(Scope::RecordsRead))")]
    async fn search(
        &self,
        ctx: &Context<'_>,
        query: String,
        model_keys: Option<Vec<String>>,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
        #[graphql(default_with = "Some(DEFAULT_LIMIT)")] limit: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<SearchPage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let budget = ctx
            .data_opt::<Arc<AnswerBudget>>()
            .cloned()
            .unwrap_or_else(|| Arc::new(AnswerBudget::new(usize::MAX)));
        let req = Request {
            query,
            model_keys,
            preview: preview.unwrap_or(false),
            limit: limit.unwrap_or(DEFAULT_LIMIT),
            after,
        };
        let page = app.content.search(p, &app.searcher, req, &budget).await?;
        Ok(SearchPage {
            items: page
                .items
                .into_iter()
                .map(|mut hit| {
                    let highlights = std::mem::take(&mut hit.highlights)
                        .into_iter()
                        .map(|h| SearchHighlight {
                            field: h.field,
                            snippet: h.snippet,
                        })
                        .collect();
                    SearchHit(hit, highlights)
                })
                .collect(),
            page_info: PageInfo {
                has_next_page: page.has_next_page,
                end_cursor: page.end_cursor,
            },
        })
    }
}
