//! The Redis store: one hash of minute buckets per key, decided atomically by
//! one Lua script, shared by every instance pointing at the same Redis.
//!
//! When Redis does not answer, the caller falls back to the local store; this
//! store stops trying for a second after a failure (so a dead Redis adds no
//! latency), warns at most once a minute, and reports itself in `/metrics`
//! (`quire_ratelimit_redis_up`, `quire_ratelimit_redis_fallback_total`).

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use redis::Script;
use tokio::sync::Mutex;

use super::window::Decision;

/// How long one Redis call may take before the local store answers instead.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to leave Redis alone after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

/// Same arithmetic as `window.rs`: 61 one-minute buckets, the oldest counted
/// in full. Returns {allowed, remaining, reset_at, retry_after}.
const DECIDE: &str = r#"
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local b = math.floor(now / 60)
local lo = b - 60
local raw = redis.call('HGETALL', KEYS[1])
local ks, counts, total = {}, {}, 0
for i = 1, #raw, 2 do
  local k, c = tonumber(raw[i]), tonumber(raw[i + 1])
  if k < lo then
    redis.call('HDEL', KEYS[1], raw[i])
  elseif c > 0 then
    table.insert(ks, k)
    counts[k] = c
    total = total + c
  end
end
table.sort(ks)
local allowed = 0
if total + cost <= limit then
  allowed = 1
  if cost > 0 then
    redis.call('HINCRBY', KEYS[1], tostring(b), cost)
    if counts[b] == nil then
      counts[b] = 0
      table.insert(ks, b)
      table.sort(ks)
    end
    counts[b] = counts[b] + cost
    total = total + cost
  end
end
if #ks > 0 then redis.call('EXPIRE', KEYS[1], 3720) end
local reset = now
if #ks > 0 then reset = (ks[1] + 61) * 60 end
local retry = 0
if allowed == 0 then
  if cost > limit then
    retry = 3660
  else
    local need = total + cost - limit
    local at = now + 1
    for _, k in ipairs(ks) do
      at = (k + 61) * 60
      need = need - counts[k]
      if need <= 0 then break end
    end
    retry = math.max(1, at - now)
  end
end
local remaining = limit - total
if remaining < 0 then remaining = 0 end
return {allowed, remaining, reset, retry}
"#;

/// A connection to Redis that is made lazily and given up on quickly.
pub struct RedisStore {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    script: Script,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried again.
    retry_at_ms: AtomicI64,
    /// Milliseconds since `started` of the last warning (-1: never).
    warned_at_ms: AtomicI64,
    /// Whether the last call reached Redis.
    up: AtomicBool,
    /// Decisions made locally because Redis did not answer.
    fallbacks: AtomicU64,
}

impl RedisStore {
    /// Prepares a store; connects on first use.
    pub fn new(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid QUIRE_REDIS_URL: {e}"))?;
        metrics::gauge!("quire_ratelimit_redis_up").set(1.0);
        Ok(Self {
            client,
            conn: Mutex::new(None),
            script: Script::new(DECIDE),
            started: Instant::now(),
            retry_at_ms: AtomicI64::new(0),
            warned_at_ms: AtomicI64::new(-1),
            up: AtomicBool::new(true),
            fallbacks: AtomicU64::new(0),
        })
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// Decides through Redis, or `None` when Redis cannot answer now (the
    /// caller then uses the local store).
    pub async fn decide(&self, key_id: &str, limit: u64, cost: u64, now: i64) -> Option<Decision> {
        if self.elapsed_ms() < self.retry_at_ms.load(Ordering::Relaxed) {
            self.fallbacks.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("quire_ratelimit_redis_fallback_total").increment(1);
            return None;
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.call(key_id, limit, cost, now)).await {
            Ok(Ok(d)) => {
                self.up.store(true, Ordering::Relaxed);
                metrics::gauge!("quire_ratelimit_redis_up").set(1.0);
                Some(d)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string()).await;
                None
            }
            Err(_) => {
                self.failed("timed out").await;
                None
            }
        }
    }

    async fn call(
        &self,
        key_id: &str,
        limit: u64,
        cost: u64,
        now: i64,
    ) -> redis::RedisResult<Decision> {
        let mut conn = {
            let mut guard = self.conn.lock().await;
            match guard.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = ConnectionManager::new(self.client.clone()).await?;
                    *guard = Some(c.clone());
                    c
                }
            }
        };
        let (allowed, remaining, reset_at, retry): (i64, i64, i64, i64) = self
            .script
            .key(format!("quire:rl:{key_id}"))
            .arg(now)
            .arg(limit)
            .arg(cost)
            .invoke_async(&mut conn)
            .await?;
        Ok(Decision {
            allowed: allowed == 1,
            limit,
            remaining: u64::try_from(remaining).unwrap_or(0),
            reset_at,
            retry_after: (allowed != 1).then(|| u64::try_from(retry).unwrap_or(1).max(1)),
        })
    }

    /// Whether Redis answered last time, and how many decisions fell back.
    pub fn health(&self) -> (bool, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.fallbacks.load(Ordering::Relaxed),
        )
    }

    async fn failed(&self, cause: &str) {
        self.up.store(false, Ordering::Relaxed);
        self.fallbacks.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("quire_ratelimit_redis_up").set(0.0);
        metrics::counter!("quire_ratelimit_redis_fallback_total").increment(1);
        let now = self.elapsed_ms();
        self.retry_at_ms
            .store(now + BACKOFF.as_millis() as i64, Ordering::Relaxed);
        // Drop the connection so the next try reconnects from scratch.
        *self.conn.lock().await = None;
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        if last < 0 || now - last >= 60_000 {
            self.warned_at_ms.store(now, Ordering::Relaxed);
            tracing::warn!(%cause, "Redis is unreachable: rate limits fall back to this instance's local store");
        }
    }
}
