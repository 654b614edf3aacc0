//! The file endpoints (SPEC §7).
//!
//! - `POST /files`: an upload, the raw body with `?filename=`, or
//!   `multipart/form-data` with a `file` part. Authenticated and rate
//!   limited like `/graphql` (it counts 1), then `files:write` (403).
//! - `GET`/`HEAD /files/{id}/{filename}`: a published file without a key,
//!   or any file with a valid signature (`expires`, `sig`); every miss is
//!   the same 404. `ETag` (the SHA-256), `If-None-Match` (304), one `Range`
//!   (206, 416), image variants (`w`, `h`, `fit`, `fm`, `q`).

use std::pin::pin;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use entity::files;
use serde_json::json;

use super::graphql::respond::with_rate_headers;
use crate::app::AppState;
use crate::auth::scopes::Scope;
use crate::error::AppError;
use crate::files::store::Storage;
use crate::files::variant::Variant;
use crate::graphql::files::ORIGIN;

/// Room for the parts of a multipart upload other than the file.
const MULTIPART_SLACK: u64 = 64 * 1024;

/// `http(s)://host` of a request, from `Host` (and `X-Forwarded-Proto`).
pub fn origin_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
    {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

/// A layer on `/graphql`: the request's origin, for `File.url`.
pub async fn with_origin(req: Request, next: Next) -> Response {
    let origin = origin_of(req.headers());
    ORIGIN.scope(origin, next.run(req)).await
}

/// A file as the upload answer shows it (the `File` fields).
fn file_json(app: &AppState, row: &files::Model, origin: &str) -> serde_json::Value {
    json!({
        "id": row.id,
        "filename": row.filename,
        "contentType": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "width": row.width,
        "height": row.height,
        "alt": row.alt,
        "status": if row.published_at.is_some() { "PUBLISHED" } else { "DRAFT" },
        "url": app.files.url(row, origin),
        "createdAt": crate::clock::stamp(row.created_at),
        "publishedAt": row.published_at.map(crate::clock::stamp),
    })
}

/// `POST /files`.
pub async fn upload(
    State(app): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    body: Body,
) -> Response {
    let principal = match app.authenticator.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => return closing(e.into_response()),
    };
    let limit = u64::try_from(principal.rate_limit_per_hour).unwrap_or(0);
    let decision = app
        .limiter
        .check(&principal.key_id, limit, 1, app.clock.now())
        .await;
    if !decision.allowed {
        let refusal = AppError::RateLimited {
            retry_after: decision.retry_after.unwrap_or(1),
        };
        return closing(with_rate_headers(refusal.into_response(), &decision));
    }
    let answer = |e: AppError| closing(with_rate_headers(e.into_response(), &decision));
    if !principal.has(Scope::FilesWrite) {
        return answer(AppError::Forbidden(
            "this key lacks the scope \"files:write\"".into(),
        ));
    }
    let max = app.files.max_file_bytes;
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let query_name = query_param(uri.query(), "filename");
    let multipart = content_type.as_deref().is_some_and(|ct| {
        ct.trim_start()
            .to_ascii_lowercase()
            .starts_with("multipart/form-data")
    });
    let slack = if multipart { MULTIPART_SLACK } else { 0 };
    if declared_length.is_some_and(|n| n > max.saturating_add(slack)) {
        return answer(AppError::PayloadTooLarge(format!(
            "the file is larger than {max} bytes (QUIRE_MAX_FILE_BYTES)"
        )));
    }
    let stored = if multipart {
        upload_multipart(
            &app,
            &principal,
            content_type.as_deref(),
            query_name,
            body,
            max,
        )
        .await
    } else {
        let Some(name) = query_name else {
            return answer(AppError::BadRequest(
                "name the file: POST /files?filename=NAME (or send multipart/form-data with a \"file\" part)"
                    .into(),
            ));
        };
        let stream = body.into_data_stream();
        app.files
            .upload(&principal, &name, content_type.as_deref(), stream)
            .await
    };
    match stored {
        Ok(row) => {
            let body = json!({ "file": file_json(&app, &row, &origin_of(&headers)) });
            let response = (StatusCode::CREATED, axum::Json(body)).into_response();
            with_rate_headers(response, &decision)
        }
        Err(e) => answer(e),
    }
}

