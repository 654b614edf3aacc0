//! The key cache: SHA-256 → principal, with single-flight loading, a small
//! negative cache for unknown well-formed keys, and exact invalidation.
//!
//! Invalidation is exact even against a load that raced it: every load
//! records the cache generation it started in, [`KeyCache::forget`] bumps the
//! generation and remembers it per key id, and a hit loaded before the key's
//! last invalidation is treated as a miss.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{api_key_graces, api_keys};
use moka::future::Cache;
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter};

use super::principal::Principal;
use crate::error::AppError;

/// How long a loaded key may be served without a reload.
const POSITIVE_TTL: Duration = Duration::from_secs(600);
/// How long "this well-formed key does not exist" is remembered; short, so a
/// key imported elsewhere works here within the propagation bound.
const NEGATIVE_TTL: Duration = Duration::from_secs(1);

/// One loaded key as seen through the hash that was presented.
#[derive(Debug)]
pub struct CachedKey {
    /// The principal of the key.
    pub principal: Arc<Principal>,
    /// The presented hash is an old secret, valid only until this instant
    /// (its rotation grace); `None` for the current secret.
    pub grace_until: Option<DateTime<Utc>>,
    loaded_gen: u64,
}

/// Why a well-formed key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Revoked,
    Expired,
    Rotated,
}

impl Refusal {
    /// Label for logs and the auth-failure metric.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::Rotated => "rotated",
        }
    }
}

#[derive(Debug, Clone)]
enum LoadError {
    Unknown,
    Db(Arc<sea_orm::DbErr>),
}

/// The process-wide key cache.
pub struct KeyCache {
    positive: Cache<[u8; 32], Arc<CachedKey>>,
    negative: moka::sync::Cache<[u8; 32], ()>,
    /// key id → generation of its last invalidation.
    invalidated: moka::sync::Cache<String, u64>,
    generation: AtomicU64,
    lookups: AtomicU64,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self {
            positive: Cache::builder()
                .max_capacity(200_000)
                .time_to_live(POSITIVE_TTL)
                .build(),
            negative: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(NEGATIVE_TTL)
                .build(),
            // Unbounded on purpose: losing a marker would let a stale entry
            // live; markers outlive every entry they could concern.
            invalidated: moka::sync::Cache::builder()
                .time_to_live(POSITIVE_TTL + Duration::from_secs(60))
                .build(),
            generation: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
        }
    }

    /// How many database lookups this cache has made.
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Whether a key of this hash is cached (a resolve will likely not
    /// read the database).
    pub fn holds(&self, hash: [u8; 32]) -> bool {
        self.positive.contains_key(&hash) || self.negative.contains_key(&hash)
    }

    /// Resolves a hash to a valid principal, or says why not.
    pub async fn resolve(
        &self,
        db: &DatabaseConnection,
        hash: [u8; 32],
        now: DateTime<Utc>,
    ) -> Result<Arc<Principal>, ResolveError> {
        if self.negative.contains_key(&hash) {
            return Err(ResolveError::Refused(Refusal::Unknown));
        }
        let mut entry = self.load(db, hash).await?;
        if self.is_stale(&entry) {
            self.positive.invalidate(&hash).await;
            entry = self.load(db, hash).await?;
        }
        check(&entry, now).map_err(ResolveError::Refused)?;
        Ok(entry.principal.clone())
    }

    async fn load(
        &self,
        db: &DatabaseConnection,
        hash: [u8; 32],
    ) -> Result<Arc<CachedKey>, ResolveError> {
        let result = self
            .positive
            .try_get_with(hash, async {
                let started_gen = self.generation.load(Ordering::SeqCst);
                self.lookups.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("quire_key_lookups_total").increment(1);
                let hex = hex::encode(hash);
                let db_error = |e| LoadError::Db(Arc::new(e));
                let row = api_keys::Entity::find()
                    .filter(
                        Condition::any()
                            .add(api_keys::Column::KeyHash.eq(hex.as_str()))
                            .add(api_keys::Column::PreviousKeyHash.eq(hex.as_str())),
                    )
                    .one(db)
                    .await
                    .map_err(db_error)?;
                let (row, grace_until) = match row {
                    Some(row) if row.key_hash == hex => (row, None),
                    Some(row) => {
                        let ends = row.previous_expires_at.unwrap_or_default();
                        (row, Some(ends))
                    }
                    // An older secret whose grace may still run.
                    None => {
                        let grace = api_key_graces::Entity::find_by_id(hex.clone())
                            .one(db)
                            .await
                            .map_err(db_error)?
                            .ok_or(LoadError::Unknown)?;
                        let row = api_keys::Entity::find_by_id(grace.key_id)
                            .one(db)
                            .await
                            .map_err(db_error)?
                            .ok_or(LoadError::Unknown)?;
                        (row, Some(grace.expires_at))
                    }
                };
                Ok::<_, LoadError>(Arc::new(CachedKey {
                    principal: Arc::new(Principal::from_row(Arc::new(row))),
                    grace_until,
                    loaded_gen: started_gen,
                }))
            })
            .await;
        match result {
            Ok(entry) => Ok(entry),
            Err(e) => match &*e {
                LoadError::Unknown => {
                    self.negative.insert(hash, ());
                    Err(ResolveError::Refused(Refusal::Unknown))
                }
                LoadError::Db(cause) => Err(ResolveError::Database(cause.clone())),
            },
        }
    }

    fn is_stale(&self, entry: &CachedKey) -> bool {
        if entry.loaded_gen == self.generation.load(Ordering::SeqCst) {
            return false;
        }
        self.invalidated
            .get(&entry.principal.key_id)
            .is_some_and(|g| entry.loaded_gen < g)
    }

    /// Drops every cached view of `key_id` (current and previous secret);
    /// a load already under way cannot put the old state back.
    pub fn forget(&self, key_id: &str) {
        let g = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.invalidated.insert(key_id.to_owned(), g);
    }

    /// Forgets every "unknown key" answer (after a key is created or imported).
    pub fn forget_unknown(&self) {
        self.negative.invalidate_all();
    }
}

/// Why resolution failed.
#[derive(Debug)]
pub enum ResolveError {
    /// The key is not valid now.
    Refused(Refusal),
    /// The database could not answer.
    Database(Arc<sea_orm::DbErr>),
}

impl From<ResolveError> for AppError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::Refused(_) => AppError::Unauthenticated,
            ResolveError::Database(cause) => AppError::unavailable(cause),
        }
    }
}

fn check(entry: &CachedKey, now: DateTime<Utc>) -> Result<(), Refusal> {
    let key = &entry.principal.key;
    if key.revoked_at.is_some() {
        return Err(Refusal::Revoked);
    }
    if key.expires_at.is_some_and(|e| e <= now) {
        return Err(Refusal::Expired);
    }
    if entry.grace_until.is_some_and(|e| e <= now) {
        return Err(Refusal::Rotated);
    }
    Ok(())
}
