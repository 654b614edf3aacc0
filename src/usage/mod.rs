//! Usage (SPEC §10): requests per key per hour and day.
//!
//! Counting stays off the request path: the HTTP layer bumps an in-memory
//! aggregate ([`tally`]) once per request, in one place (`http::track`),
//! and a background task flushes it every `QUIRE_USAGE_FLUSH_SECONDS` with
//! one additive upsert per table ([`store`]), so several instances add up
//! without coordination. While the database is away the counts stay in
//! memory (bounded) and go out with a later flush; a graceful shutdown
//! flushes what is left. A `kill -9` loses at most one flush interval.

pub mod store;
pub mod tally;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::kinds::KeyMode;

use crate::auth::principal::Principal;
use crate::clock::Clock;
use crate::db::Database;
use crate::error::{AppError, AppResult};
pub use store::{Bucket, Granularity};
use tally::{Counts, Tally};

/// Most (key, hour) entries held between flushes (about 100 bytes each):
/// beyond it new entries are dropped and counted in `/metrics`.
pub const MAX_ENTRIES: usize = 500_000;
/// How often any instance prunes expired buckets.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Longest range `keyUsage` answers at `HOUR`.
pub const MAX_HOURLY_DAYS: i64 = 90;
/// Longest range `keyUsage` answers at `DAY`.
pub const MAX_DAILY_DAYS: i64 = 400;

/// How one request ended, for its key's bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Operations in the request (a batch of N is N).
    pub operations: u64,
    /// Refused with 429.
    pub rate_limited: bool,
    /// Operations whose answer carried an error (other than a 429).
    pub errors: u64,
}

/// The usage service: the aggregate, its flusher, pruning and `keyUsage`.
pub struct Usage {
    tally: Tally,
    db: Database,
    clock: Arc<dyn Clock>,
    enabled: bool,
    flush_every: Duration,
    /// One flush at a time per instance (the timer and shutdown may meet).
    flushing: tokio::sync::Mutex<()>,
}

impl Usage {
    /// A usage service; `enabled: false` counts nothing.
    pub fn new(db: Database, clock: Arc<dyn Clock>, enabled: bool, flush_seconds: u64) -> Self {
        metrics::describe_counter!(
            "quire_usage_flush_failures_total",
            "usage flushes that could not write (the counts are kept for the next)"
        );
        metrics::describe_counter!(
            "quire_usage_dropped_total",
            "usage counts dropped because the in-memory aggregate was full"
        );
        metrics::counter!("quire_usage_flush_failures_total").increment(0);
        metrics::counter!("quire_usage_dropped_total").increment(0);
        Self {
            tally: Tally::new(MAX_ENTRIES),
            db,
            clock,
            enabled,
            flush_every: Duration::from_secs(flush_seconds.max(1)),
            flushing: tokio::sync::Mutex::new(()),
        }
    }

    /// Counts one request made with `key_id`; never waits on I/O.
    pub fn count(&self, key_id: &str, outcome: Outcome) {
        if !self.enabled {
            return;
        }
        let now = self.clock.now().timestamp();
        let hour = now - now.rem_euclid(3600);
        let counts = Counts {
            requests: outcome.operations,
            rate_limited: if outcome.rate_limited {
                outcome.operations
            } else {
                0
            },
            errors: outcome.errors.min(outcome.operations),
        };
        if !self.tally.add(key_id, hour, counts) {
            metrics::counter!("quire_usage_dropped_total").increment(counts.requests);
        }
    }

    /// Writes what was counted since the last flush. On failure the counts
    /// go back into the aggregate for the next flush.
    pub async fn flush(&self) -> AppResult<usize> {
        let _one = self.flushing.lock().await;
        let rows = self.tally.take();
        if rows.is_empty() {
            return Ok(0);
        }
        let n = rows.len();
        let db = self.db.clone();
        match store::add(&db, rows.clone()).await {
            Ok(()) => Ok(n),
            Err(e) => {
                metrics::counter!("quire_usage_flush_failures_total").increment(1);
                let dropped = self.tally.restore(rows);
                if dropped > 0 {
                    metrics::counter!("quire_usage_dropped_total").increment(dropped as u64);
                }
                Err(e)
            }
        }
    }

    /// (key, hour) entries waiting for a flush.
    pub fn pending(&self) -> usize {
        self.tally.len()
    }

    /// Starts the flusher and the pruner on the current runtime.
    pub fn spawn(self: &Arc<Self>) {
        if !self.enabled {
            return;
        }
        let usage = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(usage.flush_every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                if let Err(e) = usage.flush().await {
                    tracing::warn!(error = %e.cause(), pending = usage.pending(), "could not flush usage counts; keeping them for the next flush");
                }
            }
        });
        let usage = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(PRUNE_EVERY);
            loop {
                ticker.tick().await;
                if let Err(e) = store::prune(&usage.db.writer, usage.clock.now()).await {
                    tracing::warn!(error = %e.cause(), "could not prune usage buckets");
                }
            }
        });
    }

    /// `keyUsage`: the buckets of the keys `p` may see, in `[from, to)`.
    pub async fn buckets(
        &self,
        p: &Principal,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        granularity: Granularity,
        key_ids: Option<Vec<String>>,
    ) -> AppResult<Vec<Bucket>> {
        if to <= from {
            return Err(AppError::bad_field("to", "`to` must be after `from`"));
        }
        let (max_days, name) = match granularity {
            Granularity::Hour => (MAX_HOURLY_DAYS, "HOUR"),
            Granularity::Day => (MAX_DAILY_DAYS, "DAY"),
        };
        if to - from > chrono::Duration::days(max_days) {
            return Err(AppError::bad_field(
                "to",
                format!("a range at {name} spans at most {max_days} days"),
            ));
        }
        if key_ids
            .as_ref()
            .is_some_and(|ids| ids.len() > store::MAX_KEY_IDS)
        {
            return Err(AppError::bad_field(
                "keyIds",
                format!("at most {} key ids", store::MAX_KEY_IDS),
            ));
        }
        let scope = if p.is_public() {
            store::Visible::Only(p.key_id.clone())
        } else if p.mode == KeyMode::Test {
            store::Visible::Mode(KeyMode::Test)
        } else {
            store::Visible::All
        };
        store::buckets(
            &self.db.conn,
            &p.project_id,
            scope,
            from,
            to,
            granularity,
            key_ids,
        )
        .await
    }
}
