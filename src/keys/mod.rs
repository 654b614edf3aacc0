//! Key lifecycle (the service layer): create, list, update, rotate, revoke,
//! export and import, and the first start's bootstrap key, with the rules of
//! SPEC §2 enforced here and only here, and every change written to the audit
//! log and the key change feed in the same transaction.
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | [`KeyService`], the one door: picks the connection and the clock, commits, then drops the changed keys from every cache and announces the change |
//! | [`audit`] | the audit log |
//! | [`transfer`] | export and import |
//! | [`feed`] | the key change feed every instance follows, and its Redis fast path |
//!
//! The functions of this module are the rules and the statements; they run
//! inside the service's transactions.

pub mod audit;
pub mod feed;
pub mod service;
pub mod transfer;

pub use service::KeyService;

use chrono::{DateTime, Utc};
use entity::{api_key_graces, api_keys, key_changes};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, SqlErr, TransactionTrait,
};
use serde_json::json;
use std::sync::Arc;

use crate::auth::key::{masked_key, ApiKeySecret, KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::{Scope, ScopeSet};
use crate::db::{begin_write, new_id};
use crate::error::{AppError, AppResult};
use audit::AuditAction;

/// Highest accepted `rateLimitPerHour`.
pub const MAX_RATE_LIMIT_PER_HOUR: i64 = 10_000_000;
/// Longest accepted key name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Who performs a key operation.
#[derive(Clone, Debug)]
pub enum Actor {
    /// `quire admin` on the database directly: no scope limits.
    Admin,
    /// An API key, with its scopes, project and mode.
    Key(Arc<Principal>),
}

impl Actor {
    pub(crate) fn key_id(&self) -> Option<String> {
        match self {
            Actor::Admin => None,
            Actor::Key(p) => Some(p.key_id.clone()),
        }
    }

    pub(crate) fn mode(&self) -> Option<KeyMode> {
        match self {
            Actor::Admin => None,
            Actor::Key(p) => Some(p.mode),
        }
    }

    /// Whether this actor may see and manage keys of `mode`.
    pub fn sees_mode(&self, mode: KeyMode) -> bool {
        !matches!(self.mode(), Some(KeyMode::Test)) || mode == KeyMode::Test
    }

    /// Whether the actor may change, replace or revoke `key`: it sees the
    /// key's mode and holds every scope the key holds.
    pub fn may_manage(&self, key: &api_keys::Model) -> bool {
        self.sees_mode(key.mode) && self.check_grant(ScopeSet::from_stored(&key.scopes)).is_ok()
    }

    /// Refuses scopes the actor does not hold itself (no escalation).
    pub(crate) fn check_grant(&self, scopes: ScopeSet) -> AppResult<()> {
        let Actor::Key(p) = self else { return Ok(()) };
        let missing = scopes.difference(p.scopes);
        if missing == ScopeSet::EMPTY {
            return Ok(());
        }
        Err(AppError::Forbidden(format!(
            "a key cannot grant or manage scopes it does not hold: {}",
            missing.names().join(", ")
        )))
    }

    pub(crate) fn detail(&self, mut detail: serde_json::Value) -> serde_json::Value {
        if let (Actor::Admin, Some(obj)) = (self, detail.as_object_mut()) {
            obj.insert("source".into(), json!("admin"));
        }
        detail
    }
}

/// What a new key should be.
#[derive(Clone, Debug)]
pub struct NewKey {
    pub name: String,
    pub key_type: KeyType,
    pub mode: KeyMode,
    pub scopes: ScopeSet,
    pub rate_limit_per_hour: i64,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key as a caller asks for it: scope names not checked yet, the budget
/// optional (the service's configured default).
#[derive(Clone, Debug)]
pub struct KeyRequest {
    pub name: String,
    pub key_type: KeyType,
    pub mode: KeyMode,
    /// Scope names; `*` means every scope the new key may hold.
    pub scopes: Vec<String>,
    pub rate_limit_per_hour: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl KeyRequest {
    /// The key it asks for: scopes parsed for the key's type and mode
    /// (`BAD_USER_INPUT` on `scopes` otherwise), the budget defaulted.
    pub fn into_new_key(self, default_rate_limit: i64) -> AppResult<NewKey> {
        let scopes = ScopeSet::parse_list(&self.scopes, self.key_type, self.mode)
            .map_err(|e| AppError::bad_field("scopes", e.to_string()))?;
        Ok(NewKey {
            name: self.name,
            key_type: self.key_type,
            mode: self.mode,
            scopes,
            rate_limit_per_hour: self.rate_limit_per_hour.unwrap_or(default_rate_limit),
            expires_at: self.expires_at,
        })
    }
}

/// The lifecycle state of a stored key at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Revoked,
    Expired,
}

/// The status of `key` at `now`.
pub fn status_of(key: &api_keys::Model, now: DateTime<Utc>) -> KeyStatus {
    if key.revoked_at.is_some() {
        KeyStatus::Revoked
    } else if key.expires_at.is_some_and(|e| e <= now) {
        KeyStatus::Expired
    } else {
        KeyStatus::Active
    }
}

/// The `maskedKey` of a stored key.
pub fn masked(key: &api_keys::Model) -> String {
    masked_key(&key.mask_head, &key.mask_tail)
}

/// Checks name, limit and expiry of a key being created or updated.
pub fn validate_name(name: &str) -> AppResult<()> {
    let n = name.chars().count();
    if n == 0 || n > MAX_NAME_CHARS || name.trim().is_empty() {
        return Err(AppError::bad_field(
            "name",
            format!("name must be 1–{MAX_NAME_CHARS} characters"),
        ));
    }
    Ok(())
}

/// Checks `rateLimitPerHour`.
pub fn validate_rate_limit(limit: i64) -> AppResult<()> {
    if !(1..=MAX_RATE_LIMIT_PER_HOUR).contains(&limit) {
        return Err(AppError::bad_field(
            "rateLimitPerHour",
            format!("rateLimitPerHour must be between 1 and {MAX_RATE_LIMIT_PER_HOUR}"),
        ));
    }
    Ok(())
}

/// Creates a key in `project_id` after checking every rule; the returned
/// secret is the only copy of the plaintext there will ever be.
pub(crate) async fn create_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    new: NewKey,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AppResult<(ApiKeySecret, api_keys::Model)> {
    validate_name(&new.name)?;
    validate_rate_limit(new.rate_limit_per_hour)?;
    if new.expires_at.is_some_and(|e| e <= now) {
        return Err(AppError::bad_field(
            "expiresAt",
            "expiresAt must be in the future",
        ));
    }
    if !actor.sees_mode(new.mode) {
        return Err(AppError::Forbidden(
            "a TEST key can create TEST keys only".into(),
        ));
    }
    actor.check_grant(new.scopes)?;
    let txn = begin_write(db).await?;
    let created = insert_key(&txn, project_id, new, actor, now).await?;
    txn.commit().await?;
    Ok(created)
}

/// Inserts a key and its audit event; no rule checks (see [`create_key`]).
pub(crate) async fn insert_key<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    new: NewKey,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AppResult<(ApiKeySecret, api_keys::Model)> {
    let secret = ApiKeySecret::generate(new.key_type, new.mode);
    let row = api_keys::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id.to_owned()),
        name: Set(new.name.clone()),
        key_type: Set(new.key_type),
        mode: Set(new.mode),
        key_hash: Set(secret.hash_hex()),
        mask_head: Set(secret.mask_head().into()),
        mask_tail: Set(secret.mask_tail().into()),
        scopes: Set(new.scopes.to_stored()),
        rate_limit_per_hour: Set(new.rate_limit_per_hour),
        previous_key_hash: Set(None),
        previous_expires_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        last_used_at: Set(None),
        expires_at: Set(new.expires_at),
        revoked_at: Set(None),
    };
    let model = row
        .insert(db)
        .await
        .map_err(|e| name_conflict(e, &new.name))?;
    audit::record(
        db,
        project_id,
        AuditAction::KeyCreated,
        actor,
        Some(&model),
        actor.detail(json!({
            "name": model.name,
            "type": model.key_type.as_str(),
            "mode": model.mode.as_str(),
            "scopes": new.scopes.names(),
            "rateLimitPerHour": model.rate_limit_per_hour,
            "expiresAt": model.expires_at.map(crate::clock::stamp),
        })),
        now,
    )
    .await?;
    Ok((secret, model))
}

