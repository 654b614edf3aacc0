//! The local store: one [`Window`] per key in a sharded map. A decision
//! locks one shard (no other lock, no allocation once the key is known);
//! each shard drops the windows that have been idle for the whole hour at
//! most once a minute, when a request next lands in it, so idle keys cost
//! nothing. (A moka cache of per-key mutexes cost about 200 ns more per
//! decision, measured with `benches/limiter.rs`.)

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Mutex, MutexGuard};

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::window::{Decision, Window, BUCKETS, BUCKET_SECS};
use crate::db::Database;
use crate::error::AppResult;

/// Shards of the map: enough that 2–64 cores rarely meet on one lock.
const SHARDS: usize = 64;

/// Windows of this instance.
pub struct LocalStore {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    windows: HashMap<Box<str>, Window>,
    /// Unix minute of the last sweep for idle windows.
    swept_at: i64,
}

impl Shard {
    /// Drops idle windows, at most once a minute.
    fn sweep(&mut self, now: i64) {
        let minute = now.div_euclid(BUCKET_SECS);
        if minute != self.swept_at {
            self.swept_at = minute;
            self.windows.retain(|_, w| !w.is_idle(now));
        }
    }
}

impl LocalStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn shard(&self, key_id: &str) -> MutexGuard<'_, Shard> {
        let index = (self.hasher.hash_one(key_id) as usize) % SHARDS;
        self.shards[index].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `cost` if it fits.
    pub fn decide(&self, key_id: &str, limit: u64, cost: u64, now: i64) -> Decision {
        let mut shard = self.shard(key_id);
        shard.sweep(now);
        if let Some(w) = shard.windows.get_mut(key_id) {
            return w.decide(now, limit, cost);
        }
        shard
            .windows
            .entry(key_id.into())
            .or_default()
            .decide(now, limit, cost)
    }

    /// The figures without counting.
    pub fn peek(&self, key_id: &str, limit: u64, now: i64) -> Decision {
        match self.shard(key_id).windows.get(key_id) {
            Some(w) => w.peek(now, limit),
            None => Window::new().peek(now, limit),
        }
    }

    /// Keys held (idle ones included until their shard is next swept).
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).windows.len() as u64)
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every window idle at `now`, in every shard.
    pub fn sweep_all(&self, now: i64) {
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.swept_at = i64::MIN;
            shard.sweep(now);
        }
    }

    /// Writes every non-empty window to `rate_limit_windows`.
    pub async fn persist(&self, db: &Database, now: i64) -> AppResult<usize> {
        let mut rows: Vec<(String, String)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (key_id, w) in &shard.windows {
                let buckets = w.buckets(now);
                if buckets.is_empty() {
                    continue;
                }
                match serde_json::to_string(&buckets) {
                    Ok(text) => rows.push((key_id.to_string(), text)),
                    Err(e) => tracing::warn!(error = %e, "cannot save a rate-limit window"),
                }
            }
        }
        let backend = db.backend();
        for (key_id, buckets) in &rows {
            let sql = match backend {
                DbBackend::Postgres => {
                    "INSERT INTO rate_limit_windows (key_id, buckets, saved_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (key_id) DO UPDATE SET buckets = EXCLUDED.buckets, saved_at = EXCLUDED.saved_at"
                }
                _ => {
                    "INSERT INTO rate_limit_windows (key_id, buckets, saved_at) VALUES (?, ?, ?) \
                     ON CONFLICT (key_id) DO UPDATE SET buckets = excluded.buckets, saved_at = excluded.saved_at"
                }
            };
            db.conn
                .execute(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [key_id.clone().into(), buckets.clone().into(), now.into()],
                ))
                .await?;
        }
        Ok(rows.len())
    }

    /// Loads saved windows younger than an hour, then clears the table.
    pub async fn restore(&self, db: &Database, now: i64) -> AppResult<usize> {
        let backend = db.backend();
        let horizon = now - BUCKETS as i64 * BUCKET_SECS;
        let sql = match backend {
            DbBackend::Postgres => {
                "SELECT key_id, buckets FROM rate_limit_windows WHERE saved_at >= $1"
            }
            _ => "SELECT key_id, buckets FROM rate_limit_windows WHERE saved_at >= ?",
        };
        let rows = db
            .conn
            .query_all(Statement::from_sql_and_values(
                backend,
                sql,
                [horizon.into()],
            ))
            .await?;
        let mut loaded = 0;
        for row in rows {
            let key_id: String = row.try_get("", "key_id")?;
            let buckets: String = row.try_get("", "buckets")?;
            let Ok(buckets) = serde_json::from_str::<Vec<(i64, u32)>>(&buckets) else {
                continue;
            };
            self.shard(&key_id)
                .windows
                .insert(key_id.into(), Window::from_buckets(buckets));
            loaded += 1;
        }
        db.conn
            .execute(Statement::from_string(
                backend,
                "DELETE FROM rate_limit_windows",
            ))
            .await?;
        Ok(loaded)
    }
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_keys_are_dropped_after_the_window() {
        let store = LocalStore::new();
        let t0 = 1_800_000_000;
        for i in 0..200 {
            assert!(store.decide(&format!("key-{i}"), 10, 1, t0).allowed);
        }
        assert_eq!(store.len(), 200);
        // Half an hour later one key is used again; nothing is idle yet.
        let half = t0 + 1_800;
        assert_eq!(store.decide("key-0", 10, 1, half).remaining, 8);
        store.sweep_all(half);
        assert_eq!(store.len(), 200);
        // An hour and a bit after t0 only key-0 still has counts.
        let later = t0 + 3_700;
        store.sweep_all(later);
        assert_eq!(store.len(), 1);
        assert_eq!(store.peek("key-0", 10, later).remaining, 9);
        // Traffic alone sweeps each shard once a minute (2,000 new keys
        // land in all 64 shards but with a chance of about e^-31).
        let much_later = half + 3_700;
        for i in 0..2_000 {
            store.decide(&format!("fresh-{i}"), 10, 1, much_later);
        }
        assert_eq!(store.len(), 2_000, "idle windows survived");
    }
}
