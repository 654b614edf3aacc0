//! Group commit on SQLite's one writer.
//!
//! SQLite admits one writer at a time, so concurrent writes queue anyway.
//! Here they queue for one task that runs them in groups: every write that
//! is waiting when a group starts (at most [`MAX_GROUP`]) runs in one
//! transaction, each in a savepoint of its own, and the group commits once.
//! A write answers only after its group's commit, so an acknowledged write
//! is as durable as one committed alone; a write that fails rolls back its
//! own savepoint and nothing else; if the group's commit fails, every write
//! of the group fails (none of them landed).
//!
//! Nothing waits for company: a group holds the writes that queued while
//! the previous one ran, so a write alone is a group of one.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use super::take_write_lock;
use crate::error::{AppError, AppResult};

/// Most writes in one group (one transaction).
pub const MAX_GROUP: usize = 64;
/// Most writes waiting for a group; more wait to be queued.
const QUEUE: usize = 1024;

/// The statements of one write, run in a transaction (a savepoint) that
/// the caller of [`Database::write`](super::Database::write) does not see.
pub type Work<T> =
    Box<dyn for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, AppResult<T>> + Send>;

tokio::task_local! {
    /// Set while a group runs its writes: the group holds the write lock.
    static IN_GROUP: ();
}

/// Whether the current task is running a write of a group (which holds the
/// write lock already).
pub(super) fn in_group() -> bool {
    IN_GROUP.try_with(|()| ()).is_ok()
}

/// A queued write, whatever it returns.
trait Job: Send {
    /// Runs the write in `txn`; whether it succeeded.
    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction) -> BoxFuture<'t, bool>;
    /// Answers the write's caller once the group's commit is known.
    fn finish(self: Box<Self>, commit: &Result<(), String>);
}

struct Queued<T> {
    work: Option<Work<T>>,
    result: Option<AppResult<T>>,
    reply: Option<oneshot::Sender<AppResult<T>>>,
}

impl<T: Send + 'static> Job for Queued<T> {
    fn run<'t>(&'t mut self, txn: &'t DatabaseTransaction) -> BoxFuture<'t, bool> {
        Box::pin(async move {
            let Some(work) = self.work.take() else {
                return false;
            };
            // A write that panics fails alone; the group goes on.
            let result = AssertUnwindSafe(work(txn))
                .catch_unwind()
                .await
                .unwrap_or_else(|_| Err(AppError::internal("a write panicked")));
            let ok = result.is_ok();
            self.result = Some(result);
            ok
        })
    }

    fn finish(mut self: Box<Self>, commit: &Result<(), String>) {
        let result = match (self.result.take(), commit) {
            // A write refused or failed on its own: nothing of it landed.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            // The group stopped before this write ran, or did not commit.
            (_, Err(cause)) => Err(AppError::unavailable(format!(
                "the write was not committed: {cause}"
            ))),
            (None, Ok(())) => Err(AppError::internal("a queued write did not run")),
        };
        if let Some(reply) = self.reply.take() {
            // The caller may have gone away; the write's fate is the same.
            let _ = reply.send(result);
        }
    }
}

/// The queue of writes and the task that runs them.
pub struct GroupCommit {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// The largest group run so far.
    largest: Arc<AtomicUsize>,
}

impl GroupCommit {
    /// Starts the task that runs writes on `writer` (one connection).
    pub fn start(writer: DatabaseConnection) -> Self {
        Self::start_with(writer, QUEUE, MAX_GROUP)
    }

    /// Like [`GroupCommit::start`], with `queue` writes waiting at most
    /// (more wait to be queued) and groups of at most `max_group`.
    pub fn start_with(writer: DatabaseConnection, queue: usize, max_group: usize) -> Self {
        let (jobs, waiting) = mpsc::channel(queue.max(1));
        let largest = Arc::new(AtomicUsize::new(0));
        let groups = run_groups(writer, waiting, max_group.max(1), Arc::clone(&largest));
        tokio::spawn(IN_GROUP.scope((), groups));
        Self { jobs, largest }
    }

    /// The most writes one group has held so far.
    pub fn largest_group(&self) -> usize {
        self.largest.load(Ordering::Relaxed)
    }

