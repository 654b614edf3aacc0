//! The runner every instance starts: about once a second it looks for
//! pending schedules whose time has come (by the injectable clock) and runs
//! them, a batch of one project's schedules per transaction, which
//!
//! 1. claims them with one conditional update (`status = 'pending'` →
//!    `'done'`, only where still pending; on PostgreSQL the rows are picked
//!    `FOR UPDATE SKIP LOCKED`, so instances never wait on each other's
//!    claims): a schedule another instance took is not claimed again;
//! 2. locks their records (PostgreSQL; in id order, before anything else,
//!    so batches and requests always lock a record before the project's
//!    content generation and event head, as `publishRecord` does);
//! 3. does each publish or unpublish with the content writes
//!    ([`crate::content::records`]: the record, its version, its event in
//!    the outbox, the content generation) in a savepoint of its own; a
//!    refusal (record deleted, version changed since scheduling, a unique
//!    value taken) rolls the savepoint back and marks that schedule
//!    `failed` with the reason.
//!
//! The claim and the work commit together, so a schedule is done exactly
//! once however many instances run and whenever one dies: killed before the
//! commit, nothing happened and its schedules are still pending for the
//! next poll (of any instance). After the commit each change is announced
//! as `publishRecord` announces it (read cache, other instances, event
//! wake-ups). One transaction per batch holds the project's hot rows (its
//! content generation and event head) once, not once per schedule.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::records;
use entity::schedules::{self, ScheduleAction, ScheduleStatus};
use futures::StreamExt;
use sea_orm::sea_query::Expr;
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

/// How long after each whole second (of the system clock) the look comes.
const POLL_AFTER: Duration = Duration::from_millis(5);

/// Due schedules read per look (the next look follows at once while there
/// are more).
const SCAN: u64 = 500;

/// Schedules run in one transaction.
const BATCH: usize = 25;

/// Batches run at once by one instance.
const CONCURRENCY: usize = 4;

/// What running one schedule came to.
#[derive(Debug)]
enum Outcome {
    /// Done: the record as written.
    Done(Box<RecordOut>, ScheduleAction),
    /// Failed, for this reason.
    Failed(String),
}

impl ScheduleService {
    /// Starts the runner on this instance (until the process ends; a
    /// transaction cut off by the end commits nothing).
    pub fn spawn_runner(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                // Just after each whole second: schedules are mostly set at
                // whole seconds, and the look then comes at once, not up to
                // a poll later.
                let since_epoch = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let into = Duration::from_nanos(u64::from(since_epoch.subsec_nanos()));
                tokio::time::sleep(POLL.saturating_sub(into) + POLL_AFTER).await;
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
                .column(schedules::Column::ProjectId)
                .column(schedules::Column::Id)
                .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
                .filter(schedules::Column::At.lte(now))
                .order_by_asc(schedules::Column::At)
                .order_by_asc(schedules::Column::Id)
                .limit(SCAN)
                .into_tuple()
                .all(&self.db.conn)
                .await?;
            let full = due.len() as u64 == SCAN;
            let mut by_project: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (project, id) in due {
                by_project.entry(project).or_default().push(id);
            }
            let batches: Vec<(String, Vec<String>)> = by_project
                .into_iter()
                .flat_map(|(project, ids)| {
                    ids.chunks(BATCH)
                        .map(|c| (project.clone(), c.to_vec()))
                        .collect::<Vec<_>>()
                })
                .collect();
            let results: Vec<AppResult<usize>> = futures::stream::iter(batches)
                .map(|(project, ids)| async move { self.run_batch(&project, ids).await })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut this_look = 0;
            for result in results {
                this_look += result?;
            }
            ran += this_look;
            // A full scan may have more behind it; one whose schedules
            // others took entirely would be read again, so stop there.
            if !full || this_look == 0 {
                return Ok(ran);
            }
        }
    }

    /// Runs the still-pending schedules among `ids` (of one project) in one
    /// transaction; returns how many it ran.
    async fn run_batch(&self, project_id: &str, ids: Vec<String>) -> AppResult<usize> {
        let now = self.clock.now();
        let catalog = Arc::clone(&self.catalog);
        let pending = self.changes.arm(project_id);
        let outcomes = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move { run_in(txn, &catalog, ids, now).await })
            }))
            .await;
        // Not committed (or in doubt, announced so by `pending`): whatever
        // did not land is still pending, and the next poll retries it.
        let outcomes = outcomes?;
        let ran = outcomes.len();
        let mut changes = Vec::new();
        for (schedule, outcome) in outcomes {
            match outcome {
                Outcome::Done(record, action) => {
                    let action = match action {
                        ScheduleAction::Publish => RecordAction::Published,
                        ScheduleAction::Unpublish => RecordAction::Unpublished,
                    };
                    changes.push(record_change(&record, action, true));
                }
                Outcome::Failed(reason) => {
                    tracing::info!(schedule = %schedule, reason, "schedule failed");
                }
            }
        }
        match changes.pop() {
            None => pending.nothing(),
            Some(last) => {
                for change in changes {
                    self.changes.committed(change).await;
                }
                pending.committed(last).await;
            }
        }
        Ok(ran)
    }
}

