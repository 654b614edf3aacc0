//! Models: create, list, change (add fields; tighten `required`/`unique`
//! only when the data allows) and delete (only when empty).

use chrono::{DateTime, Utc};
use entity::{models, record_unique_values, records};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, SqlErr, Statement, TransactionTrait,
};

use super::fields::{self, check_field_defs, check_identifier, FieldDef, FieldType};
use super::query;
use super::records::unique_entries;
use crate::db::new_id;
use crate::error::{AppError, AppResult};

/// How many record ids an error names when records stand in the way.
const NAMED_RECORDS: u64 = 5;

/// A stored model with its fields parsed.
#[derive(Clone, Debug)]
pub struct ContentModel {
    pub row: models::Model,
    pub fields: Vec<FieldDef>,
}

impl ContentModel {
    fn from_row(row: models::Model) -> AppResult<Self> {
        let fields = serde_json::from_value(row.fields.clone()).map_err(|e| {
            AppError::Internal(format!("model {} has unreadable fields: {e}", row.id))
        })?;
        Ok(Self { row, fields })
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The model's key.
    pub fn key(&self) -> &str {
        &self.row.key
    }
}

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

fn not_found(key: &str) -> AppError {
    AppError::NotFound(format!("no model with key \"{key}\""))
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

/// The project's model with this key.
pub async fn find_model<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    key: &str,
) -> AppResult<Option<ContentModel>> {
    models::Entity::find()
        .filter(models::Column::ProjectId.eq(project_id))
        .filter(models::Column::Key.eq(key))
        .one(db)
        .await?
        .map(ContentModel::from_row)
        .transpose()
}

/// The project's model with this key, or `NOT_FOUND`.
pub async fn require_model<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    key: &str,
) -> AppResult<ContentModel> {
    find_model(db, project_id, key)
        .await?
        .ok_or_else(|| not_found(key))
}

/// Like [`require_model`], holding a lock on the model row until the
/// transaction ends (PostgreSQL; SQLite serializes writers anyway):
/// `exclusive` for model changes, shared for record writes, so a record write
/// never validates against a model that is changing under it.
pub(crate) async fn lock_model<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    key: &str,
    exclusive: bool,
) -> AppResult<ContentModel> {
    let q = models::Entity::find()
        .filter(models::Column::ProjectId.eq(project_id))
        .filter(models::Column::Key.eq(key));
    let q = if exclusive {
        q.lock_exclusive()
    } else {
        q.lock_shared()
    };
    q.one(db)
        .await?
        .map(ContentModel::from_row)
        .transpose()?
        .ok_or_else(|| not_found(key))
}

/// The project's model with this id.
pub async fn model_by_id<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    id: &str,
) -> AppResult<Option<ContentModel>> {
    models::Entity::find_by_id(id.to_owned())
        .filter(models::Column::ProjectId.eq(project_id))
        .one(db)
        .await?
        .map(ContentModel::from_row)
        .transpose()
}

/// The project's models, oldest first.
pub async fn list_models<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
) -> AppResult<Vec<ContentModel>> {
    models::Entity::find()
        .filter(models::Column::ProjectId.eq(project_id))
        .order_by_asc(models::Column::CreatedAt)
        .order_by_asc(models::Column::Key)
        .all(db)
        .await?
        .into_iter()
        .map(ContentModel::from_row)
        .collect()
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
    project_id: &str,
    new: NewModel,
    now: DateTime<Utc>,
) -> AppResult<ContentModel> {
    check_identifier("key", "model key", &new.key)?;
    check_name(&new.name)?;
    check_field_defs(&new.fields)?;
    let txn = super::begin_write(db).await?;
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
    txn.commit().await?;
    ContentModel::from_row(row)
}

fn fields_json(fields: &[FieldDef]) -> AppResult<serde_json::Value> {
    serde_json::to_value(fields).map_err(|e| AppError::Internal(e.to_string()))
}

/// Changes a model's name and fields. Fields can be added and their flags
/// changed, never removed, renamed or retyped; tightening `required` or
/// `unique` (and adding a required field) is refused, naming the records
/// that stand in the way, when existing data does not allow it.
pub async fn update_model<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    key: &str,
    change: ModelChange,
    now: DateTime<Utc>,
) -> AppResult<ContentModel> {
    if let Some(name) = &change.name {
        check_name(name)?;
    }
    let txn = super::begin_write(db).await?;
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
    let draft = query::data_expr(backend, query::DataColumn::Draft, field)?;
    let published = query::data_expr(backend, query::DataColumn::Published, field)?;
    let mut sql = query::Sql::new(backend);
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

/// Makes `field` unique: writes every record's values into the unique side
/// table, whose primary key refuses the first duplicate.
async fn make_unique<C: ConnectionTrait>(
    db: &C,
    model: &ContentModel,
    field: &FieldDef,
) -> AppResult<()> {
    const BATCH: u64 = 500;
    let mut after = String::new();
    loop {
        let batch = records::Entity::find()
            .filter(records::Column::ModelId.eq(&model.row.id))
            .filter(records::Column::Id.gt(after.clone()))
            .order_by_asc(records::Column::Id)
            .limit(BATCH)
            .all(db)
            .await?;
        for record in &batch {
            let only_this = [field.clone()];
            let entries = unique_entries(
                &only_this,
                &record.draft_data,
                record.published_data.as_ref(),
            );
            for (_, value_text) in entries {
                let inserted =
                    record_unique_values::Entity::insert(record_unique_values::ActiveModel {
                        model_id: Set(model.row.id.clone()),
                        field: Set(field.name.clone()),
                        value_text: Set(value_text.clone()),
                        record_id: Set(record.id.clone()),
                    })
                    .exec_without_returning(db)
                    .await;
                if let Err(e) = inserted {
                    if let Some(SqlErr::UniqueConstraintViolation(_)) = e.sql_err() {
                        return Err(AppError::bad_field(
                            "fields",
                            format!(
                                "field \"{}\" cannot be unique: record {} shares its value \
                                 with another record of \"{}\"",
                                field.name, record.id, model.row.key
                            ),
                        ));
                    }
                    return Err(e.into());
                }
            }
        }
        match batch.last() {
            Some(last) if batch.len() as u64 == BATCH => after = last.id.clone(),
            _ => return Ok(()),
        }
    }
}

/// Deletes a model that has no records and that no other model references.
pub async fn delete_model<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    key: &str,
) -> AppResult<()> {
    let txn = super::begin_write(db).await?;
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
    txn.commit().await?;
    Ok(())
}