/// A refused upload's answer closes the connection: the body may be
/// unread, so the connection cannot carry another request, and a client
/// that pooled it would send its next request into a closing socket.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(
        header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    response
}

async fn upload_multipart(
    app: &AppState,
    principal: &crate::auth::principal::Principal,
    content_type: Option<&str>,
    query_name: Option<String>,
    body: Body,
    max: u64,
) -> Result<files::Model, AppError> {
    let boundary = multer::parse_boundary(content_type.unwrap_or_default())
        .map_err(|_| AppError::BadRequest("multipart/form-data needs a boundary".into()))?;
    let constraints = multer::Constraints::new()
        .size_limit(multer::SizeLimit::new().whole_stream(max.saturating_add(MULTIPART_SLACK)));
    let mut form =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => {
                return Err(AppError::BadRequest(
                    "the multipart body has no part named \"file\"".into(),
                ))
            }
            Err(multer::Error::StreamSizeExceeded { .. }) => {
                return Err(AppError::PayloadTooLarge(format!(
                    "the file is larger than {max} bytes (QUIRE_MAX_FILE_BYTES)"
                )))
            }
            Err(e) => return Err(AppError::BadRequest(format!("bad multipart body: {e}"))),
        };
        if field.name() != Some("file") {
            continue;
        }
        let name = field
            .file_name()
            .map(str::to_owned)
            .or(query_name)
            .unwrap_or_default();
        let declared = field.content_type().map(ToString::to_string);
        let stream = pin!(field);
        return app
            .files
            .upload(principal, &name, declared.as_deref(), stream)
            .await;
    }
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The one answer for every file that is not there for this request.
fn miss() -> Response {
    AppError::NotFound("no such file".into()).into_response()
}

/// `GET` and `HEAD /files/{id}/{filename}`.
pub async fn deliver(
    State(app): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    method: Method,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let Ok(Path((id, filename))) = path else {
        return miss();
    };
    let row = match app.files.find(&id).await {
        Ok(Some(row)) if row.filename == filename => row,
        Ok(_) => return miss(),
        Err(e) => return e.into_response(),
    };
    let query = uri.query().unwrap_or_default();
    let published = row.published_at.is_some();
    if !published {
        let expires = query_param(Some(query), "expires").and_then(|e| e.parse::<i64>().ok());
        let sig = query_param(Some(query), "sig");
        let signed = match (expires, sig) {
            (Some(expires), Some(sig)) => app.files.signed(&row, expires, &sig),
            _ => false,
        };
        if !signed {
            return miss();
        }
    }
    let variant = match Variant::parse(query) {
        Ok(v) => v,
        Err(why) => return AppError::BadRequest(why).into_response(),
    };
    let cache = if published {
        "public, max-age=31536000, immutable"
    } else {
        "private, no-store"
    };
    match variant {
        Some(v) => deliver_variant(&app, &row, &v, &method, &headers, cache).await,
        None => deliver_original(&app, &row, &method, &headers, cache).await,
    }
}

fn common_headers(h: &mut HeaderMap, content_type: &str, etag: &str, cache: &'static str) {
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Uploaded bytes are never a page of this origin (a PDF viewer needs
    // to run, so PDFs are spared the sandbox).
    if content_type != "application/pdf" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; sandbox"),
        );
    }
}

fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn bare(status: StatusCode) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = status;
    r
}

