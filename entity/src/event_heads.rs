//! Per project, the count of events written on PostgreSQL: updated by every
//! writing transaction before it takes an event id, so that (its row lock
//! held to the commit) a project's event ids grow in commit order. SQLite,
//! with one writer at a time, needs no such row.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "event_heads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub project_id: String,
    /// Events written in the project so far (on PostgreSQL); only ever grows.
    pub last_seq: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
