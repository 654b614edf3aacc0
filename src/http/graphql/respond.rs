//! The response stage: statuses and bodies of GraphQL answers and of
//! refusals, in the negotiated media type, and the rate-limit headers.
//!
//! Statuses come from the code table ([`crate::error::Code`]), read from the
//! typed code every quire error carries, never from serialized JSON.

use axum::body::Bytes;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::negotiate::Media;
use crate::error::{AppError, Code};
use crate::ratelimit::Decision;

/// A refusal of the whole request, GraphQL-shaped, in `media`.
pub fn refusal(media: Media, e: &AppError) -> Response {
    let mut response = body_response(e.status(), media, &e.to_body());
    if e.code() == Code::MethodNotAllowed {
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
    }
    response
}

/// A serialized single-operation answer.
pub struct Answer {
    pub status: StatusCode,
    pub bytes: Bytes,
    /// Whether it holds no errors (only such answers are cached).
    pub error_free: bool,
}

/// Shapes one operation's answer: a request error (parse, validation) is
/// 400 for `application/graphql-response+json` and carries no `data`; a
/// field error whose code decides the status (the database is gone) sets it.
pub fn answer(media: Media, mut resp: async_graphql::Response) -> Answer {
    let request_error = classify(&mut resp);
    let status = if let Some(code) = deciding_code(&resp) {
        code.status()
    } else if request_error && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let bytes = if request_error {
        // A request error never carries `data` (GraphQL over HTTP).
        serialize(serde_json::to_value(&resp).map(|mut body| {
            if let Some(obj) = body.as_object_mut() {
                obj.remove("data");
            }
            body
        }))
    } else {
        // Straight to bytes: the hot path builds no JSON tree.
        serialize_bytes(serde_json::to_vec(&resp))
    };
    Answer {
        status,
        bytes,
        error_free: resp.errors.is_empty(),
    }
}

/// Shapes a batch's answers: an array, 503 when any answer's code says so.
pub fn batch(media: Media, mut responses: Vec<async_graphql::Response>) -> Response {
    let mut status = StatusCode::OK;
    for resp in &mut responses {
        classify(resp);
        if let Some(code) = deciding_code(resp) {
            status = code.status();
        }
    }
    bytes_response(
        status,
        media,
        serialize_bytes(serde_json::to_vec(&responses)),
    )
}

/// Marks request errors (no data, no path: parse or validation) that carry
/// no code yet as `GRAPHQL_VALIDATION_FAILED`; returns whether this is a
/// request error.
fn classify(resp: &mut async_graphql::Response) -> bool {
    let request_error = resp.data == async_graphql::Value::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| e.path.is_empty());
    if request_error {
        for e in &mut resp.errors {
            if Code::of(e).is_none() {
                Code::GraphqlValidationFailed.mark(e);
            }
        }
    }
    request_error
}

fn deciding_code(resp: &async_graphql::Response) -> Option<Code> {
    resp.errors
        .iter()
        .filter_map(Code::of)
        .find(|c| c.decides_graphql_status())
}

/// The bytes of a JSON body; a body that cannot be serialized (it never
/// should) is logged and answered as an internal error.
fn serialize(value: Result<Value, serde_json::Error>) -> Bytes {
    serialize_bytes(value.and_then(|v| serde_json::to_vec(&v)))
}

fn serialize_bytes(bytes: Result<Vec<u8>, serde_json::Error>) -> Bytes {
    match bytes {
        Ok(bytes) => Bytes::from(bytes),
        Err(cause) => {
            let e = AppError::internal(format!("cannot serialize a response: {cause}"));
            Bytes::from(serde_json::to_vec(&e.to_body()).unwrap_or_default())
        }
    }
}

/// A JSON body in `media`.
pub fn body_response(status: StatusCode, media: Media, body: &Value) -> Response {
    bytes_response(status, media, serialize_bytes(serde_json::to_vec(body)))
}

/// Ready bytes in `media`.
pub fn bytes_response(status: StatusCode, media: Media, bytes: Bytes) -> Response {
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    crate::error::with_status_headers(response)
}

/// Adds the `X-RateLimit-*` headers (and `Retry-After` on a refusal).
pub fn with_rate_headers(mut response: Response, d: &Decision) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(d.reset_at));
    if let Some(retry) = d.retry_after.filter(|_| !d.allowed) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    }
    response
}
