//! The read cache: whole GraphQL responses of published-view reads, so the
//! pages a frontend asks for again and again cost no parsing, no execution
//! and no database round trip.
//!
//! What is cached: a single query operation whose root fields are only
//! `records`, `record`, `search` and `__typename`, none asking for `preview`, answered
//! without errors (the GraphQL handler's document stage decides). Entries are keyed by the project, what the key may do
//! (type, mode, scopes), the query text, the operation name and the
//! variables; a request is looked up only when its key holds `records:read`.
//! Drafts never enter the cache, so no published-view request can see them.
//!
//! Invalidation is exact, by a per-project [`Generation`] read before
//! execution and stored with the entry; an entry answers only while its
//! generation is the project's current one. Every write that can change what
//! the published view shows (publish, unpublish, delete, an update of a
//! published record, any model change) moves the generation before the
//! mutation returns. A generation has two parts:
//!
//! - a token, moved by the writing instance after the commit: with Redis it
//!   lives there (random, so a Redis that lost its data never brings an old
//!   entry back), every instance reads it per cached request, and a change on
//!   one instance is seen by the next request on any other; without Redis,
//!   on the embedded SQLite database (one instance), it lives in this
//!   process; with PostgreSQL and no Redis there is no token: every cached
//!   request reads the project's content generation from the database
//!   instead (one primary-key read), which is exact on every instance;
//! - the project's content generation in the database
//!   (`content_generations`), bumped in the transaction of the change (see
//!   [`bump_generation`]) and polled every [`GENERATION_POLL`] by every
//!   instance that may have company (with Redis or on PostgreSQL): a
//!   change whose Redis announcement failed (the
//!   writer lost Redis, the others did not) still reaches every instance
//!   within one poll. With Redis, the writer reads it back after its commit
//!   and announces it with the token, so a change announced through Redis
//!   does not cost a second miss when the poll sees it.
//!
//! The highest content generation seen per project is also what the
//! content catalog checks its models against
//! ([`ReadCache::content_generation`]).
//!
//! While Redis does not answer (the shared link's breaker is open), requests
//! bypass the cache at once.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use entity::content_generations;
use futures::future::BoxFuture;
use redis::Script;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Statement,
};
use serde_json::{Map, Value};

use crate::auth::key::{KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::{Scope, ScopeSet};
use crate::changes::{Change, Listener};
use crate::config::Config;
use crate::db::{Database, Health};
use crate::redis_link::RedisLink;

/// How long an entry may live at most, whatever the generation says.
pub const ENTRY_TTL: Duration = Duration::from_secs(300);

/// How often every instance with a read cache polls the content
/// generations in the database.
pub const GENERATION_POLL: Duration = Duration::from_millis(250);

/// Reads the project's token (creating a random one when Redis has none)
/// and the content generation announced with it (0 when none was).
const READ_GENERATION: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  v = ARGV[1]
end
local n = redis.call('GET', KEYS[2])
if not n then n = '0' end
return {v, n}
"#;

/// Sets a new token and raises the announced content generation (it never
/// goes back when announcements cross).
const ANNOUNCE: &str = r#"
redis.call('SET', KEYS[1], ARGV[1])
local n = tonumber(redis.call('GET', KEYS[2]) or '0')
if tonumber(ARGV[2]) > n then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
"#;

/// A project's generation: an entry answers only while it is the current one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    /// Moved by the writing instance (in Redis, or in this process).
    token: u64,
    /// The highest content generation known, from the database or Redis.
    content: i64,
}

/// What a cached answer is stored under.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EntryKey {
    project_id: String,
    key_type: KeyType,
    mode: KeyMode,
    scopes: ScopeSet,
    query: String,
    operation_name: Option<String>,
    /// The variables as JSON text (object keys sorted).
    variables: String,
}

