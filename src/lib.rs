//! quire: a headless content API. Content and keys live in SQLite or
//! PostgreSQL; every request carries an API key; GraphQL is the interface.
//!
//! Module map. Data flows one way, down the layers; a module uses only
//! modules of the layers below it (`python3 ../shared/tools/modgraph.py src
//! --files` checks that there is no cycle):
//!
//! ```text
//!  entry      cli ──────────────┐
//!  HTTP       http ─────────────┤  router, GraphQL-over-HTTP pipeline, health
//!  GraphQL    graphql ──────────┤  schemas, thin resolvers
//!  wiring     app ──────────────┤  App: services, caches, limiter, clock
//!  services   schedules ────────┤  schedules (runner) and versions, above content
//!             keys   content    │  the one door each; commit, then announce
//!             usage ────────────┤  per-key request counts, flushed off the request path
//!             files ────────────┤  uploads, storage, delivery (below content: FILE fields, publishing)
//!             events ───────────┤  outbox, feed, webhooks (below content: it writes the outbox)
//!             search ───────────┤  index, grammar, typos, ranking, snippets (below content: its writes keep the index)
//!  shared     auth  readcache  ratelimit  changes  db
//!  base       error  config  clock  redis_link       (entity, migration crates)
//! ```
//!
//! | module | holds |
//! |---|---|
//! | [`cli`] | the `quire` command line: `serve`, `migrate`, `admin`, client commands |
//! | [`http`] | router (builds the schemas), the staged GraphQL-over-HTTP handler, health and metrics, the event stream (SSE), the web console and GraphiQL page with their embedded assets (`http::console`), layers, the server loop (header and body timeouts, connection cap, bounded shutdown) |
//! | [`graphql`] | schema assembly, thin resolvers per domain calling the services |
//! | [`app`] | `App`/`AppState`: configuration, database, clock, key cache, authenticator, limiter, read cache, the services (keys, content, events, files, schedules, usage) and the search vocabularies; background watchers and runners |
//! | [`keys`] | key lifecycle service: rules, create/update/rotate/revoke, audit log, export/import, bootstrap, the key change feed |
//! | [`schedules`] | schedules (publish/unpublish at a set time, a runner on every instance claiming each exactly once) and the door to record versions (kept by content's writes) |
//! | [`content`] | content service: models (held in memory by the catalog), records, drafts and publishing, views, queries (bounded `where`), the SQL builder, the per-request answer budget |
//! | [`events`] | the outbox (`append`, called by content writes just before they commit; ids in commit order per project), the feed, the stream's wake-ups, webhooks and their dispatcher (leases, retries, signatures, the SSRF guard), pruning |
//! | [`usage`] | per-key usage: the in-memory aggregate the HTTP layer bumps once per request, its flusher (additive upserts) and pruner, `keyUsage` with the key visibility rules |
//! | [`files`] | the file service (SPEC §7): streamed uploads to local disk or S3 (`object_store`), type from magic numbers, image headers, drafts and publishing with their events, signed preview URLs, image variants (bounded, with a deadline) |
//! | [`search`] | full-text search: the index (one document per record per view, written in the change's transaction; FTS5 behind per-view tags on SQLite, `tsvector` on PostgreSQL), the query grammar, folding, typo variants from each view's vocabulary, ranked hits (buckets, then BM25 from the stored words) with cursors, `<mark>` snippets, reindexing |
//! | [`auth`] | key format, scopes, principal, key cache, `lastUsedAt`, the request extractor, guards |
//! | [`readcache`] | cached published-view responses, invalidated exactly by per-project content generations (a change listener) |
//! | [`ratelimit`] | sliding hourly budgets: window arithmetic, local (sharded map) and Redis stores |
//! | [`changes`] | committed changes and the listeners that follow them |
//! | [`db`] | opening the database (pragmas, pools, statement timeout), its health (probe, request deadline, 503 at once while unreachable), migrations and setup under a lock, the write-transaction idiom and group commit on SQLite's one writer, projects |
//! | [`error`] | `AppError` and the one code table (HTTP status, `extensions.code`); start-up errors |
//! | [`config`] | typed configuration from flags and `QUIRE_*` variables |
//! | [`clock`] | injectable time |
//! | [`redis_link`] | the one Redis connection of an instance behind a circuit breaker (one probe a second while Redis is away), shared by the limiter, the read cache and the key broadcast |

pub mod app;
pub mod auth;
pub mod changes;
pub mod cli;
pub mod clock;
pub mod config;
pub mod content;
pub mod db;
pub mod error;
pub mod events;
pub mod files;
pub mod graphql;
pub mod http;
pub mod keys;
pub mod ratelimit;
pub mod readcache;
pub mod redis_link;
pub mod schedules;
pub mod search;
pub mod usage;

pub use app::{App, AppState};
pub use http::build_router;
