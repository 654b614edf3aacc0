//! `lastUsedAt`, kept off the request path: a request only drops the key id
//! into a bounded channel (at most once a minute per key and instance), and a
//! background task writes batches. The `UPDATE` itself refuses to move
//! `last_used_at` by less than a minute, so several instances together still
//! write at most once a minute per key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::api_keys;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};
use tokio::sync::mpsc;

/// How often `lastUsedAt` may move, per key.
pub const RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);
/// How long the writer gathers uses before writing a batch.
const BATCH_WINDOW: Duration = Duration::from_millis(250);
/// Uses waiting to be written; beyond this they are dropped (it is a hint).
const QUEUE: usize = 10_000;

/// Records key uses; cheap to call on every request.
pub struct LastUsed {
    tx: mpsc::Sender<(String, DateTime<Utc>)>,
    /// key id → the use last queued by this instance.
    last: moka::sync::Cache<String, DateTime<Utc>>,
    writes: Arc<AtomicU64>,
}

impl LastUsed {
    /// Starts the background writer on the current Tokio runtime.
    pub fn start(db: DatabaseConnection) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writes = Arc::new(AtomicU64::new(0));
        tokio::spawn(write_batches(db, rx, Arc::clone(&writes)));
        Self {
            tx,
            last: moka::sync::Cache::builder()
                .max_capacity(200_000)
                .time_to_idle(Duration::from_secs(120))
                .build(),
            writes,
        }
    }

    /// Notes that `key_id` was used at `now`; never waits.
    pub fn touch(&self, key_id: &str, now: DateTime<Utc>) {
        if let Some(last) = self.last.get(key_id) {
            if now >= last && now - last < RESOLUTION {
                return;
            }
        }
        self.last.insert(key_id.to_owned(), now);
        if self.tx.try_send((key_id.to_owned(), now)).is_err() {
            metrics::counter!("quire_last_used_dropped_total").increment(1);
        }
    }

    /// How many `last_used_at` rows this instance has written (for tests).
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }
}

async fn write_batches(
    db: DatabaseConnection,
    mut rx: mpsc::Receiver<(String, DateTime<Utc>)>,
    writes: Arc<AtomicU64>,
) {
    while let Some(first) = rx.recv().await {
        tokio::time::sleep(BATCH_WINDOW).await;
        let mut batch: HashMap<String, DateTime<Utc>> = HashMap::new();
        let mut add = |(id, at): (String, DateTime<Utc>)| {
            let slot = batch.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        };
        add(first);
        while let Ok(item) = rx.try_recv() {
            add(item);
        }
        for (id, at) in batch {
            let res = api_keys::Entity::update_many()
                .col_expr(api_keys::Column::LastUsedAt, Expr::value(at))
                .filter(api_keys::Column::Id.eq(id))
                .filter(
                    Condition::any()
                        .add(api_keys::Column::LastUsedAt.is_null())
                        .add(api_keys::Column::LastUsedAt.lte(at - RESOLUTION)),
                )
                .exec(&db)
                .await;
            match res {
                Ok(r) => {
                    writes.fetch_add(r.rows_affected, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(error = %e, "cannot record lastUsedAt"),
            }
        }
    }
}