impl EntryKey {
    fn weight(&self, body: &Bytes) -> u32 {
        let size = self.project_id.len()
            + self.query.len()
            + self.operation_name.as_ref().map_or(0, String::len)
            + self.variables.len()
            + body.len()
            + 160;
        u32::try_from(size).unwrap_or(u32::MAX)
    }
}

struct Entry {
    generation: Generation,
    body: Bytes,
}

/// Where each project's token lives.
enum Generations {
    /// In this process (embedded SQLite: one instance).
    Local(RwLock<HashMap<String, u64>>),
    /// Nowhere: the content generation in the database is read per cached
    /// request (PostgreSQL without Redis), concurrent requests sharing reads.
    Database(SharedReads),
    /// In Redis, shared by every instance.
    Shared {
        link: Arc<RedisLink>,
        read: Script,
        announce: Script,
    },
}

/// The per-request reads of the content generation (PostgreSQL without
/// Redis), shared by concurrent requests of a project without losing
/// exactness: a request may take the value of a read that *started after it
/// arrived* (that read sees every write acknowledged before the request
/// came), and reads of a project run one at a time, so that the requests
/// arriving during one read share the next.
#[derive(Default)]
struct SharedReads {
    projects: std::sync::Mutex<HashMap<String, Arc<ProjectReads>>>,
}

#[derive(Default)]
struct ProjectReads {
    /// How many reads have started.
    started: AtomicU64,
    /// The last read done: its number (from `started`) and its value.
    last: tokio::sync::Mutex<Option<(u64, i64)>>,
}

impl SharedReads {
    /// The project's content generation as of a moment after this call;
    /// `None` when the database does not answer (bounded by its health).
    async fn read(&self, cache: &ReadCache, project_id: &str) -> Option<i64> {
        let reads = Arc::clone(
            self.projects
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(project_id.to_owned())
                .or_default(),
        );
        let arrived = reads.started.load(Ordering::Acquire);
        let mut last = reads.last.lock().await;
        if let Some((number, value)) = *last {
            if number > arrived {
                return Some(value);
            }
        }
        let number = reads.started.fetch_add(1, Ordering::AcqRel) + 1;
        let read = cache
            .health
            .guard(read_generation(&cache.db, project_id))
            .await
            .map_err(|e| e.cause())
            .and_then(|read| read.map_err(|e| e.to_string()));
        match read {
            Ok(value) => {
                let value = value.unwrap_or(0);
                *last = Some((number, value));
                Some(value)
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the content generation");
                None
            }
        }
    }
}

/// The read cache of one instance.
pub struct ReadCache {
    /// `None` when the cache is off.
    entries: Option<moka::sync::Cache<EntryKey, Arc<Entry>>>,
    generations: Generations,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Projects whose change could not be announced through Redis yet: this
    /// instance bypasses the cache for them until the announcement lands.
    unannounced: std::sync::Mutex<HashSet<String>>,
    /// project id → the highest content generation seen in the database.
    content: RwLock<HashMap<String, i64>>,
    /// Where the content generations are read and polled.
    db: DatabaseConnection,
    /// Whether the database answers (bounds the per-request read).
    health: Arc<Health>,
}

/// How often a change that could not be announced through Redis is retried.
pub const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

impl ReadCache {
    /// The cache `config` asks for on `db`, its tokens in Redis through
    /// `redis` (the instance's shared link) when given: off when
    /// `QUIRE_READ_CACHE_MB` is 0.
    pub fn new(config: &Config, db: &Database, redis: Option<Arc<RedisLink>>) -> Self {
        Self::describe_metrics();
        let health = Arc::clone(&db.health);
        let db = db.conn.clone();
        let backend = db.get_database_backend();
        let generations = match redis {
            Some(link) => Generations::Shared {
                link,
                read: Script::new(READ_GENERATION),
                announce: Script::new(ANNOUNCE),
            },
            None if backend == DbBackend::Postgres => Generations::Database(SharedReads::default()),
            None => Generations::Local(RwLock::new(HashMap::new())),
        };
        let entries = if config.read_cache_mb == 0 {
            None
        } else {
            Some(
                moka::sync::Cache::builder()
                    .max_capacity(config.read_cache_mb.saturating_mul(1024 * 1024))
                    .weigher(|k: &EntryKey, e: &Arc<Entry>| k.weight(&e.body))
                    .time_to_live(ENTRY_TTL)
                    .build(),
            )
        };
        Self {
            entries,
            generations,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            unannounced: std::sync::Mutex::default(),
            content: RwLock::default(),
            db,
            health,
        }
    }

