//! The audit log of key lifecycle events: who did what to which key, when.
//! Never holds a secret: details carry names, scopes and masks only.

use chrono::{DateTime, Utc};
use entity::{api_keys, audit_events};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ConnectionTrait};

use super::Actor;
use crate::error::AppResult;

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
pub async fn record<C: ConnectionTrait>(
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
        actor_mode: Set(actor.mode().map(|m| m.as_str().to_owned())),
        target_mode: Set(target.map(|t| t.mode.clone())),
        detail: Set(Some(detail)),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}
