//! GraphQL over HTTP, done by hand because the stock handler always answers
//! 200, reads unbounded bodies and runs mutations over GET.
//!
//! Order of a request: accept negotiation (406) → GraphiQL for browsers →
//! authentication (401) → body and parameters (415, 413, 400) → the read
//! cache (a hit is rate limited and answered at once) → document checks
//! (parse, aliases, 405 for mutations over GET) → rate limit (429) →
//! execution → status by the negotiated media type, rate-limit headers on
//! every response to a valid key.

use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, OperationType};
use async_graphql::{ServerError, Variables};
use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::OperationLabel;
use crate::app::{App, AppState};
use crate::auth::{self, principal::Principal};
use crate::error::AppError;
use crate::graphql::limits::document_stats;
use crate::ratelimit::Decision;
use crate::readcache::{self, EntryKey};

/// The response media type chosen from `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Media {
    /// `application/graphql-response+json`: request errors are 400.
    GraphqlResponse,
    /// `application/json`: every well-formed request is 200.
    Json,
}

impl Media {
    fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        })
    }
}

/// One operation's parameters, as GraphQL over HTTP defines them.
#[derive(Debug)]
pub struct Params {
    query: String,
    operation_name: Option<String>,
    variables: Option<Map<String, Value>>,
}

/// A refusal of the HTTP request itself (before execution).
struct Reject {
    status: StatusCode,
    message: String,
    allow_post_only: bool,
}

