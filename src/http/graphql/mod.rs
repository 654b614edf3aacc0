//! GraphQL over HTTP, done by hand because the stock handler always answers
//! 200, reads unbounded bodies and runs mutations over GET.
//!
//! A request goes through these stages, each in its own module:
//!
//! 1. [`negotiate`]: the media type from `Accept` (406); GraphiQL for
//!    browsers (a layer on the GET handler, before anything else);
//! 2. authentication ([`crate::auth::extract`]): 401;
//! 3. [`request`]: the body or the URL parameters (415, 413, 400);
//! 4. the read cache: a stored answer at the project's current generation
//!    is rate limited and sent at once;
//! 5. [`document`]: parse once, the document's facts, the limits (405 for a
//!    mutation over GET, validation errors);
//! 6. the rate limit (429): every prepared operation costs 1, a batch all or
//!    nothing; a request refused before this point costs nothing;
//! 7. execution, with the request's answer budget
//!    ([`crate::content::budget`]) in its data;
//! 8. [`respond`]: status and body in the negotiated media type (at most
//!    `QUIRE_MAX_RESPONSE_BYTES`), the answer stored in the read cache when
//!    it may be, the rate-limit headers on every response to a valid key,
//!    and the [`respond::Outcome`] for the request metric.

pub mod document;
pub mod negotiate;
pub mod request;
pub mod respond;

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

use super::{OperationLabel, Operations};
use crate::app::AppState;
use crate::auth::extract::{Authenticated, Authenticator};
use crate::auth::principal::Principal;
use crate::content::budget::{self, AnswerBudget};
use crate::error::AppError;
use crate::graphql::Schemas;
use crate::ratelimit::Decision;
use document::Prepared;
use negotiate::Media;
use request::{Params, Posted};
use respond::Outcome;

pub use negotiate::graphiql_for_browsers;

/// What the `/graphql` routes need: the application and the two schemas.
#[derive(Clone)]
pub struct Endpoint {
    pub app: AppState,
    pub schemas: Arc<Schemas>,
}

impl FromRef<Endpoint> for Arc<Authenticator> {
    fn from_ref(endpoint: &Endpoint) -> Self {
        Arc::clone(&endpoint.app.authenticator)
    }
}

/// `GET /graphql`: queries in the URL.
pub async fn get(
    State(endpoint): State<Endpoint>,
    media: Media,
    auth: Result<Authenticated, AppError>,
    uri: Uri,
) -> Response {
    let principal = match auth {
        Ok(Authenticated(principal)) => principal,
        Err(e) => return respond::refusal(media, &e),
    };
    let call = Call::new(&endpoint, media, principal);
    match request::params_from_query(uri.query().unwrap_or("")) {
        Ok(params) => call.single(params, true).await,
        Err(e) => call.refuse(e).await,
    }
}

/// `POST /graphql`: one operation or a batch (a JSON array).
pub async fn post(
    State(endpoint): State<Endpoint>,
    media: Media,
    auth: Result<Authenticated, AppError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let principal = match auth {
        Ok(Authenticated(principal)) => principal,
        Err(e) => return respond::refusal(media, &e),
    };
    let call = Call::new(&endpoint, media, principal);
    // `_large` keeps a large body's permit until the answer is made.
    match request::read_post(&endpoint.app.config, &headers, body).await {
        Ok((Posted::Single(Ok(params)), _large)) => call.single(params, false).await,
        Ok((Posted::Batch(items), _large)) => call.batch(items).await,
        Ok((Posted::Single(Err(e)), _)) | Err(e) => call.refuse(e).await,
    }
}

/// One authenticated request on its way through the stages.
struct Call<'a> {
    endpoint: &'a Endpoint,
    media: Media,
    principal: Arc<Principal>,
    /// What the answer may hold; kept (with its large-answer permit, if
    /// any) until the answer is serialized.
    budget: Arc<AnswerBudget>,
}