    /// Runs `work` in the next group; answers after the group commits.
    pub async fn write<T: Send + 'static>(&self, work: Work<T>) -> AppResult<T> {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Queued {
            work: Some(work),
            result: None,
            reply: Some(reply),
        });
        let stopped = || AppError::unavailable("the writer has stopped");
        self.jobs.send(job).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run_groups(
    writer: DatabaseConnection,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    max_group: usize,
    largest: Arc<AtomicUsize>,
) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(max_group);
    while let Some(first) = queue.recv().await {
        group.push(first);
        while group.len() < max_group {
            match queue.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        metrics::histogram!("quire_write_group_size").record(group.len() as f64);
        largest.fetch_max(group.len(), Ordering::Relaxed);
        let commit = run_group(&writer, &mut group).await.map_err(|e| e.cause());
        if let Err(cause) = &commit {
            tracing::warn!(writes = group.len(), error = %cause, "a group of writes did not commit");
        }
        for job in group.drain(..) {
            job.finish(&commit);
        }
    }
}

/// One transaction: each write in a savepoint, then one commit.
async fn run_group(writer: &DatabaseConnection, group: &mut [Box<dyn Job>]) -> AppResult<()> {
    let txn = writer.begin().await?;
    take_write_lock(&txn).await?;
    for job in group.iter_mut() {
        // A savepoint that cannot be set, released or rolled back leaves
        // the transaction in doubt: the whole group rolls back.
        in_savepoint(&txn, job.as_mut()).await?;
    }
    txn.commit().await?;
    Ok(())
}

async fn in_savepoint(txn: &DatabaseTransaction, job: &mut dyn Job) -> AppResult<()> {
    let savepoint = txn.begin().await?;
    if job.run(&savepoint).await {
        savepoint.commit().await?;
    } else {
        savepoint.rollback().await?;
    }
    Ok(())
}

/// Runs `work` in a transaction of its own on `writer` (PostgreSQL, whose
/// writers need no queue, or SQLite in memory).
pub(super) async fn write_alone<T, F>(writer: &DatabaseConnection, work: F) -> AppResult<T>
where
    F: for<'t> FnOnce(&'t DatabaseTransaction) -> BoxFuture<'t, AppResult<T>>,
{
    let txn = writer.begin().await?;
    let value = work(&txn).await?;
    txn.commit().await?;
    Ok(value)
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;
    use crate::db::Database;

    /// 40 writes at once through a queue of 2 and groups of at most 4:
    /// every caller is answered (the full queue makes them wait, it does
    /// not drop them), groups form and never pass their bound, and the one
    /// write that fails rolls back alone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn groups_are_bounded_and_a_failing_write_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display());
        let db = Database::connect(&url).await.unwrap();
        db.migrate(chrono::Utc::now()).await.unwrap();
        db.writer
            .execute_unprepared("CREATE TABLE t (n INTEGER PRIMARY KEY)")
            .await
            .unwrap();
        let group = Arc::new(GroupCommit::start_with(db.writer.clone(), 2, 4));
        let writes = (0..40).map(|n: i64| {
            let group = Arc::clone(&group);
            tokio::spawn(async move {
                group
                    .write(Box::new(move |txn| {
                        Box::pin(async move {
                            let backend = txn.get_database_backend();
                            // Write 13 inserts twice in one write: its second
                            // statement fails, so it must leave nothing.
                            let sql = if n == 13 {
                                "INSERT INTO t (n) VALUES (13); INSERT INTO t (n) VALUES (13)"
                            } else {
                                "INSERT INTO t (n) VALUES (?)"
                            };
                            let values: Vec<sea_orm::Value> =
                                if n == 13 { vec![] } else { vec![n.into()] };
                            txn.execute(Statement::from_sql_and_values(backend, sql, values))
                                .await?;
                            Ok(n)
                        })
                    }))
                    .await
            })
        });
        let results = futures::future::join_all(writes).await;
        for (n, result) in results.into_iter().enumerate() {
            let result = result.unwrap();
            if n == 13 {
                assert!(result.is_err(), "the failing write failed");
            } else {
                assert_eq!(result.unwrap(), n as i64);
            }
        }
        let rows = db
            .conn
            .query_one(Statement::from_string(
                db.backend(),
                "SELECT COUNT(*) AS c, SUM(n = 13) AS thirteen FROM t",
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(rows.try_get::<i64>("", "c").unwrap(), 39);
        assert_eq!(rows.try_get::<i64>("", "thirteen").unwrap(), 0);
        let largest = group.largest_group();
        assert!((2..=4).contains(&largest), "largest group {largest}");
    }
}
