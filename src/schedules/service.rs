//! [`ScheduleService`]: scheduling, canceling and listing schedules; listing
//! and restoring record versions. Writes run through
//! [`Database::write`] and, after the commit, are announced to [`Changes`]
//! exactly as the content service announces its own.

use std::sync::Arc;

use chrono::{DateTime, DurationRound, Months, TimeDelta, Utc};
use entity::record_versions;
use entity::schedules::{self, ScheduleAction, ScheduleStatus};
use entity::{projects, records};
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, DbBackend,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::{MAX_AHEAD_MONTHS, MAX_PENDING_PER_PROJECT};
use crate::auth::principal::Principal;
use crate::changes::{Change, Changes, RecordAction};
use crate::clock::Clock;
use crate::content::catalog::Catalog;
use crate::content::records::{update_record, RecordOut};
use crate::content::{versions, View};
use crate::db::{grab_write_lock, new_id, Database};
use crate::error::{AppError, AppResult};

/// The default page size of `schedules` and `recordVersions`.
pub const DEFAULT_LIMIT: i64 = 20;
/// The largest page.
pub const MAX_LIMIT: i64 = 100;

/// What `scheduleRecord` asks for.
#[derive(Clone, Debug)]
pub struct NewSchedule {
    pub record_id: String,
    pub action: ScheduleAction,
    pub at: DateTime<Utc>,
    pub expected_version: Option<i64>,
}

/// One page of schedules or versions.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next_page: bool,
    pub end_cursor: Option<String>,
}

/// The schedules and versions of one instance.
pub struct ScheduleService {
    pub(super) db: Database,
    pub(super) clock: Arc<dyn Clock>,
    pub(super) changes: Arc<Changes>,
    pub(super) catalog: Arc<Catalog>,
}

