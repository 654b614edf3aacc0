//! Model changes: create, change (add fields; tighten `required`/`unique`
//! only when the data allows) and delete (only when empty). Loading a model
//! is in [`super::schema`].

use chrono::{DateTime, Utc};
use entity::{models, record_unique_values, records};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, SqlErr, Statement, TransactionTrait,
};

use super::catalog::Catalog;
use super::fields::{self, check_field_defs, check_identifier, FieldDef, FieldType};
use super::schema::{find_model, list_models, lock_model, ContentModel};
use super::sql::{data_expr, DataColumn, Sql};
use super::unique::make_unique;
use crate::db::{begin_write, new_id};
use crate::error::{AppError, AppResult};
use crate::events::EventType;
use crate::readcache::bump_generation;

/// How many record ids an error names when records stand in the way.
const NAMED_RECORDS: u64 = 5;

/// What a new model should be.
#[derive(Clone, Debug)]
pub struct NewModel {
    pub key: String,
    pub name: String,
    pub fields: Vec<FieldDef>,
}

/// What `updateModel` changes; `None` keeps the current value.
#[derive(Clone, Debug, Default)]
pub struct ModelChange {
    pub name: Option<String>,
    /// The complete new field list: every current field (same name, type and
    /// target), possibly with changed flags, plus new fields.
    pub fields: Option<Vec<FieldDef>>,
}

fn check_name(name: &str) -> AppResult<()> {
    let n = name.chars().count();
    if n == 0 || n > fields::MAX_MODEL_NAME_CHARS || name.trim().is_empty() {
        return Err(AppError::bad_field(
            "name",
            format!("name must be 1–{} characters", fields::MAX_MODEL_NAME_CHARS),
        ));
    }
    Ok(())
}

/// Checks that every REFERENCE field names a model of the project (or the
/// model being defined, `own_key`).
async fn check_reference_targets<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    own_key: &str,
    fields: &[FieldDef],
) -> AppResult<()> {
    for f in fields {
        let Some(target) = &f.reference_model_key else {
            continue;
        };
        if target != own_key && find_model(db, project_id, target).await?.is_none() {
            return Err(AppError::bad_field(
                "fields",
                format!(
                    "field \"{}\": referenceModelKey \"{target}\" is not a model of this project",
                    f.name
                ),
            ));
        }
    }
    Ok(())
}

/// Creates a model; a key that exists already is `CONFLICT`.
pub async fn create_model<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    catalog: &Catalog,
    project_id: &str,
    new: NewModel,
    now: DateTime<Utc>,
) -> AppResult<ContentModel> {
    check_identifier("key", "model key", &new.key)?;
    check_name(&new.name)?;
    check_field_defs(&new.fields)?;
    let txn = begin_write(db).await?;
    check_reference_targets(&txn, project_id, &new.key, &new.fields).await?;
    let row = models::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id.to_owned()),
        key: Set(new.key.clone()),
        name: Set(new.name),
        fields: Set(fields_json(&new.fields)?),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            AppError::Conflict(format!("a model with key \"{}\" already exists", new.key))
        }
        _ => e.into(),
    })?;
    bump_generation(&txn, project_id).await?;
    crate::events::model_changed(&txn, project_id, EventType::ModelCreated, &new.key, now).await?;
    // Writes after this one must not validate against the old model.
    catalog.forget_written(project_id);
    txn.commit().await?;
    ContentModel::from_row(row)
}

fn fields_json(fields: &[FieldDef]) -> AppResult<serde_json::Value> {
    serde_json::to_value(fields).map_err(AppError::internal)
}