    /// Exports the cache's counters at 0, so that they are in `/metrics`
    /// before they first move.
    pub fn describe_metrics() {
        for result in ["hit", "miss", "bypass"] {
            metrics::counter!("quire_read_cache_requests_total", "result" => result).increment(0);
        }
        metrics::counter!("quire_read_cache_invalidation_failures_total").increment(0);
    }

    /// Whether responses are cached at all.
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The key a request would be cached under, when the cache is on and the
    /// caller may read records. Whether the document itself is cacheable is
    /// decided once it is parsed (`http::graphql::document::Facts`).
    pub fn key_for(
        &self,
        principal: &Principal,
        query: &str,
        operation_name: Option<&str>,
        variables: Option<&Map<String, Value>>,
    ) -> Option<EntryKey> {
        if self.entries.is_none() || !principal.has(Scope::RecordsRead) {
            return None;
        }
        Some(EntryKey {
            project_id: principal.project_id.clone(),
            key_type: principal.key_type,
            mode: principal.mode,
            scopes: principal.scopes,
            query: query.to_owned(),
            operation_name: operation_name.map(str::to_owned),
            variables: variables.map_or_else(String::new, |v| {
                serde_json::to_string(v).unwrap_or_default()
            }),
        })
    }

    /// The project's current generation; `None` when it cannot be known now
    /// (Redis does not answer), and the request must bypass the cache.
    pub async fn generation(&self, project_id: &str) -> Option<Generation> {
        let known = self.known(project_id);
        let current = match &self.generations {
            // One instance: every change moves the token here, before the
            // write answers; the database's generation adds nothing.
            Generations::Local(map) => Some(Generation {
                token: map
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(project_id)
                    .copied()
                    .unwrap_or(0),
                content: 0,
            }),
            Generations::Database(reads) => match reads.read(self, project_id).await {
                Some(n) => {
                    self.raise(project_id, n);
                    Some(Generation {
                        token: 0,
                        content: n,
                    })
                }
                None => None,
            },
            Generations::Shared { .. } if self.is_unannounced(project_id) => None,
            Generations::Shared { link, read, .. } => {
                let mut invocation = read.key(token_key(project_id));
                invocation
                    .key(content_key(project_id))
                    .arg(rand::random::<u64>());
                link.run(|mut conn| async move {
                    invocation.invoke_async::<(u64, i64)>(&mut conn).await
                })
                .await
                .ok()
                .map(|(token, announced)| {
                    self.raise(project_id, announced);
                    Generation {
                        token,
                        content: announced.max(known),
                    }
                })
            }
        };
        if current.is_none() {
            // Entries from before an outage may predate changes made during
            // it: none of them is served afterwards.
            self.drop_entries();
            metrics::counter!("quire_read_cache_requests_total", "result" => "bypass").increment(1);
        }
        current
    }

    /// The answer stored for `key` and the generation it was computed at.
    pub fn stored(&self, key: &EntryKey) -> Option<(Generation, Bytes)> {
        let entry = self.entries.as_ref()?.get(key)?;
        Some((entry.generation, entry.body.clone()))
    }