impl Reject {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            allow_post_only: false,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn into_response(self, media: Media) -> Response {
        let mut response = body_response(
            self.status,
            media,
            &json!({ "errors": [{ "message": self.message }] }),
        );
        if self.allow_post_only {
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        response
    }
}

/// `GET /graphql`: GraphiQL for browsers, queries for everyone else.
pub async fn get(State(app): State<AppState>, headers: HeaderMap, uri: Uri) -> Response {
    if wants_html(&headers) {
        return graphiql();
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let principal = match auth::authenticate(&app, &headers).await {
        Ok(p) => p,
        Err(e) => return app_error_response(media, &e),
    };
    let params = params_from_query(uri.query().unwrap_or(""));
    single(&app, media, &principal, params, true).await
}

/// `POST /graphql`: one operation or a batch (a JSON array).
pub async fn post(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let principal = match auth::authenticate(&app, &headers).await {
        Ok(p) => p,
        Err(e) => return app_error_response(media, &e),
    };
    match read_json_body(&app, &headers, body).await {
        Err(r) => respond(&app, media, &principal, Err(r), false, None).await,
        Ok(Value::Array(items)) => {
            let prepared = prepare_batch(&app, &principal, items);
            respond(&app, media, &principal, prepared, true, None).await
        }
        Ok(other) => single(&app, media, &principal, params_from_json(other), false).await,
    }
}

/// One operation: answered from the read cache when it holds the answer at
/// the project's current generation, executed otherwise (and stored when the
/// document is cacheable).
async fn single(
    app: &AppState,
    media: Media,
    principal: &Arc<Principal>,
    params: Result<Params, Reject>,
    over_get: bool,
) -> Response {
    let params = match params {
        Ok(params) => params,
        Err(reject) => return respond(app, media, principal, Err(reject), false, None).await,
    };
    // The project's generation costs a Redis round trip when shared, so it
    // is read only for a request that has a stored answer or that turns out
    // cacheable; either way before execution.
    let cache = &app.read_cache;
    let key = cache.key_for(
        principal,
        &params.query,
        params.operation_name.as_deref(),
        params.variables.as_ref(),
    );
    let mut generation = None;
    if let Some((stored, body)) = key.as_ref().and_then(|k| cache.stored(k)) {
        generation = cache.generation(&principal.project_id).await;
        if generation == Some(stored) {
            cache.count(true);
            return answer_cached(app, media, principal, body).await;
        }
    }
    let prepared = prepare(app, principal, params, over_get);
    let cacheable = matches!(
        prepared,
        Ok(Prepared::Run {
            cacheable: true,
            ..
        })
    );
    let mut store = None;
    if let Some(key) = key.filter(|_| cacheable) {
        if generation.is_none() {
            generation = cache.generation(&principal.project_id).await;
        }
        if let Some(generation) = generation {
            cache.count(false);
            store = Some((key, generation));
        }
    }
    respond(
        app,
        media,
        principal,
        prepared.map(|op| vec![op]),
        false,
        store,
    )
    .await
}

/// A cache hit: rate limited like any request, then the stored body.
async fn answer_cached(
    app: &AppState,
    media: Media,
    principal: &Principal,
    body: Bytes,
) -> Response {
    let decision = match admit(app, media, principal, 1).await {
        Ok(decision) => decision,
        Err(refusal) => return refusal,
    };
    let mut response = (StatusCode::OK, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response.extensions_mut().insert(OperationLabel("query"));
    with_rate_headers(response, &decision)
}

/// Counts `cost` against the key's budget: the decision, or the 429.
async fn admit(
    app: &App,
    media: Media,
    principal: &Principal,
    cost: u64,
) -> Result<Decision, Response> {
    let limit = u64::try_from(principal.rate_limit_per_hour).unwrap_or(0);
    let decision = app
        .limiter
        .check(&principal.key_id, limit, cost, app.clock.now())
        .await;
    if decision.allowed {
        return Ok(decision);
    }
    let refusal = AppError::RateLimited {
        retry_after: decision.retry_after.unwrap_or(1),
    };
    Err(with_rate_headers(
        app_error_response(media, &refusal),
        &decision,
    ))
}

/// One operation, checked and ready to run (or already answered with a
/// parse or validation error, which still counts against the budget).
enum Prepared {
    Run {
        request: Box<async_graphql::Request>,
        label: &'static str,
        /// Whether its answer may go to the read cache.
        cacheable: bool,
    },
    Answered(Box<async_graphql::Response>, &'static str),
}

impl Prepared {
    fn label(&self) -> &'static str {
        match self {
            Prepared::Run { label, .. } | Prepared::Answered(_, label) => label,
        }
    }
}

fn prepare_batch(
    app: &App,
    principal: &Principal,
    items: Vec<Value>,
) -> Result<Vec<Prepared>, Reject> {
    let max = app.config.max_batch;
    if max == 0 {
        return Err(Reject::bad_request("batching is disabled on this server"));
    }
    if items.is_empty() || items.len() > max {
        return Err(Reject::bad_request(format!(
            "a batch must hold 1 to {max} operations"
        )));
    }
    items
        .into_iter()
        .map(|item| params_from_json(item).and_then(|p| prepare(app, principal, p, false)))
        .collect()
}

/// Rate limit, execute, and answer. A request refused at the HTTP level
/// (`Err`) costs nothing but still carries the rate-limit headers; every
/// prepared operation costs 1, a batch all or nothing. `store` says where an
/// error-free answer of a single cacheable operation goes in the read cache.
async fn respond(
    app: &AppState,
    media: Media,
    principal: &Arc<Principal>,
    prepared: Result<Vec<Prepared>, Reject>,
    batch: bool,
    store: Option<(EntryKey, u64)>,
) -> Response {
    let ops = match prepared {
        Ok(ops) => ops,
        Err(reject) => {
            let limit = u64::try_from(principal.rate_limit_per_hour).unwrap_or(0);
            let decision = app
                .limiter
                .peek(&principal.key_id, limit, app.clock.now())
                .await;
            return with_rate_headers(reject.into_response(media), &decision);
        }
    };
    let decision = match admit(app, media, principal, ops.len() as u64).await {
        Ok(decision) => decision,
        Err(refusal) => return refusal,
    };
    let label = if batch {
        "batch"
    } else {
        ops.first().map_or("invalid", Prepared::label)
    };
    let schema = if principal.is_public() {
        &app.public_schema
    } else {
        &app.schema
    };
    let mut responses = Vec::with_capacity(ops.len());
    for op in ops {
        responses.push(match op {
            Prepared::Answered(resp, _) => *resp,
            Prepared::Run { request, .. } => {
                let request = request
                    .data(Arc::clone(principal))
                    .data(Arc::clone(app))
                    .data(decision);
                schema.execute(request).await
            }
        });
    }
    let mut response = if batch {
        let mut unavailable = false;
        for resp in &mut responses {
            classify(resp);
            unavailable |= has_code(resp, "SERVICE_UNAVAILABLE");
        }
        let status = if unavailable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        body_response(
            status,
            media,
            &serde_json::to_value(&responses).unwrap_or(Value::Null),
        )
    } else {
        match responses.pop() {
            Some(resp) => {
                let (status, body) = graphql_body(media, resp);
                if let (Some((key, generation)), StatusCode::OK, true) =
                    (store, status, body.error_free)
                {
                    app.read_cache.put(key, generation, body.bytes.clone());
                }
                bytes_response(status, media, body.bytes)
            }
            None => Reject::bad_request("no operation").into_response(media),
        }
    };
    response.extensions_mut().insert(OperationLabel(label));
    with_rate_headers(response, &decision)
}

fn with_rate_headers(mut response: Response, d: &Decision) -> Response {
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(d.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(d.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(d.reset_at));
    if let Some(retry) = d.retry_after.filter(|_| !d.allowed) {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(retry));
    }
    response
}

/// Parses and checks one operation: parse errors and limit violations are
/// answered here; a mutation over GET is refused (405).
fn prepare(
    app: &App,
    principal: &Principal,
    params: Params,
    over_get: bool,
) -> Result<Prepared, Reject> {
    let mut request = async_graphql::Request::new(params.query);
    if let Some(name) = params.operation_name {
        request = request.operation_name(name);
    }
    if let Some(vars) = params.variables {
        request = request.variables(Variables::from_json(Value::Object(vars)));
    }
    let operation_name = request.operation_name.clone();
    let doc = match request.parsed_query() {
        Ok(doc) => doc,
        Err(mut e) => {
            set_code(&mut e, "GRAPHQL_PARSE_FAILED");
            return Ok(Prepared::Answered(
                Box::new(async_graphql::Response::from_errors(vec![e])),
                "invalid",
            ));
        }
    };
    let kind = operation_kind(doc, operation_name.as_deref());
    let cacheable = readcache::is_cacheable(doc, operation_name.as_deref());
    let label = match kind {
        Some(OperationType::Query) => "query",
        Some(OperationType::Mutation) => "mutation",
        Some(OperationType::Subscription) => "subscription",
        None => "invalid",
    };
    if over_get
        && matches!(
            kind,
            Some(OperationType::Mutation | OperationType::Subscription)
        )
    {
        let mut reject = Reject::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations are accepted over POST only",
        );
        reject.allow_post_only = true;
        return Err(reject);
    }
    let stats = document_stats(doc);
    let refusal = if stats.aliases > app.config.max_aliases {
        Some(format!(
            "the document has {} aliases; at most {} are allowed",
            stats.aliases, app.config.max_aliases
        ))
    } else if stats.introspection && principal.is_public() && !app.config.public_introspection {
        Some("introspection is disabled for public keys".to_owned())
    } else {
        None
    };
    if let Some(message) = refusal {
        let mut e = ServerError::new(message, None);
        set_code(&mut e, "GRAPHQL_VALIDATION_FAILED");
        return Ok(Prepared::Answered(
            Box::new(async_graphql::Response::from_errors(vec![e])),
            label,
        ));
    }
    Ok(Prepared::Run {
        request: Box::new(request),
        label,
        cacheable,
    })
}

fn operation_kind(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    let mut ops = doc.operations.iter();
    match name {
        Some(name) => ops
            .find(|(n, _)| n.is_some_and(|n| n.as_str() == name))
            .map(|(_, op)| op.node.ty),
        None => {
            let first = ops.next()?;
            if ops.next().is_some() {
                None
            } else {
                Some(first.1.node.ty)
            }
        }
    }
}

/// Marks request errors (no data, no path: parse or validation) with
/// `GRAPHQL_VALIDATION_FAILED`; returns whether this is a request error.
fn classify(resp: &mut async_graphql::Response) -> bool {
    let request_error = resp.data == async_graphql::Value::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| e.path.is_empty());
    if request_error {
        for e in &mut resp.errors {
            if code_of(e).is_none() {
                set_code(e, "GRAPHQL_VALIDATION_FAILED");
            }
        }
    }
    request_error
}

/// A serialized single-operation answer.
struct Answer {
    bytes: Bytes,
    /// Whether it holds no errors (only such answers are cached).
    error_free: bool,
}

fn graphql_body(media: Media, mut resp: async_graphql::Response) -> (StatusCode, Answer) {
    let request_error = classify(&mut resp);
    let status = if has_code(&resp, "SERVICE_UNAVAILABLE") {
        StatusCode::SERVICE_UNAVAILABLE
    } else if request_error && media == Media::GraphqlResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let bytes = if request_error {
        // A request error never carries `data` (GraphQL over HTTP).
        let mut body = serde_json::to_value(&resp).unwrap_or(Value::Null);
        if let Some(obj) = body.as_object_mut() {
            obj.remove("data");
        }
        serde_json::to_vec(&body)
    } else {
        serde_json::to_vec(&resp)
    };
    let body = Answer {
        bytes: Bytes::from(bytes.unwrap_or_default()),
        error_free: resp.errors.is_empty(),
    };
    (status, body)
}

fn set_code(e: &mut ServerError, code: &str) {
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
}

fn code_of(e: &ServerError) -> Option<String> {
    let ext = serde_json::to_value(e.extensions.as_ref()?).ok()?;
    ext.get("code")?.as_str().map(str::to_owned)
}

fn has_code(resp: &async_graphql::Response, code: &str) -> bool {
    resp.errors
        .iter()
        .any(|e| code_of(e).as_deref() == Some(code))
}

/// A GraphQL-shaped response for an `AppError` that decides the whole request.
pub fn app_error_response(media: Media, e: &AppError) -> Response {
    let status = match e.status() {
        StatusCode::OK => StatusCode::BAD_REQUEST,
        s => s,
    };
    body_response(status, media, &e.to_body())
}

fn body_response(status: StatusCode, media: Media, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes_response(status, media, Bytes::from(bytes))
}

fn bytes_response(status: StatusCode, media: Media, bytes: Bytes) -> Response {
    let mut response = (status, bytes).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, media.content_type());
    response
}

