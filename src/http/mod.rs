//! The HTTP layer: routes, CORS, header limits, request metrics, and the
//! server loop with its connection limits and bounded shutdown
//! ([`server`]). The GraphQL-over-HTTP pipeline is in [`graphql`]; the
//! router builds the schemas it serves. The web console and the GraphiQL
//! page, with their embedded assets, are in [`console`].

pub mod console;
pub mod files;
pub mod graphql;
pub mod health;
pub mod server;
pub mod stream;

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::app::AppState;
use crate::auth::extract::noting_key;
use crate::error::AppError;
use crate::graphql::Schemas;

/// Total size of all request headers above which a request is refused with 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// The operation a response answered, for the request metric.
#[derive(Clone, Copy, Debug)]
pub struct OperationLabel(pub &'static str);

/// How many operations a response answered and how many of those carried
/// an error; set by the GraphQL handler (other routes answer one).
#[derive(Clone, Copy, Debug)]
pub struct Operations {
    pub total: u64,
    pub errored: u64,
}

/// Builds the router shared by `quire serve` and the tests.
pub fn build_router(state: AppState) -> Router {
    let cors = cors_layer(&state.config.cors_origins);
    let endpoint = graphql::Endpoint {
        schemas: std::sync::Arc::new(Schemas::build(&state.config)),
        app: state.clone(),
    };
    let tracked = state.clone();
    // GraphiQL is for browsers' GETs only: POSTs skip its layer.
    let browsers = middleware::from_fn(graphql::graphiql_for_browsers);
    let graphql = Router::new()
        .route(
            "/graphql",
            get(graphql::get.layer(browsers)).post(graphql::post),
        )
        .with_state(endpoint)
        .layer(middleware::from_fn(files::with_origin));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/events/stream", get(stream::events_stream))
        .route("/files", axum::routing::post(files::upload))
        .route("/files/{id}/{filename}", get(files::deliver))
        .with_state(tracked)
        .merge(graphql)
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(limit_headers))
        .layer(cors)
        .layer(middleware::from_fn_with_state(state, track))
}

/// Serves until `shutdown` resolves within the connection limits of
/// [`server`], then lets in-flight requests finish for at most
/// `QUIRE_SHUTDOWN_GRACE_SECONDS` and closes what is left. (`quire serve`
/// runs the two steps itself, to save the rate-limit windows in between.)
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = server::Limits::from_config(&state.config);
    let grace = Duration::from_secs(state.config.shutdown_grace_seconds);
    let draining = server::accept_until(listener, build_router(state), limits, shutdown).await;
    draining.finish(tokio::time::Instant::now() + grace).await;
    Ok(())
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let allow_origin = if origins.is_empty() {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim()).ok()),
        )
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([Method::GET, Method::POST])
        // Any header a browser asks for: Apollo's client-awareness headers,
        // tracing headers (`sentry-trace`, `baggage`) and custom ones must
        // not fail the preflight. The key is the credential, not a cookie.
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(3600))
}

async fn not_found() -> Response {
    AppError::NotFound("no such route".into()).into_response()
}

/// A method the route does not take (axum adds the `Allow` header).
async fn method_not_allowed() -> Response {
    AppError::MethodNotAllowed("this method is not allowed here".into()).into_response()
}

async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if size > MAX_HEADER_BYTES {
        return AppError::HeadersTooLarge.into_response();
    }
    next.run(req).await
}

/// The request metric, and the request's count in its key's usage (SPEC
/// §10): the one place where both are decided, after the answer is made.
async fn track(State(app): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let path: &'static str = match req.uri().path() {
        "/graphql" => "/graphql",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/events/stream" => "/events/stream",
        _ => "other",
    };
    let (response, key_id) = noting_key(next.run(req)).await;
    if let Some(key_id) = key_id {
        app.usage.count(&key_id, usage_outcome(&response));
    }
    let operation = response
        .extensions()
        .get::<OperationLabel>()
        .map_or("none", |o| o.0);
    // The outcome tells a 200 whose operation failed inside from a good
    // one; responses that say none (refusals, other paths) go by status.
    let outcome = response
        .extensions()
        .get::<graphql::respond::Outcome>()
        .copied()
        .unwrap_or_else(|| graphql::respond::Outcome::of_status(response.status()))
        .0;
    let status = response.status().as_u16().to_string();
    metrics::counter!("quire_http_requests_total", "path" => path, "status" => status, "operation" => operation, "outcome" => outcome)
        .increment(1);
    metrics::histogram!("quire_http_request_duration_seconds", "path" => path)
        .record(start.elapsed().as_secs_f64());
    response
}

/// How a response to a request with a valid key counts in its key's usage:
/// every operation is a request; a 429 counts them as rate limited; any
/// other 4xx or 5xx counts them as errors, and a 200 counts the operations
/// whose answer carries an error.
fn usage_outcome(response: &Response) -> crate::usage::Outcome {
    let ops = response.extensions().get::<Operations>().copied();
    let operations = ops.map_or(1, |o| o.total.max(1));
    let status = response.status();
    let errors = if status.is_client_error() || status.is_server_error() {
        operations
    } else if let Some(ops) = ops {
        ops.errored
    } else {
        let outcome = response.extensions().get::<graphql::respond::Outcome>();
        u64::from(outcome.is_some_and(|o| *o != graphql::respond::Outcome::OK))
    };
    let rate_limited = status == axum::http::StatusCode::TOO_MANY_REQUESTS;
    crate::usage::Outcome {
        operations,
        rate_limited,
        errors: if rate_limited { 0 } else { errors },
    }
}
