//! The application: configuration, database, clock, caches, limiter and the
//! services (keys, content, events, files, schedules, usage), shared by every
//! request as `AppState` (an `Arc<App>`).
//!
//! `App` wires the parts together once: the services get the connection,
//! the clock, the key cache and the [`Changes`] hub they announce to, and
//! the read cache listens on that hub. It builds no GraphQL schema (the
//! router does).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::auth::cache::KeyCache;
use crate::auth::extract::Authenticator;
use crate::auth::last_used::LastUsed;
use crate::changes::Changes;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::content::catalog::Catalog;
use crate::content::ContentService;
use crate::db::Database;
use crate::error::StartError;
use crate::events::Events;
use crate::files::FileService;
use crate::keys::KeyService;
use crate::ratelimit::redis_store::RedisStore;
use crate::ratelimit::Limiter;
use crate::readcache::{self, ReadCache};
use crate::redis_link::RedisLink;
use crate::schedules::ScheduleService;
use crate::usage::Usage;

/// Everything a request may need.
pub struct App {
    /// The configuration the server started with.
    pub config: Config,
    /// The database (SQLite or PostgreSQL).
    pub db: Database,
    /// Where "now" comes from; injectable for tests.
    pub clock: Arc<dyn Clock>,
    /// Key hash → principal; kept exact by the key service.
    pub key_cache: Arc<KeyCache>,
    /// Turns request headers into a principal (through `key_cache`) and
    /// records `lastUsedAt`.
    pub authenticator: Arc<Authenticator>,
    /// Key lifecycle: the one door to the key store.
    pub keys: KeyService,
    /// Models and records: the one door to content.
    pub content: ContentService,
    /// Schedules (and their runner) and record versions.
    pub schedules: Arc<ScheduleService>,
    /// Search: the cached vocabularies behind typo tolerance.
    pub searcher: crate::search::Searcher,
    /// Events and webhooks: the wake-up hub, webhook management, the
    /// dispatcher.
    pub events: Events,
    /// Files: uploads, storage, delivery, variants (the one door).
    pub files: FileService,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Per-key hourly budgets.
    pub limiter: Limiter,
    /// Cached published-view responses and the content generations that
    /// keep them exact.
    pub read_cache: Arc<ReadCache>,
    /// The instance's one Redis connection and its circuit breaker, shared
    /// by the limiter, the read cache and the key broadcast (with
    /// `QUIRE_REDIS_URL`).
    pub redis: Option<Arc<RedisLink>>,
    /// Requests per key per hour and day, counted in memory and flushed
    /// off the request path (`keyUsage`).
    pub usage: Arc<Usage>,
}

/// Shared handle to the application.
pub type AppState = Arc<App>;

impl App {
    /// Opens and migrates the database and assembles the application.
    pub async fn new(config: Config) -> Result<AppState, StartError> {
        Self::with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`App::new`] with an injected clock.
    pub async fn with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<AppState, StartError> {
        // The recorder first: every figure below is exported from the start.
        let metrics = metrics_handle();
        let db = Database::connect_with_timeout(
            &config.database.database_url,
            Duration::from_secs(config.db_timeout_seconds),
        )
        .await?;
        db.migrate(clock.now()).await?;
        crate::search::reindex::run_pending(&db).await?;
        let redis = config
            .redis_url
            .as_deref()
            .map(RedisLink::new)
            .transpose()
            .map_err(StartError::Config)?
            .map(Arc::new);
        // Exported at 0 with or without Redis (0 is true without it).
        RedisStore::describe_metrics_counters();
        let limiter = Limiter::on_link(redis.clone());
        let restored = limiter.restore(&db, clock.now()).await?;
        if restored > 0 {
            tracing::info!(keys = restored, "restored rate-limit windows");
        }
        let read_cache = Arc::new(ReadCache::new(&config, &db, redis.clone()));
        let catalog = Arc::new(Catalog::new(read_cache.clone(), db.exclusive_writer));
        let events = Events::new(&config, db.clone(), clock.clone(), redis.clone())
            .map_err(StartError::Config)?;
        let mut changes = Changes::new();
        changes.listen(read_cache.clone());
        changes.listen(catalog.clone());
        changes.listen(events.hub.clone());
        let changes = Arc::new(changes);
        let key_cache = Arc::new(KeyCache::new());
        let keys = KeyService::new(
            db.clone(),
            clock.clone(),
            key_cache.clone(),
            redis.clone(),
            changes.clone(),
            config.default_rate_limit_per_hour,
        )
        .map_err(StartError::Config)?;
        let schedules = Arc::new(ScheduleService::new(
            db.clone(),
            clock.clone(),
            changes.clone(),
            catalog.clone(),
        ));
        let files = FileService::new(&config.files, db.clone(), clock.clone(), changes.clone())
            .await
            .map_err(StartError::Config)?;
        let content = ContentService::new(db.clone(), clock.clone(), changes, catalog);
        let authenticator = Arc::new(Authenticator::new(
            key_cache.clone(),
            db.clone(),
            clock.clone(),
            LastUsed::start(db.conn.clone()),
        ));
        let usage = Arc::new(Usage::new(
            db.clone(),
            clock.clone(),
            config.usage,
            config.usage_flush_seconds,
        ));
        db.health.export_metrics();
        Ok(Arc::new(App {
            usage,
            limiter,
            read_cache,
            config,
            db,
            clock,
            key_cache,
            authenticator,
            keys,
            content,
            schedules,
            searcher: crate::search::Searcher::default(),
            events,
            files,
            metrics,
            redis,
        }))
    }

    /// Starts what runs beside the requests until the process ends: the
    /// watchers that keep the key cache exact (the change feed; Redis when
    /// configured), the poll of the content generations in the database,
    /// the retry of content changes Redis missed, the events side (the
    /// stream wake-ups, the webhook dispatcher, pruning) and the usage
    /// flusher.
    pub fn spawn_change_watcher(&self) {
        self.keys.spawn_watchers();
        self.events.spawn();
        self.usage.spawn();
        self.schedules.spawn_runner();
        self.read_cache.spawn_generation_poller();
        let read_cache = Arc::clone(&self.read_cache);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(readcache::ANNOUNCE_RETRY);
            loop {
                ticker.tick().await;
                read_cache.retry_announcements().await;
            }
        });
    }
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
