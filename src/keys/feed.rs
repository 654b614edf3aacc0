//! How every instance learns that a key changed, so that no cache serves a
//! revoked, rotated or re-budgeted key for long.
//!
//! The guarantee is the database feed: every key change writes a
//! `key_changes` row in its own transaction (see `announce_change`), and
//! every instance polls the feed every [`POLL_INTERVAL`] and drops the keys
//! it names — `quire admin` changes included, Redis or not. With
//! `QUIRE_REDIS_URL`, the instance that changed a key also publishes its id
//! on [`CHANNEL`] and every subscribed instance drops it within milliseconds.
//! Both go through the instance's shared [`RedisLink`]: while its breaker is
//! open nothing waits for Redis and nothing is logged here (the link logs
//! the outage once for every Redis user); the subscription is retried only
//! when a PING through the link (the probe, at most once a second) answers.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use entity::key_changes;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::auth::cache::KeyCache;
use crate::error::AppResult;

/// How often each instance polls the key change feed.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// The Redis channel key ids are published on (a
/// [`crate::redis_link::Broadcast`]).
pub const CHANNEL: &str = "quire:key-changes";
/// How far behind the highest id seen the poll looks again: rows can commit
/// out of id order on PostgreSQL.
const LOOK_BACK: i64 = 64;

/// Polls the feed and forgets changed keys in `cache`, until the process
/// ends. Starts from the feed's current end.
pub fn spawn_poller(db: DatabaseConnection, cache: Arc<KeyCache>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut seen = BTreeSet::new();
        let mut high = latest(&db).await.unwrap_or(0);
        let mut ticker = tokio::time::interval(POLL_INTERVAL);
        loop {
            ticker.tick().await;
            let from = high.saturating_sub(LOOK_BACK);
            let rows = key_changes::Entity::find()
                .filter(key_changes::Column::Id.gt(from))
                .order_by_asc(key_changes::Column::Id)
                .all(&db)
                .await;
            match rows {
                Ok(rows) => {
                    for row in rows {
                        if row.id > from && seen.insert(row.id) {
                            cache.forget(&row.key_id);
                            high = high.max(row.id);
                        }
                    }
                    seen = seen.split_off(&high.saturating_sub(LOOK_BACK));
                }
                Err(e) => tracing::warn!(error = %e, "cannot poll the key change feed"),
            }
        }
    })
}

async fn latest(db: &DatabaseConnection) -> AppResult<i64> {
    Ok(key_changes::Entity::find()
        .order_by_desc(key_changes::Column::Id)
        .one(db)
        .await?
        .map(|r| r.id)
        .unwrap_or(0))
}