fn name_conflict(e: sea_orm::DbErr, name: &str) -> AppError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => {
            AppError::Conflict(format!("an active key named \"{name}\" already exists"))
        }
        _ => e.into(),
    }
}

/// Lists a project's keys that the actor may see, oldest first.
pub(crate) async fn list_keys<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    include_revoked: bool,
) -> AppResult<Vec<api_keys::Model>> {
    let mut q = api_keys::Entity::find()
        .filter(api_keys::Column::ProjectId.eq(project_id))
        .order_by_asc(api_keys::Column::CreatedAt)
        .order_by_asc(api_keys::Column::Id);
    if !include_revoked {
        q = q.filter(api_keys::Column::RevokedAt.is_null());
    }
    if matches!(actor.mode(), Some(KeyMode::Test)) {
        q = q.filter(api_keys::Column::Mode.eq(KeyMode::Test));
    }
    Ok(q.all(db).await?)
}

/// One key of the project, if the actor may see it; otherwise `None`, so a
/// hidden key looks exactly like a missing one.
pub(crate) async fn get_key<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    id: &str,
) -> AppResult<Option<api_keys::Model>> {
    let key = api_keys::Entity::find_by_id(id.to_owned())
        .filter(api_keys::Column::ProjectId.eq(project_id))
        .one(db)
        .await?;
    Ok(key.filter(|k| actor.sees_mode(k.mode)))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no API key with id \"{id}\""))
}

