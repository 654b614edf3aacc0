//! The `search` read (SPEC §8): the view the key may have (as `records`),
//! `modelKeys` checked against the project's models, the hits from
//! [`crate::search`], then the records of the page read in that view (a hit
//! whose record left the view meanwhile is dropped) and their highlights
//! built from the view's data.

use std::collections::HashMap;

use entity::{models, records};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, JoinType, QueryFilter, QuerySelect};
use serde_json::Value;

use super::budget::AnswerBudget;
use super::catalog::Catalog;
use super::records::{RecordData, RecordOut};
use super::View;
use crate::auth::principal::Principal;
use crate::error::{AppError, AppResult};
use crate::search::{Highlight, SearchRequest, Searcher, Side, TextFields};

/// What a `search` read asks for.
#[derive(Clone, Debug)]
pub struct SearchQuery {
    pub query: String,
    pub model_keys: Option<Vec<String>>,
    pub preview: bool,
    pub limit: i64,
    pub after: Option<String>,
}

/// One hit: the record in the view searched, its score, its highlights.
pub struct SearchHit {
    pub record: RecordOut,
    pub score: f64,
    pub highlights: Vec<Highlight>,
}

/// One page of hits.
pub struct SearchPage {
    pub items: Vec<SearchHit>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// Runs a search for `p`; the records' data is charged to `budget`.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    catalog: &Catalog,
    searcher: &Searcher,
    p: &Principal,
    q: SearchQuery,
    budget: &AnswerBudget,
) -> AppResult<SearchPage> {
    let view = View::for_request(p, q.preview)?;
    let side = match view {
        View::Published => Side::Published,
        View::Draft => Side::Draft,
    };
    let model_ids = match &q.model_keys {
        None => None,
        Some(keys) => {
            let mut ids = Vec::with_capacity(keys.len());
            for key in keys {
                match catalog.model(db, &p.project_id, key).await {
                    Ok(model) => ids.push(model.row.id.clone()),
                    Err(AppError::NotFound(_)) => {
                        return Err(AppError::bad_field(
                            "modelKeys",
                            format!("unknown model key \"{key}\""),
                        ))
                    }
                    Err(e) => return Err(e),
                }
            }
            Some(ids)
        }
    };
    let found = searcher
        .find(
            db,
            SearchRequest {
                project_id: &p.project_id,
                side,
                model_ids: model_ids.as_deref(),
                query: &q.query,
                limit: q.limit,
                after: q.after.as_deref(),
            },
        )
        .await?;
    let ids: Vec<String> = found
        .page
        .hits
        .iter()
        .map(|h| h.record_id.clone())
        .collect();
    // The records with their models, in one statement.
    let mut rows: HashMap<String, (records::Model, models::Model)> = if ids.is_empty() {
        HashMap::new()
    } else {
        let to_model = records::Entity::belongs_to(models::Entity)
            .from(records::Column::ModelId)
            .to(models::Column::Id)
            .into();
        let mut select = records::Entity::find()
            .select_also(models::Entity)
            .join(JoinType::InnerJoin, to_model)
            .filter(records::Column::ProjectId.eq(&p.project_id))
            .filter(records::Column::Id.is_in(ids));
        if view == View::Published {
            select = select.filter(records::Column::PublishedAt.is_not_null());
        }
        select
            .all(db)
            .await?
            .into_iter()
            .filter_map(|(r, m)| Some((r.id.clone(), (r, m?))))
            .collect()
    };
    let mut items = Vec::with_capacity(found.page.hits.len());
    // Each model's text fields, read once per page (the join repeats the
    // model on each of its records).
    let mut text_fields: HashMap<String, TextFields> = HashMap::new();
    for hit in found.page.hits {
        let Some((mut row, model)) = rows.remove(&hit.record_id) else {
            continue;
        };
        let fields = text_fields
            .entry(model.id.clone())
            .or_insert_with(|| TextFields::of(&model));
        let data = match view {
            View::Published => row.published_data.take().unwrap_or(Value::Null),
            View::Draft => std::mem::take(&mut row.draft_data),
        };
        row.draft_data = Value::Null;
        row.published_data = None;
        budget
            .charge(serde_json::to_vec(&data).map_or(0, |v| v.len()))
            .await?;
        let highlights = crate::search::snippet::highlights(&found.matcher, fields, &data);
        items.push(SearchHit {
            record: RecordOut {
                row,
                model_key: model.key,
                view,
                data: RecordData::Tree(data),
            },
            score: hit.score,
            highlights,
        });
    }
    Ok(SearchPage {
        items,
        has_next_page: found.page.has_next_page,
        end_cursor: found.page.end_cursor,
    })
}