/// Claims the pending schedules among `ids` and does their work, in the
/// caller's transaction; each claimed schedule's id and outcome.
async fn run_in(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    ids: Vec<String>,
    now: DateTime<Utc>,
) -> AppResult<Vec<(String, Outcome)>> {
    grab_write_lock(txn).await?;
    let postgres = txn.get_database_backend() == DbBackend::Postgres;
    let mut pick = schedules::Entity::find()
        .filter(schedules::Column::Id.is_in(ids))
        .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
        .order_by_asc(schedules::Column::At)
        .order_by_asc(schedules::Column::Id);
    if postgres {
        pick = pick.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    let picked = pick.all(txn).await?;
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    // The claim: only where still pending (on SQLite the one writer makes
    // the pick and this one view; on PostgreSQL the rows are locked).
    let claimed = schedules::Entity::update_many()
        .col_expr(schedules::Column::Status, Expr::value(ScheduleStatus::Done))
        .col_expr(schedules::Column::DoneAt, Expr::value(Some(now)))
        .filter(schedules::Column::Id.is_in(picked.iter().map(|s| s.id.clone())))
        .filter(schedules::Column::Status.eq(ScheduleStatus::Pending))
        .exec(txn)
        .await?;
    if claimed.rows_affected != picked.len() as u64 {
        return Err(AppError::internal(format!(
            "claimed {} of {} picked schedules",
            claimed.rows_affected,
            picked.len()
        )));
    }
    if postgres {
        let mut record_ids: Vec<&String> = picked.iter().map(|s| &s.record_id).collect();
        record_ids.sort();
        record_ids.dedup();
        records::Entity::find()
            .select_only()
            .column(records::Column::Id)
            .filter(records::Column::Id.is_in(record_ids.into_iter().cloned()))
            .order_by_asc(records::Column::Id)
            .lock_exclusive()
            .into_tuple::<String>()
            .all(txn)
            .await?;
    }
    let mut outcomes = Vec::with_capacity(picked.len());
    for schedule in picked {
        let work = txn.begin().await?;
        match act(&work, catalog, &schedule, now).await {
            Ok(record) => {
                work.commit().await?;
                outcomes.push((
                    schedule.id,
                    Outcome::Done(Box::new(record), schedule.action),
                ));
            }
            Err(e) if e.is_refusal() => {
                work.rollback().await?;
                let reason = e.message();
                schedules::Entity::update_many()
                    .col_expr(
                        schedules::Column::Status,
                        Expr::value(ScheduleStatus::Failed),
                    )
                    .col_expr(schedules::Column::Error, Expr::value(Some(reason.clone())))
                    .filter(schedules::Column::Id.eq(&schedule.id))
                    .exec(txn)
                    .await?;
                outcomes.push((schedule.id, Outcome::Failed(reason)));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outcomes)
}

/// The publish or unpublish itself, as `publishRecord`/`unpublishRecord`
/// do it; a refusal names why the schedule failed.
async fn act(
    txn: &DatabaseTransaction,
    catalog: &Catalog,
    schedule: &schedules::Model,
    now: DateTime<Utc>,
) -> AppResult<RecordOut> {
    let deleted = || {
        AppError::NotFound(format!(
            "record \"{}\" was deleted before the schedule ran",
            schedule.record_id
        ))
    };
    if let Some(expected) = schedule.expected_version {
        let record = records::Entity::find_by_id(schedule.record_id.clone())
            .filter(records::Column::ProjectId.eq(&schedule.project_id))
            .one(txn)
            .await?
            .ok_or_else(deleted)?;
        if record.version != expected {
            return Err(AppError::Conflict(format!(
                "record \"{}\" changed since the schedule was made: it is at version {}, not {expected}",
                record.id, record.version
            )));
        }
    }
    let (project, id) = (&schedule.project_id, &schedule.record_id);
    let done = match schedule.action {
        ScheduleAction::Publish => publish_record(txn, catalog, project, id, now).await,
        ScheduleAction::Unpublish => unpublish_record(txn, catalog, project, id, now).await,
    };
    done.map_err(|e| match e {
        AppError::NotFound(_) => deleted(),
        e => e,
    })
}