impl ScheduleService {
    /// The service over `db`, announcing to `changes` (the content
    /// service's hub); `catalog` is the content service's.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        changes: Arc<Changes>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            db,
            clock,
            changes,
            catalog,
        }
    }

    /// Schedules a publish or unpublish of a record of the key's project:
    /// `at` in the future and at most 5 years ahead; at most
    /// [`MAX_PENDING_PER_PROJECT`] pending per project (`BAD_USER_INPUT`);
    /// an `expected_version` that is not the record's version now is
    /// `CONFLICT`.
    pub async fn schedule(&self, p: &Principal, new: NewSchedule) -> AppResult<schedules::Model> {
        let now = self.clock.now();
        // Milliseconds, as every instant quire writes (and the cursor).
        let at = new
            .at
            .duration_trunc(TimeDelta::milliseconds(1))
            .unwrap_or(new.at);
        if at <= now {
            return Err(AppError::bad_field(
                "at",
                format!(
                    "at must be in the future (it is {} now)",
                    crate::clock::stamp(now)
                ),
            ));
        }
        let latest = now
            .checked_add_months(Months::new(MAX_AHEAD_MONTHS))
            .unwrap_or(now);
        if at > latest {
            return Err(AppError::bad_field(
                "at",
                format!(
                    "at must be at most 5 years ahead (no later than {})",
                    crate::clock::stamp(latest)
                ),
            ));
        }
        let project = p.project_id.clone();
        self.db
            .write(Box::new(move |txn| {
                Box::pin(async move {
                    lock_project(txn, &project).await?;
                    let record = records::Entity::find_by_id(new.record_id.clone())
                        .filter(records::Column::ProjectId.eq(&project))
                        .one(txn)
                        .await?
                        .ok_or_else(|| {
                            AppError::NotFound(format!("no record with id \"{}\"", new.record_id))
                        })?;
                    if let Some(expected) = new.expected_version {
                        if expected != record.version {
                            return Err(AppError::Conflict(format!(
                                "record \"{}\" is at version {}, not {expected}",
                                record.id, record.version
                            )));
                        }
                    }
                    let pending = schedules::Entity::find()
                        .filter(schedules::Column::ProjectId.eq(&project))
                        .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
                        .count(txn)
                        .await?;
                    if pending >= MAX_PENDING_PER_PROJECT {
                        return Err(AppError::BadUserInput {
                            message: format!(
                                "the project has {pending} pending schedules, the most it may hold; cancel one or wait for one to run"
                            ),
                            field: None,
                        });
                    }
                    let row = schedules::Model {
                        id: new_id(),
                        project_id: project,
                        record_id: record.id,
                        action: new.action,
                        at,
                        expected_version: new.expected_version,
                        status: ScheduleStatus::Pending,
                        error: None,
                        created_at: now,
                        done_at: None,
                    };
                    schedules::Entity::insert(schedules::ActiveModel {
                        id: Set(row.id.clone()),
                        project_id: Set(row.project_id.clone()),
                        record_id: Set(row.record_id.clone()),
                        action: Set(row.action),
                        at: Set(row.at),
                        expected_version: Set(row.expected_version),
                        status: Set(row.status),
                        error: Set(None),
                        created_at: Set(row.created_at),
                        done_at: Set(None),
                    })
                        .exec_without_returning(txn)
                        .await?;
                    Ok(row)
                })
            }))
            .await
    }

    /// Cancels a pending schedule of the key's project; any other status is
    /// `BAD_USER_INPUT` (only `PENDING` can be canceled).
    pub async fn cancel(&self, p: &Principal, id: &str) -> AppResult<schedules::Model> {
        let now = self.clock.now();
        let project = p.project_id.clone();
        let id = id.to_owned();
        self.db
            .write(Box::new(move |txn| {
                Box::pin(async move {
                    grab_write_lock(txn).await?;
                    let done = schedules::Entity::update_many()
                        .col_expr(
                            schedules::Column::Status,
                            Expr::value(ScheduleStatus::Canceled),
                        )
                        .col_expr(schedules::Column::DoneAt, Expr::value(Some(now)))
                        .filter(schedules::Column::Id.eq(&id))
                        .filter(schedules::Column::ProjectId.eq(&project))
                        .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
                        .exec(txn)
                        .await?;
                    let row = schedules::Entity::find_by_id(id.clone())
                        .filter(schedules::Column::ProjectId.eq(&project))
                        .one(txn)
                        .await?
                        .ok_or_else(|| {
                            AppError::NotFound(format!("no schedule with id \"{id}\""))
                        })?;
                    if done.rows_affected == 0 {
                        return Err(AppError::bad_field(
                            "id",
                            format!(
                                "schedule \"{id}\" is {}; only PENDING schedules can be canceled",
                                status_name(row.status)
                            ),
                        ));
                    }
                    Ok(row)
                })
            }))
            .await
    }

    /// One page of the project's schedules, by time (then id). Keys that may
    /// not preview see only the schedules of records published now.
    pub async fn list(
        &self,
        p: &Principal,
        status: Option<ScheduleStatus>,
        limit: i64,
        after: Option<&str>,
    ) -> AppResult<Page<schedules::Model>> {
        let limit = check_limit(limit)?;
        let mut q =
            schedules::Entity::find().filter(schedules::Column::ProjectId.eq(&p.project_id));
        if let Some(status) = status {
            q = q.filter(schedules::Column::Status.eq(status));
        }
        if View::for_request(p, true).is_err() {
            let published = Query::select()
                .column(records::Column::Id)
                .from(records::Entity)
                .and_where(records::Column::ProjectId.eq(&p.project_id))
                .and_where(records::Column::PublishedAt.is_not_null())
                .to_owned();
            q = q.filter(schedules::Column::RecordId.in_subquery(published));
        }
        if let Some(after) = after {
            let (at, id) = parse_schedule_cursor(after)?;
            q = q.filter(
                Condition::any().add(schedules::Column::At.gt(at)).add(
                    Condition::all()
                        .add(schedules::Column::At.eq(at))
                        .add(schedules::Column::Id.gt(id)),
                ),
            );
        }
        let mut rows = q
            .order_by_asc(schedules::Column::At)
            .order_by_asc(schedules::Column::Id)
            .limit(limit + 1)
            .all(&self.db.conn)
            .await?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let end_cursor = rows
            .last()
            .map(|r| format!("{}_{}", r.at.timestamp_millis(), r.id));
        Ok(Page {
            items: rows,
            has_next_page,
            end_cursor,
        })
    }

    /// One page of a record's versions, newest first, in the view the key
    /// may have: the published view lists the published versions of a
    /// record published now; the draft view (`preview`, SPEC §2) every kept
    /// version. A record the view does not show is `NOT_FOUND`.
    pub async fn versions(
        &self,
        p: &Principal,
        id: &str,
        preview: bool,
        limit: i64,
        after: Option<&str>,
    ) -> AppResult<Page<record_versions::Model>> {
        let view = View::for_request(p, preview)?;
        let limit = check_limit(limit)?;
        let after = after
            .map(|a| {
                a.parse::<i64>().map_err(|_| {
                    AppError::bad_field(
                        "after",
                        "after must be a cursor from an earlier page (a version number)",
                    )
                })
            })
            .transpose()?;
        let mut record = records::Entity::find_by_id(id.to_owned())
            .filter(records::Column::ProjectId.eq(&p.project_id));
        if view == View::Published {
            record = record.filter(records::Column::PublishedAt.is_not_null());
        }
        if record.one(&self.db.conn).await?.is_none() {
            return Err(AppError::NotFound(format!("no record with id \"{id}\"")));
        }
        let (items, has_next_page) = versions::list(
            &self.db.conn,
            &p.project_id,
            id,
            view == View::Draft,
            limit,
            after,
        )
        .await?;
        let end_cursor = items.last().map(|v| v.version.to_string());
        Ok(Page {
            items,
            has_next_page,
            end_cursor,
        })
    }

    /// Copies a kept version's data into the record's draft (a new draft
    /// version); the published data stays until the next publish.
    pub async fn restore(
        &self,
        p: &Principal,
        id: &str,
        version: i64,
        expected_version: Option<i64>,
    ) -> AppResult<RecordOut> {
        let now = self.clock.now();
        let (catalog, project, id) = (
            Arc::clone(&self.catalog),
            p.project_id.clone(),
            id.to_owned(),
        );
        let pending = self.changes.arm(&p.project_id);
        let write = self.db.write(Box::new(move |txn| {
            Box::pin(async move {
                restore_in(txn, &catalog, &project, &id, version, expected_version, now).await
            })
        }));
        match write.await {
            Ok(record) => {
                let published_view = record.row.published_at.is_some();
                pending
                    .committed(record_change(
                        &record,
                        RecordAction::Updated,
                        published_view,
                    ))
                    .await;
                Ok(record)
            }
            Err(e) => {
                if e.is_refusal() {
                    pending.nothing();
                }
                Err(e)
            }
        }
    }
}

