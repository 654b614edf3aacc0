//! The response stage: statuses and bodies of GraphQL answers and of
//! refusals, in the negotiated media type, and the rate-limit headers.
//!
//! Statuses come from the code table ([`crate::error::Code`]), read from the
//! typed code every quire error carries, never from serialized JSON.
//!
//! Answers are written straight to bytes, into a buffer sized from the
//! request's answer budget, and the writing stops at
//! `QUIRE_MAX_RESPONSE_BYTES`: a larger answer is replaced by a
//! `RESPONSE_TOO_LARGE` error. Each response says its [`Outcome`] for the
//! request metric.
//!
//! The writer ([`write_answer`]) is serde's JSON for every part but one: a
//! [`async_graphql::Value::Binary`] is JSON text already (a record's data
//! as the database holds it, checked when it was read; see
//! `graphql::content::OwnedJson`) and is copied into the answer as it is.
//! No input can produce a binary value: GraphQL and JSON inputs have none.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::negotiate::Media;
use crate::content::budget::{self, AnswerBudget};
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

/// Most error objects a whole-batch refusal repeats: a body of a million
/// `0`s is a "batch" of half a million items, and must not become an answer
/// fifty times its size. No real batching client sends anywhere near this.
pub const MAX_REFUSAL_ITEMS: usize = 1_000;

/// A refusal of a whole batch of `operations`: a JSON array holding the
/// refusal's error object once per operation (SPEC §3), at most
/// [`MAX_REFUSAL_ITEMS`] times; the object is serialized once.
pub fn batch_refusal(media: Media, e: &AppError, operations: usize) -> Response {
    let one = serde_json::to_vec(&e.to_body()).unwrap_or_default();
    let n = operations.clamp(1, MAX_REFUSAL_ITEMS);
    let mut body = Vec::with_capacity(n * (one.len() + 1) + 2);
    body.push(b'[');
    for i in 0..n {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&one);
    }
    body.push(b']');
    bytes_response(e.status(), media, Bytes::from(body))
}

/// How a request ended, for the `outcome` label of the request metric
/// (the status alone says 200 for an answer whose field failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome(pub &'static str);

impl Outcome {
    /// An answer without errors.
    pub const OK: Outcome = Outcome("ok");
    /// An answer carrying errors the client caused or may fix (bad input,
    /// a missing scope, a validation error, an answer too large…).
    pub const USER_ERROR: Outcome = Outcome("user_error");
    /// A request refused whole before it ran (401, 413, 429…).
    pub const REFUSED: Outcome = Outcome("refused");
    /// The database or another dependency could not be reached.
    pub const UNAVAILABLE: Outcome = Outcome("unavailable");
    /// A failure of quire itself.
    pub const INTERNAL: Outcome = Outcome("internal");

    /// The outcome of a response that says none: from its status.
    pub fn of_status(status: StatusCode) -> Outcome {
        match status.as_u16() {
            503 => Outcome::UNAVAILABLE,
            500..=599 => Outcome::INTERNAL,
            400..=499 => Outcome::REFUSED,
            _ => Outcome::OK,
        }
    }

    /// The outcome of a GraphQL answer: its worst error.
    pub fn of_answer(resp: &async_graphql::Response) -> Outcome {
        resp.errors
            .iter()
            .map(|e| match Code::of(e) {
                Some(Code::Internal) => Outcome::INTERNAL,
                Some(Code::ServiceUnavailable) => Outcome::UNAVAILABLE,
                _ => Outcome::USER_ERROR,
            })
            .max_by_key(|o| o.rank())
            .unwrap_or(Outcome::OK)
    }

    /// The worse of two outcomes (a batch reports its worst).
    pub fn worst(self, other: Outcome) -> Outcome {
        if other.rank() > self.rank() {
            other
        } else {
            self
        }
    }

    fn rank(self) -> u8 {
        match self.0 {
            "internal" => 4,
            "unavailable" => 3,
            "refused" => 2,
            "user_error" => 1,
            _ => 0,
        }
    }
}

/// A serialized single-operation answer.
pub struct Answer {
    pub status: StatusCode,
    pub bytes: Bytes,
    /// Whether it holds no errors (only such answers are cached).
    pub error_free: bool,
    /// How it ended.
    pub outcome: Outcome,
}

/// Shapes one operation's answer: a request error (parse, validation) is
/// 400 for `application/graphql-response+json` and carries no `data`; a
/// field error whose code decides the status (the database is gone) sets it.
/// An answer over the budget's limit is replaced by `RESPONSE_TOO_LARGE`.
pub fn answer(media: Media, mut resp: async_graphql::Response, budget: &AnswerBudget) -> Answer {
    let request_error = classify(&mut resp);
    let status = if let Some(code) = deciding_code(&resp) {
        code.status()
    } else if request_error && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let outcome = Outcome::of_answer(&resp);
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
        match to_capped_bytes(&resp, budget) {
            Some(bytes) => bytes,
            None => return too_large(budget),
        }
    };
    Answer {
        status,
        bytes,
        error_free: resp.errors.is_empty(),
        outcome,
    }
}

/// The answer that replaces one over the limit.
fn too_large(budget: &AnswerBudget) -> Answer {
    let e = budget::too_large(budget.limit());
    let body = serde_json::json!({
        "data": null,
        "errors": [{ "message": e.message(), "extensions": { "code": e.code().as_str() } }]
    });
    Answer {
        status: StatusCode::OK,
        bytes: serialize_bytes(serde_json::to_vec(&body)),
        error_free: false,
        outcome: Outcome::USER_ERROR,
    }
}