    /// Counts a cacheable request as a hit or a miss.
    pub fn count(&self, hit: bool) {
        let result = if hit {
            self.hits.fetch_add(1, Ordering::Relaxed);
            "hit"
        } else {
            self.misses.fetch_add(1, Ordering::Relaxed);
            "miss"
        };
        metrics::counter!("quire_read_cache_requests_total", "result" => result).increment(1);
    }

    /// Stores an answer computed after reading `generation`.
    pub fn put(&self, key: EntryKey, generation: Generation, body: Bytes) {
        if let Some(entries) = &self.entries {
            entries.insert(key, Arc::new(Entry { generation, body }));
        }
    }

    /// Moves the project's generation: no answer cached before this call is
    /// served again. Called after every write that changes the published
    /// view (committed), before the mutation returns.
    pub async fn invalidate(&self, project_id: &str) {
        // The commit bumped the database's generation: learning it here
        // (and announcing it with the token) spares the miss the next poll
        // would otherwise cause on every instance. Without Redis there is
        // no other instance to spare, and this read cost a third of a
        // published write's CPU (load harness, update + publish mix).
        if matches!(self.generations, Generations::Shared { .. }) {
            match read_generation(&self.db, project_id).await {
                Ok(Some(n)) => self.raise(project_id, n),
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cannot read the content generation"),
            }
        }
        match &self.generations {
            // The commit moved the generation every request reads.
            Generations::Database(_) => {}
            Generations::Local(map) => {
                *map.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(project_id.to_owned())
                    .or_insert(0) += 1;
            }
            Generations::Shared { link, announce, .. } => {
                if announce_change(link, announce, project_id, self.known(project_id)).await {
                    return;
                }
                metrics::counter!("quire_read_cache_invalidation_failures_total").increment(1);
                // The link logs the outage itself; other instances learn of
                // the change from the database within one poll.
                tracing::debug!(
                    "could not announce a content change through Redis: this instance bypasses its cache for the project until it can"
                );
                self.drop_entries();
                self.unannounced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(project_id.to_owned());
            }
        }
    }

    /// Retries the changes that could not be announced, until each lands
    /// (the change watcher calls it every [`ANNOUNCE_RETRY`]).
    pub async fn retry_announcements(&self) {
        let Generations::Shared { link, announce, .. } = &self.generations else {
            return;
        };
        let pending: Vec<String> = self
            .unannounced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        for project_id in pending {
            if announce_change(link, announce, &project_id, self.known(&project_id)).await {
                self.unannounced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&project_id);
            }
        }
    }

    /// The highest content generation of the project this instance has
    /// seen (polled, read per cached request, or announced through Redis).
    pub fn content_generation(&self, project_id: &str) -> i64 {
        self.known(project_id)
    }

    /// The highest content generation seen for the project (0: none yet).
    fn known(&self, project_id: &str) -> i64 {
        self.content
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(project_id)
            .copied()
            .unwrap_or(0)
    }

    /// Records a content generation seen in the database; a higher one
    /// moves the project's [`Generation`].
    fn raise(&self, project_id: &str, seen: i64) {
        if self.known(project_id) >= seen {
            return;
        }
        let mut content = self.content.write().unwrap_or_else(|p| p.into_inner());
        let known = content.entry(project_id.to_owned()).or_insert(0);
        *known = (*known).max(seen);
    }

    /// Follows the content generations in the database until the process
    /// ends (on PostgreSQL, cache on or off: the content catalog learns of
    /// other instances' model changes here; SQLite has one instance): a
    /// change made on another instance whose Redis announcement failed
    /// moves the generation here within one [`GENERATION_POLL`]. Each poll
    /// is one small aggregate query; the rows are read only when it moved.
    pub fn spawn_generation_poller(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if matches!(self.generations, Generations::Local(_)) {
            return None;
        }
        let this = Arc::clone(self);
        Some(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(GENERATION_POLL);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = None;
            let mut failing = false;
            loop {
                ticker.tick().await;
                match this.poll_generations(last).await {
                    Ok(seen) => {
                        last = Some(seen);
                        failing = false;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, "cannot poll the content generations");
                        }
                        failing = true;
                    }
                }
            }
        }))
    }

    /// One poll: the (sum, count) of the generations, and when it differs
    /// from `last`, every project's generation.
    async fn poll_generations(&self, last: Option<(i64, i64)>) -> Result<(i64, i64), DbErr> {
        let backend = self.db.get_database_backend();
        let row = self
            .db
            .query_one(Statement::from_string(
                backend,
                "SELECT CAST(COALESCE(SUM(generation), 0) AS BIGINT) AS total, COUNT(*) AS n FROM content_generations",
            ))
            .await?;
        let seen = match row {
            Some(row) => (
                row.try_get::<i64>("", "total")?,
                row.try_get::<i64>("", "n")?,
            ),
            None => (0, 0),
        };
        if last != Some(seen) {
            for row in content_generations::Entity::find().all(&self.db).await? {
                self.raise(&row.project_id, row.generation);
            }
        }
        Ok(seen)
    }

    fn is_unannounced(&self, project_id: &str) -> bool {
        self.unannounced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(project_id)
    }

    fn drop_entries(&self) {
        if let Some(entries) = &self.entries {
            entries.invalidate_all();
        }
    }

    /// Hits and misses since start.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Sets the size and hit-ratio gauges (called when `/metrics` renders).
    pub fn publish_metrics(&self) {
        let Some(entries) = &self.entries else {
            return;
        };
        entries.run_pending_tasks();
        metrics::gauge!("quire_read_cache_entries").set(entries.entry_count() as f64);
        metrics::gauge!("quire_read_cache_bytes").set(entries.weighted_size() as f64);
        let (hits, misses) = self.stats();
        let ratio = if hits + misses == 0 {
            0.0
        } else {
            hits as f64 / (hits + misses) as f64
        };
        metrics::gauge!("quire_read_cache_hit_ratio").set(ratio);
    }
}

