//! Schema assembly; resolvers live in one module per domain and stay thin:
//! they map arguments to a service call and its result to GraphQL types.
//! Rules, connections, transactions and what follows a write are the
//! services' (`crate::keys`, `crate::content`).

pub mod content;
pub mod events;
pub mod files;
pub mod keys;
pub mod schedules;
pub mod search;
pub mod types;
pub mod usage;
pub mod viewer;

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, MergedObject, Schema};

use crate::app::AppState;
use crate::auth::principal::Principal;
use crate::config::Config;

/// quire's GraphQL schema.
pub type QuireSchema = Schema<Query, Mutation, EmptySubscription>;

/// Every query field, merged from the domain modules.
#[derive(MergedObject, Default)]
pub struct Query(
    viewer::ViewerQuery,
    keys::KeysQuery,
    content::ContentQuery,
    events::EventsQuery,
    usage::UsageQuery,
    schedules::SchedulesQuery,
    files::FilesQuery,
    search::SearchQuery,
);

/// Every mutation field, merged from the domain modules.
#[derive(MergedObject, Default)]
pub struct Mutation(
    keys::KeysMutation,
    content::ContentMutation,
    events::EventsMutation,
    schedules::SchedulesMutation,
    files::FilesMutation,
);

/// The two schemas `/graphql` serves: secret keys get the full one; public
/// keys one without suggestions and (unless configured) introspection.
pub struct Schemas {
    secret: QuireSchema,
    public: QuireSchema,
}

impl Schemas {
    /// Builds both with the configured limits.
    pub fn build(config: &Config) -> Self {
        Self {
            secret: build_schema(config, false),
            public: build_schema(config, true),
        }
    }

    /// The schema for this key's type.
    pub fn for_principal(&self, principal: &Principal) -> &QuireSchema {
        if principal.is_public() {
            &self.public
        } else {
            &self.secret
        }
    }
}

/// Builds the schema with the configured limits; `public` drops
/// suggestions and (unless configured) introspection.
pub fn build_schema(config: &Config, public: bool) -> QuireSchema {
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .limit_depth(config.max_depth)
        .limit_complexity(config.max_complexity);
    if public {
        builder = builder.disable_suggestions();
        if !config.public_introspection {
            builder = builder.disable_introspection();
        }
    }
    builder.finish()
}

/// The SDL of the schema, as `schema.graphql` holds it.
pub fn sdl() -> String {
    build_schema(&Config::for_database("sqlite::memory:"), false).sdl()
}

/// The application, from request data.
pub(crate) fn app<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a AppState> {
    ctx.data::<AppState>()
}

/// The principal, from request data.
pub(crate) fn principal<'a>(ctx: &'a Context<'_>) -> async_graphql::Result<&'a Arc<Principal>> {
    crate::auth::guard::principal(ctx)
}
