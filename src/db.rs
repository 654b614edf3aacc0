//! Opening the database, applying migrations safely, and first-start setup.
//!
//! SQLite gets its pragmas set explicitly (WAL, foreign keys, busy timeout,
//! synchronous=NORMAL); PostgreSQL instances serialize migrations and the
//! bootstrap with an advisory lock.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait, PaginatorTrait,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionTrait,
};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::auth::key::{ApiKeySecret, KeyMode, KeyType};
use crate::auth::scopes::ScopeSet;
use crate::error::{AppError, AppResult};

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
}

impl Database {
    /// Opens `url` (`sqlite://…` or `postgres://…`).
    pub async fn connect(url: &str) -> AppResult<Self> {
        let unavailable =
            |e: sqlx::Error| AppError::Unavailable(format!("cannot open database: {e}"));
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(unavailable)?;
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts)
                .await
                .map_err(unavailable)?;
            let conn = SqlxPostgresConnector::from_sqlx_postgres_pool(pool.clone());
            Ok(Self {
                writer: conn.clone(),
                conn,
                pg: Some(pool),
            })
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(unavailable)?
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(5));
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(5))
                .connect_with(opts.clone())
                .await
                .map_err(unavailable)?;
            let conn = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
            // An in-memory database exists per connection: one pool only.
            let writer = if url.contains(":memory:") || url.contains("mode=memory") {
                conn.clone()
            } else {
                let pool = SqlitePoolOptions::new()
                    .max_connections(1)
                    .acquire_timeout(Duration::from_secs(30))
                    .connect_with(opts)
                    .await
                    .map_err(unavailable)?;
                SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
            };
            Ok(Self {
                conn,
                writer,
                pg: None,
            })
        } else {
            Err(AppError::bad_input(
                "database URL must start with sqlite:// or postgres://",
            ))
        }
    }

    /// Which SQL dialect this is.
    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations and makes sure the `default` project
    /// exists; safe when several instances start at once.
    pub async fn migrate(&self, now: DateTime<Utc>) -> AppResult<()> {
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
            self.ensure_project(DEFAULT_PROJECT, now).await?;
            Ok(())
        })
        .await
    }

    /// Creates a project unless one of that name exists; returns it.
    pub async fn ensure_project(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> AppResult<entity::projects::Model> {
        use entity::projects;
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
            .exec_without_returning(&self.conn)
            .await?;
        crate::keys::project_by_name(&self.conn, name)
            .await?
            .ok_or_else(|| AppError::Internal(format!("project {name} vanished")))
    }

    /// First start: when the database holds no API key at all, creates the
    /// `bootstrap` secret test key with every scope and returns it (once:
    /// a marker row makes sure no other start, concurrent or later, does).
    pub async fn bootstrap(
        &self,
        now: DateTime<Utc>,
        rate_limit: u32,
    ) -> AppResult<Option<ApiKeySecret>> {
        use entity::{api_keys, markers};
        self.with_setup_lock(|| async {
            if api_keys::Entity::find().count(&self.conn).await? > 0 {
                return Ok(None);
            }
            let txn = self.conn.begin().await?;
            let claimed = markers::Entity::insert(markers::ActiveModel {
                name: Set("bootstrap".into()),
                created_at: Set(now),
            })
            .on_conflict(
                OnConflict::column(markers::Column::Name)
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
            if claimed == 0 {
                return Ok(None);
            }
            let project = crate::keys::project_by_name(&txn, DEFAULT_PROJECT)
                .await?
                .ok_or_else(|| AppError::Internal("default project missing".into()))?;
            let new = crate::keys::NewKey {
                name: "bootstrap".into(),
                key_type: KeyType::Secret,
                mode: KeyMode::Test,
                scopes: ScopeSet::all(),
                rate_limit_per_hour: rate_limit.into(),
                expires_at: None,
            };
            let (secret, _) =
                crate::keys::insert_key(&txn, &project.id, new, &crate::keys::Actor::Admin, now)
                    .await?;
            txn.commit().await?;
            Ok(Some(secret))
        })
        .await
    }

    /// Runs `f` holding the PostgreSQL advisory lock (no lock on SQLite,
    /// whose writers are serialized by the database itself).
    async fn with_setup_lock<F, Fut, T>(&self, f: F) -> AppResult<T>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = AppResult<T>>,
    {
        let Some(pool) = &self.pg else {
            return f().await;
        };
        let unavailable = |e: sqlx::Error| AppError::Unavailable(e.to_string());
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

    /// Cheap round trip for `/readyz`.
    pub async fn ping(&self) -> AppResult<()> {
        self.conn
            .ping()
            .await
            .map_err(|e| AppError::Unavailable(e.to_string()))
    }
}

/// A fresh random identifier for rows.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}
