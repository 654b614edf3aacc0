//! Record writes: validation against the model, unique values kept by the
//! database, versions, publishing (reads are in [`super::query`]).
//!
//! Each write is the statements of one change, run in a transaction its
//! caller begins and commits ([`crate::db::Database::write`]: on SQLite,
//! a savepoint in a group commit).
//!
//! A record keeps its latest draft (`draft_data`) and, once published, a
//! snapshot (`published_data`). Each value of a unique field that a record
//! holds, in either, has a row in `record_unique_values`, rewritten in the
//! same transaction as the record, so two records can never hold the same
//! value, whatever the timing.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use entity::record_unique_values;
use entity::records::{self, RecordStatus};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait,
    QueryFilter, QueryTrait,
};
use serde_json::{Map, Value};

use super::catalog::Catalog;
use super::fields::{normalize, FieldDef, FieldType};
use super::schema::{require_model, ContentModel};
use super::unique::sync_unique_values;
use super::View;
use crate::db::{grab_write_lock, new_id};
use crate::error::{AppError, AppResult};
use crate::events::outbox::write_then_append;
use crate::events::NewEvent;
use crate::readcache::bump_generation;

/// A record's data as an answer carries it.
#[derive(Clone, Debug)]
pub enum RecordData {
    /// A parsed value (what a write just validated and stored).
    Tree(Value),
    /// The JSON text the database holds, checked to be one JSON value:
    /// answers copy it as it is, without parsing it into a tree.
    Text(Bytes),
}

/// A record as one view shows it, with its model's key. The row's data
/// columns are empty: the data the view shows is in `data`.
#[derive(Clone, Debug)]
pub struct RecordOut {
    pub row: records::Model,
    pub model_key: String,
    pub view: View,
    pub data: RecordData,
}

impl RecordOut {
    /// The record's status.
    pub fn status(&self) -> RecordStatus {
        self.row.status
    }
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no record with id \"{id}\""))
}

/// Creates a draft record of `model_key`.
pub async fn create_record(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    model_key: &str,
    data: Value,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    // With the writer's copy of the model and no reference to check, the
    // INSERT is the transaction's first statement and takes the write lock
    // itself; anything read before it needs the lock taken first.
    let model = match catalog.written(project_id, model_key) {
        Some(model) if !model.has_references() => model,
        _ => {
            grab_write_lock(txn).await?;
            catalog.for_write(txn, project_id, model_key).await?
        }
    };
    let data = validate_data(txn, project_id, &model, data).await?;
    let row = records::Model {
        id: new_id(),
        project_id: project_id.to_owned(),
        model_id: model.row.id.clone(),
        draft_data: data,
        published_data: None,
        status: RecordStatus::Draft,
        version: 1,
        created_at: now,
        updated_at: now,
        published_at: None,
    };
    let insert = records::Entity::insert(records::ActiveModel {
        id: Set(row.id.clone()),
        project_id: Set(row.project_id.clone()),
        model_id: Set(row.model_id.clone()),
        draft_data: Set(row.draft_data.clone()),
        published_data: Set(None),
        status: Set(row.status),
        version: Set(row.version),
        created_at: Set(now),
        updated_at: Set(now),
        published_at: Set(None),
    })
    .build(txn.get_database_backend());
    let event = NewEvent::record_created(&row, model.key(), now);
    crate::search::index::record_written(txn, &model.row, None, &row).await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        // The record and its event in one round trip; a unique value
        // another record holds rolls both back.
        write_then_append(txn, insert, &event).await?;
        sync_unique_values(txn, &model, None, &row).await?;
        super::versions::kept(txn, None, &row, now).await?;
    } else {
        // The event last: on PostgreSQL it takes the project's event lock,
        // held until the commit.
        txn.execute(insert).await?;
        sync_unique_values(txn, &model, None, &row).await?;
        super::versions::kept(txn, None, &row, now).await?;
        crate::events::append(txn, &event).await?;
    }
    Ok(draft_out(row, &model))
}