/// `value` as JSON bytes in one buffer sized from what the budget was
/// charged (so a large answer is not copied as the buffer grows); `None`
/// as soon as it passes the budget's limit.
fn to_capped_bytes<T: WriteJson>(value: &T, budget: &AnswerBudget) -> Option<Bytes> {
    struct Capped {
        buf: Vec<u8>,
        limit: usize,
    }
    impl std::io::Write for Capped {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            if self.buf.len() + data.len() > self.limit {
                return Err(std::io::Error::other("over the answer limit"));
            }
            self.buf.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Field names and punctuation add to the data charged; an eighth more
    // covers most answers without a second allocation.
    let hint = budget
        .used()
        .saturating_add(budget.used() / 8)
        .saturating_add(1024);
    let mut out = Capped {
        buf: Vec::with_capacity(hint.min(budget.limit())),
        limit: budget.limit(),
    };
    match value.write_json(&mut out) {
        Ok(()) => Some(Bytes::from(out.buf)),
        Err(e) if e.is_io() => None,
        Err(cause) => Some(serialize_bytes(Err(cause))),
    }
}

/// Something [`to_capped_bytes`] writes: one answer or a batch of them.
trait WriteJson {
    fn write_json<W: std::io::Write>(&self, out: &mut W) -> Result<(), serde_json::Error>;
}

impl WriteJson for async_graphql::Response {
    fn write_json<W: std::io::Write>(&self, out: &mut W) -> Result<(), serde_json::Error> {
        write_answer(self, out)
    }
}

impl WriteJson for Vec<async_graphql::Response> {
    fn write_json<W: std::io::Write>(&self, out: &mut W) -> Result<(), serde_json::Error> {
        raw(out, b"[")?;
        for (i, resp) in self.iter().enumerate() {
            if i > 0 {
                raw(out, b",")?;
            }
            write_answer(resp, out)?;
        }
        raw(out, b"]")
    }
}

/// Writes an answer as serde would (`data`, then `extensions` and `errors`
/// when not empty), except that binary values are JSON text copied as is.
pub fn write_answer<W: std::io::Write>(
    resp: &async_graphql::Response,
    out: &mut W,
) -> Result<(), serde_json::Error> {
    raw(out, b"{\"data\":")?;
    write_value(&resp.data, out)?;
    if !resp.extensions.is_empty() {
        raw(out, b",\"extensions\":")?;
        serde_json::to_writer(&mut *out, &resp.extensions)?;
    }
    if !resp.errors.is_empty() {
        raw(out, b",\"errors\":")?;
        serde_json::to_writer(&mut *out, &resp.errors)?;
    }
    raw(out, b"}")
}

fn write_value<W: std::io::Write>(
    value: &async_graphql::Value,
    out: &mut W,
) -> Result<(), serde_json::Error> {
    use async_graphql::Value as V;
    match value {
        V::Binary(json) => raw(out, json),
        V::List(items) => {
            raw(out, b"[")?;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    raw(out, b",")?;
                }
                write_value(item, out)?;
            }
            raw(out, b"]")
        }
        V::Object(fields) => {
            raw(out, b"{")?;
            for (i, (name, item)) in fields.iter().enumerate() {
                if i > 0 {
                    raw(out, b",")?;
                }
                serde_json::to_writer(&mut *out, name.as_str())?;
                raw(out, b":")?;
                write_value(item, out)?;
            }
            raw(out, b"}")
        }
        scalar => serde_json::to_writer(&mut *out, scalar),
    }
}

fn raw<W: std::io::Write>(out: &mut W, bytes: &[u8]) -> Result<(), serde_json::Error> {
    out.write_all(bytes).map_err(serde_json::Error::io)
}

/// Shapes a batch's answers: an array, 503 when any answer's code says so;
/// the whole array is bounded by the budget's limit (a larger one is one
/// `RESPONSE_TOO_LARGE` answer per operation).
pub fn batch(
    mut responses: Vec<async_graphql::Response>,
    budget: &AnswerBudget,
) -> (StatusCode, Bytes, Outcome) {
    let mut status = StatusCode::OK;
    let mut outcome = Outcome::OK;
    for resp in &mut responses {
        classify(resp);
        if let Some(code) = deciding_code(resp) {
            status = code.status();
        }
        outcome = outcome.worst(Outcome::of_answer(resp));
    }
    let bytes = match to_capped_bytes(&responses, budget) {
        Some(bytes) => bytes,
        None => {
            let one = too_large(budget).bytes;
            let mut all = Vec::with_capacity((one.len() + 1) * responses.len() + 2);
            all.push(b'[');
            for i in 0..responses.len() {
                if i > 0 {
                    all.push(b',');
                }
                all.extend_from_slice(&one);
            }
            all.push(b']');
            outcome = outcome.worst(Outcome::USER_ERROR);
            Bytes::from(all)
        }
    };
    (status, bytes, outcome)
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

/// Ready bytes in `media`, keeping `budget` (and its large-answer permit)
/// until the body has been handed to the connection or dropped with it: a
/// large answer's permit comes back only when its bytes are gone.
pub fn held_response(
    status: StatusCode,
    media: Media,
    bytes: Bytes,
    budget: Arc<AnswerBudget>,
) -> Response {
    /// Slices of the one buffer (no copies), so the body is held no longer
    /// than the connection takes to write it.
    const CHUNK: usize = 256 * 1024;
    let length = bytes.len();
    let chunks = futures::stream::unfold((bytes, budget), |(mut rest, budget)| async move {
        if rest.is_empty() {
            return None;
        }
        let chunk = rest.split_to(CHUNK.min(rest.len()));
        Some((Ok::<_, std::convert::Infallible>(chunk), (rest, budget)))
    });
    let mut response = (status, Body::from_stream(chunks)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, media.content_type());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
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
