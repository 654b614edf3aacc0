//! The runner every instance starts: about once a second it looks for
//! pending schedules whose time has come (by the injectable clock) and runs
//! each in one transaction that
//!
//! 1. claims it with one conditional update (`status = 'pending'` →
//!    `'done'`; on PostgreSQL through `FOR UPDATE SKIP LOCKED`, so
//!    instances never wait on each other's claims): a schedule another
//!    instance took changes no row, and this instance moves on;
//! 2. does the publish or unpublish with the content writes
//!    ([`crate::content::records`]: the record, its version, its event in
//!    the outbox, the content generation) in a savepoint; a refusal (record
//!    deleted, version changed since scheduling, a unique value taken) rolls
//!    the savepoint back and marks the schedule `failed` with the reason.
//!
//! The claim and the work commit together, so a schedule is done exactly
//! once however many instances run it and whenever one dies: killed before
//! the commit, nothing happened and the schedule is still pending for the
//! next poll (of any instance). After the commit the change is announced as
//! `publishRecord` announces it (read cache, other instances, event
//! wake-ups).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::records;
use entity::schedules::{self, ScheduleAction, ScheduleStatus};
use futures::StreamExt;
use sea_orm::sea_query::{Expr, LockBehavior, LockType, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use super::service::record_change;
use super::ScheduleService;
use crate::changes::RecordAction;
use crate::content::catalog::Catalog;
use crate::content::records::{publish_record, unpublish_record, RecordOut};
use crate::db::grab_write_lock;
use crate::error::{AppError, AppResult};

/// How often an instance looks for due schedules.
pub const POLL: Duration = Duration::from_secs(1);

/// Due schedules read per look (more are read by the next look at once).
const BATCH: u64 = 100;

/// Schedules run at once by one instance.
const CONCURRENCY: usize = 8;

/// What running one schedule came to.
#[derive(Debug)]
pub enum Outcome {
    /// Another instance had claimed it (or it was canceled).
    Taken,
    /// Done: the record as written.
    Done(Box<RecordOut>, ScheduleAction),
    /// Failed, for this reason.
    Failed(String),
}

impl ScheduleService {
    /// Starts the runner on this instance (until the process ends).
    pub fn spawn_runner(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(POLL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                if let Err(e) = me.run_due().await {
                    tracing::warn!(error = %e.cause(), "could not run due schedules");
                }
            }
        });
    }

    /// Runs every schedule due now; returns how many this instance did or
    /// failed (those other instances took are not counted).
    pub async fn run_due(&self) -> AppResult<usize> {
        let mut ran = 0;
        loop {
            let now = self.clock.now();
            let due: Vec<(String, String)> = schedules::Entity::find()
                .select_only()
                .column(schedules::Column::Id)
                .column(schedules::Column::ProjectId)
                .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
                .filter(schedules::Column::At.lte(now))
                .order_by_asc(schedules::Column::At)
                .limit(BATCH)
                .into_tuple()
                .all(&self.db.conn)
                .await?;
            let full = due.len() as u64 == BATCH;
            let results: Vec<AppResult<bool>> = futures::stream::iter(due)
                .map(|(id, project)| async move { self.run_one(&id, &project).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut taken = 0;
            for result in results {
                match result {
                    Ok(true) => ran += 1,
                    Ok(false) => taken += 1,
                    Err(e) => return Err(e),
                }
            }
            // A full batch may have more behind it; one taken entirely by
            // others would be read again, so stop there.
            if !full || taken as u64 == BATCH {
                return Ok(ran);
            }
        }
    }

    /// Runs one schedule; `false` when another instance had it.
    async fn run_one(&self, id: &str, project_id: &str) -> AppResult<bool> {
        let now = self.clock.now();
        let (catalog, id_owned) = (Arc::clone(&self.catalog), id.to_owned());
        let pending = self.changes.arm(project_id);
        let outcome = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { run_in(txn, &catalog, &id_owned, now).await })
            }))
            .await;
        match outcome {
            Ok(Outcome::Done(record, action)) => {
                let action = match action {
                    ScheduleAction::Publish => RecordAction::Published,
                    ScheduleAction::Unpublish => RecordAction::Unpublished,
                };
                pending
                    .committed(record_change(&record, action, true))
                    .await;
                Ok(true)
            }
            Ok(Outcome::Failed(reason)) => {
                pending.nothing();
                tracing::info!(schedule = id, reason, "schedule failed");
                Ok(true)
            }
            Ok(Outcome::Taken) => {
                pending.nothing();
                Ok(false)
            }
            // Not committed (or in doubt, announced so): the schedule is
            // still pending if nothing landed, and the next poll retries.
            Err(e) => Err(e),
        }
    }
}

