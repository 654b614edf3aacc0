//! The request stage: the body (415, 413, 400) or the URL parameters, read
//! into one operation's [`Params`] or a batch of them.
//!
//! A body over [`LARGE_BODY_BYTES`] is parsed (and its request run) only
//! with one of [`LARGE_BODIES_AT_ONCE`] permits: its JSON tree, and the
//! values made from it, cost many times its size, so a crowd of 1 MiB
//! bodies waits as bytes instead of all being expanded at once. The permit
//! is taken after the body is read, so a slow sender never holds one.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::Config;
use crate::error::AppError;

/// One operation's parameters, as GraphQL over HTTP defines them.
#[derive(Debug)]
pub struct Params {
    pub query: String,
    pub operation_name: Option<String>,
    pub variables: Option<Map<String, Value>>,
}

/// A body larger than this is parsed only with a permit of [`LARGE_BODIES`].
pub const LARGE_BODY_BYTES: usize = 64 * 1024;

/// How many large bodies are parsed and run at once, per process.
pub const LARGE_BODIES_AT_ONCE: usize = 4;

static LARGE_BODIES: Semaphore = Semaphore::const_new(LARGE_BODIES_AT_ONCE);

/// The permit a large body holds while its request runs.
pub type LargeBody = Option<SemaphorePermit<'static>>;

/// What a POST body holds.
pub enum Posted {
    /// One operation.
    Single(Result<Params, AppError>),
    /// A JSON array: a batch, each item still to be read.
    Batch(Vec<Value>),
}

/// Whether reading a body failed because it stopped arriving (the server's
/// body timeout) rather than because it was too large.
fn stalled(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Reads a POST body: `Content-Type: application/json` (415), at most
/// `QUIRE_MAX_BODY_BYTES` (413), valid JSON (400); a large body waits for
/// its permit (returned with it) before it is parsed.
pub async fn read_post(
    config: &Config,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Posted, LargeBody), AppError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            AppError::UnsupportedMediaType("Content-Type: application/json is required".into())
        })?;
    let mime: mime::Mime = content_type
        .parse()
        .map_err(|_| AppError::UnsupportedMediaType("unreadable Content-Type".into()))?;
    let charset_ok = mime
        .get_param(mime::CHARSET)
        .is_none_or(|c| c.as_str().eq_ignore_ascii_case("utf-8"));
    if mime.essence_str() != "application/json" || !charset_ok {
        return Err(AppError::UnsupportedMediaType(
            "Content-Type must be application/json (utf-8)".into(),
        ));
    }
    let limit = config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let bytes = to_bytes(body, limit).await.map_err(|e| {
        if stalled(&e) {
            AppError::BadRequest(
                "the request body stalled for 30 s; the connection is closed".into(),
            )
        } else {
            too_large(limit)
        }
    })?;
    if bytes.is_empty() {
        return Err(AppError::BadRequest(
            "a POST request needs a JSON body".into(),
        ));
    }
    let permit = if bytes.len() > LARGE_BODY_BYTES {
        let permit = LARGE_BODIES
            .acquire()
            .await
            .map_err(|_| AppError::internal("the large-body gate is closed"))?;
        Some(permit)
    } else {
        None
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| AppError::BadRequest(format!("the body is not valid JSON: {e}")))?;
    drop(bytes);
    let posted = match value {
        Value::Array(items) => Posted::Batch(items),
        other => Posted::Single(params_from_json(other)),
    };
    Ok((posted, permit))
}

/// Checks the size of a batch against `QUIRE_MAX_BATCH` (0 refuses batches).
pub fn check_batch(config: &Config, items: &[Value]) -> Result<(), AppError> {
    let max = config.max_batch;
    if max == 0 {
        return Err(AppError::BadRequest(
            "batching is disabled on this server".into(),
        ));
    }
    if items.is_empty() || items.len() > max {
        return Err(AppError::BadRequest(format!(
            "a batch must hold 1 to {max} operations"
        )));
    }
    Ok(())
}

fn too_large(limit: usize) -> AppError {
    AppError::PayloadTooLarge(format!("the body is larger than {limit} bytes"))
}

/// Reads one operation from a JSON object.
pub fn params_from_json(value: Value) -> Result<Params, AppError> {
    let bad = |m: &str| Err(AppError::BadRequest(m.to_owned()));
    let Value::Object(mut obj) = value else {
        return bad("a request must be a JSON object");
    };
    let query = match obj.remove("query") {
        Some(Value::String(q)) => q,
        Some(_) => return bad("\"query\" must be a string"),
        None => return bad("\"query\" is required"),
    };
    let operation_name = match obj.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return bad("\"operationName\" must be a string"),
    };
    let variables = match obj.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return bad("\"variables\" must be an object"),
    };
    match obj.remove("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return bad("\"extensions\" must be an object"),
    }
    Ok(Params {
        query,
        operation_name,
        variables,
    })
}

/// Reads one operation from the URL of a GET.
pub fn params_from_query(query_string: &str) -> Result<Params, AppError> {
    let mut obj = Map::new();
    for (k, v) in form_urlencoded::parse(query_string.as_bytes()) {
        let value = match k.as_ref() {
            "query" | "operationName" => Value::String(v.into_owned()),
            "variables" | "extensions" => serde_json::from_str(&v)
                .map_err(|_| AppError::BadRequest(format!("\"{k}\" must be a JSON object")))?,
            _ => continue,
        };
        obj.insert(k.into_owned(), value);
    }
    params_from_json(Value::Object(obj))
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn validates_params() {
        assert!(params_from_json(json!({"query": "{a}"})).is_ok());
        assert!(params_from_json(json!({"query": 1})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "variables": "x"})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "operationName": 3})).is_err());
        assert!(params_from_query("query=%7Ba%7D&variables=%7B%7D").is_ok());
        assert!(params_from_query("variables=%7B%7D").is_err());
    }

    #[tokio::test]
    async fn a_stalled_body_is_told_apart_from_a_large_one() {
        let never =
            Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
        let timed = Body::new(tower_http::timeout::TimeoutBody::new(
            std::time::Duration::from_millis(10),
            never,
        ));
        let err = to_bytes(timed, 100).await.unwrap_err();
        assert!(stalled(&err));
        let err = to_bytes(Body::from(vec![0u8; 200]), 100).await.unwrap_err();
        assert!(!stalled(&err));
    }
}