fn not_acceptable() -> Response {
    body_response(
        StatusCode::NOT_ACCEPTABLE,
        Media::Json,
        &json!({ "errors": [{ "message": "accept application/graphql-response+json or application/json (utf-8)" }] }),
    )
}

fn graphiql() -> Response {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .title("quire GraphiQL: add an x-api-key header")
            .finish(),
    )
    .into_response()
}

fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| {
            accept
                .split(',')
                .next()
                .is_some_and(|first| first.trim().starts_with("text/html"))
        })
}

/// Chooses the response media type from `Accept` (none → JSON); `None`
/// when nothing acceptable was offered (406).
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Some(Media::Json);
    };
    let accept = accept.to_str().ok()?;
    if accept.trim().is_empty() {
        return Some(Media::Json);
    }
    let mut best: Option<(f32, Media)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let mut q = 1.0_f32;
        let mut charset_ok = true;
        for param in parts {
            let Some((k, v)) = param.split_once('=') else {
                continue;
            };
            let v = v.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "q" => q = v.parse().unwrap_or(0.0),
                "charset" => {
                    charset_ok = v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
                }
                _ => {}
            }
        }
        if q <= 0.0 || !charset_ok {
            continue;
        }
        let media = match essence.as_str() {
            "application/graphql-response+json" => Media::GraphqlResponse,
            "application/json" | "application/*" | "*/*" => Media::Json,
            _ => continue,
        };
        if best.is_none_or(|(bq, _)| q > bq) {
            best = Some((q, media));
        }
    }
    best.map(|(_, m)| m)
}

