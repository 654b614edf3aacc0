//! One row per event and webhook: where its delivery stands and how the
//! last attempt went. Kept 30 days.

use sea_orm::entity::prelude::*;

/// Where a delivery stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    /// Not yet delivered; `next_attempt_at` says when it is tried.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A 2xx answer came back.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// The retry schedule ran out, or the webhook answered 410.
    #[sea_orm(string_value = "failed")]
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub webhook_id: String,
    pub project_id: String,
    pub event_id: i64,
    /// Attempts made so far.
    pub attempt: i32,
    /// Attempts since the delivery was (re)started: the retry schedule's position.
    pub round_attempts: i32,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTimeUtc>,
    pub response_status: Option<i32>,
    /// The first KiB of the last answer's body.
    pub response_body: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
