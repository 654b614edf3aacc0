//! [`TestApp`]: a real quire on a loopback port, on a [`FreshDb`] of its own,
//! with an injected clock; cheap to clone (clones share the server and the
//! database, which is dropped with the last clone).

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use quire::clock::ManualClock;
use quire::config::Config;
use quire::{App, AppState};
use serde_json::{json, Value};

use super::db::{Backend, FreshDb};
use super::reply::Reply;

/// A running server and handles into it.
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    db: Arc<FreshDb>,
}

impl TestApp {
    /// Spawns on `backend`; panics if PostgreSQL is asked for without a URL.
    pub async fn spawn(backend: Backend) -> Self {
        Self::try_spawn(backend).await.expect("backend available")
    }

    /// Spawns on `backend`, or `None` (saying so) when PostgreSQL is not configured.
    pub async fn try_spawn(backend: Backend) -> Option<Self> {
        Self::try_spawn_with(backend, |_| {}).await
    }

    /// Like `try_spawn`, with a chance to change the configuration.
    pub async fn try_spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Config),
    ) -> Option<Self> {
        let db = Arc::new(FreshDb::create(backend).await?);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        Some(Self::start(db, clock, configure).await)
    }

    async fn start(
        db: Arc<FreshDb>,
        clock: Arc<ManualClock>,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        let mut config = Config::for_database(db.url.clone());
        config.files.files_dir = db.dir().join("files").display().to_string();
        configure(&mut config);
        let state = App::with_clock(config, clock.clone())
            .await
            .expect("app starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server_state = state.clone();
        tokio::spawn(async move {
            let _ = quire::http::serve(listener, server_state, std::future::pending()).await;
        });
        state.spawn_change_watcher();
        Self {
            addr,
            state,
            clock,
            client: reqwest::Client::new(),
            db,
        }
    }

    /// A second instance on the same database and clock (as behind a load
    /// balancer), configured by `configure`; the database outlives both.
    pub async fn sibling(&self, configure: impl FnOnce(&mut Config)) -> Self {
        Self::start(self.db.clone(), self.clock.clone(), configure).await
    }

    /// Another deployment: a server on a fresh database of the same backend.
    pub async fn sibling_on_fresh_db(&self) -> Self {
        let db = Arc::new(
            FreshDb::create(self.db.backend)
                .await
                .expect("the backend is available"),
        );
        Self::start(db, self.clock.clone(), |_| {}).await
    }

    /// The database under the server.
    pub fn database(&self) -> &FreshDb {
        &self.db
    }

    /// What the server is connected to.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }

    /// The database the server runs on.
    pub fn backend(&self) -> Backend {
        self.db.backend
    }

    /// `http://addr` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a GraphQL operation with a key.
    pub async fn gql(&self, key: &str, query: &str, variables: Value) -> Reply {
        let response = self
            .client
            .post(self.url("/graphql"))
            .header("x-api-key", key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request");
        Reply::from(response).await
    }

    /// `data` of a successful operation; panics on errors.
    pub async fn data(&self, key: &str, query: &str, variables: Value) -> Value {
        let reply = self.gql(key, query, variables).await;
        assert!(
            reply.body.get("errors").is_none(),
            "unexpected errors for {query}: {}",
            reply.body
        );
        reply.body["data"].clone()
    }
}

/// Now, from the manual clock.
pub trait ClockExt {
    fn now_utc(&self) -> chrono::DateTime<Utc>;
}

impl ClockExt for ManualClock {
    fn now_utc(&self) -> chrono::DateTime<Utc> {
        quire::clock::Clock::now(self)
    }
}

/// Another client holding a lock on a table: SQLite's write lock (the
/// whole database: `BEGIN IMMEDIATE`), or PostgreSQL's `ACCESS EXCLUSIVE`
/// lock on `table`, until [`Holder::release`].
pub enum Holder {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl Holder {
    pub async fn lock(app: &TestApp, table: &str) -> Self {
        use sqlx::Connection;
        let url = app.database_url();
        match app.backend() {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Holder::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                Holder::Postgres(conn)
            }
        }
    }

    pub async fn release(self) {
        match self {
            Holder::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            Holder::Postgres(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}
