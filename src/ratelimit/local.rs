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

    /// Writes every non-empty window to `rate_limit_windows`, replacing
    /// what an earlier save wrote for the same key (a window holds all its
    /// counts, restored ones included, so nothing is counted twice), and
    /// drops rows saved more than a window ago.
    pub async fn persist(&self, db: &Database, now: i64) -> AppResult<usize> {
        // Copy under each shard's lock, serialize after it: a save running
        // beside the requests holds a shard only for the copy.
        let mut windows: Vec<(String, Vec<(i64, u32)>)> = Vec::new();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            for (key_id, w) in &shard.windows {
                let buckets = w.buckets(now);
                if !buckets.is_empty() {
                    windows.push((key_id.to_string(), buckets));
                }
            }
        }
        let mut rows: Vec<(String, String)> = Vec::with_capacity(windows.len());
        for (key_id, buckets) in windows {
            match serde_json::to_string(&buckets) {
                Ok(text) => rows.push((key_id, text)),
                Err(e) => tracing::warn!(error = %e, "cannot save a rate-limit window"),
            }
        }
        let backend = db.backend();
        // One statement per chunk: few round trips, and each statement is
        // short enough not to hold SQLite's write lock for long.
        for chunk in rows.chunks(SAVE_CHUNK) {
            let mut values = Vec::with_capacity(chunk.len() * 3);
            let mut tuples = Vec::with_capacity(chunk.len());
            for (key_id, buckets) in chunk {
                let n = values.len();
                tuples.push(match backend {
                    DbBackend::Postgres => format!("(${}, ${}, ${})", n + 1, n + 2, n + 3),
                    _ => "(?, ?, ?)".to_owned(),
                });
                values.push(key_id.clone().into());
                values.push(buckets.clone().into());
                values.push(now.into());
            }
            let sql = format!(
                "INSERT INTO rate_limit_windows (key_id, buckets, saved_at) VALUES {} \
                 ON CONFLICT (key_id) DO UPDATE SET buckets = excluded.buckets, saved_at = excluded.saved_at",
                tuples.join(", ")
            );
            db.writer
                .execute(Statement::from_sql_and_values(backend, sql, values))
                .await?;
        }
        let sql = match backend {
            DbBackend::Postgres => "DELETE FROM rate_limit_windows WHERE saved_at < $1",
            _ => "DELETE FROM rate_limit_windows WHERE saved_at < ?",
        };
        db.writer
            .execute(Statement::from_sql_and_values(
                backend,
                sql,
                [horizon(now).into()],
            ))
            .await?;
        Ok(rows.len())
    }

    /// Loads saved windows younger than a window, replacing what this store
    /// holds for those keys. The rows stay: a crash before the next save
    /// still finds them, and the next save replaces them.
    pub async fn restore(&self, db: &Database, now: i64) -> AppResult<usize> {
        let backend = db.backend();
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
                [horizon(now).into()],
            ))
            .await?;
        let mut loaded = 0;
        for row in rows {
            let key_id: String = row.try_get("", "key_id")?;
            let buckets: String = row.try_get("", "buckets")?;
            let Ok(buckets) = serde_json::from_str::<Vec<(i64, u32)>>(&buckets) else {
                tracing::warn!("skipping an unreadable saved rate-limit window");
                continue;
            };
            self.shard(&key_id)
                .windows
                .insert(key_id.into(), Window::from_buckets(buckets));
            loaded += 1;
        }
        Ok(loaded)
    }
}

/// Rows per statement when saving (three values each, far under SQLite's
/// and PostgreSQL's limits on bound values).
const SAVE_CHUNK: usize = 500;

/// The oldest `saved_at` whose row can still hold a count in the window.
fn horizon(now: i64) -> i64 {
    now - BUCKETS as i64 * BUCKET_SECS
}

impl Default for LocalStore {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
mod tests {
    use super::*;

    /// A migrated SQLite database in a directory that lives as long as it.
    async fn database() -> (Database, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/rl.db?mode=rwc", dir.path().display());
        let db = Database::connect(&url).await.unwrap();
        db.migrate(chrono::Utc::now()).await.unwrap();
        (db, dir)
    }

    async fn saved_rows(db: &Database) -> i64 {
        let row = db
            .conn
            .query_one(Statement::from_string(
                db.backend(),
                "SELECT COUNT(*) AS n FROM rate_limit_windows",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get("", "n").unwrap()
    }

    #[tokio::test]
    async fn restoring_does_not_consume_and_saving_replaces() {
        let (db, _dir) = database().await;
        let t0 = 1_800_000_000;
        let before = LocalStore::new();
        for _ in 0..400 {
            assert!(before.decide("key-a", 1_000, 1, t0).allowed);
        }
        before.decide("key-b", 1_000, 7, t0 + 5);
        assert_eq!(before.persist(&db, t0 + 10).await.unwrap(), 2);

        // A restart, then a crash before any save: the next start still
        // finds the windows.
        let first = LocalStore::new();
        assert_eq!(first.restore(&db, t0 + 20).await.unwrap(), 2);
        assert_eq!(first.peek("key-a", 1_000, t0 + 20).remaining, 600);
        let second = LocalStore::new();
        assert_eq!(second.restore(&db, t0 + 30).await.unwrap(), 2);
        assert_eq!(second.peek("key-a", 1_000, t0 + 30).remaining, 600);
        assert_eq!(second.peek("key-b", 1_000, t0 + 30).remaining, 993);

        // The restored instance counts on and saves twice: each save
        // replaces the last, so nothing is counted twice.
        for _ in 0..100 {
            second.decide("key-a", 1_000, 1, t0 + 40);
        }
        second.persist(&db, t0 + 50).await.unwrap();
        second.persist(&db, t0 + 60).await.unwrap();
        assert_eq!(saved_rows(&db).await, 2);
        let third = LocalStore::new();
        third.restore(&db, t0 + 70).await.unwrap();
        assert_eq!(third.peek("key-a", 1_000, t0 + 70).remaining, 500);
        assert_eq!(third.peek("key-b", 1_000, t0 + 70).remaining, 993);

        // More than a window later the counts are gone, and the next save
        // drops the rows.
        let later = t0 + 3_800;
        let fourth = LocalStore::new();
        assert_eq!(fourth.restore(&db, later).await.unwrap(), 0);
        assert_eq!(fourth.peek("key-a", 1_000, later).remaining, 1_000);
        fourth.persist(&db, later).await.unwrap();
        assert_eq!(saved_rows(&db).await, 0);
    }

    #[tokio::test]
    async fn many_windows_are_saved_in_chunks() {
        let (db, _dir) = database().await;
        let t0 = 1_800_000_000;
        let store = LocalStore::new();
        let keys = SAVE_CHUNK * 2 + 7;
        for i in 0..keys {
            store.decide(&format!("key-{i}"), 10, 3, t0);
        }
        assert_eq!(store.persist(&db, t0).await.unwrap(), keys);
        let restored = LocalStore::new();
        assert_eq!(restored.restore(&db, t0 + 1).await.unwrap(), keys);
        assert_eq!(restored.peek("key-1006", 10, t0 + 1).remaining, 7);
    }

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
