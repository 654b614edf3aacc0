//! Per-key sliding hourly budgets (SPEC §4) behind one facade, with two
//! stores: local (a sharded map, per instance) and Redis (shared, one Lua script per
//! decision). See [`window`] for the design and its error bound.
//!
//! State is keyed by key id, so a rotated key keeps its window; the limit is
//! passed with every decision, so a new `rateLimitPerHour` applies from the
//! next request. A refused key is remembered locally until it can fit again,
//! so a client hammering after exhaustion costs no store round trip.

pub mod local;
pub mod redis_store;
pub mod window;

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::db::Database;
use crate::redis_link::RedisLink;
use local::LocalStore;
use redis_store::RedisStore;
pub use window::Decision;

/// The limiter every request goes through after authentication.
pub struct Limiter {
    local: LocalStore,
    redis: Option<RedisStore>,
    /// key id → (unix second until which it cannot fit, the refusal); used
    /// in front of Redis, where it saves a round trip.
    blocked: moka::sync::Cache<String, (i64, Decision)>,
    /// One save at a time (the periodic one and the one at shutdown may
    /// meet), so an older snapshot never lands after a newer one.
    saving: tokio::sync::Mutex<()>,
}

impl Limiter {
    /// A limiter on the local store, shared through Redis when a URL is
    /// given (on a Redis link of its own: the server shares the instance's
    /// link through [`Limiter::on_link`]).
    pub fn new(redis_url: Option<&str>) -> Result<Self, String> {
        let link = redis_url.map(RedisLink::new).transpose()?;
        Ok(Self::on_link(link.map(Arc::new)))
    }

    /// A limiter on the local store, shared through Redis over `link`.
    pub fn on_link(link: Option<Arc<RedisLink>>) -> Self {
        let redis = link.map(RedisStore::new);
        Self {
            local: LocalStore::new(),
            redis,
            blocked: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(3_700))
                .build(),
            saving: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether decisions are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Counts `cost` requests of `key_id` if they fit in `limit`.
    pub async fn check(&self, key_id: &str, limit: u64, cost: u64, now: DateTime<Utc>) -> Decision {
        let now = now.timestamp();
        let Some(redis) = &self.redis else {
            // The local window answers a refusal as cheaply as a cache would.
            return self.local.decide(key_id, limit, cost, now);
        };
        if let Some((until, refusal)) = self.blocked.get(key_id) {
            if now < until && refusal.limit == limit && cost > refusal.remaining {
                return Decision {
                    retry_after: Some((until - now).max(1) as u64),
                    ..refusal
                };
            }
        }
        let decision = match redis.decide(key_id, limit, cost, now).await {
            Some(d) => d,
            None => self.local.decide(key_id, limit, cost, now),
        };
        if let (false, Some(retry)) = (decision.allowed, decision.retry_after) {
            self.blocked
                .insert(key_id.to_owned(), (now + retry as i64, decision));
        }
        decision
    }

    /// The figures for a request that is refused before it counts.
    pub async fn peek(&self, key_id: &str, limit: u64, now: DateTime<Utc>) -> Decision {
        let now = now.timestamp();
        if let Some(redis) = &self.redis {
            if let Some(d) = redis.decide(key_id, limit, 0, now).await {
                return d;
            }
        }
        self.local.peek(key_id, limit, now)
    }

    /// Saves local windows so a restart keeps each key's budget (local
    /// store only: Redis keeps its own state). Each key's saved row is
    /// replaced, never added to; rows older than a window are dropped.
    pub async fn persist(
        &self,
        db: &Database,
        now: DateTime<Utc>,
    ) -> crate::error::AppResult<usize> {
        if self.redis.is_some() {
            return Ok(0);
        }
        let _one_at_a_time = self.saving.lock().await;
        self.local.persist(db, now.timestamp()).await
    }

    /// Loads what [`Limiter::persist`] saved. The saved rows stay, so a
    /// crash before the next save finds them again.
    pub async fn restore(
        &self,
        db: &Database,
        now: DateTime<Utc>,
    ) -> crate::error::AppResult<usize> {
        if self.redis.is_some() {
            return Ok(0);
        }
        self.local.restore(db, now.timestamp()).await
    }

    /// With Redis: whether it answered last time and how many decisions
    /// fell back to the local store.
    pub fn redis_health(&self) -> Option<(bool, u64)> {
        self.redis.as_ref().map(RedisStore::health)
    }

    /// Keys with state in the local store (for memory measurements).
    pub fn local_keys(&self) -> u64 {
        self.local.len()
    }
}
