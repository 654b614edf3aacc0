//! The local store: one [`Window`] per key in moka, dropped after an hour
//! idle, so idle keys cost nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::window::{Decision, Window, BUCKETS, BUCKET_SECS};
use crate::db::Database;
use crate::error::AppResult;

/// Windows of this instance.
pub struct LocalStore {
    windows: moka::sync::Cache<String, Arc<Mutex<Window>>>,
}

impl LocalStore {
    /// An empty store.
    pub fn new() -> Self {
        Self {
            windows: moka::sync::Cache::builder()
                .time_to_idle(Duration::from_secs((BUCKETS as i64 * BUCKET_SECS) as u64))
                .build(),
        }
    }

    fn window(&self, key_id: &str) -> Arc<Mutex<Window>> {
        match self.windows.get(key_id) {
            Some(w) => w,
            None => self
                .windows
                .get_with(key_id.to_owned(), || Arc::new(Mutex::new(Window::new()))),
        }
    }

    /// Counts `cost` if it fits.
    pub fn decide(&self, key_id: &str, limit: u64, cost: u64, now: i64) -> Decision {
        let window = self.window(key_id);
        let mut w = window.lock().unwrap_or_else(|p| p.into_inner());
        w.decide(now, limit, cost)
    }

    /// The figures without counting.
    pub fn peek(&self, key_id: &str, limit: u64, now: i64) -> Decision {
        match self.windows.get(key_id) {
            Some(w) => w.lock().unwrap_or_else(|p| p.into_inner()).peek(now, limit),
            None => Window::new().peek(now, limit),
        }
    }

    /// Keys held.
    pub fn len(&self) -> u64 {
        self.windows.run_pending_tasks();
        self.windows.entry_count()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes every non-empty window to `rate_limit_windows`.
    pub async fn persist(&self, db: &Database, now: i64) -> AppResult<usize> {
        let rows: Vec<(String, String)> = self
            .windows
            .iter()
            .filter_map(|(key_id, w)| {
                let buckets = w.lock().unwrap_or_else(|p| p.into_inner()).buckets(now);
                (!buckets.is_empty()).then(|| {
                    (
                        key_id.to_string(),
                        serde_json::to_string(&buckets).unwrap_or_default(),
                    )
                })
            })
            .collect();
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
            self.windows
                .insert(key_id, Arc::new(Mutex::new(Window::from_buckets(buckets))));
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
