//! The web console (`GET /console`) and the GraphiQL page, both embedded in
//! the binary (SPEC §12): their HTML, the console's ES modules and styles,
//! and the vendored GraphiQL 3.9.0 + React 18.3.1 production builds
//! (`console/vendor/`, with their licences and `VERSIONS.md`).
//!
//! Assets live under `/console/assets/{hash}/{file}`, where `hash` is taken
//! from the SHA-256 of every embedded file at first use: one hash for the
//! set, so the console's relative module imports stay cache-busted together.
//! Assets are `immutable` for a year; the two HTML pages are `no-cache` and
//! name the current hash. Every answer carries the same
//! `Content-Security-Policy` (same-origin scripts, styles and connections, no
//! inline script, no `eval`, no framing), `X-Content-Type-Options: nosniff`
//! and `Referrer-Policy: no-referrer`. Nothing here reads a key: the pages'
//! scripts send the key the user pasted (kept in `sessionStorage`) to
//! `/graphql` and `/files` like any other client.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::error::AppError;

/// The policy of every console and GraphiQL answer. `data:` fonts and images
/// are GraphiQL's stylesheet's own (inlined); `blob:` images are upload
/// previews; the console's export download is a `blob:` link.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data: blob:; font-src 'self' data:; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the assets are served, before the hash.
const ASSETS_PREFIX: &str = "/console/assets/";

/// The placeholder in the HTML pages for `/console/assets/{hash}`.
const ASSETS_PLACEHOLDER: &str = "{{assets}}";

macro_rules! embed {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_bytes!(concat!("console/", $name)) as &[u8])),*]
    };
}

/// Every embedded asset, by its path under the assets prefix.
static FILES: &[(&str, &[u8])] = embed![
    "app.js",
    "api.js",
    "dom.js",
    "keys.js",
    "content.js",
    "files.js",
    "usage.js",
    "webhooks.js",
    "console.css",
    "graphiql-boot.js",
    "graphiql-page.css",
    "favicon.svg",
    "vendor/graphiql.min.js",
    "vendor/graphiql.min.css",
    "vendor/react.production.min.js",
    "vendor/react-dom.production.min.js",
    "vendor/LICENSE-graphiql",
    "vendor/LICENSE-react",
    "vendor/LICENSE-react-dom",
    "vendor/VERSIONS.md",
];

const CONSOLE_HTML: &str = include_str!("console/index.html");
const GRAPHIQL_HTML: &str = include_str!("console/graphiql.html");

/// The hash of the embedded set and the two pages that name it.
struct Built {
    hash: String,
    console: String,
    graphiql: String,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let mut sha = Sha256::new();
    for (name, bytes) in FILES {
        sha.update((name.len() as u64).to_be_bytes());
        sha.update(name.as_bytes());
        sha.update((bytes.len() as u64).to_be_bytes());
        sha.update(bytes);
    }
    let hash: String = sha
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let base = format!("{ASSETS_PREFIX}{hash}");
    Built {
        console: CONSOLE_HTML.replace(ASSETS_PLACEHOLDER, &base),
        graphiql: GRAPHIQL_HTML.replace(ASSETS_PLACEHOLDER, &base),
        hash,
    }
});

/// The hash in the current asset URLs (`/console/assets/{hash}/…`).
pub fn assets_hash() -> &'static str {
    &BUILT.hash
}

/// The console's routes; they need no state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(console_page))
        .route("/console/", get(console_page))
        .route("/console/assets/{hash}/{*path}", get(asset))
}

async fn console_page() -> Response {
    page(&BUILT.console)
}

/// The GraphiQL page that `GET /graphql` serves to browsers.
pub fn graphiql_page() -> Response {
    page(&BUILT.graphiql)
}

fn page(html: &'static str) -> Response {
    let mut response = (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        html,
    )
        .into_response();
    protect(&mut response);
    response
}

async fn asset(Path((hash, path)): Path<(String, String)>) -> Response {
    let found = (hash == BUILT.hash)
        .then(|| FILES.iter().find(|(name, _)| *name == path))
        .flatten();
    let mut response = match found {
        Some((name, bytes)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, content_type(name)),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => AppError::NotFound("no such console asset".into()).into_response(),
    };
    protect(&mut response);
    response
}

/// The three security headers of every console answer.
fn protect(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("md") => "text/markdown; charset=utf-8",
        Some("svg") => "image/svg+xml",
        _ => "text/plain; charset=utf-8",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_names_the_current_hash_and_no_placeholder() {
        for html in [&BUILT.console, &BUILT.graphiql] {
            assert!(html.contains(&format!("{ASSETS_PREFIX}{}/", BUILT.hash)));
            assert!(!html.contains(ASSETS_PLACEHOLDER));
        }
        assert_eq!(BUILT.hash.len(), 16);
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(
            content_type("vendor/graphiql.min.css"),
            "text/css; charset=utf-8"
        );
        assert_eq!(
            content_type("vendor/LICENSE-react"),
            "text/plain; charset=utf-8"
        );
    }
}