async fn read_json_body(app: &App, headers: &HeaderMap, body: Body) -> Result<Value, Reject> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Reject::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Content-Type: application/json is required",
            )
        })?;
    let mime: mime::Mime = content_type.parse().map_err(|_| {
        Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unreadable Content-Type",
        )
    })?;
    let charset_ok = mime
        .get_param(mime::CHARSET)
        .is_none_or(|c| c.as_str().eq_ignore_ascii_case("utf-8"));
    if mime.essence_str() != "application/json" || !charset_ok {
        return Err(Reject::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json (utf-8)",
        ));
    }
    let limit = app.config.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let bytes = to_bytes(body, limit).await.map_err(|_| too_large(limit))?;
    if bytes.is_empty() {
        return Err(Reject::bad_request("a POST request needs a JSON body"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Reject::bad_request(format!("the body is not valid JSON: {e}")))
}

fn too_large(limit: usize) -> Reject {
    Reject::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {limit} bytes"),
    )
}

fn params_from_json(value: Value) -> Result<Params, Reject> {
    let Value::Object(mut obj) = value else {
        return Err(Reject::bad_request("a request must be a JSON object"));
    };
    let query = match obj.remove("query") {
        Some(Value::String(q)) => q,
        Some(_) => return Err(Reject::bad_request("\"query\" must be a string")),
        None => return Err(Reject::bad_request("\"query\" is required")),
    };
    let operation_name = match obj.remove("operationName") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(Reject::bad_request("\"operationName\" must be a string")),
    };
    let variables = match obj.remove("variables") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(_) => return Err(Reject::bad_request("\"variables\" must be an object")),
    };
    match obj.remove("extensions") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(Reject::bad_request("\"extensions\" must be an object")),
    }
    Ok(Params {
        query,
        operation_name,
        variables,
    })
}

