//! The Redis store: one hash of minute buckets per key, decided atomically by
//! one Lua script, shared by every instance pointing at the same Redis.
//!
//! When Redis does not answer, the caller falls back to the local store. The
//! store runs on the instance's shared [`RedisLink`], whose breaker keeps a
//! dead or stalled Redis from adding latency and does the logging; the store
//! reports itself in `/metrics` (`quire_ratelimit_redis_up`,
//! `quire_ratelimit_redis_fallback_total`, both exported from the start).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use redis::Script;

use super::window::Decision;
use crate::redis_link::RedisLink;

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

/// The shared store, on a [`RedisLink`].
pub struct RedisStore {
    link: Arc<RedisLink>,
    script: Script,
    /// Decisions made locally because Redis did not answer.
    fallbacks: AtomicU64,
}

impl RedisStore {
    /// A store on `link` (connected on first use).
    pub fn new(link: Arc<RedisLink>) -> Self {
        Self::describe_metrics();
        Self {
            link,
            script: Script::new(DECIDE),
            fallbacks: AtomicU64::new(0),
        }
    }

    /// Exports the store's figures at their starting values.
    pub fn describe_metrics() {
        metrics::gauge!("quire_ratelimit_redis_up").set(1.0);
        Self::describe_metrics_counters();
    }

    /// Exports the store's counters at 0 (also without Redis, where 0 is
    /// the truth).
    pub fn describe_metrics_counters() {
        metrics::counter!("quire_ratelimit_redis_fallback_total").increment(0);
    }

    /// Decides through Redis, or `None` when Redis cannot answer now (the
    /// caller then uses the local store).
    pub async fn decide(&self, key_id: &str, limit: u64, cost: u64, now: i64) -> Option<Decision> {
        let mut invocation = self.script.key(format!("quire:rl:{key_id}"));
        invocation.arg(now).arg(limit).arg(cost);
        let answer = self
            .link
            .run(|mut conn| async move {
                invocation
                    .invoke_async::<(i64, i64, i64, i64)>(&mut conn)
                    .await
            })
            .await;
        match answer {
            Ok((allowed, remaining, reset_at, retry)) => {
                metrics::gauge!("quire_ratelimit_redis_up").set(1.0);
                Some(Decision {
                    allowed: allowed == 1,
                    limit,
                    remaining: u64::try_from(remaining).unwrap_or(0),
                    reset_at,
                    retry_after: (allowed != 1).then(|| u64::try_from(retry).unwrap_or(1).max(1)),
                })
            }
            Err(_) => {
                self.fallbacks.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("quire_ratelimit_redis_fallback_total").increment(1);
                metrics::gauge!("quire_ratelimit_redis_up").set(0.0);
                None
            }
        }
    }

    /// Whether Redis answered last time, and how many decisions fell back.
    pub fn health(&self) -> (bool, u64) {
        (self.link.is_up(), self.fallbacks.load(Ordering::Relaxed))
    }
}