impl<'a> Call<'a> {
    fn new(endpoint: &'a Endpoint, media: Media, principal: Arc<Principal>) -> Self {
        Self {
            endpoint,
            media,
            principal,
            budget: Arc::new(AnswerBudget::new(endpoint.app.config.max_response_bytes)),
        }
    }

    fn app(&self) -> &AppState {
        &self.endpoint.app
    }

    /// One operation: answered from the read cache when it holds the answer
    /// at the project's current generation, executed otherwise (and stored
    /// when the document is cacheable).
    async fn single(self, params: Params, over_get: bool) -> Response {
        // The project's generation costs a Redis round trip when shared, so
        // it is read only for a request that has a stored answer or that
        // turns out cacheable; either way before execution.
        let cache = &self.app().read_cache;
        let key = cache.key_for(
            &self.principal,
            &params.query,
            params.operation_name.as_deref(),
            params.variables.as_ref(),
        );
        let mut generation = None;
        if let Some((stored, body)) = key.as_ref().and_then(|k| cache.stored(k)) {
            generation = cache.generation(&self.principal.project_id).await;
            if generation == Some(stored) {
                cache.count(true);
                return self.cached(body).await;
            }
        }
        let prepared =
            match document::prepare(&self.app().config, &self.principal, params, over_get) {
                Ok(prepared) => prepared,
                Err(e) => return self.refuse(e).await,
            };
        let mut store = None;
        if let Some(key) = key.filter(|_| prepared.is_cacheable()) {
            if generation.is_none() {
                generation = cache.generation(&self.principal.project_id).await;
            }
            if let Some(generation) = generation {
                cache.count(false);
                store = Some((key, generation));
            }
        }
        let label = prepared.label();
        let decision = match self.admit(1).await {
            Ok(decision) => decision,
            Err(refusal) => return refusal,
        };
        let resp = self.execute(prepared, decision).await;
        let answer = respond::answer(self.media, resp, &self.budget);
        // A large answer is not stored: it would push out many small ones,
        // and the cache's memory is counted on top of the answers in flight.
        let storable = answer.error_free && answer.bytes.len() <= budget::LARGE_ANSWER_BYTES;
        if let (Some((key, generation)), StatusCode::OK, true) = (store, answer.status, storable) {
            cache.put(key, generation, answer.bytes.clone());
        }
        let response = self.response(answer.status, answer.bytes);
        finish(response, label, answer.outcome, &decision)
    }

