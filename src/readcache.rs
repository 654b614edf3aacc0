//! The read cache: whole GraphQL responses of published-view reads, so the
//! pages a frontend asks for again and again cost no parsing, no execution
//! and no database round trip.
//!
//! What is cached: a single query operation whose root fields are only
//! `records`, `record` and `__typename`, none asking for `preview`, answered
//! without errors (the GraphQL handler's document stage decides). Entries are keyed by the project, what the key may do
//! (type, mode, scopes), the query text, the operation name and the
//! variables; a request is looked up only when its key holds `records:read`.
//! Drafts never enter the cache, so no published-view request can see them.
//!
//! Invalidation is exact, by a per-project content generation read before
//! execution and stored with the entry; an entry answers only while its
//! generation is the project's current one. Every write that can change what
//! the published view shows (publish, unpublish, delete, an update of a
//! published record, any model change) moves the generation before the
//! mutation returns. With Redis, the generation lives there (a random token,
//! so a Redis that lost its data never brings an old entry back), every
//! instance reads it per cached request, and a change on one instance is
//! seen by the next request on any other. Without Redis it lives in this
//! process, which is exact for the embedded SQLite database; with PostgreSQL
//! and no Redis, other instances' writes could not reach it, so the cache is
//! off. While Redis does not answer, requests bypass the cache.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use futures::future::BoxFuture;
use redis::Script;
use sea_orm::DbBackend;
use serde_json::{Map, Value};

use crate::auth::key::{KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::{Scope, ScopeSet};
use crate::changes::{Change, Listener};
use crate::config::Config;
use crate::redis_link::RedisLink;

/// How long an entry may live at most, whatever the generation says: the
/// bound on staleness if an instance could not tell Redis about a change.
pub const ENTRY_TTL: Duration = Duration::from_secs(300);

/// Reads the project's generation, creating a random one when Redis has none.
const READ_GENERATION: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
  redis.call('SET', KEYS[1], ARGV[1])
  v = ARGV[1]
end
return v
"#;

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
    generation: u64,
    body: Bytes,
}

/// Where each project's generation lives.
enum Generations {
    /// In this process (embedded SQLite: one instance).
    Local(RwLock<HashMap<String, u64>>),
    /// In Redis, shared by every instance.
    Shared { link: RedisLink, read: Script },
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
}

/// How often a change that could not be announced through Redis is retried.
pub const ANNOUNCE_RETRY: Duration = Duration::from_millis(500);

impl ReadCache {
    /// The cache `config` asks for on `backend`: off when
    /// `QUIRE_READ_CACHE_MB` is 0, or on PostgreSQL without Redis.
    pub fn new(config: &Config, backend: DbBackend) -> Result<Self, String> {
        let generations = match &config.redis_url {
            Some(url) => Generations::Shared {
                link: RedisLink::new(url, "the read cache is bypassed until it answers")?,
                read: Script::new(READ_GENERATION),
            },
            None => Generations::Local(RwLock::new(HashMap::new())),
        };
        let shared_db_without_redis = backend == DbBackend::Postgres && config.redis_url.is_none();
        let entries = if config.read_cache_mb == 0 || shared_db_without_redis {
            if shared_db_without_redis && config.read_cache_mb > 0 {
                tracing::info!(
                    "read cache off: with PostgreSQL, set QUIRE_REDIS_URL so that every instance sees every change"
                );
            }
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
        Ok(Self {
            entries,
            generations,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            unannounced: std::sync::Mutex::default(),
        })
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
    pub async fn generation(&self, project_id: &str) -> Option<u64> {
        let current = match &self.generations {
            Generations::Local(map) => Some(
                map.read()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(project_id)
                    .copied()
                    .unwrap_or(0),
            ),
            Generations::Shared { .. } if self.is_unannounced(project_id) => None,
            Generations::Shared { link, read } => {
                let mut invocation = read.key(generation_key(project_id));
                invocation.arg(rand::random::<u64>());
                link.run(|mut conn| async move { invocation.invoke_async::<u64>(&mut conn).await })
                    .await
                    .ok()
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
    pub fn stored(&self, key: &EntryKey) -> Option<(u64, Bytes)> {
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
    pub fn put(&self, key: EntryKey, generation: u64, body: Bytes) {
        if let Some(entries) = &self.entries {
            entries.insert(key, Arc::new(Entry { generation, body }));
        }
    }

    /// Moves the project's generation: no answer cached before this call is
    /// served again. Called after every write that changes the published
    /// view, before the mutation returns.
    pub async fn invalidate(&self, project_id: &str) {
        match &self.generations {
            Generations::Local(map) => {
                *map.write()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(project_id.to_owned())
                    .or_insert(0) += 1;
            }
            Generations::Shared { link, .. } => {
                if announce(link, project_id).await {
                    return;
                }
                metrics::counter!("quire_read_cache_invalidation_failures_total").increment(1);
                tracing::warn!(
                    "could not announce a content change through Redis: this instance bypasses its cache for the project until it can; other instances may serve cached reads for up to {} s",
                    ENTRY_TTL.as_secs()
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
        let Generations::Shared { link, .. } = &self.generations else {
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
            if announce(link, &project_id).await {
                self.unannounced
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&project_id);
            }
        }
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

/// Sets a new random generation for the project in Redis; whether it landed.
async fn announce(link: &RedisLink, project_id: &str) -> bool {
    let key = generation_key(project_id);
    let token = rand::random::<u64>();
    link.run(|mut conn| async move {
        redis::cmd("SET")
            .arg(key)
            .arg(token)
            .query_async::<()>(&mut conn)
            .await
    })
    .await
    .is_ok()
}

fn generation_key(project_id: &str) -> String {
    format!("quire:content-gen:{project_id}")
}