async fn deliver_original(
    app: &AppState,
    row: &files::Model,
    method: &Method,
    headers: &HeaderMap,
    cache: &'static str,
) -> Response {
    let etag = format!("\"{}\"", row.sha256);
    let size = u64::try_from(row.size).unwrap_or(0);
    if not_modified(headers, &etag) {
        let mut r = bare(StatusCode::NOT_MODIFIED);
        common_headers(r.headers_mut(), &row.content_type, &etag, cache);
        r.headers_mut().remove(header::CONTENT_TYPE);
        return r;
    }
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(spec) => match parse_range(spec, size) {
            RangeAsk::Whole => None,
            RangeAsk::Part(start, end) => Some(start..end),
            RangeAsk::Unsatisfiable => {
                let mut r = bare(StatusCode::RANGE_NOT_SATISFIABLE);
                common_headers(r.headers_mut(), &row.content_type, &etag, cache);
                r.headers_mut().remove(header::CONTENT_TYPE);
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    r.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return r;
            }
        },
        None => None,
    };
    let (status, length) = match &range {
        Some(r) => (StatusCode::PARTIAL_CONTENT, r.end - r.start),
        None => (StatusCode::OK, size),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let path = Storage::original(&row.project_id, &row.id);
        match app.files.storage.get(&path, range.clone()).await {
            Ok(Some(fetched)) => Body::from_stream(fetched.body),
            Ok(None) => {
                tracing::warn!(file = %row.id, "a file's bytes are missing from storage");
                return miss();
            }
            Err(e) => return e.into_response(),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    common_headers(h, &row.content_type, &etag, cache);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Some(range) = range {
        if let Ok(v) =
            HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
        {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    r
}

async fn deliver_variant(
    app: &AppState,
    row: &files::Model,
    v: &Variant,
    method: &Method,
    headers: &HeaderMap,
    cache: &'static str,
) -> Response {
    let etag = format!("\"{}-{}\"", row.sha256, v.key(&row.content_type));
    if crate::files::upload::is_image(&row.content_type) && not_modified(headers, &etag) {
        let mut r = bare(StatusCode::NOT_MODIFIED);
        common_headers(r.headers_mut(), "", &etag, cache);
        r.headers_mut().remove(header::CONTENT_TYPE);
        return r;
    }
    let (bytes, content_type) = match app.files.variant(row, v).await {
        Ok(made) => made,
        Err(e) => return e.into_response(),
    };
    let length = bytes.len() as u64;
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(bytes)
    };
    let mut r = Response::new(body);
    common_headers(r.headers_mut(), content_type, &etag, cache);
    r.headers_mut().remove(header::ACCEPT_RANGES);
    r.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    r
}

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range (several ranges, or not `bytes=`): the whole file.
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses one `bytes=` range (RFC 9110 §14.1.2).
pub fn parse_range(spec: &str, size: u64) -> RangeAsk {
    let Some(set) = spec.trim().strip_prefix("bytes=") else {
        return RangeAsk::Whole;
    };
    if set.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = set.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // The last N bytes.
        let Ok(n) = last.parse::<u64>() else {
            return RangeAsk::Whole;
        };
        if n == 0 || size == 0 {
            return RangeAsk::Unsatisfiable;
        }
        return RangeAsk::Part(size - n.min(size), size);
    }
    let Ok(start) = first.parse::<u64>() else {
        return RangeAsk::Whole;
    };
    let end = if last.is_empty() {
        size
    } else {
        match last.parse::<u64>() {
            Ok(l) if l >= start => l.saturating_add(1).min(size),
            _ => return RangeAsk::Whole,
        }
    };
    if start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range("bytes=0-9", 100), RangeAsk::Part(0, 10));
        assert_eq!(parse_range("bytes=90-", 100), RangeAsk::Part(90, 100));
        assert_eq!(parse_range("bytes=90-200", 100), RangeAsk::Part(90, 100));
        assert_eq!(parse_range("bytes=-10", 100), RangeAsk::Part(90, 100));
        assert_eq!(parse_range("bytes=-500", 100), RangeAsk::Part(0, 100));
        assert_eq!(parse_range("bytes=100-", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 100), RangeAsk::Whole);
        assert_eq!(parse_range("bytes=5-1", 100), RangeAsk::Whole);
        assert_eq!(parse_range("items=0-1", 100), RangeAsk::Whole);
    }
}