/// Replaces a record's draft data whole; `expected_version`, when given,
/// must be the current version (else `CONFLICT`).
pub async fn update_record(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
    data: Value,
    expected_version: Option<i64>,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let (current, model) = load_for_write(txn, catalog, project_id, id).await?;
    if let Some(expected) = expected_version {
        if expected != current.version {
            return Err(AppError::Conflict(format!(
                "record \"{id}\" is at version {}, not {expected}",
                current.version
            )));
        }
    }
    let data = validate_data(txn, project_id, &model, data).await?;
    let status = match current.status {
        RecordStatus::Draft => RecordStatus::Draft,
        RecordStatus::Published | RecordStatus::Changed => RecordStatus::Changed,
    };
    let mut next = current.clone();
    next.draft_data = data;
    next.status = status;
    finish_change(txn, &model, &current, next, now).await
}

/// Publishes a record's draft: the published view shows it from now on.
/// Publishing a record that has no unpublished edits changes nothing.
pub async fn publish_record(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let (current, model) = load_for_write(txn, catalog, project_id, id).await?;
    if current.status == RecordStatus::Published {
        return Ok(draft_out(current, &model));
    }
    let mut next = current.clone();
    next.published_data = Some(current.draft_data.clone());
    next.published_at = Some(now);
    next.status = RecordStatus::Published;
    // The files its FILE fields name are published with it (SPEC §7).
    crate::files::rows::publish_named(txn, project_id, &file_ids(&model, &current.draft_data), now)
        .await?;
    finish_change(txn, &model, &current, next, now).await
}

/// Takes a record out of the published view; its draft stays. Unpublishing
/// a draft changes nothing.
pub async fn unpublish_record(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let (current, model) = load_for_write(txn, catalog, project_id, id).await?;
    if current.status == RecordStatus::Draft {
        return Ok(draft_out(current, &model));
    }
    let mut next = current.clone();
    next.published_data = None;
    next.published_at = None;
    next.status = RecordStatus::Draft;
    finish_change(txn, &model, &current, next, now).await
}

/// Deletes a record from every view (for good). References to it are left
/// dangling. Returns the record as it was.
pub async fn delete_record(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let (current, model) = load_for_write(txn, catalog, project_id, id).await?;
    record_unique_values::Entity::delete_many()
        .filter(record_unique_values::Column::RecordId.eq(&current.id))
        .exec(txn)
        .await?;
    records::Entity::delete_by_id(current.id.clone())
        .exec(txn)
        .await?;
    // Every delete moves the published view's generation, as the change
    // announced for it does (see `service::record_change`).
    bump_generation(txn, project_id).await?;
    crate::search::index::record_deleted(txn, &current).await?;
    crate::events::record_deleted(txn, &current, model.key(), now).await?;
    Ok(draft_out(current, &model))
}

/// The common end of every record change: save with a version bump, keep
/// the unique index in step, move the content generation when the
/// published view shows the change (the record was or becomes published),
/// and answer with the draft view. The caller commits.
async fn finish_change(
    txn: &DatabaseTransaction,
    model: &ContentModel,
    current: &records::Model,
    next: records::Model,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let row = save(txn, current, next, now).await?;
    sync_unique_values(txn, model, Some(current), &row).await?;
    super::versions::kept(txn, Some(current), &row, now).await?;
    crate::search::index::record_written(txn, &model.row, Some(current), &row).await?;
    if current.published_at.is_some() || row.published_at.is_some() {
        bump_generation(txn, &row.project_id).await?;
    }
    crate::events::record_changed(txn, current, &row, model.key(), now).await?;
    Ok(draft_out(row, model))
}

/// The answer of a write: the draft view, its data moved out of the row.
fn draft_out(mut row: records::Model, model: &ContentModel) -> RecordOut {
    let data = std::mem::take(&mut row.draft_data);
    row.published_data = None;
    RecordOut {
        row,
        model_key: model.row.key.clone(),
        view: View::Draft,
        data: RecordData::Tree(data),
    }
}

/// Takes the write lock (SQLite), then reads the record (of this project)
/// and its model, the model locked shared (PostgreSQL).
async fn load_for_write(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
) -> AppResult<(records::Model, Arc<ContentModel>)> {
    grab_write_lock(txn).await?;
    let record = records::Entity::find_by_id(id.to_owned())
        .filter(records::Column::ProjectId.eq(project_id))
        .one(txn)
        .await?
        .ok_or_else(|| not_found(id))?;
    let model = catalog
        .for_write_by_id(txn, project_id, &record.model_id)
        .await?;
    Ok((record, model))
}

