//! Authentication: the key format, scopes, the principal, the key cache, the
//! request-level resolution every `/graphql` call goes through, and guards.

pub mod cache;
pub mod guard;
pub mod key;
pub mod principal;
pub mod scopes;

use std::sync::Arc;

use axum::http::{header, HeaderMap};

use crate::app::App;
use crate::error::AppError;
use cache::ResolveError;
use key::ApiKeySecret;
use principal::Principal;

/// Reads the key from `x-api-key` or `Authorization: Bearer`, checks its
/// shape and checksum (no I/O), then resolves it through the key cache.
/// Every refusal is the same `UNAUTHENTICATED`; the reason goes to the log
/// and to `quire_auth_failures_total`, never the key.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<Arc<Principal>, AppError> {
    let raw = match presented_key(headers) {
        Ok(Some(raw)) => raw,
        Ok(None) => return Err(refuse("missing", None)),
        Err(()) => return Err(refuse("malformed", None)),
    };
    let secret = ApiKeySecret::parse(raw).map_err(|e| refuse(e.reason(), None))?;
    let now = app.clock.now();
    match app.keys.resolve(&app.db.conn, secret.hash(), now).await {
        Ok(principal) => {
            app.usage.touch(&principal.key_id, now);
            Ok(principal)
        }
        Err(ResolveError::Refused(r)) => Err(refuse(r.reason(), Some(&secret))),
        Err(e @ ResolveError::Database(_)) => Err(e.into()),
    }
}

fn presented_key(headers: &HeaderMap) -> Result<Option<&str>, ()> {
    if let Some(v) = headers.get("x-api-key") {
        return v.to_str().map(|s| Some(s.trim())).map_err(|_| ());
    }
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().map_err(|_| ())?;
        let (scheme, token) = v.trim().split_once(' ').ok_or(())?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(());
        }
        return Ok(Some(token.trim()));
    }
    Ok(None)
}

fn refuse(reason: &'static str, key: Option<&ApiKeySecret>) -> AppError {
    metrics::counter!("quire_auth_failures_total", "reason" => reason).increment(1);
    match key {
        Some(key) => tracing::info!(reason, key = %key, "authentication refused"),
        None => tracing::info!(reason, "authentication refused"),
    }
    AppError::Unauthenticated
}
