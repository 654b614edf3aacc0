//! Authentication: the key format, scopes, the principal, the key cache,
//! `lastUsedAt` batching, the request extractor and the field guard.
//!
//! | module | holds |
//! |---|---|
//! | [`key`] | the key format: generate, parse, checksum, hash, mask |
//! | [`scopes`] | the closed set of scopes and their wire names |
//! | [`principal`] | what a valid key resolves to for one request |
//! | [`cache`] | SHA-256 → principal, with exact invalidation |
//! | [`last_used`] | `lastUsedAt`, written in batches off the request path |
//! | [`extract`] | [`extract::Authenticator`] and the axum extractor every `/graphql` call goes through |
//! | [`guard`] | the scope guard GraphQL fields declare |

pub mod cache;
pub mod extract;
pub mod guard;
pub mod key;
pub mod last_used;
pub mod principal;
pub mod scopes;
