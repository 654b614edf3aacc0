//! Opening the database, applying migrations safely, the setup lock, the
//! write-transaction idiom, and projects (the tenants everything else hangs
//! from).
//!
//! SQLite gets its pragmas set explicitly (WAL, foreign keys, busy timeout,
//! synchronous=NORMAL); PostgreSQL instances serialize migrations and
//! first-start setup with an advisory lock.
//!
//! Every statement is bounded by `QUIRE_DB_TIMEOUT_SECONDS`: PostgreSQL
//! cancels it (`statement_timeout`), SQLite stops waiting for a lock
//! (`busy_timeout`), and [`Health::guard`] abandons request work that a
//! black-holed connection would leave waiting forever.

pub mod group;
pub mod health;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::projects;
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, SqlxPostgresConnector, SqlxSqliteConnector,
    TransactionTrait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::config::DEFAULT_DB_TIMEOUT_SECONDS;
use crate::error::{AppError, AppResult, StartError};
use group::{GroupCommit, Work};
pub use health::Health;

use health::ProbeTarget;

/// Name of the project that migrations create.
pub const DEFAULT_PROJECT: &str = "default";
/// A PostgreSQL advisory lock id for "quire is migrating".
const MIGRATION_LOCK_ID: i64 = 0x7175_6972_6500;

/// An open database and, for PostgreSQL, the pool used for advisory locks.
#[derive(Clone)]
pub struct Database {
    /// The sea-orm connection every service uses.
    pub conn: DatabaseConnection,
    /// Where content writes go. On SQLite, one connection: SQLite admits one
    /// writer at a time anyway, and writers queueing for this connection
    /// (first come, first served) beat writers sleeping in SQLite's busy
    /// handler by far under concurrency. On PostgreSQL, the same pool as
    /// `conn`.
    pub writer: DatabaseConnection,
    pg: Option<sqlx::PgPool>,
    /// Whether the database answers; bounds request work (shared by clones).
    pub health: Arc<Health>,
    /// Whether every content write goes through the one `writer`
    /// connection, one at a time (SQLite on a file), so that writers may
    /// share state guarded by that connection alone (see
    /// `content::catalog`).
    pub exclusive_writer: bool,
    /// Record writes on SQLite's one writer, grouped ([`group`]).
    group: Option<Arc<GroupCommit>>,
}

/// A pooled PostgreSQL connection idle for longer than this is pinged
/// before use; one in steady use is not (the ping is a round trip per
/// query): a connection that broke meanwhile fails its query, and the pool
/// drops it when it is returned (the pool pings every returned connection).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

impl Database {
    /// Opens `url` (`sqlite://…` or `postgres://…`) with the default
    /// statement timeout.
    pub async fn connect(url: &str) -> Result<Self, StartError> {
        Self::connect_with_timeout(url, Duration::from_secs(DEFAULT_DB_TIMEOUT_SECONDS)).await
    }

    /// Opens `url`; a statement that takes longer than `timeout` is
    /// abandoned, and so is a wait for a pooled connection.
    pub async fn connect_with_timeout(url: &str, timeout: Duration) -> Result<Self, StartError> {
        let unavailable = |e: sqlx::Error| StartError::Database(e.to_string());
        let timeout = timeout.max(Duration::from_secs(1));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(unavailable)?
                .options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(timeout)
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for > PING_IDLE_AFTER {
                            sqlx::Connection::ping(conn).await?;
                        }
                        Ok(true)
                    })
                })
                .connect_with(opts.clone())
                .await
                .map_err(unavailable)?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
            Ok(Self {
                writer: conn.clone(),
                conn,
                pg: Some(pool),
                health: Health::new(ProbeTarget::Postgres(Box::new(opts)), timeout),
                exclusive_writer: false,
                group: None,
            })
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(unavailable)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(timeout);
            let probe_opts = opts.clone();
            // A SQLite connection is a file handle in this process: it does
            // not break while idle, and a ping on checkout is a round trip
            // to its worker thread per query.
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(timeout)
                .test_before_acquire(false)
                .connect_with(opts.clone())
                .await
                .map_err(unavailable)?;
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
            // An in-memory database exists per connection: one pool only.
            let in_memory = url.contains(":memory:") || url.contains("mode=memory");
            let (writer, group) = if in_memory {
                (conn.clone(), None)
            } else {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .test_before_acquire(false)
                    .connect_with(opts)
                    .await
                    .map_err(unavailable)?;
                let writer = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
                let group = Arc::new(GroupCommit::start(writer.clone()));
                (writer, Some(group))
            };
            Ok(Self {
                health: Health::new(ProbeTarget::Sqlite(Box::new(probe_opts)), timeout),
                conn,
                writer,
                pg: None,
                exclusive_writer: !in_memory,
                group,
            })
        } else {
            Err(StartError::Config(
                "the database URL must start with sqlite:// or postgres://".into(),
            ))
        }
    }

    /// Runs one write (the statements `work` runs in the transaction it is
    /// given) and commits it: on SQLite's one writer as a savepoint of a
    /// group commit ([`group`]), elsewhere in a transaction of its own.
    /// Answers once the write is committed.
    pub async fn write<T: Send + 'static>(&self, work: Work<T>) -> AppResult<T> {
        match &self.group {
            Some(group) => group.write(work).await,
            None => group::write_alone(&self.writer, work).await,
        }
    }

    /// Which SQL dialect this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations and makes sure the `default` project
    /// exists; safe when several instances start at once.
    pub async fn migrate(&self, now: DateTime<Utc>) -> Result<(), StartError> {
        self.with_setup_lock(|| async {
            // Without an advisory lock (SQLite), a racing instance may fail one
            // step; the statements are idempotent, so retrying converges.
            let mut attempt = 0;
            loop {
                match Migrator::up(&self.conn, None).await {
                    Ok(()) => break,
                    Err(e) if attempt < 10 && self.pg.is_none() => {
                        attempt += 1;
                        tracing::debug!(error = %e, attempt, "migration raced, retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => return Err(AppError::from(e)),
                }
            }
            ensure_project(&self.conn, DEFAULT_PROJECT, now).await?;
            Ok(())
        })
        .await
        .map_err(StartError::from)
    }

    /// Runs `f` holding the PostgreSQL advisory lock (no lock on SQLite,
    /// whose writers are serialized by the database itself).
    pub async fn with_setup_lock<F, Fut, T>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<T>>,
    {
        let Some(pool) = &self.pg else {
            return f().await;
        };
        let unavailable = AppError::unavailable;
        let mut lock_conn = pool.acquire().await.map_err(unavailable)?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *lock_conn)
            .await
            .map_err(unavailable)?;
        let result = f().await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_ID)
            .execute(&mut *lock_conn)
            .await;
        if let Err(e) = unlocked {
            // Dropping the connection from the pool ends the session and its lock.
            tracing::warn!(error = %e, "could not release the migration lock");
            lock_conn.detach();
        }
        result
    }

    /// Whether the database answers, for `/readyz`: within
    /// [`health::PROBE_TIMEOUT`], and at once while it is known to be down.
    pub async fn ping(&self) -> AppResult<()> {
        if self.health.is_down() {
            return Err(AppError::unreachable());
        }
        match tokio::time::timeout(health::READY_TIMEOUT, self.conn.ping()).await {
            Ok(result) => result.map_err(AppError::unavailable),
            Err(_) => {
                self.health.suspect();
                Err(AppError::unavailable("the database did not answer in time"))
            }
        }
    }
}

