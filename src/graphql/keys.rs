//! Key management fields; the rules live in `crate::keys`.

use async_graphql::{Context, InputObject, Json, Object, ID};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use entity::audit_events;

use super::types::{ApiKey, GqlKeyMode, GqlKeyType, PageInfo, Stamp};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::error::AppError;
use crate::keys::audit::AuditAction;
use crate::keys::transfer::{ImportMode, ImportResult};
use crate::keys::{Actor, KeyRequest, KeyUpdate};

#[derive(Default)]
pub struct KeysQuery;

#[derive(Default)]
pub struct KeysMutation;

/// What a new key should be.
#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    #[graphql(name = "type")]
    pub key_type: GqlKeyType,
    pub mode: GqlKeyMode,
    /// Scope names; `*` means every scope the new key may hold.
    pub scopes: Vec<String>,
    pub rate_limit_per_hour: Option<i64>,
    pub expires_at: Option<Stamp>,
}

/// What `updateApiKey` may change; omitted fields stay as they are.
#[derive(InputObject)]
pub struct UpdateApiKeyInput {
    pub name: Option<String>,
    pub rate_limit_per_hour: Option<i64>,
}

/// An export file and how to treat names that exist.
#[derive(InputObject)]
pub struct ImportApiKeysInput {
    /// The JSON that `exportApiKeys` returns.
    pub keys: Json<serde_json::Value>,
    pub mode: ImportMode,
}

/// One lifecycle event; `detail` never holds a secret.
pub struct AuditEvent(audit_events::Model);

#[Object]
impl AuditEvent {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn action(&self) -> async_graphql::Result<AuditAction> {
        AuditAction::parse(&self.0.action).ok_or_else(|| {
            AppError::internal(format!("unknown audit action {}", self.0.action)).into()
        })
    }
    /// The acting key; `null` for `quire admin`.
    async fn actor_key_id(&self) -> Option<ID> {
        self.0.actor_key_id.clone().map(ID)
    }
    async fn target_key_id(&self) -> Option<ID> {
        self.0.target_key_id.clone().map(ID)
    }
    async fn detail(&self) -> Option<Json<serde_json::Value>> {
        self.0.detail.clone().map(Json)
    }
    async fn created_at(&self) -> Stamp {
        self.0.created_at.into()
    }
}

/// A page of audit events, newest first.
#[derive(async_graphql::SimpleObject)]
pub struct AuditEventPage {
    items: Vec<AuditEvent>,
    page_info: PageInfo,
}

fn encode_cursor(id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("audit:{id}"))
}

fn decode_cursor(cursor: &str) -> Result<i64, AppError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("audit:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| AppError::bad_field("after", "unknown cursor"))
}

fn actor(p: &std::sync::Arc<crate::auth::principal::Principal>) -> Actor {
    Actor::Key(p.clone())
}

/// A key with its plaintext secret: returned once, by the call that made it.
pub struct CreatedApiKey {
    key: String,
    api_key: ApiKey,
}

#[Object]
impl CreatedApiKey {
    /// The plaintext key; it is not stored and will not be shown again.
    async fn key(&self) -> &str {
        &self.key
    }
    async fn api_key(&self) -> &ApiKey {
        &self.api_key
    }
}

