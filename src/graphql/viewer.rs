//! `viewer`: who the calling key is. Any valid key may ask.

use async_graphql::{Context, Object, SimpleObject};
use chrono::DateTime;

use super::types::{ApiKey, Project, Stamp};
use super::{app, principal};
use crate::ratelimit::Decision;

#[derive(Default)]
pub struct ViewerQuery;

/// A key's hourly request budget.
#[derive(SimpleObject)]
pub struct RateLimitStatus {
    /// The hourly budget.
    pub limit: u64,
    /// What is left after this request.
    pub remaining: u64,
    /// When `remaining` next grows (`X-RateLimit-Reset`).
    pub reset_at: Stamp,
}

/// The calling key, its project and its request budget.
pub struct Viewer;

#[Object]
impl ViewerQuery {
    /// The key that made this request.
    async fn viewer(&self) -> Viewer {
        Viewer
    }
}

#[Object]
impl Viewer {
    /// The calling key (never its secret).
    async fn key(&self, ctx: &Context<'_>) -> async_graphql::Result<ApiKey> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(ApiKey::new((*p.key).clone(), app.clock.now()))
    }

    /// The key's budget as of this request (the same figures as the
    /// `X-RateLimit-*` headers).
    async fn rate_limit(&self, ctx: &Context<'_>) -> async_graphql::Result<RateLimitStatus> {
        let d = ctx.data::<Decision>()?;
        Ok(RateLimitStatus {
            limit: d.limit,
            remaining: d.remaining,
            reset_at: Stamp(DateTime::from_timestamp(d.reset_at, 0).unwrap_or_default()),
        })
    }

    /// The project the key belongs to.
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        Ok(Project(app.keys.project(&p.project_id).await?))
    }
}