/// Longest accepted rotation grace period: 7 days.
pub const MAX_GRACE_SECONDS: i64 = 7 * 24 * 3600;

/// Loads a key the actor may see, outside any transaction (type, mode and
/// scopes never change, so checks made on this read stay true; the mutable
/// state is re-checked by the conditional `UPDATE` that follows).
async fn visible_key<C: ConnectionTrait>(
    db: &C,
    project_id: Option<&str>,
    actor: &Actor,
    id: &str,
) -> AppResult<api_keys::Model> {
    let mut q = api_keys::Entity::find_by_id(id.to_owned());
    if let Some(project_id) = project_id {
        q = q.filter(api_keys::Column::ProjectId.eq(project_id));
    }
    q.one(db)
        .await?
        .filter(|k| actor.sees_mode(k.mode))
        .ok_or_else(|| not_found(id))
}

async fn reload<C: ConnectionTrait>(db: &C, id: &str) -> AppResult<api_keys::Model> {
    api_keys::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| not_found(id))
}

fn revoked_error(id: &str) -> AppError {
    AppError::bad_field("id", format!("API key \"{id}\" is revoked"))
}

/// Revokes a key at once. Revoking a revoked key returns it unchanged (and
/// writes no event). `project_id` is `None` only for `quire admin`, which
/// names keys by id alone.
///
/// Concurrent revocations and rotations of one key serialize on the
/// conditional `UPDATE … WHERE revoked_at IS NULL` (a row lock on
/// PostgreSQL, the write lock on SQLite): exactly one revocation wins and no
/// rotation lands after it.
pub(crate) async fn revoke_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: Option<&str>,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<api_keys::Model> {
    let key = visible_key(db, project_id, actor, id).await?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let is_self = matches!(actor, Actor::Key(p) if p.key_id == key.id && p.scopes.contains(Scope::ApikeysDelete));
    if !is_self {
        actor.check_grant(ScopeSet::from_stored(&key.scopes))?;
    }
    let txn = begin_write(db).await?;
    let changed = mark_revoked(&txn, &key.id, now).await?;
    let key = reload(&txn, &key.id).await?;
    if !changed {
        // Someone else revoked it first; their event tells the story.
        txn.commit().await?;
        return Ok(key);
    }
    announce_change(&txn, &key.id, now).await?;
    audit::record(
        &txn,
        &key.project_id,
        AuditAction::KeyRevoked,
        actor,
        Some(&key),
        actor.detail(json!({ "name": key.name, "maskedKey": masked(&key) })),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(key)
}

/// Sets `revoked_at` unless already set; whether this call revoked it.
pub(crate) async fn mark_revoked<C: ConnectionTrait>(
    db: &C,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let res = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::RevokedAt, Expr::value(now))
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// What `updateApiKey` may change: the name and the hourly budget only.
#[derive(Clone, Debug, Default)]
pub struct KeyUpdate {
    pub name: Option<String>,
    pub rate_limit_per_hour: Option<i64>,
}

/// Renames a key or changes its budget. Scopes, type and mode never change.
pub(crate) async fn update_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    id: &str,
    update: KeyUpdate,
    now: DateTime<Utc>,
) -> AppResult<api_keys::Model> {
    if let Some(name) = &update.name {
        validate_name(name)?;
    }
    if let Some(limit) = update.rate_limit_per_hour {
        validate_rate_limit(limit)?;
    }
    let key = visible_key(db, Some(project_id), actor, id).await?;
    if key.revoked_at.is_some() {
        return Err(revoked_error(id));
    }
    actor.check_grant(ScopeSet::from_stored(&key.scopes))?;
    let mut changes = serde_json::Map::new();
    let mut q = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(&key.id))
        .filter(api_keys::Column::RevokedAt.is_null());
    if let Some(name) = update.name.as_ref().filter(|n| **n != key.name) {
        q = q.col_expr(api_keys::Column::Name, Expr::value(name.clone()));
        changes.insert("name".into(), json!({ "from": key.name, "to": name }));
    }
    if let Some(limit) = update
        .rate_limit_per_hour
        .filter(|l| *l != key.rate_limit_per_hour)
    {
        q = q.col_expr(api_keys::Column::RateLimitPerHour, Expr::value(limit));
        changes.insert(
            "rateLimitPerHour".into(),
            json!({ "from": key.rate_limit_per_hour, "to": limit }),
        );
    }
    if changes.is_empty() {
        return Ok(key);
    }
    let txn = begin_write(db).await?;
    let res = q
        .exec(&txn)
        .await
        .map_err(|e| name_conflict(e, update.name.as_deref().unwrap_or(&key.name)))?;
    if res.rows_affected == 0 {
        return Err(revoked_error(id));
    }
    let key = reload(&txn, &key.id).await?;
    // The cached principal carries the budget: every instance must reload.
    announce_change(&txn, &key.id, now).await?;
    audit::record(
        &txn,
        &key.project_id,
        AuditAction::KeyUpdated,
        actor,
        Some(&key),
        actor.detail(json!({ "name": key.name, "changes": changes })),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(key)
}

