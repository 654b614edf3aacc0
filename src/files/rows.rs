//! File rows: the statements of each file change, run in a transaction
//! the caller begins and commits (like [`crate::content::records`]), each
//! with its event ([`crate::events::append`]) in the same transaction.

use chrono::{DateTime, Utc};
use entity::{files, models, records};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QuerySelect,
};
use serde::Deserialize;
use serde_json::Value;

use crate::db::grab_write_lock;
use crate::error::{AppError, AppResult};
use crate::events::{EventType, NewEvent};

/// The answer when a file id names nothing the caller may see.
pub fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no file with id \"{id}\""))
}

async fn event<C: ConnectionTrait>(
    txn: &C,
    row: &files::Model,
    event_type: EventType,
    live: bool,
    at: DateTime<Utc>,
) -> AppResult<()> {
    let e = NewEvent {
        project_id: &row.project_id,
        event_type,
        model_key: None,
        record_id: None,
        file_id: Some(&row.id),
        version: None,
        live,
        at,
    };
    crate::events::append(txn, &e).await?;
    Ok(())
}

/// Inserts a new (draft) file and its `file.created`.
pub async fn insert(txn: &DatabaseTransaction, row: files::Model) -> AppResult<files::Model> {
    grab_write_lock(txn).await?;
    files::Entity::insert(files::ActiveModel {
        id: Set(row.id.clone()),
        project_id: Set(row.project_id.clone()),
        filename: Set(row.filename.clone()),
        content_type: Set(row.content_type.clone()),
        size: Set(row.size),
        sha256: Set(row.sha256.clone()),
        width: Set(row.width),
        height: Set(row.height),
        alt: Set(row.alt.clone()),
        created_at: Set(row.created_at),
        updated_at: Set(row.updated_at),
        published_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    event(txn, &row, EventType::FileCreated, false, row.created_at).await?;
    Ok(row)
}

/// A file of the project, for a write.
async fn load(txn: &DatabaseTransaction, project_id: &str, id: &str) -> AppResult<files::Model> {
    grab_write_lock(txn).await?;
    let mut q =
        files::Entity::find_by_id(id.to_owned()).filter(files::Column::ProjectId.eq(project_id));
    // On PostgreSQL the row stays locked until the commit. A record write
    // that names the file holds it FOR SHARE ([`exists`]), so a delete and
    // such a write wait for each other instead of both passing their checks
    // (a record naming a deleted file). SQLite has one writer anyway.
    if txn.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(txn).await?.ok_or_else(|| not_found(id))
}

/// Changes a file's filename and/or alt text (`file.updated`).
pub async fn update(
    txn: &DatabaseTransaction,
    project_id: &str,
    id: &str,
    filename: Option<String>,
    alt: Option<String>,
    now: DateTime<Utc>,
) -> AppResult<files::Model> {
    let mut row = load(txn, project_id, id).await?;
    if filename.is_none() && alt.is_none() {
        return Ok(row);
    }
    if let Some(f) = filename {
        row.filename = f;
    }
    if let Some(a) = alt {
        row.alt = Some(a);
    }
    row.updated_at = now;
    files::Entity::update_many()
        .col_expr(files::Column::Filename, Expr::value(row.filename.clone()))
        .col_expr(files::Column::Alt, Expr::value(row.alt.clone()))
        .col_expr(files::Column::UpdatedAt, Expr::value(now))
        .filter(files::Column::Id.eq(&row.id))
        .exec(txn)
        .await?;
    let live = row.published_at.is_some();
    event(txn, &row, EventType::FileUpdated, live, now).await?;
    Ok(row)
}

/// Publishes a file (`file.published`); a published file stays as it is.
pub async fn publish(
    txn: &DatabaseTransaction,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<files::Model> {
    let row = load(txn, project_id, id).await?;
    set_published(txn, row, Some(now), now).await
}

/// Unpublishes a file (`file.unpublished`); a draft stays as it is.
pub async fn unpublish(
    txn: &DatabaseTransaction,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<files::Model> {
    let row = load(txn, project_id, id).await?;
    set_published(txn, row, None, now).await
}

async fn set_published<C: ConnectionTrait>(
    txn: &C,
    mut row: files::Model,
    published_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> AppResult<files::Model> {
    if row.published_at.is_some() == published_at.is_some() {
        return Ok(row);
    }
    row.published_at = published_at;
    row.updated_at = now;
    files::Entity::update_many()
        .col_expr(files::Column::PublishedAt, Expr::value(published_at))
        .col_expr(files::Column::UpdatedAt, Expr::value(now))
        .filter(files::Column::Id.eq(&row.id))
        .exec(txn)
        .await?;
    let t = if published_at.is_some() {
        EventType::FilePublished
    } else {
        EventType::FileUnpublished
    };
    event(txn, &row, t, true, now).await?;
    Ok(row)
}

/// Publishes the files of `project_id` among `ids` that are drafts (the
/// files a record being published names); returns those it published.
/// Ids of no file of the project are passed over.
pub async fn publish_named<C: ConnectionTrait>(
    txn: &C,
    project_id: &str,
    ids: &[String],
    now: DateTime<Utc>,
) -> AppResult<Vec<String>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let drafts = files::Entity::find()
        .filter(files::Column::ProjectId.eq(project_id))
        .filter(files::Column::Id.is_in(ids.iter().cloned()))
        .filter(files::Column::PublishedAt.is_null())
        .all(txn)
        .await?;
    let mut published = Vec::new();
    for row in drafts {
        let row = set_published(txn, row, Some(now), now).await?;
        published.push(row.id);
    }
    Ok(published)
}

/// Deletes a file's row (`file.deleted`, seen by LIVE keys when it was
/// published); a file a record names is `CONFLICT`, naming the record.
/// The caller removes the bytes after the commit.
pub async fn delete(
    txn: &DatabaseTransaction,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<files::Model> {
    let row = load(txn, project_id, id).await?;
    if let Some(record_id) = record_naming(txn, project_id, id).await? {
        return Err(AppError::Conflict(format!(
            "file \"{id}\" is named by record \"{record_id}\"; change that record first"
        )));
    }
    files::Entity::delete_by_id(row.id.clone())
        .exec(txn)
        .await?;
    let live = row.published_at.is_some();
    event(txn, &row, EventType::FileDeleted, live, now).await?;
    Ok(row)
}

/// Whether `id` is a file of `project_id` (what a `FILE` field may hold);
/// on PostgreSQL the row is then locked `FOR SHARE` until the commit.
pub async fn exists<C: ConnectionTrait>(db: &C, project_id: &str, id: &str) -> AppResult<bool> {
    let mut q = files::Entity::find_by_id(id.to_owned())
        .select_only()
        .column(files::Column::Id)
        .filter(files::Column::ProjectId.eq(project_id));
    // Held until the writer commits: a delete of this file waits (see
    // [`load`]) and then finds the record that names it.
    if db.get_database_backend() == DbBackend::Postgres {
        q = q.lock_shared();
    }
    let found: Option<String> = q.into_tuple().one(db).await?;
    Ok(found.is_some())
}

/// A model field as stored, read just far enough to find `FILE` fields.
#[derive(Deserialize)]
struct StoredField {
    name: String,
    #[serde(rename = "type")]
    field_type: String,
}

/// A record of the project whose draft or published data holds `file_id`
/// in a `FILE` field, if any. The text search narrows the rows; the
/// model's fields decide.
pub async fn record_naming<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    file_id: &str,
) -> AppResult<Option<String>> {
    let needle = format!("%\"{file_id}\"%");
    let text = |col: records::Column| {
        Expr::expr(Expr::col(col).cast_as(sea_orm::sea_query::Alias::new("TEXT")))
    };
    let candidates = records::Entity::find()
        .filter(records::Column::ProjectId.eq(project_id))
        .filter(
            sea_orm::Condition::any()
                .add(text(records::Column::DraftData).like(needle.clone()))
                .add(text(records::Column::PublishedData).like(needle)),
        )
        .limit(100)
        .all(db)
        .await?;
    for record in candidates {
        let Some(model) = models::Entity::find_by_id(record.model_id.clone())
            .one(db)
            .await?
        else {
            continue;
        };
        let fields: Vec<StoredField> =
            serde_json::from_value(model.fields.clone()).unwrap_or_default();
        let names = |data: &Value| {
            fields.iter().any(|f| {
                f.field_type == "FILE" && data.get(&f.name).and_then(Value::as_str) == Some(file_id)
            })
        };
        if names(&record.draft_data) || record.published_data.as_ref().is_some_and(names) {
            return Ok(Some(record.id));
        }
    }
    Ok(None)
}
