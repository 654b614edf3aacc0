//! A content model as the rest of `content` uses it (its fields parsed),
//! and the ways to load one.

use entity::models;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::fields::FieldDef;
use crate::error::{AppError, AppResult};

/// A stored model with its fields parsed.
#[derive(Clone, Debug)]
pub struct ContentModel {
    pub row: models::Model,
    pub fields: Vec<FieldDef>,
}

impl ContentModel {
    pub(crate) fn from_row(row: models::Model) -> AppResult<Self> {
        let fields = serde_json::from_value(row.fields.clone()).map_err(|e| {
            AppError::internal(format!("model {} has unreadable fields: {e}", row.id))
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

    /// Whether some field references records (a write then reads them).
    pub fn has_references(&self) -> bool {
        self.fields
            .iter()
            .any(|f| f.field_type == super::fields::FieldType::Reference)
    }
}

pub(crate) fn not_found(key: &str) -> AppError {
    AppError::NotFound(format!("no model with key \"{key}\""))
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

/// Like [`lock_model`] with a shared lock, by the model's id.
pub(crate) async fn lock_model_by_id<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    id: &str,
) -> AppResult<ContentModel> {
    models::Entity::find_by_id(id.to_owned())
        .filter(models::Column::ProjectId.eq(project_id))
        .lock_shared()
        .one(db)
        .await?
        .map(ContentModel::from_row)
        .transpose()?
        .ok_or_else(|| AppError::internal(format!("model {id} is gone")))
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
