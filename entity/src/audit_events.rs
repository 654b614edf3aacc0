//! One key lifecycle event; never holds a secret.

use sea_orm::entity::prelude::*;

use crate::kinds::KeyMode;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub project_id: String,
    /// The `AuditAction` wire name, e.g. `KEY_CREATED`.
    pub action: String,
    pub actor_key_id: Option<String>,
    pub target_key_id: Option<String>,
    /// Mode of the actor (none for `quire admin`) and of the target, so TEST keys see only TEST stories.
    pub actor_mode: Option<KeyMode>,
    pub target_mode: Option<KeyMode>,
    pub detail: Option<Json>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
