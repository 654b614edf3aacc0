//! A webhook: where a project's events are POSTed, which ones, signed with
//! which secret; and the dispatcher's bookkeeping (cursor, lease, due time).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhooks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub url: String,
    /// Event types and `record.*`-style wildcards, a JSON array.
    pub events: Json,
    /// Model keys the events must concern, a JSON array; `None`: any.
    pub model_keys: Option<Json>,
    pub include_drafts: bool,
    pub enabled: bool,
    /// `whsec_` + base64 of 32 random bytes: a signing key, kept as is.
    pub secret: String,
    /// The secret before the last rotation, signing too until
    /// `previous_secret_until`.
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<DateTimeUtc>,
    /// The last event id fanned out into deliveries.
    pub cursor: i64,
    /// When the first pending delivery is due (`None`: none pending).
    pub due_at: Option<DateTimeUtc>,
    /// The dispatcher instance working on this webhook, until `lease_until`.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