/// A fresh random identifier for rows.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Begins a transaction that will write: the one way quire takes a write
/// lock up front. On SQLite it takes the database's write lock at once
/// (waiting its turn): a deferred transaction that read first would fail
/// outright with `SQLITE_BUSY` when another writer committed in between.
/// On PostgreSQL it is a plain transaction; callers lock the rows they
/// serialize on (see [`begin_project_write`]).
pub async fn begin_write<C: TransactionTrait>(db: &C) -> AppResult<DatabaseTransaction> {
    let txn = db.begin().await?;
    grab_write_lock(&txn).await?;
    Ok(txn)
}

/// Takes SQLite's write lock for a transaction just begun, before its
/// first read (sea-orm begins deferred transactions; this is what `BEGIN
/// IMMEDIATE` would do). Nothing on PostgreSQL. A transaction whose first
/// statement writes needs none: that statement takes the lock.
/// Within a group commit the group holds the lock already.
pub async fn grab_write_lock(txn: &DatabaseTransaction) -> AppResult<()> {
    if group::in_group() {
        return Ok(());
    }
    take_write_lock(txn).await
}

async fn take_write_lock(txn: &DatabaseTransaction) -> AppResult<()> {
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE projects SET name = name WHERE 0")
            .await?;
    }
    Ok(())
}

/// Like [`begin_write`], and serialized with every other transaction begun
/// this way for the same project: a no-op write of the project's row takes
/// its row lock on PostgreSQL (SQLite has one writer anyway) before any read.
pub async fn begin_project_write<C: TransactionTrait>(
    db: &C,
    project_id: &str,
) -> AppResult<DatabaseTransaction> {
    let txn = begin_write(db).await?;
    projects::Entity::update_many()
        .col_expr(
            projects::Column::Name,
            Expr::col(projects::Column::Name).into(),
        )
        .filter(projects::Column::Id.eq(project_id))
        .exec(&txn)
        .await?;
    Ok(txn)
}

/// Finds a project by name.
pub async fn project_by_name<C: ConnectionTrait>(
    db: &C,
    name: &str,
) -> AppResult<Option<projects::Model>> {
    Ok(projects::Entity::find()
        .filter(projects::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// Finds a project by id.
pub async fn project_by_id<C: ConnectionTrait>(
    db: &C,
    id: &str,
) -> AppResult<Option<projects::Model>> {
    Ok(projects::Entity::find_by_id(id.to_owned()).one(db).await?)
}

/// Creates a project unless one of that name exists; returns it.
pub async fn ensure_project<C: ConnectionTrait>(
    db: &C,
    name: &str,
    now: DateTime<Utc>,
) -> AppResult<projects::Model> {
    let row = projects::ActiveModel {
        id: Set(new_id()),
        name: Set(name.to_owned()),
        created_at: Set(now),
    };
    projects::Entity::insert(row)
        .on_conflict(
            OnConflict::column(projects::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    project_by_name(db, name)
        .await?
        .ok_or_else(|| AppError::internal(format!("project {name} vanished")))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use sea_orm::{ConnectionTrait, Statement};

    use super::Database;

    #[tokio::test]
    async fn sqlite_is_built_without_its_allocation_mutex() {
        // `.cargo/config.toml` sets it; with it gone, every SQLite
        // allocation takes one process-wide lock again.
        let db = Database::connect("sqlite::memory:").await.unwrap();
        let rows = db
            .conn
            .query_all(Statement::from_string(
                db.conn.get_database_backend(),
                "PRAGMA compile_options",
            ))
            .await
            .unwrap();
        let options: Vec<String> = rows
            .iter()
            .map(|r| r.try_get_by_index::<String>(0).unwrap())
            .collect();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }
}
