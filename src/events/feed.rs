//! Reading a project's events after a cursor, as a key may see them: LIVE
//! keys only the events that changed the published view, TEST keys all.

use entity::events;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::EventType;
use crate::auth::key::KeyMode;
use crate::auth::principal::Principal;
use crate::error::{AppError, AppResult};

/// Default page size of `events`.
pub const DEFAULT_LIMIT: i64 = 50;
/// Largest page of `events`.
pub const MAX_LIMIT: i64 = 500;

/// What a feed read asks for.
#[derive(Clone, Debug)]
pub struct FeedQuery {
    /// Events with a larger id than this (`None`: from the oldest kept).
    pub after: Option<i64>,
    pub limit: u64,
    /// Only these types (`None`: every type).
    pub types: Option<Vec<EventType>>,
    /// Only events that changed the published view.
    pub live_only: bool,
}

/// Whether `p` sees only published-view events (LIVE keys).
pub fn live_only(p: &Principal) -> bool {
    p.mode == KeyMode::Live
}

/// Parses an `after` cursor (an event id).
pub fn parse_cursor(after: &str) -> AppResult<i64> {
    after
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| {
            AppError::bad_field(
                "after",
                "after must be a cursor from an earlier page (an event id)",
            )
        })
}

/// Checks a page size.
pub fn check_limit(limit: i64) -> AppResult<u64> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit as u64)
    } else {
        Err(AppError::bad_field(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Up to `q.limit` events of the project after `q.after`, oldest first.
pub async fn read<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    q: &FeedQuery,
) -> Result<Vec<events::Model>, DbErr> {
    let mut select = events::Entity::find().filter(events::Column::ProjectId.eq(project_id));
    if let Some(after) = q.after {
        select = select.filter(events::Column::Id.gt(after));
    }
    if q.live_only {
        select = select.filter(events::Column::Live.eq(true));
    }
    if let Some(types) = &q.types {
        select = select.filter(events::Column::EventType.is_in(types.iter().map(|t| t.as_str())));
    }
    select
        .order_by_asc(events::Column::Id)
        .limit(q.limit)
        .all(db)
        .await
}

/// The project's latest event id (0 when it has none): where a stream
/// without `Last-Event-ID` starts.
pub async fn latest_id<C: ConnectionTrait>(db: &C, project_id: &str) -> Result<i64, DbErr> {
    let max: Option<Option<i64>> = events::Entity::find()
        .select_only()
        .column_as(events::Column::Id.max(), "max_id")
        .filter(events::Column::ProjectId.eq(project_id))
        .into_tuple()
        .one(db)
        .await?;
    Ok(max.flatten().unwrap_or(0))
}
