//! The application: database, caches, clock, schemas and metrics, shared by
//! every request as `AppState` (an `Arc<App>`).

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use entity::key_changes;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::auth::cache::KeyCache;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::db::Database;
use crate::error::{AppError, AppResult};
use crate::graphql::{self, QuireSchema};
use crate::keys::broadcast::Broadcast;
use crate::keys::usage::UsageRecorder;
use crate::ratelimit::Limiter;
use crate::readcache::ReadCache;

/// Everything a request may need.
pub struct App {
    /// The configuration the server started with.
    pub config: Config,
    /// The database (SQLite or PostgreSQL).
    pub db: Database,
    /// Where "now" comes from; injectable for tests.
    pub clock: Arc<dyn Clock>,
    /// Key hash → principal.
    pub keys: KeyCache,
    /// Writes `lastUsedAt` in the background, at most once a minute per key.
    pub usage: UsageRecorder,
    /// Key changes over Redis pub/sub, when `QUIRE_REDIS_URL` is set.
    pub broadcast: Option<Arc<Broadcast>>,
    /// The schema secret keys use.
    pub schema: QuireSchema,
    /// The schema public keys use: no introspection (unless configured) and
    /// no "did you mean" suggestions.
    pub public_schema: QuireSchema,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Per-key hourly budgets.
    pub limiter: Limiter,
    /// Cached published-view responses and the content generations that
    /// keep them exact.
    pub read_cache: ReadCache,
}

/// Shared handle to the application.
pub type AppState = Arc<App>;

/// How often each instance polls the key change feed.
pub const CHANGE_POLL_INTERVAL: Duration = Duration::from_millis(500);

impl App {
    /// Opens and migrates the database and assembles the application.
    pub async fn new(config: Config) -> AppResult<AppState> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`App::new`] with an injected clock.
    pub async fn with_clock(config: Config, clock: Arc<dyn Clock>) -> AppResult<AppState> {
        let db = Database::connect(&config.database.database_url).await?;
        db.migrate(clock.now()).await?;
        let usage = UsageRecorder::start(db.conn.clone());
        let broadcast = config
            .redis_url
            .as_deref()
            .map(Broadcast::new)
            .transpose()
            .map_err(AppError::bad_input)?
            .map(Arc::new);
        let limiter = Limiter::new(config.redis_url.as_deref()).map_err(AppError::bad_input)?;
        let restored = limiter.restore(&db, clock.now()).await?;
        if restored > 0 {
            tracing::info!(keys = restored, "restored rate-limit windows");
        }
        let read_cache = ReadCache::new(&config, db.backend()).map_err(AppError::bad_input)?;
        Ok(Arc::new(App {
            limiter,
            read_cache,
            schema: graphql::build_schema(&config, false),
            public_schema: graphql::build_schema(&config, true),
            config,
            db,
            clock,
            keys: KeyCache::new(),
            usage,
            broadcast,
            metrics: metrics_handle(),
        }))
    }

    /// Drops a changed key from this instance's cache at once; other
    /// instances learn of it from Redis (when configured) and the change feed.
    pub fn forget_key(&self, key_id: &str) {
        self.keys.forget(key_id);
        if let Some(broadcast) = &self.broadcast {
            broadcast.publish(key_id);
        }
    }

    /// Listens for key changes on Redis (when configured) and forgets them.
    pub fn spawn_redis_listener(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let app = Arc::clone(self);
        self.broadcast
            .as_ref()
            .map(|b| b.spawn_listener(move |key_id| app.keys.forget(key_id)))
    }

    /// Watches the key change feed (and Redis, when configured) and forgets
    /// changed keys, and retries unannounced content changes, until the
    /// process ends. Catches up from the feed's
    /// current end.
    pub fn spawn_change_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.spawn_redis_listener();
        // Content changes that could not be announced through Redis.
        let announcer = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(crate::readcache::ANNOUNCE_RETRY);
            loop {
                ticker.tick().await;
                announcer.read_cache.retry_announcements().await;
            }
        });
        let app = Arc::clone(self);
        tokio::spawn(async move {
            let mut seen = BTreeSet::new();
            let mut high = latest_change(&app).await.unwrap_or(0);
            let mut ticker = tokio::time::interval(CHANGE_POLL_INTERVAL);
            loop {
                ticker.tick().await;
                // Rows can commit out of id order on PostgreSQL; look back a
                // little and skip what was already applied.
                let from = high.saturating_sub(64);
                let rows = key_changes::Entity::find()
                    .filter(key_changes::Column::Id.gt(from))
                    .order_by_asc(key_changes::Column::Id)
                    .all(&app.db.conn)
                    .await;
                match rows {
                    Ok(rows) => {
                        for row in rows {
                            if row.id > from && seen.insert(row.id) {
                                app.keys.forget(&row.key_id);
                                high = high.max(row.id);
                            }
                        }
                        let keep_from = high.saturating_sub(64);
                        seen = seen.split_off(&keep_from);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot poll the key change feed"),
                }
            }
        })
    }
}

async fn latest_change(app: &App) -> AppResult<i64> {
    Ok(key_changes::Entity::find()
        .order_by_desc(key_changes::Column::Id)
        .one(&app.db.conn)
        .await?
        .map(|r| r.id)
        .unwrap_or(0))
}

/// How often histogram samples are folded into their buckets.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The process-wide Prometheus recorder (installed once, shared by every App
/// in the process, as tests start several).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new())
                .build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed");
            }
            // Histogram samples pile up until upkeep folds them into their
            // buckets: without it, memory grows by every request until
            // `/metrics` is scraped (8 bytes a sample; seen in the soak).
            let upkeep = handle.clone();
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the metrics upkeep thread");
            }
            handle
        })
        .clone()
}