/// Writes `next` over `current` with the version bumped, only if nobody
/// changed the record meanwhile (else `CONFLICT`).
async fn save<C: ConnectionTrait>(
    db: &C,
    current: &records::Model,
    mut next: records::Model,
    now: DateTime<Utc>,
) -> AppResult<records::Model> {
    next.version = current.version + 1;
    next.updated_at = now;
    let result = records::Entity::update_many()
        .col_expr(
            records::Column::DraftData,
            Expr::value(next.draft_data.clone()),
        )
        .col_expr(
            records::Column::PublishedData,
            Expr::value(next.published_data.clone()),
        )
        .col_expr(records::Column::Status, Expr::value(next.status))
        .col_expr(records::Column::Version, Expr::value(next.version))
        .col_expr(records::Column::UpdatedAt, Expr::value(next.updated_at))
        .col_expr(records::Column::PublishedAt, Expr::value(next.published_at))
        .filter(records::Column::Id.eq(&current.id))
        .filter(records::Column::Version.eq(current.version))
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Err(AppError::Conflict(format!(
            "record \"{}\" was changed by another request; read it again",
            current.id
        )));
    }
    Ok(next)
}

/// Checks `data` against the model: an object, no unknown field, every
/// required field set, each value of its field's type, references to
/// existing records of the right model. Returns the data in canonical form.
/// Errors name the field, in the message and in `extensions.field`.
pub async fn validate_data<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    model: &ContentModel,
    data: Value,
) -> AppResult<Value> {
    let Value::Object(input) = data else {
        return Err(AppError::bad_field("data", "data must be a JSON object"));
    };
    if let Some(unknown) = input.keys().find(|k| model.field(k).is_none()) {
        return Err(AppError::bad_field(
            unknown.clone(),
            format!(
                "unknown field \"{unknown}\": model \"{}\" has no such field",
                model.key()
            ),
        ));
    }
    let mut out = Map::new();
    for field in &model.fields {
        match input.get(&field.name) {
            None | Some(Value::Null) if field.required => {
                return Err(AppError::bad_field(
                    field.name.clone(),
                    format!("field \"{}\" is required", field.name),
                ));
            }
            None => {}
            Some(Value::Null) => {
                out.insert(field.name.clone(), Value::Null);
            }
            Some(value) => {
                let value = normalize(field, value, &field.name)?;
                if field.field_type == FieldType::Reference {
                    check_reference(db, project_id, field, &value).await?;
                }
                if field.field_type == FieldType::File {
                    check_file(db, project_id, field, &value).await?;
                }
                out.insert(field.name.clone(), value);
            }
        }
    }
    Ok(Value::Object(out))
}

async fn check_reference<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    field: &FieldDef,
    value: &Value,
) -> AppResult<()> {
    let id = value.as_str().unwrap_or_default();
    let target_key = field.reference_model_key.as_deref().unwrap_or_default();
    let target = records::Entity::find_by_id(id.to_owned())
        .filter(records::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .ok_or_else(|| {
            AppError::bad_field(
                field.name.clone(),
                format!(
                    "field \"{}\" references record \"{id}\", which does not exist",
                    field.name
                ),
            )
        })?;
    let target_model = require_model(db, project_id, target_key).await?;
    if target.model_id != target_model.row.id {
        return Err(AppError::bad_field(
            field.name.clone(),
            format!(
                "field \"{}\" must reference a \"{target_key}\" record; record \"{id}\" is not one",
                field.name
            ),
        ));
    }
    Ok(())
}

/// The file ids `data` holds in the model's `FILE` fields.
fn file_ids(model: &ContentModel, data: &Value) -> Vec<String> {
    let names = model
        .fields
        .iter()
        .filter(|f| f.field_type == FieldType::File)
        .map(|f| f.name.as_str());
    crate::files::named_ids(names, data)
}

/// A `FILE` value must name a file of the project.
async fn check_file<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    field: &FieldDef,
    value: &Value,
) -> AppResult<()> {
    let id = value.as_str().unwrap_or_default();
    if crate::files::rows::exists(db, project_id, id).await? {
        return Ok(());
    }
    Err(AppError::bad_field(
        field.name.clone(),
        format!(
            "field \"{}\" names file \"{id}\", which does not exist",
            field.name
        ),
    ))
}