/// Every committed change that may alter the published view moves the
/// project's generation before the write's caller is answered.
impl Listener for ReadCache {
    fn committed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if change.touches_published_view() {
                self.invalidate(change.project_id()).await;
            }
        })
    }
}

/// Sets a new random token for the project in Redis, with the content
/// generation it follows; whether it landed.
async fn announce_change(
    link: &RedisLink,
    announce: &Script,
    project_id: &str,
    content: i64,
) -> bool {
    let mut invocation = announce.key(token_key(project_id));
    invocation
        .key(content_key(project_id))
        .arg(rand::random::<u64>())
        .arg(content);
    link.run(|mut conn| async move { invocation.invoke_async::<i64>(&mut conn).await })
        .await
        .is_ok()
}

/// The token (the key older releases read and write too).
fn token_key(project_id: &str) -> String {
    format!("quire:content-gen:{project_id}")
}

/// The content generation announced with the token.
fn content_key(project_id: &str) -> String {
    format!("quire:content-gen-db:{project_id}")
}

/// Moves the project's content generation in the database; called inside
/// the transaction of every change the published view shows, just before
/// it commits (the row's lock is held only for the commit).
pub async fn bump_generation<C: ConnectionTrait>(txn: &C, project_id: &str) -> Result<(), DbErr> {
    use content_generations::{Column, Entity};
    let first = content_generations::ActiveModel {
        project_id: Set(project_id.to_owned()),
        generation: Set(1),
    };
    Entity::insert(first)
        .on_conflict(
            OnConflict::column(Column::ProjectId)
                .value(
                    Column::Generation,
                    Expr::col((Entity, Column::Generation)).add(1),
                )
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(())
}

/// The project's content generation in the database (`None`: never moved).
async fn read_generation<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
) -> Result<Option<i64>, DbErr> {
    Ok(
        content_generations::Entity::find_by_id(project_id.to_owned())
            .one(db)
            .await?
            .map(|row| row.generation),
    )
}
