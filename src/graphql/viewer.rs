//! `viewer`: who the calling key is. Any valid key may ask.

use async_graphql::{Context, Object};

use super::types::{ApiKey, Project};
use super::{app, principal};
use crate::error::AppError;

#[derive(Default)]
pub struct ViewerQuery;

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

    /// The project the key belongs to.
    async fn project(&self, ctx: &Context<'_>) -> async_graphql::Result<Project> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        use sea_orm::EntityTrait;
        let project = entity::projects::Entity::find_by_id(p.project_id.clone())
            .one(&app.db.conn)
            .await
            .map_err(AppError::from)?
            .ok_or_else(|| AppError::Internal("key without project".into()))?;
        Ok(Project(project))
    }
}
