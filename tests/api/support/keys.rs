//! Keys as tests need them: [`KeyBuilder`] says what a key should be
//! (SPEC §2: type, mode, scopes, budget, expiry, project) and who makes it —
//! `quire admin` ([`KeyBuilder::create`]) or a key over GraphQL
//! ([`KeyBuilder::create_as`]); a [`Tenant`] is a project with the two keys
//! most tests use in it.
//!
//! ```ignore
//! let reader = app.new_key().public().live().scopes(&["records:read"]).create().await;
//! let brief = app.new_key().secret().test().expires_in(Duration::minutes(5)).limit(100).create().await;
//! let reply = app.new_key().scopes(&["*"]).try_create_as(&reader).await; // FORBIDDEN
//! let other = app.tenant("other").await; // other.root, other.live
//! ```

use std::fmt;
use std::ops::Deref;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use entity::projects;
use quire::auth::key::{KeyMode, KeyType};
use quire::auth::scopes::ScopeSet;
use quire::keys::{Actor, NewKey};
use reqwest::header::{HeaderValue, InvalidHeaderValue};
use serde_json::{json, Value};

use super::app::{ClockExt, TestApp};
use super::ops::{CreatedApiKey, CREATE_API_KEY};
use super::reply::Reply;

/// The budget of a key whose test does not say (SPEC §2's default).
pub const DEFAULT_LIMIT: i64 = 10_000;

/// A key a test made: its plaintext and its id. It reads as its plaintext
/// (`app.gql(&key, …)`), since that is what a client sends.
#[derive(Clone, Debug)]
pub struct TestKey {
    pub secret: String,
    pub id: String,
}

impl Deref for TestKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.secret
    }
}

impl fmt::Display for TestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.secret)
    }
}

/// So a raw request takes a key as it is: `.header("x-api-key", &key)`.
impl TryFrom<&TestKey> for HeaderValue {
    type Error = InvalidHeaderValue;

    fn try_from(key: &TestKey) -> Result<Self, Self::Error> {
        HeaderValue::from_str(&key.secret)
    }
}

/// What a new key should be; made by [`TestApp::new_key`]. Starts as an
/// `sk_test_` key with no scope, a generated unique name, the default
/// budget, no expiry, in the `default` project.
#[must_use = "a key is made by .create(), .create_as() or .try_create_as()"]
pub struct KeyBuilder<'a> {
    app: &'a TestApp,
    name: Option<String>,
    key_type: KeyType,
    mode: KeyMode,
    scopes: Vec<String>,
    limit: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
    project: Option<projects::Model>,
}

impl TestApp {
    /// A key to be made: see [`KeyBuilder`].
    pub fn new_key(&self) -> KeyBuilder<'_> {
        KeyBuilder {
            app: self,
            name: None,
            key_type: KeyType::Secret,
            mode: KeyMode::Test,
            scopes: Vec::new(),
            limit: None,
            expires_at: None,
            project: None,
        }
    }

    /// An `sk_test_` key with every scope, in the `default` project.
    pub async fn root_key(&self) -> TestKey {
        self.new_key().secret().test().scopes(&["*"]).create().await
    }

    /// Whether `key` authenticates (a 200, not a 401, for `viewer`).
    pub async fn works(&self, key: &str) -> bool {
        let status = self
            .gql(key, "{ viewer { key { id } } }", json!({}))
            .await
            .status;
        assert!(status == 200 || status == 401, "unexpected status {status}");
        status == 200
    }

    /// The `default` project and its two usual keys.
    pub async fn default_tenant(&self) -> Tenant {
        self.tenant(quire::db::DEFAULT_PROJECT).await
    }

    /// The project `name` (created unless it exists) and its two usual keys.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let project = quire::db::ensure_project(&self.state.db.conn, name, self.clock.now_utc())
            .await
            .expect("project");
        let root = self
            .new_key()
            .in_project(&project)
            .secret()
            .test()
            .scopes(&["*"])
            .create()
            .await;
        let live = self
            .new_key()
            .in_project(&project)
            .public()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        Tenant {
            project,
            root,
            live,
        }
    }
}

