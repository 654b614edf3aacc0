//! quire: a headless content API. Content and keys live in SQLite or
//! PostgreSQL; every request carries an API key; GraphQL is the interface.
//!
//! Module map (data flows down: HTTP → auth → GraphQL → service → entity):
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the `quire` command line: `serve`, `migrate`, `admin`, client commands |
//! | [`config`] | typed configuration from flags and `QUIRE_*` variables |
//! | [`app`] | `App`/`AppState`: database, key cache, limiter, clock, schemas, metrics; the key change watcher |
//! | [`db`] | opening the database (pragmas, pools), migrations under a lock, bootstrap |
//! | [`error`] | `AppError` and its code table (HTTP status, `extensions.code`) |
//! | [`clock`] | injectable time |
//! | [`http`] | router, the GraphQL-over-HTTP handler, health and metrics, layers |
//! | [`auth`] | key format, scopes, principal, key cache, request authentication, guards |
//! | [`keys`] | key lifecycle service: rules, rotate/update/revoke, audit log, change feed, export/import, `lastUsedAt` batching |
//! | [`content`] | content service: models, records, drafts and publishing, views, queries |
//! | [`ratelimit`] | sliding hourly budgets: window arithmetic, local (sharded map) and Redis stores |
//! | [`readcache`] | cached published-view responses, invalidated exactly by per-project content generations |
//! | [`redis_link`] | a lazily made Redis connection that backs off after failures (limiter, read cache) |
//! | [`graphql`] | schema assembly, limits, thin resolvers per domain |

pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod content;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
pub mod keys;
pub mod ratelimit;
pub mod readcache;
pub mod redis_link;

pub use app::{App, AppState};
pub use http::build_router;
