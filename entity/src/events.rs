//! The outbox: one row per committed content change (SPEC §9), kept 30
//! days. Ids grow in commit order within a project (see `event_heads`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: String,
    /// `record.created`, `model.deleted`, …
    pub event_type: String,
    pub model_key: Option<String>,
    pub record_id: Option<String>,
    pub file_id: Option<String>,
    /// The record's version after the change (its last one for a delete).
    pub version: Option<i64>,
    /// Whether the change altered the published view (what LIVE keys and
    /// webhooks without `includeDrafts` see).
    pub live: bool,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
