//! One kept version of a record: its data after a publish (`published`,
//! all kept) or after a create or update (a draft version, the latest 50
//! kept).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "record_versions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub record_id: String,
    /// The record's version right after the write that kept this.
    #[sea_orm(primary_key, auto_increment = false)]
    pub version: i64,
    pub project_id: String,
    /// Whether this is what a publish made public.
    pub published: bool,
    pub data: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