/// Changes a model's name and fields. Fields can be added and their flags
/// changed, never removed, renamed or retyped; tightening `required` or
/// `unique` (and adding a required field) is refused, naming the records
/// that stand in the way, when existing data does not allow it.
pub async fn update_model<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    catalog: &Catalog,
    project_id: &str,
    key: &str,
    change: ModelChange,
    now: DateTime<Utc>,
) -> AppResult<ContentModel> {
    if let Some(name) = &change.name {
        check_name(name)?;
    }
    let txn = begin_write(db).await?;
    let model = lock_model(&txn, project_id, key, true).await?;
    let mut row: models::ActiveModel = model.row.clone().into();
    if let Some(name) = change.name {
        row.name = Set(name);
    }
    if let Some(new_fields) = change.fields {
        check_field_defs(&new_fields)?;
        check_reference_targets(&txn, project_id, key, &new_fields).await?;
        for old in &model.fields {
            let kept = new_fields.iter().find(|f| f.name == old.name);
            match kept {
                Some(f)
                    if f.field_type == old.field_type
                        && f.reference_model_key == old.reference_model_key => {}
                Some(_) => {
                    return Err(AppError::bad_field(
                        "fields",
                        format!(
                            "field \"{}\" cannot change its type or referenceModelKey",
                            old.name
                        ),
                    ))
                }
                None => {
                    return Err(AppError::bad_field(
                        "fields",
                        format!("field \"{}\" cannot be removed", old.name),
                    ))
                }
            }
        }
        for f in &new_fields {
            let old = model.field(&f.name);
            if f.required && !old.is_some_and(|o| o.required) {
                require_values(&txn, &model, f).await?;
            }
            match (old.is_some_and(|o| o.unique), f.unique) {
                (false, true) => make_unique(&txn, &model, f).await?,
                (true, false) => {
                    record_unique_values::Entity::delete_many()
                        .filter(record_unique_values::Column::ModelId.eq(&model.row.id))
                        .filter(record_unique_values::Column::Field.eq(&f.name))
                        .exec(&txn)
                        .await?;
                }
                _ => {}
            }
        }
        row.fields = Set(fields_json(&new_fields)?);
    }
    row.updated_at = Set(now);
    let updated = row.update(&txn).await?;
    bump_generation(&txn, project_id).await?;
    crate::events::model_changed(&txn, project_id, EventType::ModelUpdated, key, now).await?;
    // Writes after this one must not validate against the old model.
    catalog.forget_written(project_id);
    txn.commit().await?;
    ContentModel::from_row(updated)
}

/// Refuses to make `field` required while a record (its draft or its
/// published data) has no value for it.
async fn require_values<C: ConnectionTrait>(
    db: &C,
    model: &ContentModel,
    field: &FieldDef,
) -> AppResult<()> {
    let backend = db.get_database_backend();
    let draft = data_expr(backend, DataColumn::Draft, field)?;
    let published = data_expr(backend, DataColumn::Published, field)?;
    let mut sql = Sql::new(backend);
    sql.push("SELECT r.id FROM records r WHERE r.model_id = ");
    sql.bind(model.row.id.clone());
    sql.push(&format!(
        " AND ({draft} IS NULL OR (r.published_data IS NOT NULL AND {published} IS NULL)) \
         ORDER BY r.id LIMIT {NAMED_RECORDS}"
    ));
    let ids = record_ids(db, sql.into_statement()).await?;
    if ids.is_empty() {
        return Ok(());
    }
    Err(AppError::bad_field(
        "fields",
        format!(
            "field \"{}\" cannot be required: records without a value stand in the way: {}",
            field.name,
            ids.join(", ")
        ),
    ))
}

async fn record_ids<C: ConnectionTrait>(db: &C, stmt: Statement) -> AppResult<Vec<String>> {
    db.query_all(stmt)
        .await?
        .iter()
        .map(|row| row.try_get::<String>("", "id").map_err(AppError::from))
        .collect()
}

/// Deletes a model that has no records and that no other model references.
pub async fn delete_model<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    catalog: &Catalog,
    project_id: &str,
    key: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    let txn = begin_write(db).await?;
    let model = lock_model(&txn, project_id, key, true).await?;
    let count = records::Entity::find()
        .filter(records::Column::ModelId.eq(&model.row.id))
        .count(&txn)
        .await?;
    if count > 0 {
        return Err(AppError::bad_field(
            "key",
            format!("model \"{key}\" still has {count} record(s); delete them first"),
        ));
    }
    for other in list_models(&txn, project_id).await? {
        if other.row.id == model.row.id {
            continue;
        }
        let referencing = other.fields.iter().find(|f| {
            f.field_type == FieldType::Reference && f.reference_model_key.as_deref() == Some(key)
        });
        if let Some(f) = referencing {
            return Err(AppError::bad_field(
                "key",
                format!(
                    "model \"{key}\" is referenced by field \"{}\" of model \"{}\"",
                    f.name, other.row.key
                ),
            ));
        }
    }
    models::Entity::delete_by_id(model.row.id.clone())
        .exec(&txn)
        .await?;
    bump_generation(&txn, project_id).await?;
    crate::events::model_changed(&txn, project_id, EventType::ModelDeleted, key, now).await?;
    // Writes after this one must not validate against the old model.
    catalog.forget_written(project_id);
    txn.commit().await?;
    Ok(())
}
