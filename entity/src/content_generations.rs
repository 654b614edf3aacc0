//! Each project's content generation: moved in the same transaction as every
//! change the published view shows, so every instance's read cache can
//! learn of the change from the database even when Redis did not carry it.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "content_generations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: String,
    /// Starts at 1 with the project's first change; only ever grows.
    pub generation: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
