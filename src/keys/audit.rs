//! The audit log of key lifecycle events: who did what to which key, when.
//! Never holds a secret: details carry names, scopes and masks only.

use chrono::{DateTime, Utc};
use entity::{api_keys, audit_events};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::Actor;
use crate::auth::key::KeyMode;
use crate::error::{AppError, AppResult};

/// Largest page of `auditEvents`.
pub const MAX_PAGE: u64 = 100;

/// What happened to a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "AuditAction")]
pub enum AuditAction {
    KeyCreated,
    KeyUpdated,
    KeyRotated,
    KeyRevoked,
    KeysImported,
    KeysExported,
}

impl AuditAction {
    /// Stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::KeyCreated => "KEY_CREATED",
            AuditAction::KeyUpdated => "KEY_UPDATED",
            AuditAction::KeyRotated => "KEY_ROTATED",
            AuditAction::KeyRevoked => "KEY_REVOKED",
            AuditAction::KeysImported => "KEYS_IMPORTED",
            AuditAction::KeysExported => "KEYS_EXPORTED",
        }
    }

    /// Reads the stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditAction::KeyCreated,
            AuditAction::KeyUpdated,
            AuditAction::KeyRotated,
            AuditAction::KeyRevoked,
            AuditAction::KeysImported,
            AuditAction::KeysExported,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// Appends one event.
pub(crate) async fn record<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    action: AuditAction,
    actor: &Actor,
    target: Option<&api_keys::Model>,
    detail: serde_json::Value,
    now: DateTime<Utc>,
) -> AppResult<()> {
    audit_events::ActiveModel {
        project_id: Set(project_id.to_owned()),
        action: Set(action.as_str().to_owned()),
        actor_key_id: Set(actor.key_id()),
        target_key_id: Set(target.map(|t| t.id.clone())),
        actor_mode: Set(actor.mode()),
        target_mode: Set(target.map(|t| t.mode)),
        detail: Set(Some(detail)),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// One page of a project's events the actor may see, newest first, starting
/// after the event `after` (exclusive); also whether more follow.
///
/// A TEST key sees the events whose actor or target is a TEST key.
pub(crate) async fn list<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    limit: u64,
    after: Option<i64>,
) -> AppResult<(Vec<audit_events::Model>, bool)> {
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(AppError::bad_field(
            "limit",
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    let mut q = audit_events::Entity::find()
        .filter(audit_events::Column::ProjectId.eq(project_id))
        .order_by_desc(audit_events::Column::Id)
        .limit(limit + 1);
    if let Some(after) = after {
        q = q.filter(audit_events::Column::Id.lt(after));
    }
    if actor.mode() == Some(KeyMode::Test) {
        q = q.filter(
            Condition::any()
                .add(audit_events::Column::ActorMode.eq(KeyMode::Test))
                .add(audit_events::Column::TargetMode.eq(KeyMode::Test)),
        );
    }
    let mut rows = q.all(db).await?;
    let more = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    Ok((rows, more))
}