/// Claims schedule `id` and does its work, in the caller's transaction.
async fn run_in(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<Outcome> {
    grab_write_lock(txn).await?;
    let Some(schedule) = claim(txn, id, now).await? else {
        return Ok(Outcome::Taken);
    };
    let work = txn.begin().await?;
    match act(&work, catalog, &schedule, now).await {
        Ok(record) => {
            work.commit().await?;
            Ok(Outcome::Done(Box::new(record), schedule.action))
        }
        Err(e) if e.is_refusal() => {
            work.rollback().await?;
            let reason = e.message();
            schedules::Entity::update_many()
                .col_expr(schedules::Column::Status, Expr::value(ScheduleStatus::Failed))
                .col_expr(schedules::Column::Error, Expr::value(Some(reason.clone())))
                .filter(schedules::Column::Id.eq(id))
                .exec(txn)
                .await?;
            Ok(Outcome::Failed(reason))
        }
        Err(e) => Err(e),
    }
}

/// The conditional update that makes this transaction the one running the
/// schedule: `pending` → `done` (turned `failed` later in the same
/// transaction if the work is refused). `None` when it is not pending any
/// more, or (PostgreSQL) another instance holds it right now.
async fn claim(
    txn: &DatabaseTransaction,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<Option<schedules::Model>> {
    let mut pick = Query::select()
        .column(schedules::Column::Id)
        .from(schedules::Entity)
        .and_where(schedules::Column::Id.eq(id))
        .and_where(schedules::Column::Status.eq(ScheduleStatus::Pending))
        .to_owned();
    if txn.get_database_backend() == DbBackend::Postgres {
        pick.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    let claimed = schedules::Entity::update_many()
        .col_expr(schedules::Column::Status, Expr::value(ScheduleStatus::Done))
        .col_expr(schedules::Column::DoneAt, Expr::value(Some(now)))
        .filter(schedules::Column::Id.in_subquery(pick))
        .exec(txn)
        .await?;
    if claimed.rows_affected == 0 {
        return Ok(None);
    }
    Ok(schedules::Entity::find_by_id(id.to_owned()).one(txn).await?)
}

/// The publish or unpublish itself, as `publishRecord`/`unpublishRecord`
/// do it; a refusal names why the schedule failed.
async fn act(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    schedule: &schedules::Model,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let mut find = records::Entity::find_by_id(schedule.record_id.clone())
        .filter(records::Column::ProjectId.eq(&schedule.project_id));
    if txn.get_database_backend() == DbBackend::Postgres {
        // Held until the commit: no update can slip in between this check
        // and the publish (SQLite has one writer anyway).
        find = find.lock_exclusive();
    }
    let record = find
        .one(txn)
        .await?
        .ok_or_else(|| {
            AppError::NotFound(format!(
                "record \"{}\" was deleted before the schedule ran",
                schedule.record_id
            ))
        })?;
    if let Some(expected) = schedule.expected_version {
        if record.version != expected {
            return Err(AppError::Conflict(format!(
                "record \"{}\" changed since the schedule was made: it is at version {}, not {expected}",
                record.id, record.version
            )));
        }
    }
    let (project, id) = (&schedule.project_id, &schedule.record_id);
    match schedule.action {
        ScheduleAction::Publish => publish_record(txn, catalog, project, id, now).await,
        ScheduleAction::Unpublish => unpublish_record(txn, catalog, project, id, now).await,
    }
}
