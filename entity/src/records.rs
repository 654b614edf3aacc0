//! A record: its latest draft and, once published, a published snapshot.

use sea_orm::entity::prelude::*;

pub use crate::kinds::RecordStatus;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub model_id: String,
    /// The latest data, what the draft view shows.
    pub draft_data: Json,
    /// The data as last published, what the published view shows; `None`
    /// while the record is not published.
    pub published_data: Option<Json>,
    pub status: RecordStatus,
    /// Bumped by every change.
    pub version: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    /// Set exactly when `published_data` is.
    pub published_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
