//! An API key: only its SHA-256 is stored, never the plaintext.

use sea_orm::entity::prelude::*;

pub use crate::kinds::{KeyMode, KeyType};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub key_type: KeyType,
    pub mode: KeyMode,
    /// Lower-case hex SHA-256 of the current secret.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// The prefix and the first 4 characters of the body.
    pub mask_head: String,
    /// The last 4 characters of the body.
    pub mask_tail: String,
    /// Comma-separated wire names of the scopes.
    pub scopes: String,
    pub rate_limit_per_hour: i64,
    /// The secret replaced by the last rotation, valid until `previous_expires_at`.
    pub previous_key_hash: Option<String>,
    pub previous_expires_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub last_used_at: Option<DateTimeUtc>,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
