//! [`FreshDb`]: an empty database for one test — a SQLite file in a
//! temporary directory, or a new PostgreSQL database when
//! `QUIRE_TEST_DATABASE_URL` is set — that is gone when the value is dropped,
//! whether the test passed or panicked.

use std::time::Duration;

use chrono::Utc;

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// An empty database, dropped on `Drop`.
pub struct FreshDb {
    /// What `quire` connects to.
    pub url: String,
    pub backend: Backend,
    /// The PostgreSQL database to drop; `None` for SQLite.
    pg: Option<PgDatabase>,
    /// The SQLite file's directory (empty for PostgreSQL); removed on drop.
    dir: tempfile::TempDir,
}

/// A PostgreSQL database this test created: the server's URL and its name.
struct PgDatabase {
    admin_url: String,
    name: String,
}

impl FreshDb {
    /// Creates one, or `None` (saying so) when PostgreSQL is asked for and
    /// `QUIRE_TEST_DATABASE_URL` is not set.
    pub async fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("quire.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("QUIRE_TEST_DATABASE_URL") else {
                    eprintln!("skipped: QUIRE_TEST_DATABASE_URL is not set (PostgreSQL variant)");
                    return None;
                };
                let name = format!("quire_t_{}", uuid::Uuid::new_v4().simple());
                let admin = admin_pool(&admin_url)
                    .await
                    .expect("connect to QUIRE_TEST_DATABASE_URL");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                (
                    replace_db_name(&admin_url, &name),
                    Some(PgDatabase { admin_url, name }),
                )
            }
        };
        Some(Self {
            url,
            backend,
            pg,
            dir,
        })
    }

    /// The database opened and migrated, as `quire serve` would find it
    /// (the `default` project exists), without a server.
    pub async fn open(&self) -> quire::db::Database {
        let db = quire::db::Database::connect(&self.url)
            .await
            .expect("connect to the test database");
        db.migrate(Utc::now()).await.expect("migrate");
        db
    }

    /// The PostgreSQL database's name (`None` for SQLite).
    pub fn pg_name(&self) -> Option<&str> {
        self.pg.as_ref().map(|pg| pg.name.as_str())
    }

    /// The directory holding the SQLite file.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl Drop for FreshDb {
    /// Drops the PostgreSQL database. `Drop` cannot await and may run inside
    /// a runtime (or while a panic unwinds), so the drop runs on a thread of
    /// its own with a small runtime of its own, and nothing here panics.
    fn drop(&mut self) {
        let Some(pg) = self.pg.take() else { return };
        let name = pg.name.clone();
        let dropped = std::thread::Builder::new()
            .name(format!("drop-{name}"))
            .spawn(move || -> Result<(), String> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                runtime.block_on(async {
                    tokio::time::timeout(Duration::from_secs(30), pg.drop_database())
                        .await
                        .map_err(|_| "timed out".to_owned())?
                })
            })
            .map_err(|e| e.to_string())
            .and_then(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err("the dropping thread panicked".into()))
            });
        if let Err(e) = dropped {
            eprintln!("could not drop test database {name}: {e}");
        }
    }
}

impl PgDatabase {
    async fn drop_database(self) -> Result<(), String> {
        let admin = admin_pool(&self.admin_url)
            .await
            .map_err(|e| e.to_string())?;
        let dropped = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&admin)
        .await;
        admin.close().await;
        dropped.map(|_| ()).map_err(|e| e.to_string())
    }
}

/// One connection to the server's maintenance database.
pub async fn admin_pool(admin_url: &str) -> Result<sqlx::PgPool, sqlx::Error> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(admin_url)
        .await
}

/// `url` with its database name replaced by `name`.
fn replace_db_name(url: &str, name: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let base = match head.rfind('/') {
        Some(i) if i > head.find("://").map_or(0, |j| j + 2) => &head[..i],
        _ => head,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