impl KeyBuilder<'_> {
    /// A `pk_` key (browser-safe scopes only).
    pub fn public(mut self) -> Self {
        self.key_type = KeyType::Public;
        self
    }

    /// An `sk_` key.
    pub fn secret(mut self) -> Self {
        self.key_type = KeyType::Secret;
        self
    }

    /// A `_live_` key.
    pub fn live(mut self) -> Self {
        self.mode = KeyMode::Live;
        self
    }

    /// A `_test_` key.
    pub fn test(mut self) -> Self {
        self.mode = KeyMode::Test;
        self
    }

    /// Type and mode at once (for tables over every kind of key).
    pub fn kind(mut self, key_type: KeyType, mode: KeyMode) -> Self {
        self.key_type = key_type;
        self.mode = mode;
        self
    }

    /// Scope wire names; `*` is every scope the key may hold.
    pub fn scopes<S: AsRef<str>>(mut self, scopes: &[S]) -> Self {
        self.scopes = scopes.iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    /// The hourly budget (`rateLimitPerHour`).
    pub fn limit(mut self, per_hour: i64) -> Self {
        self.limit = Some(per_hour);
        self
    }

    /// Expires this long after the test clock's now (negative: in the past).
    pub fn expires_in(mut self, after: ChronoDuration) -> Self {
        self.expires_at = Some(self.app.clock.now_utc() + after);
        self
    }

    /// The key's name (otherwise a unique one is made up).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// In `project` rather than `default` (for [`KeyBuilder::create`]; a key
    /// over GraphQL makes keys in its own project).
    pub fn in_project(mut self, project: &projects::Model) -> Self {
        self.project = Some(project.clone());
        self
    }

    /// Made as `quire admin` makes it (no caller, no scope limits); panics
    /// when the key is not valid.
    pub async fn create(self) -> TestKey {
        let app = self.app;
        let project = match self.project {
            Some(p) => p,
            None => app
                .state
                .keys
                .project_by_name(quire::db::DEFAULT_PROJECT)
                .await
                .expect("db")
                .expect("the default project exists"),
        };
        let new = NewKey {
            name: self.name.unwrap_or_else(unique_name),
            key_type: self.key_type,
            mode: self.mode,
            scopes: ScopeSet::parse_list(&self.scopes, self.key_type, self.mode)
                .expect("valid scopes"),
            rate_limit_per_hour: self.limit.unwrap_or(DEFAULT_LIMIT),
            expires_at: self.expires_at,
        };
        let (secret, row) = app
            .state
            .keys
            .create(&Actor::Admin, &project.id, new)
            .await
            .expect("create key");
        TestKey {
            secret: secret.expose().to_owned(),
            id: row.id,
        }
    }

    /// Made by `actor` through `createApiKey`; panics on errors.
    pub async fn create_as(self, actor: &str) -> CreatedApiKey {
        let app = self.app;
        app.op(actor, CREATE_API_KEY, self.input(), "createApiKey")
            .await
    }

    /// Asks `actor` to make it through `createApiKey`, whatever the answer.
    pub async fn try_create_as(self, actor: &str) -> Reply {
        let app = self.app;
        app.gql(actor, CREATE_API_KEY, self.input()).await
    }

    /// The variables of [`CREATE_API_KEY`] for this key (budget and expiry
    /// only when set, so the server's defaults apply).
    pub fn input(&self) -> Value {
        let mut input = json!({
            "name": self.name.clone().unwrap_or_else(unique_name),
            "type": self.key_type.as_str().to_uppercase(),
            "mode": self.mode.as_str().to_uppercase(),
            "scopes": self.scopes,
        });
        if let Some(limit) = self.limit {
            input["rateLimitPerHour"] = json!(limit);
        }
        if let Some(at) = self.expires_at {
            input["expiresAt"] = json!(at.to_rfc3339());
        }
        json!({ "i": input })
    }
}

fn unique_name() -> String {
    format!("test-{}", uuid::Uuid::new_v4().simple())
}

/// A project and the keys most tests use in it.
pub struct Tenant {
    pub project: projects::Model,
    /// `sk_test_` with every scope.
    pub root: TestKey,
    /// `pk_live_` with `records:read`.
    pub live: TestKey,
}
