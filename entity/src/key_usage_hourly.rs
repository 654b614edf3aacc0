//! One key's requests in one hour (kept 90 days).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "key_usage_hourly")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_id: String,
    /// The bucket's first instant, Unix seconds (UTC).
    #[sea_orm(primary_key, auto_increment = false)]
    pub start: i64,
    pub requests: i64,
    pub rate_limited: i64,
    pub errors: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
