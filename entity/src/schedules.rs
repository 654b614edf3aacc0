//! A publish or unpublish of a record due at a set time, run once by
//! whichever instance claims it first.

use sea_orm::entity::prelude::*;

/// What a schedule does to its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ScheduleAction {
    #[sea_orm(string_value = "publish")]
    Publish,
    #[sea_orm(string_value = "unpublish")]
    Unpublish,
}

/// Where a schedule stands. A schedule leaves `Pending` exactly once, in
/// the transaction that does (or fails) its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ScheduleStatus {
    #[sea_orm(string_value = "pending")]
    Pending,
    #[sea_orm(string_value = "done")]
    Done,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "canceled")]
    Canceled,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "schedules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub project_id: String,
    pub record_id: String,
    pub action: ScheduleAction,
    pub at: DateTimeUtc,
    /// The record's version when scheduled; another one at run time fails
    /// the schedule.
    pub expected_version: Option<i64>,
    pub status: ScheduleStatus,
    /// Why a `Failed` schedule failed.
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub done_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
