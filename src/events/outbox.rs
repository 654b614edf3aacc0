//! Writing events (inside the change's transaction) and pruning old ones
//! (off the request path, from the dispatcher's housekeeping).

use chrono::{DateTime, Duration, Utc};
use entity::webhook_deliveries::{self, DeliveryStatus};
use entity::{event_heads, events, records};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait, Statement,
};

use super::{EventType, NewEvent, RETENTION_DAYS};

/// Writes one event in the caller's transaction; call it last, just before
/// the commit (see the module doc of [`crate::events`] for why the head row
/// comes first). A transaction that rolls back takes its event with it.
pub async fn append<C: ConnectionTrait>(txn: &C, event: &NewEvent<'_>) -> Result<(), DbErr> {
    // SQLite has one writer at a time: ids follow commits without the lock.
    if txn.get_database_backend() == DbBackend::Postgres {
        lock_head(txn, event.project_id).await?;
    }
    events::Entity::insert(event_row(event))
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// Runs `write` (a statement of the change) and appends `event`: on SQLite
/// in one round trip to the database (two statements, one execution);
/// elsewhere `write`, then [`append`].
pub async fn write_then_append<C: ConnectionTrait>(
    txn: &C,
    write: Statement,
    event: &NewEvent<'_>,
) -> Result<(), DbErr> {
    let backend = txn.get_database_backend();
    if backend != DbBackend::Sqlite {
        txn.execute(write).await?;
        return append(txn, event).await;
    }
    let insert = events::Entity::insert(event_row(event)).build(backend);
    let mut values = write.values.map(|v| v.0).unwrap_or_default();
    values.extend(insert.values.map(|v| v.0).unwrap_or_default());
    let sql = format!("{}; {}", write.sql, insert.sql);
    txn.execute(Statement::from_sql_and_values(backend, sql, values))
        .await?;
    Ok(())
}

fn event_row(event: &NewEvent<'_>) -> events::ActiveModel {
    events::ActiveModel {
        id: NotSet,
        project_id: Set(event.project_id.to_owned()),
        event_type: Set(event.event_type.as_str().to_owned()),
        model_key: Set(event.model_key.map(str::to_owned)),
        record_id: Set(event.record_id.map(str::to_owned)),
        file_id: Set(event.file_id.map(str::to_owned)),
        version: Set(event.version),
        live: Set(event.live),
        created_at: Set(event.at),
    }
}

/// Moves the project's head row, taking its row lock until the commit: the
/// project's writers pass here one at a time, each after the previous one
/// committed, so the ids they take next follow the commits.
async fn lock_head<C: ConnectionTrait>(txn: &C, project_id: &str) -> Result<(), DbErr> {
    use event_heads::{Column, Entity};
    let first = event_heads::ActiveModel {
        project_id: Set(project_id.to_owned()),
        last_seq: Set(1),
    };
    Entity::insert(first)
        .on_conflict(
            OnConflict::column(Column::ProjectId)
                .value(Column::LastSeq, Expr::col((Entity, Column::LastSeq)).add(1))
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The event of a record saved from `before` to `after` (published,
/// unpublished or updated: see [`NewEvent::record_changed`]).
pub async fn record_changed<C: ConnectionTrait>(
    txn: &C,
    before: &records::Model,
    after: &records::Model,
    model_key: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    append(txn, &NewEvent::record_changed(before, after, model_key, at)).await
}

/// `record.deleted` of `row` (as it was).
pub async fn record_deleted<C: ConnectionTrait>(
    txn: &C,
    row: &records::Model,
    model_key: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    append(txn, &NewEvent::record_deleted(row, model_key, at)).await
}

/// `model.created`, `model.updated` or `model.deleted` (`event_type`) of
/// the model `key`.
pub async fn model_changed<C: ConnectionTrait>(
    txn: &C,
    project_id: &str,
    event_type: EventType,
    key: &str,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    append(txn, &NewEvent::model(project_id, event_type, key, at)).await
}

/// Rows deleted per statement while pruning: short transactions, so writers
/// never wait long behind the pruning.
const PRUNE_BATCH: u64 = 1000;

/// Deletes events older than the retention, and finished deliveries older
/// than it; returns how many rows went. Pending deliveries stay (their
/// retries end within days anyway).
pub async fn prune<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let before = now - Duration::days(RETENTION_DAYS);
    let mut total = 0;
    loop {
        let ids: Vec<i64> = events::Entity::find()
            .select_only()
            .column(events::Column::Id)
            .filter(events::Column::CreatedAt.lt(before))
            .order_by_asc(events::Column::Id)
            .limit(PRUNE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let n = ids.len() as u64;
        events::Entity::delete_many()
            .filter(events::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        total += n;
        if n < PRUNE_BATCH {
            break;
        }
    }
    loop {
        let ids: Vec<String> = webhook_deliveries::Entity::find()
            .select_only()
            .column(webhook_deliveries::Column::Id)
            .filter(webhook_deliveries::Column::CreatedAt.lt(before))
            .filter(webhook_deliveries::Column::Status.ne(DeliveryStatus::Pending))
            .limit(PRUNE_BATCH)
            .into_tuple()
            .all(db)
            .await?;
        if ids.is_empty() {
            break;
        }
        let n = ids.len() as u64;
        webhook_deliveries::Entity::delete_many()
            .filter(webhook_deliveries::Column::Id.is_in(ids))
            .exec(db)
            .await?;
        total += n;
        if n < PRUNE_BATCH {
            break;
        }
    }
    Ok(total)
}