    /// A batch: every operation prepared first, then admitted as a whole.
    async fn batch(self, items: Vec<Value>) -> Response {
        // A whole batch refused answers one error object per operation, so
        // batching clients can match them up.
        let operations = items.len();
        if let Err(e) = request::check_batch(&self.app().config, &items) {
            return self.refuse_batch(e, operations).await;
        }
        let prepared: Result<Vec<Prepared>, AppError> = items
            .into_iter()
            .map(|item| {
                let params = request::params_from_json(item)?;
                document::prepare(&self.app().config, &self.principal, params, false)
            })
            .collect();
        let prepared = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return self.refuse_batch(e, operations).await,
        };
        let decision = match self.check(prepared.len() as u64).await {
            Ok(decision) => decision,
            Err((e, decision)) => {
                let refusal = respond::batch_refusal(self.media, &e, operations);
                return with_operations(
                    respond::with_rate_headers(refusal, &decision),
                    operations,
                    operations,
                );
            }
        };
        let mut responses = Vec::with_capacity(prepared.len());
        for op in prepared {
            responses.push(self.execute(op, decision).await);
        }
        let errored = responses.iter().filter(|r| !r.errors.is_empty()).count();
        let (status, bytes, outcome) = respond::batch(responses, &self.budget);
        let response = self.response(status, bytes);
        with_operations(
            finish(response, "batch", outcome, &decision),
            operations,
            errored,
        )
    }

    /// An answer's bytes; a large one keeps the request's budget (its
    /// permit) until they are sent.
    fn response(&self, status: StatusCode, bytes: Bytes) -> Response {
        if self.budget.is_large() {
            respond::held_response(status, self.media, bytes, Arc::clone(&self.budget))
        } else {
            respond::bytes_response(status, self.media, bytes)
        }
    }

    /// A cache hit: rate limited like any request, then the stored body.
    async fn cached(self, body: Bytes) -> Response {
        let decision = match self.admit(1).await {
            Ok(decision) => decision,
            Err(refusal) => return refusal,
        };
        let response = respond::bytes_response(StatusCode::OK, self.media, body);
        finish(response, "query", Outcome::OK, &decision)
    }

    /// A request refused before it counts: it costs nothing, but carries
    /// the rate-limit headers.
    async fn refuse(self, e: AppError) -> Response {
        let app = self.app();
        let limit = u64::try_from(self.principal.rate_limit_per_hour).unwrap_or(0);
        let decision = app
            .limiter
            .peek(&self.principal.key_id, limit, app.clock.now())
            .await;
        respond::with_rate_headers(respond::refusal(self.media, &e), &decision)
    }

    /// Like [`Call::refuse`], for a whole batch: one error object per operation.
    async fn refuse_batch(self, e: AppError, operations: usize) -> Response {
        let app = self.app();
        let limit = u64::try_from(self.principal.rate_limit_per_hour).unwrap_or(0);
        let decision = app
            .limiter
            .peek(&self.principal.key_id, limit, app.clock.now())
            .await;
        let refusal = respond::batch_refusal(self.media, &e, operations);
        with_operations(
            respond::with_rate_headers(refusal, &decision),
            operations,
            operations,
        )
    }

    /// Counts `cost` against the key's budget: the decision, or the 429.
    async fn admit(&self, cost: u64) -> Result<Decision, Response> {
        self.check(cost).await.map_err(|(refusal, decision)| {
            respond::with_rate_headers(respond::refusal(self.media, &refusal), &decision)
        })
    }

    /// Counts `cost` against the key's budget: the decision, or the
    /// `RATE_LIMITED` refusal with the figures for its headers.
    async fn check(&self, cost: u64) -> Result<Decision, (AppError, Decision)> {
        let app = self.app();
        let limit = u64::try_from(self.principal.rate_limit_per_hour).unwrap_or(0);
        let decision = app
            .limiter
            .check(&self.principal.key_id, limit, cost, app.clock.now())
            .await;
        if decision.allowed {
            return Ok(decision);
        }
        let refusal = AppError::RateLimited {
            retry_after: decision.retry_after.unwrap_or(1),
        };
        Err((refusal, decision))
    }

    /// Runs one prepared operation with the schema of the key's type.
    async fn execute(&self, op: Prepared, decision: Decision) -> async_graphql::Response {
        match op {
            Prepared::Answered(resp, _) => *resp,
            Prepared::Run { request, .. } => {
                let schema = self.endpoint.schemas.for_principal(&self.principal);
                let request = request
                    .data(Arc::clone(&self.principal))
                    .data(Arc::clone(self.app()))
                    .data(Arc::clone(&self.budget))
                    .data(decision);
                // Resolvers read the database: bounded by its deadline, and
                // refused at once while it is known to be unreachable.
                match self.app().db.health.guard(schema.execute(request)).await {
                    Ok(mut resp) => {
                        document::explain_limits(&mut resp, &self.app().config);
                        resp
                    }
                    Err(e) => async_graphql::Response::from_errors(vec![e.into_server_error()]),
                }
            }
        }
    }
}

fn finish(
    mut response: Response,
    label: &'static str,
    outcome: Outcome,
    decision: &Decision,
) -> Response {
    response.extensions_mut().insert(OperationLabel(label));
    response.extensions_mut().insert(outcome);
    respond::with_rate_headers(response, decision)
}

/// Says how many operations a batch's response answered, and how many of
/// them carried an error (for the key's usage).
fn with_operations(mut response: Response, total: usize, errored: usize) -> Response {
    response.extensions_mut().insert(Operations {
        total: total as u64,
        errored: errored as u64,
    });
    response
}
