//! Request authentication: [`Authenticator`] reads the key from
//! `x-api-key` or `Authorization: Bearer`, checks its shape and checksum
//! (no I/O), then resolves it through the key cache; [`Authenticated`] is
//! the axum extractor that runs it for a handler.
//!
//! Every refusal is the same `UNAUTHENTICATED`; the reason goes to the log
//! and to `quire_auth_failures_total`, never the key.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};

use super::cache::{KeyCache, ResolveError};
use super::key::ApiKeySecret;
use super::last_used::LastUsed;
use super::principal::Principal;
use crate::clock::Clock;
use crate::db::Database;
use crate::error::AppError;

/// Turns request headers into a principal.
pub struct Authenticator {
    cache: Arc<KeyCache>,
    db: Database,
    clock: Arc<dyn Clock>,
    last_used: LastUsed,
}

impl Authenticator {
    /// An authenticator over `cache`, loading misses from `db`.
    pub fn new(
        cache: Arc<KeyCache>,
        db: Database,
        clock: Arc<dyn Clock>,
        last_used: LastUsed,
    ) -> Self {
        Self {
            cache,
            db,
            clock,
            last_used,
        }
    }

    /// The key cache it resolves through.
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.cache
    }

    /// The `lastUsedAt` recorder.
    pub fn last_used(&self) -> &LastUsed {
        &self.last_used
    }

    /// The principal of the key the request presents, or `UNAUTHENTICATED`
    /// (`SERVICE_UNAVAILABLE` when the database cannot answer a miss).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, AppError> {
        let raw = match presented_key(headers) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Err(refuse("missing", None)),
            Err(()) => return Err(refuse("malformed", None)),
        };
        let secret = ApiKeySecret::parse(raw).map_err(|e| refuse(e.reason(), None))?;
        let now = self.clock.now();
        // A miss reads the database: bounded like any request's database
        // work, and refused at once while the database is down; a cached
        // key keeps working.
        let health = &self.db.health;
        let resolving = self.cache.resolve(&self.db.conn, secret.hash(), now);
        let resolved = if self.cache.holds(secret.hash()) {
            health.bound(resolving).await?
        } else {
            health.guard(resolving).await?
        };
        match resolved {
            Ok(principal) => {
                self.last_used.touch(&principal.key_id, now);
                note_key(&principal.key_id);
                Ok(principal)
            }
            Err(ResolveError::Refused(r)) => Err(refuse(r.reason(), Some(&secret))),
            Err(e @ ResolveError::Database(_)) => Err(e.into()),
        }
    }
}

tokio::task_local! {
    /// The key the request being handled authenticated with (see [`noting_key`]).
    static REQUEST_KEY: Arc<OnceLock<String>>;
}

/// Runs a request's handling and answers with the id of the key it
/// authenticated with, if any: whichever route authenticated it (GraphQL,
/// the event stream, uploads…), the layer around them learns the key in
/// one place, for per-key usage.
pub async fn noting_key<F: Future>(handling: F) -> (F::Output, Option<String>) {
    let slot = Arc::new(OnceLock::new());
    let out = REQUEST_KEY.scope(Arc::clone(&slot), handling).await;
    (out, slot.get().cloned())
}

/// Notes the request's key for [`noting_key`] (the first one wins).
fn note_key(key_id: &str) {
    let _ = REQUEST_KEY.try_with(|slot| slot.set(key_id.to_owned()));
}

/// The request's authenticated principal. As `Result<Authenticated,
/// AppError>`, the handler decides how the refusal is shaped.
pub struct Authenticated(pub Arc<Principal>);

impl<S> FromRequestParts<S> for Authenticated
where
    S: Send + Sync,
    Arc<Authenticator>: FromRef<S>,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let authenticator = Arc::<Authenticator>::from_ref(state);
        authenticator
            .authenticate(&parts.headers)
            .await
            .map(Authenticated)
    }
}

/// The key a request presents: `x-api-key`, or `Authorization: Bearer`, or
/// both when they agree. Two different keys are refused (`Err`), whether
/// they come in two headers or in a header repeated, as is a header that is
/// not text or a bearer token that is missing.
fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    let mut keys: Vec<&str> = Vec::new();
    for v in headers.get_all("x-api-key") {
        keys.push(v.to_str().map_err(|_| ())?.trim());
    }
    let has_api_key = !keys.is_empty();
    for v in headers.get_all(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| ())?.trim();
        match v.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => {
                keys.push(token.trim());
            }
            // Another scheme (a proxy's Basic auth, say) is not ours when
            // the key comes in `x-api-key`.
            _ if has_api_key => {}
            _ => return Err(()),
        }
    }
    match keys.split_first() {
        Some((first, rest)) if rest.iter().any(|k| k != first) => Err(()),
        Some((first, _)) => Ok(Some(first)),
        None => Ok(None),
    }
}

fn refuse(reason: &'static str, key: Option<&ApiKeySecret>) -> AppError {
    metrics::counter!("quire_auth_failures_total", "reason" => reason).increment(1);
    match key {
        Some(key) => tracing::info!(reason, key = %key, "authentication refused"),
        None => tracing::info!(reason, "authentication refused"),
    }
    AppError::Unauthenticated
}
