//! Record versions (SPEC §11): every publish keeps a published version,
//! every create and update a draft version (the latest [`DRAFT_VERSIONS_KEPT`]
//! per record; published versions are all kept). Each is written by
//! [`kept`] in the transaction of the write that made it, so a version
//! exists exactly when its write committed; a deleted record's versions go
//! with it (foreign key).
//!
//! A version is named by the record's version number right after its write.
//! Restoring one (`crate::schedules`) copies its data into the draft, which
//! is an update (and so a new draft version).

use chrono::{DateTime, Utc};
use entity::record_versions;
use entity::records::{self, RecordStatus};
use sea_orm::sea_query::{Expr, Query, SimpleExpr};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DeleteMany, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, Statement,
};

use crate::error::AppResult;

/// Draft versions kept per record; older ones are deleted as new ones come.
pub const DRAFT_VERSIONS_KEPT: u64 = 50;

/// Keeps the version a record write made, `before` the record as it was
/// (`None` for a create), `after` as written: a publish keeps the published
/// data, a create or an update the draft; an unpublish keeps nothing (no
/// data changed).
pub async fn kept<C: ConnectionTrait>(
    db: &C,
    before: Option<&records::Model>,
    after: &records::Model,
    now: DateTime<Utc>,
) -> AppResult<()> {
    // Only a publish makes a record `Published`; only an unpublish takes a
    // published one back to `Draft`.
    let published = after.status == RecordStatus::Published;
    let unpublished = after.status == RecordStatus::Draft
        && before.is_some_and(|b| b.status != RecordStatus::Draft);
    if unpublished {
        return Ok(());
    }
    let data = if published {
        after.published_data.clone().unwrap_or_default()
    } else {
        after.draft_data.clone()
    };
    let backend = db.get_database_backend();
    let insert = record_versions::Entity::insert(record_versions::ActiveModel {
        record_id: Set(after.id.clone()),
        version: Set(after.version),
        project_id: Set(after.project_id.clone()),
        published: Set(published),
        data: Set(data),
        created_at: Set(now),
    })
    .build(backend);
    // A record at version 50 or below cannot hold more than 50 drafts.
    if published || after.version <= DRAFT_VERSIONS_KEPT as i64 {
        db.execute(insert).await?;
        return Ok(());
    }
    let prune = prune_drafts(&after.id).build(backend);
    if backend == DbBackend::Sqlite {
        // One round trip: two statements, one execution.
        let mut values = insert.values.map(|v| v.0).unwrap_or_default();
        values.extend(prune.values.map(|v| v.0).unwrap_or_default());
        let sql = format!("{}; {}", insert.sql, prune.sql);
        db.execute(Statement::from_sql_and_values(backend, sql, values))
            .await?;
    } else {
        db.execute(insert).await?;
        db.execute(prune).await?;
    }
    Ok(())
}

/// The delete of the record's draft versions older than the newest
/// [`DRAFT_VERSIONS_KEPT`] (one indexed statement; nothing while the record
/// has fewer).
fn prune_drafts(record_id: &str) -> DeleteMany<record_versions::Entity> {
    let oldest_dropped = Query::select()
        .column(record_versions::Column::Version)
        .from(record_versions::Entity)
        .and_where(record_versions::Column::RecordId.eq(record_id))
        .and_where(record_versions::Column::Published.eq(false))
        .order_by(record_versions::Column::Version, sea_orm::Order::Desc)
        .limit(1)
        .offset(DRAFT_VERSIONS_KEPT)
        .to_owned();
    record_versions::Entity::delete_many()
        .filter(record_versions::Column::RecordId.eq(record_id))
        .filter(record_versions::Column::Published.eq(false))
        .filter(
            Expr::col(record_versions::Column::Version).lte(SimpleExpr::SubQuery(
                None,
                Box::new(oldest_dropped.into_sub_query_statement()),
            )),
        )
}

/// One page of a record's versions, newest first: the published ones only,
/// or (`drafts`) every kept one. `after` is the version number that ended
/// the previous page. Returns the page and whether another follows.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    record_id: &str,
    drafts: bool,
    limit: u64,
    after: Option<i64>,
) -> AppResult<(Vec<record_versions::Model>, bool)> {
    let mut q = record_versions::Entity::find()
        .filter(record_versions::Column::ProjectId.eq(project_id))
        .filter(record_versions::Column::RecordId.eq(record_id));
    if !drafts {
        q = q.filter(record_versions::Column::Published.eq(true));
    }
    if let Some(after) = after {
        q = q.filter(record_versions::Column::Version.lt(after));
    }
    let mut rows = q
        .order_by_desc(record_versions::Column::Version)
        .limit(limit + 1)
        .all(db)
        .await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}