/// Most old secrets of one key that may be within their grace at once.
pub const MAX_RUNNING_GRACES: u64 = 5;

/// Replaces a key's secret, keeping its id, name, scopes, budget and usage.
/// The old secret keeps working for `grace_seconds` (0: not at all once
/// this returns), and every earlier old secret keeps its own grace: the
/// previous one moves to `api_key_graces` while its grace runs, at most
/// [`MAX_RUNNING_GRACES`] at a time.
///
/// The key's row is locked first, so concurrent rotations queue and each
/// sees the one before it; the swap is one `UPDATE … SET previous_key_hash =
/// key_hash, key_hash = new … WHERE revoked_at IS NULL`, so none lands on a
/// revoked key.
pub(crate) async fn rotate_key<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    id: &str,
    grace_seconds: i64,
    now: DateTime<Utc>,
) -> AppResult<(ApiKeySecret, api_keys::Model)> {
    if !(0..=MAX_GRACE_SECONDS).contains(&grace_seconds) {
        return Err(AppError::bad_field(
            "gracePeriodSeconds",
            format!("gracePeriodSeconds must be between 0 and {MAX_GRACE_SECONDS} (7 days)"),
        ));
    }
    let key = visible_key(db, Some(project_id), actor, id).await?;
    match status_of(&key, now) {
        KeyStatus::Active => {}
        KeyStatus::Revoked => return Err(revoked_error(id)),
        KeyStatus::Expired => {
            return Err(AppError::bad_field(
                "id",
                format!("API key \"{id}\" has expired and cannot be rotated"),
            ))
        }
    }
    actor.check_grant(ScopeSet::from_stored(&key.scopes))?;
    let secret = ApiKeySecret::generate(key.key_type, key.mode);
    let grace_ends = now + chrono::Duration::seconds(grace_seconds);
    let txn = begin_write(db).await?;
    keep_running_graces(&txn, &key.id, grace_seconds > 0, now).await?;
    let res = api_keys::Entity::update_many()
        .col_expr(
            api_keys::Column::PreviousKeyHash,
            Expr::col(api_keys::Column::KeyHash).into(),
        )
        .col_expr(api_keys::Column::PreviousExpiresAt, Expr::value(grace_ends))
        .col_expr(api_keys::Column::KeyHash, Expr::value(secret.hash_hex()))
        .col_expr(api_keys::Column::MaskHead, Expr::value(secret.mask_head()))
        .col_expr(api_keys::Column::MaskTail, Expr::value(secret.mask_tail()))
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(&key.id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected == 0 {
        return Err(revoked_error(id));
    }
    let key = reload(&txn, &key.id).await?;
    announce_change(&txn, &key.id, now).await?;
    audit::record(
        &txn,
        &key.project_id,
        AuditAction::KeyRotated,
        actor,
        Some(&key),
        actor.detail(json!({
            "name": key.name,
            "maskedKey": masked(&key),
            "gracePeriodSeconds": grace_seconds,
            "previousExpiresAt": crate::clock::stamp(grace_ends),
        })),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok((secret, key))
}

/// Before a rotation: locks the key's row, drops its ended graces, refuses
/// a rotation that would run more than [`MAX_RUNNING_GRACES`] graces, and
/// moves the previous secret to `api_key_graces` while its grace runs (the
/// rotation's UPDATE then overwrites `previous_key_hash`).
async fn keep_running_graces<C: ConnectionTrait>(
    txn: &C,
    key_id: &str,
    adds_grace: bool,
    now: DateTime<Utc>,
) -> AppResult<()> {
    api_keys::Entity::update_many()
        .col_expr(
            api_keys::Column::Name,
            Expr::col(api_keys::Column::Name).into(),
        )
        .filter(api_keys::Column::Id.eq(key_id))
        .exec(txn)
        .await?;
    let current = reload(txn, key_id).await?;
    api_key_graces::Entity::delete_many()
        .filter(api_key_graces::Column::KeyId.eq(key_id))
        .filter(api_key_graces::Column::ExpiresAt.lte(now))
        .exec(txn)
        .await?;
    let older = api_key_graces::Entity::find()
        .filter(api_key_graces::Column::KeyId.eq(key_id))
        .count(txn)
        .await?;
    let previous = current
        .previous_key_hash
        .clone()
        .zip(current.previous_expires_at)
        .filter(|(_, ends)| *ends > now);
    let running = older + u64::from(previous.is_some()) + u64::from(adds_grace);
    if running > MAX_RUNNING_GRACES {
        return Err(AppError::bad_field(
            "gracePeriodSeconds",
            format!(
                "this key already has {} old secrets within their grace (at most {MAX_RUNNING_GRACES}): \
                 rotate with gracePeriodSeconds 0, or wait until one ends",
                running - 1
            ),
        ));
    }
    if let Some((hash, ends)) = previous {
        api_key_graces::ActiveModel {
            key_hash: Set(hash),
            key_id: Set(key_id.to_owned()),
            expires_at: Set(ends),
        }
        .insert(txn)
        .await?;
    }
    Ok(())
}

/// Writes to the change feed that every instance follows to drop stale
/// cache entries of `key_id` (see [`feed`]).
pub(crate) async fn announce_change<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
    now: DateTime<Utc>,
) -> AppResult<()> {
    key_changes::ActiveModel {
        key_id: Set(key_id.to_owned()),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
