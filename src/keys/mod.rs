//! Key lifecycle (the service layer): create, list, revoke, with the rules of
//! SPEC §2 enforced here and only here, and every change written to the audit
//! log and the key change feed in the same transaction.
//!
//! Callers that hold a key cache must invalidate the changed key after the
//! transaction commits (see `App::forget_key`); other instances learn of the
//! change from the feed.

pub mod audit;

use chrono::{DateTime, Utc};
use entity::{api_keys, key_changes, projects};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, SqlErr,
};
use serde_json::json;

use crate::auth::key::{masked_key, ApiKeySecret, KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::{Scope, ScopeSet};
use crate::db::new_id;
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
    Key(Principal),
}

impl Actor {
    fn key_id(&self) -> Option<String> {
        match self {
            Actor::Admin => None,
            Actor::Key(p) => Some(p.key_id.clone()),
        }
    }

    fn mode(&self) -> Option<KeyMode> {
        match self {
            Actor::Admin => None,
            Actor::Key(p) => Some(p.mode),
        }
    }

    /// Whether this actor may see and manage keys of `mode`.
    pub fn sees_mode(&self, mode: KeyMode) -> bool {
        !matches!(self.mode(), Some(KeyMode::Test)) || mode == KeyMode::Test
    }

    /// Refuses scopes the actor does not hold itself (no escalation).
    fn check_grant(&self, scopes: ScopeSet) -> AppResult<()> {
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

    fn detail(&self, mut detail: serde_json::Value) -> serde_json::Value {
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

/// Type of a stored key.
pub fn key_type_of(key: &api_keys::Model) -> KeyType {
    KeyType::parse(&key.key_type).unwrap_or(KeyType::Public)
}

/// Mode of a stored key.
pub fn mode_of(key: &api_keys::Model) -> KeyMode {
    KeyMode::parse(&key.mode).unwrap_or(KeyMode::Live)
}

/// Finds a project by name.
pub async fn project_by_name<C: ConnectionTrait>(
    db: &C,
    name: &str,
) -> AppResult<Option<projects::Model>> {
    Ok(projects::Entity::find()
        .filter(projects::Column::Name.eq(name))
        .one(db)
        .await?)
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
pub async fn create_key<C: ConnectionTrait + sea_orm::TransactionTrait>(
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
    let txn = db.begin().await?;
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
        key_type: Set(new.key_type.as_str().into()),
        mode: Set(new.mode.as_str().into()),
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
            "type": model.key_type,
            "mode": model.mode,
            "scopes": new.scopes.names(),
            "rateLimitPerHour": model.rate_limit_per_hour,
            "expiresAt": model.expires_at,
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
pub async fn list_keys<C: ConnectionTrait>(
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
        q = q.filter(api_keys::Column::Mode.eq(KeyMode::Test.as_str()));
    }
    Ok(q.all(db).await?)
}

/// One key of the project, if the actor may see it; otherwise `None`, so a
/// hidden key looks exactly like a missing one.
pub async fn get_key<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    id: &str,
) -> AppResult<Option<api_keys::Model>> {
    let key = api_keys::Entity::find_by_id(id.to_owned())
        .filter(api_keys::Column::ProjectId.eq(project_id))
        .one(db)
        .await?;
    Ok(key.filter(|k| actor.sees_mode(mode_of(k))))
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no API key with id \"{id}\""))
}

/// Revokes a key at once. Revoking a revoked key returns it unchanged.
/// `project_id` is `None` only for `quire admin`, which names keys by id alone.
pub async fn revoke_key<C: ConnectionTrait + sea_orm::TransactionTrait>(
    db: &C,
    project_id: Option<&str>,
    actor: &Actor,
    id: &str,
    now: DateTime<Utc>,
) -> AppResult<api_keys::Model> {
    let txn = db.begin().await?;
    let mut q = api_keys::Entity::find_by_id(id.to_owned());
    if let Some(project_id) = project_id {
        q = q.filter(api_keys::Column::ProjectId.eq(project_id));
    }
    let key = q
        .one(&txn)
        .await?
        .filter(|k| actor.sees_mode(mode_of(k)))
        .ok_or_else(|| not_found(id))?;
    if key.revoked_at.is_some() {
        return Ok(key);
    }
    let is_self = matches!(actor, Actor::Key(p) if p.key_id == key.id && p.scopes.contains(Scope::ApikeysDelete));
    if !is_self {
        actor.check_grant(ScopeSet::from_stored(&key.scopes))?;
    }
    let project = key.project_id.clone();
    let mut row: api_keys::ActiveModel = key.into();
    row.revoked_at = Set(Some(now));
    row.updated_at = Set(now);
    let key = row.update(&txn).await?;
    announce_change(&txn, &key.id, now).await?;
    audit::record(
        &txn,
        &project,
        AuditAction::KeyRevoked,
        actor,
        Some(&key),
        actor.detail(json!({ "name": key.name })),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok(key)
}

/// Writes to the change feed that every instance polls to drop stale cache
/// entries of `key_id`.
pub async fn announce_change<C: ConnectionTrait>(
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
