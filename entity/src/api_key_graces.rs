//! An older secret of a key that still works until its rotation grace ends
//! (the newest replaced secret lives in `api_keys.previous_key_hash`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_key_graces")]
pub struct Model {
    /// Lower-case hex SHA-256 of the old secret.
    #[sea_orm(primary_key, auto_increment = false)]
    pub key_hash: String,
    pub key_id: String,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