/// A record change as the content service announces it.
pub(super) fn record_change(
    record: &RecordOut,
    action: RecordAction,
    published_view: bool,
) -> Change {
    Change::Record {
        project_id: record.row.project_id.clone(),
        model_key: record.model_key.clone(),
        record_id: record.row.id.clone(),
        action,
        published_view,
    }
}

/// Serializes the writes of schedules of one project (the pending count):
/// a no-op write of the project's row on PostgreSQL; SQLite's write lock
/// on SQLite.
async fn lock_project(txn: &DatabaseTransaction, project_id: &str) -> AppResult<()> {
    if txn.get_database_backend() == DbBackend::Sqlite {
        return grab_write_lock(txn).await;
    }
    projects::Entity::update_many()
        .col_expr(
            projects::Column::Name,
            Expr::col(projects::Column::Name).into(),
        )
        .filter(projects::Column::Id.eq(project_id))
        .exec(txn)
        .await?;
    Ok(())
}

fn check_limit(limit: i64) -> AppResult<u64> {
    if (1..=MAX_LIMIT).contains(&limit) {
        Ok(limit as u64)
    } else {
        Err(AppError::bad_field(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ))
    }
}

/// Parses a `schedules` cursor: the last item's time (Unix milliseconds)
/// and id.
fn parse_schedule_cursor(after: &str) -> AppResult<(DateTime<Utc>, String)> {
    after
        .split_once('_')
        .and_then(|(ms, id)| {
            let at = DateTime::<Utc>::from_timestamp_millis(ms.parse().ok()?)?;
            Some((at, id.to_owned()))
        })
        .ok_or_else(|| {
            AppError::bad_field(
                "after",
                "after must be a cursor from an earlier page of schedules",
            )
        })
}

/// A status as the API names it.
pub fn status_name(status: ScheduleStatus) -> &'static str {
    match status {
        ScheduleStatus::Pending => "PENDING",
        ScheduleStatus::Done => "DONE",
        ScheduleStatus::Failed => "FAILED",
        ScheduleStatus::Canceled => "CANCELED",
    }
}

/// Copies version `version` of record `id` into its draft (an update, with
/// `expected_version` as `updateRecord` has it): the published data stays
/// until the record is published. The data is checked against the model as
/// it is now (a field added since as required makes it `BAD_USER_INPUT`).
async fn restore_in(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    project_id: &str,
    id: &str,
    version: i64,
    expected_version: Option<i64>,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    grab_write_lock(txn).await?;
    let kept = record_versions::Entity::find()
        .filter(record_versions::Column::ProjectId.eq(project_id))
        .filter(record_versions::Column::RecordId.eq(id))
        .filter(record_versions::Column::Version.eq(version))
        .one(txn)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "record \"{id}\" has no kept version {version} (draft versions older than the last {} are dropped)",
                versions::DRAFT_VERSIONS_KEPT
            ))
        })?;
    update_record(
        txn,
        catalog,
        project_id,
        id,
        kept.data,
        expected_version,
        now,
    )
    .await
}