#[Object]
impl KeysQuery {
    /// The project's keys this key may see (TEST keys see TEST keys only).
    #[graphql(guard = "RequireScope(Scope::ApikeysRead)")]
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = false)] include_revoked: bool,
    ) -> async_graphql::Result<Vec<ApiKey>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let now = app.clock.now();
        let rows = app
            .keys
            .list(&actor(p), &p.project_id, include_revoked)
            .await?;
        Ok(rows.into_iter().map(|r| ApiKey::new(r, now)).collect())
    }

    /// One key by id; `null` when it does not exist or is not visible.
    #[graphql(guard = "RequireScope(Scope::ApikeysRead)")]
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ApiKey>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let row = app.keys.get(&actor(p), &p.project_id, &id).await?;
        Ok(row.map(|r| ApiKey::new(r, app.clock.now())))
    }

    /// Key lifecycle events, newest first (TEST keys see those whose actor
    /// or target is a TEST key).
    #[graphql(guard = "RequireScope(Scope::ApikeysRead)")]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "Some(50)")] limit: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<AuditEventPage> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let limit = u64::try_from(limit.unwrap_or(50)).unwrap_or(0);
        let (rows, more) = app
            .keys
            .audit_events(&actor(p), &p.project_id, limit, after)
            .await?;
        let end_cursor = rows.last().map(|r| encode_cursor(r.id));
        Ok(AuditEventPage {
            items: rows.into_iter().map(AuditEvent).collect(),
            page_info: PageInfo {
                has_next_page: more,
                end_cursor,
            },
        })
    }

    /// Every active key this key can see (itself included): metadata and
    /// SHA-256, never a plaintext. The input of `importApiKeys`.
    #[graphql(guard = "RequireScope(Scope::ApikeysRead)")]
    async fn export_api_keys(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Json<serde_json::Value>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(Json(app.keys.export(&actor(p), &p.project_id).await?))
    }
}

#[Object]
impl KeysMutation {
    /// Creates a key; its scopes must be a subset of the caller's.
    #[graphql(guard = "RequireScope(Scope::ApikeysCreate)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> async_graphql::Result<CreatedApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let request = KeyRequest {
            name: input.name,
            key_type: input.key_type.into(),
            mode: input.mode.into(),
            scopes: input.scopes,
            rate_limit_per_hour: input.rate_limit_per_hour,
            expires_at: input.expires_at.map(|t| t.0),
        };
        let (secret, row) = app
            .keys
            .create_requested(&actor(p), &p.project_id, request)
            .await?;
        let now = app.clock.now();
        Ok(CreatedApiKey {
            key: secret.expose().to_owned(),
            api_key: ApiKey::new(row, now),
        })
    }

    /// Renames a key or changes its hourly budget (from its next request).
    #[graphql(guard = "RequireScope(Scope::ApikeysUpdate)")]
    async fn update_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateApiKeyInput,
    ) -> async_graphql::Result<ApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let update = KeyUpdate {
            name: input.name,
            rate_limit_per_hour: input.rate_limit_per_hour,
        };
        let row = app
            .keys
            .update(&actor(p), &p.project_id, &id, update)
            .await?;
        Ok(ApiKey::new(row, app.clock.now()))
    }

    /// Replaces a key's secret (same id, name, scopes, budget and usage) and
    /// returns the new one, once. The old secret keeps working for
    /// `gracePeriodSeconds` (at most 7 days); with 0 it fails from now on.
    #[graphql(guard = "RequireScope(Scope::ApikeysUpdate)")]
    async fn rotate_api_key(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(0)")] grace_period_seconds: Option<i64>,
    ) -> async_graphql::Result<CreatedApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let grace = grace_period_seconds.unwrap_or(0);
        let (secret, row) = app
            .keys
            .rotate(&actor(p), &p.project_id, &id, grace)
            .await?;
        Ok(CreatedApiKey {
            key: secret.expose().to_owned(),
            api_key: ApiKey::new(row, app.clock.now()),
        })
    }

    /// Imports an `exportApiKeys` file in one transaction (SPEC §5).
    #[graphql(guard = "RequireScope(Scope::ApikeysImport)")]
    async fn import_api_keys(
        &self,
        ctx: &Context<'_>,
        input: ImportApiKeysInput,
    ) -> async_graphql::Result<ImportResult> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(app
            .keys
            .import(&actor(p), &p.project_id, &input.keys.0, input.mode)
            .await?)
    }

    /// Revokes a key at once, on every instance within 2 seconds.
    #[graphql(guard = "RequireScope(Scope::ApikeysDelete)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let row = app.keys.revoke(&actor(p), Some(&p.project_id), &id).await?;
        Ok(ApiKey::new(row, app.clock.now()))
    }
}
