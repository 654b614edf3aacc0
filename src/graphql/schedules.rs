//! Schedules and versions (SPEC §11). The rules live in `crate::schedules`.

use async_graphql::{Context, Enum, Json, Object, SimpleObject, ID};
use entity::record_versions;
use entity::schedules::{self, ScheduleAction, ScheduleStatus};
use serde_json::Value;

use super::content::Record;
use super::types::{PageInfo, Stamp};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::schedules::service::{NewSchedule, Page, DEFAULT_LIMIT};

#[derive(Default)]
pub struct SchedulesQuery;

#[derive(Default)]
pub struct SchedulesMutation;

/// What a schedule does to its record.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ScheduleAction")]
pub enum GqlScheduleAction {
    Publish,
    Unpublish,
}

/// Where a schedule stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "ScheduleStatus")]
pub enum GqlScheduleStatus {
    Pending,
    Done,
    Failed,
    Canceled,
}

impl From<GqlScheduleAction> for ScheduleAction {
    fn from(a: GqlScheduleAction) -> Self {
        match a {
            GqlScheduleAction::Publish => ScheduleAction::Publish,
            GqlScheduleAction::Unpublish => ScheduleAction::Unpublish,
        }
    }
}

impl From<GqlScheduleStatus> for ScheduleStatus {
    fn from(s: GqlScheduleStatus) -> Self {
        match s {
            GqlScheduleStatus::Pending => ScheduleStatus::Pending,
            GqlScheduleStatus::Done => ScheduleStatus::Done,
            GqlScheduleStatus::Failed => ScheduleStatus::Failed,
            GqlScheduleStatus::Canceled => ScheduleStatus::Canceled,
        }
    }
}

/// A publish or unpublish of a record at a set time.
pub struct Schedule(schedules::Model);

#[Object]
impl Schedule {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn record_id(&self) -> ID {
        ID(self.0.record_id.clone())
    }
    async fn action(&self) -> GqlScheduleAction {
        match self.0.action {
            ScheduleAction::Publish => GqlScheduleAction::Publish,
            ScheduleAction::Unpublish => GqlScheduleAction::Unpublish,
        }
    }
    /// When it runs (within 2 s after).
    async fn at(&self) -> Stamp {
        self.0.at.into()
    }
    async fn status(&self) -> GqlScheduleStatus {
        match self.0.status {
            ScheduleStatus::Pending => GqlScheduleStatus::Pending,
            ScheduleStatus::Done => GqlScheduleStatus::Done,
            ScheduleStatus::Failed => GqlScheduleStatus::Failed,
            ScheduleStatus::Canceled => GqlScheduleStatus::Canceled,
        }
    }
    /// Why a `FAILED` schedule failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn created_at(&self) -> Stamp {
        self.0.created_at.into()
    }
    /// When it ran, failed or was canceled.
    async fn done_at(&self) -> Option<Stamp> {
        self.0.done_at.map(Stamp)
    }
}

/// One page of schedules.
#[derive(SimpleObject)]
pub struct SchedulePage {
    items: Vec<Schedule>,
    page_info: PageInfo,
}

/// A kept version of a record.
#[derive(SimpleObject)]
pub struct RecordVersion {
    /// The record's version right after the write that kept this.
    version: i64,
    data: Json<Value>,
    /// Whether a publish made this public.
    published: bool,
    created_at: Stamp,
}

/// One page of versions, newest first.
#[derive(SimpleObject)]
pub struct RecordVersionPage {
    items: Vec<RecordVersion>,
    page_info: PageInfo,
}

fn page_info<T>(page: &Page<T>) -> PageInfo {
    PageInfo {
        has_next_page: page.has_next_page,
        end_cursor: page.end_cursor.clone(),
    }
}

impl From<record_versions::Model> for RecordVersion {
    fn from(v: record_versions::Model) -> Self {
        RecordVersion {
            version: v.version,
            data: Json(v.data),
            published: v.published,
            created_at: v.created_at.into(),
        }
    }
}

#[Object]
impl SchedulesQuery {
    /// The project's schedules by time; keys that may not preview see only
    /// those of records published now.
    #[graphql(guard = "RequireScope(Scope::SchedulesRead)")]
    async fn schedules(
        &self,
        ctx: &Context<'_>,
        status: Option<GqlScheduleStatus>,
        #[graphql(default_with = "Some(DEFAULT_LIMIT)")] limit: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<SchedulePage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let page = app
            .schedules
            .list(
                p,
                status.map(Into::into),
                limit.unwrap_or(DEFAULT_LIMIT),
                after.as_deref(),
            )
            .await?;
        let page_info = page_info(&page);
        Ok(SchedulePage {
            items: page.items.into_iter().map(Schedule).collect(),
            page_info,
        })
    }

    /// A record's kept versions, newest first: the published ones, or with
    /// `preview` (secret TEST keys holding `drafts:read`) the drafts too.
    #[graphql(guard = "RequireScope(Scope::RecordsRead)")]
    async fn record_versions(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(false)")] preview: Option<bool>,
        #[graphql(default_with = "Some(DEFAULT_LIMIT)")] limit: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<RecordVersionPage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let page = app
            .schedules
            .versions(
                p,
                &id,
                preview.unwrap_or(false),
                limit.unwrap_or(DEFAULT_LIMIT),
                after.as_deref(),
            )
            .await?;
        let page_info = page_info(&page);
        Ok(RecordVersionPage {
            items: page.items.into_iter().map(RecordVersion::from).collect(),
            page_info,
        })
    }
}

#[Object]
impl SchedulesMutation {
    /// Publishes or unpublishes the record at `at` (in the future, at most 5
    /// years ahead). With `expectedVersion`, a record changed meanwhile makes
    /// the schedule `FAILED`; one not at that version now is `CONFLICT`.
    #[graphql(guard = "RequireScope(Scope::RecordsPublish)")]
    async fn schedule_record(
        &self,
        ctx: &Context<'_>,
        id: ID,
        action: GqlScheduleAction,
        at: Stamp,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Schedule> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let new = NewSchedule {
            record_id: id.0,
            action: action.into(),
            at: at.0,
            expected_version,
        };
        Ok(Schedule(app.schedules.schedule(p, new).await?))
    }

    /// Cancels a `PENDING` schedule.
    #[graphql(guard = "RequireScope(Scope::RecordsPublish)")]
    async fn cancel_schedule(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Schedule> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(Schedule(app.schedules.cancel(p, &id).await?))
    }

    /// Copies a kept version's data into the record's draft (a new
    /// version); the published data changes only with the next publish.
    #[graphql(guard = "RequireScope(Scope::RecordsWrite)")]
    async fn restore_record_version(
        &self,
        ctx: &Context<'_>,
        id: ID,
        version: i64,
        expected_version: Option<i64>,
    ) -> async_graphql::Result<Record> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let record = app
            .schedules
            .restore(p, &id, version, expected_version)
            .await?;
        Ok(record.into())
    }
}
