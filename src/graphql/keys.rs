//! Key management fields; the rules live in `crate::keys`.

use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};

use super::types::{ApiKey, GqlKeyMode, GqlKeyType};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::{Scope, ScopeSet};
use crate::error::AppError;
use crate::keys::{self, Actor, NewKey};

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
    pub expires_at: Option<DateTime<Utc>>,
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
        let actor = Actor::Key((**p).clone());
        let now = app.clock.now();
        let rows = keys::list_keys(&app.db.conn, &p.project_id, &actor, include_revoked).await?;
        Ok(rows.into_iter().map(|r| ApiKey::new(r, now)).collect())
    }

    /// One key by id; `null` when it does not exist or is not visible.
    #[graphql(guard = "RequireScope(Scope::ApikeysRead)")]
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<ApiKey>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let actor = Actor::Key((**p).clone());
        let row = keys::get_key(&app.db.conn, &p.project_id, &actor, &id).await?;
        Ok(row.map(|r| ApiKey::new(r, app.clock.now())))
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
        let key_type = input.key_type.into();
        let mode = input.mode.into();
        let scopes = ScopeSet::parse_list(&input.scopes, key_type, mode)
            .map_err(|e| AppError::bad_field("scopes", e.to_string()))?;
        let new = NewKey {
            name: input.name,
            key_type,
            mode,
            scopes,
            rate_limit_per_hour: input
                .rate_limit_per_hour
                .unwrap_or(app.config.default_rate_limit_per_hour.into()),
            expires_at: input.expires_at,
        };
        let now = app.clock.now();
        let actor = Actor::Key((**p).clone());
        let (secret, row) = keys::create_key(&app.db.conn, &p.project_id, new, &actor, now).await?;
        app.keys.forget_unknown();
        Ok(CreatedApiKey {
            key: secret.expose().to_owned(),
            api_key: ApiKey::new(row, now),
        })
    }

    /// Revokes a key at once, on every instance within 2 seconds.
    #[graphql(guard = "RequireScope(Scope::ApikeysDelete)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let actor = Actor::Key((**p).clone());
        let now = app.clock.now();
        let row = keys::revoke_key(&app.db.conn, Some(&p.project_id), &actor, &id, now).await?;
        app.forget_key(&row.id);
        Ok(ApiKey::new(row, now))
    }
}