fn params_from_query(query_string: &str) -> Result<Params, Reject> {
    let mut obj = Map::new();
    for (k, v) in form_urlencoded::parse(query_string.as_bytes()) {
        let value = match k.as_ref() {
            "query" | "operationName" => Value::String(v.into_owned()),
            "variables" | "extensions" => serde_json::from_str(&v)
                .map_err(|_| Reject::bad_request(format!("\"{k}\" must be a JSON object")))?,
            _ => continue,
        };
        obj.insert(k.into_owned(), value);
    }
    params_from_json(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Option<Media> {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_str(v).unwrap_or(HeaderValue::from_static("")),
        );
        negotiate(&h)
    }

    #[test]
    fn negotiates_media() {
        assert_eq!(negotiate(&HeaderMap::new()), Some(Media::Json));
        assert_eq!(
            accept("application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(accept("application/json"), Some(Media::Json));
        assert_eq!(accept("*/*"), Some(Media::Json));
        assert_eq!(
            accept("application/json;q=0.9, application/graphql-response+json"),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            accept("application/graphql-response+json; charset=utf-16"),
            None
        );
        assert_eq!(accept("text/plain"), None);
    }

    #[test]
    fn validates_params() {
        assert!(params_from_json(json!({"query": "{a}"})).is_ok());
        assert!(params_from_json(json!({"query": 1})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "variables": "x"})).is_err());
        assert!(params_from_json(json!({"query": "{a}", "operationName": 3})).is_err());
        assert!(params_from_query("query=%7Ba%7D&variables=%7B%7D").is_ok());
        assert!(params_from_query("variables=%7B%7D").is_err());
    }
}
