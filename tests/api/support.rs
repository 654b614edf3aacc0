//! `TestApp`: a real quire on a loopback port, on a fresh database per test
//! (a SQLite file, or a new PostgreSQL database when
//! `QUIRE_TEST_DATABASE_URL` is set), with an injected clock.

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use quire::auth::key::{KeyMode, KeyType};
use quire::auth::scopes::ScopeSet;
use quire::clock::ManualClock;
use quire::config::Config;
use quire::keys::{Actor, NewKey};
use quire::{App, AppState};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Which database a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test body once per backend: `both_dbs!(name, |app| async move { … })`.
/// The PostgreSQL variant says it was skipped when no URL is given.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::support::TestApp::spawn($crate::support::Backend::Sqlite).await;
                ($body)(app.clone()).await;
                app.cleanup().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(app) =
                    $crate::support::TestApp::try_spawn($crate::support::Backend::Postgres).await
                else {
                    return;
                };
                ($body)(app.clone()).await;
                app.cleanup().await;
            }
        }
    };
}

/// A running server and handles into it.
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub clock: Arc<ManualClock>,
    pub client: reqwest::Client,
    pub database_url: String,
    pg_admin: Option<(String, String)>,
    _dir: Arc<tempfile::TempDir>,
}

/// A response: status, headers, JSON body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `errors[0].extensions.code`, if any.
    pub fn code(&self) -> Option<&str> {
        self.body
            .pointer("/errors/0/extensions/code")
            .and_then(Value::as_str)
    }
    /// Every `extensions.code` in `errors`.
    pub fn codes(&self) -> Vec<String> {
        self.body["errors"]
            .as_array()
            .map(|errs| {
                errs.iter()
                    .filter_map(|e| e.pointer("/extensions/code").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
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
        let FreshDb {
            url: database_url,
            pg_admin,
            dir,
        } = FreshDb::create(backend).await?;
        let mut config = Config::for_database(database_url.clone());
        configure(&mut config);
        let clock = Arc::new(ManualClock::new(Utc::now()));
        Some(Self::start(config, clock, database_url, pg_admin, dir).await)
    }

    async fn start(
        config: Config,
        clock: Arc<ManualClock>,
        database_url: String,
        pg_admin: Option<(String, String)>,
        dir: Arc<tempfile::TempDir>,
    ) -> Self {
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
            database_url,
            pg_admin,
            _dir: dir,
        }
    }

    /// A second instance on the same database (as behind a load balancer),
    /// configured by `configure`; the first one drops the database.
    pub async fn sibling(&self, configure: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config::for_database(self.database_url.clone());
        configure(&mut config);
        Self::start(
            config,
            self.clock.clone(),
            self.database_url.clone(),
            None,
            self._dir.clone(),
        )
        .await
    }

    /// Drops the PostgreSQL test database.
    pub async fn cleanup(&self) {
        drop_pg(&self.pg_admin).await;
    }

    /// `http://addr` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Creates a key in the default project as `quire admin` would.
    pub async fn key_in(
        &self,
        project: &str,
        key_type: KeyType,
        mode: KeyMode,
        scopes: &[&str],
    ) -> (String, String) {
        let project = self
            .state
            .keys
            .project_by_name(project)
            .await
            .expect("db")
            .expect("project exists");
        let scopes = ScopeSet::parse_list(scopes, key_type, mode).expect("valid scopes");
        let new = NewKey {
            name: format!("test-{}", uuid::Uuid::new_v4().simple()),
            key_type,
            mode,
            scopes,
            rate_limit_per_hour: 10_000,
            expires_at: None,
        };
        let (secret, row) = self
            .state
            .keys
            .create(&Actor::Admin, &project.id, new)
            .await
            .expect("create key");
        (secret.expose().to_owned(), row.id)
    }

    /// A key of the default project: `(plaintext, id)`.
    pub async fn key(&self, key_type: KeyType, mode: KeyMode, scopes: &[&str]) -> (String, String) {
        self.key_in("default", key_type, mode, scopes).await
    }

    /// An `sk_test_` key with every scope.
    pub async fn root_key(&self) -> String {
        self.key(KeyType::Secret, KeyMode::Test, &["*"]).await.0
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

impl Reply {
    /// Reads a response.
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Self {
            status,
            headers,
            body,
        }
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

/// An empty database: a SQLite file in a temp dir, or a new PostgreSQL database.
pub struct FreshDb {
    pub url: String,
    pg_admin: Option<(String, String)>,
    pub dir: Arc<tempfile::TempDir>,
}

impl FreshDb {
    /// Creates one, or `None` (saying so) when PostgreSQL is not configured.
    pub async fn create(backend: Backend) -> Option<Self> {
        let dir = tempfile::tempdir().expect("tempdir");
        let (url, pg_admin) = match backend {
            Backend::Sqlite => (
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("quire.db").display()
                ),
                None,
            ),
            Backend::Postgres => {
                let Ok(base) = std::env::var("QUIRE_TEST_DATABASE_URL") else {
                    eprintln!("skipped: QUIRE_TEST_DATABASE_URL is not set (PostgreSQL variant)");
                    return None;
                };
                let name = format!("quire_t_{}", uuid::Uuid::new_v4().simple());
                let admin = admin_conn(&base).await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                (replace_db_name(&base, &name), Some((base, name)))
            }
        };
        Some(Self {
            url,
            pg_admin,
            dir: Arc::new(dir),
        })
    }

    /// Drops the PostgreSQL database.
    pub async fn cleanup(&self) {
        drop_pg(&self.pg_admin).await;
    }
}

async fn drop_pg(pg_admin: &Option<(String, String)>) {
    if let Some((base, name)) = pg_admin {
        let admin = admin_conn(base).await;
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    }
}

async fn admin_conn(base: &str) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(base)
        .await
        .expect("connect to QUIRE_TEST_DATABASE_URL")
}

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
