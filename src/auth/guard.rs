//! The one guard type GraphQL fields use to declare the scope they need.

use std::sync::Arc;

use async_graphql::{Context, Guard};

use super::principal::Principal;
use super::scopes::Scope;
use crate::error::AppError;

/// Allows a field only to keys holding the scope.
pub struct RequireScope(pub Scope);

impl Guard for RequireScope {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let principal = principal(ctx)?;
        if principal.has(self.0) {
            Ok(())
        } else {
            Err(AppError::Forbidden(format!("this key lacks the scope \"{}\"", self.0)).into())
        }
    }
}

/// The request's principal (always present: the HTTP layer refuses requests
/// without one before GraphQL runs).
pub fn principal<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Arc<Principal>> {
    ctx.data::<Arc<Principal>>()
        .map_err(|_| AppError::Unauthenticated.into())
}
