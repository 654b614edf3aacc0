//! One error type and one code table.
//!
//! Every refusal quire makes — of a whole HTTP request or of one GraphQL
//! field — is an [`AppError`]; each error has a [`Code`], and [`Code::spec`]
//! is the one table that maps a code to its `extensions.code` and its HTTP
//! status. Bodies are always GraphQL-shaped and always carry the code.
//!
//! Internal causes keep their source chain; they are logged where they are
//! turned into a response and reach the client only as an opaque message.

use std::fmt;
use std::sync::Arc;

use async_graphql::ErrorExtensions;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// The message every authentication failure shares, so keys cannot be probed.
pub const UNAUTHENTICATED_MESSAGE: &str = "invalid or missing API key";

/// An internal cause with its source chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What kind of refusal an error is: the row of the code table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Code {
    Unauthenticated,
    RateLimited,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    ServiceUnavailable,
    Internal,
    BadRequest,
    MethodNotAllowed,
    NotAcceptable,
    PayloadTooLarge,
    UnsupportedMediaType,
    HeadersTooLarge,
    GraphqlParseFailed,
    GraphqlValidationFailed,
    ResponseTooLarge,
}

impl Code {
    /// The code table: `extensions.code` and the HTTP status of a response
    /// this error decides alone (a refused request, a REST endpoint).
    ///
    /// Inside a GraphQL response, field errors answer 200 with `data` for
    /// what was allowed; only [`Code::decides_graphql_status`] codes set the
    /// status of the whole answer.
    pub const fn spec(self) -> (&'static str, StatusCode) {
        match self {
            Code::Unauthenticated => ("UNAUTHENTICATED", StatusCode::UNAUTHORIZED),
            Code::RateLimited => ("RATE_LIMITED", StatusCode::TOO_MANY_REQUESTS),
            Code::Forbidden => ("FORBIDDEN", StatusCode::FORBIDDEN),
            Code::BadUserInput => ("BAD_USER_INPUT", StatusCode::BAD_REQUEST),
            Code::NotFound => ("NOT_FOUND", StatusCode::NOT_FOUND),
            Code::Conflict => ("CONFLICT", StatusCode::CONFLICT),
            Code::ServiceUnavailable => ("SERVICE_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE),
            Code::Internal => ("INTERNAL_SERVER_ERROR", StatusCode::INTERNAL_SERVER_ERROR),
            Code::BadRequest => ("BAD_REQUEST", StatusCode::BAD_REQUEST),
            Code::MethodNotAllowed => ("METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED),
            Code::NotAcceptable => ("NOT_ACCEPTABLE", StatusCode::NOT_ACCEPTABLE),
            Code::PayloadTooLarge => ("PAYLOAD_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE),
            Code::UnsupportedMediaType => {
                ("UNSUPPORTED_MEDIA_TYPE", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Code::HeadersTooLarge => (
                "REQUEST_HEADER_FIELDS_TOO_LARGE",
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
            Code::GraphqlParseFailed => ("GRAPHQL_PARSE_FAILED", StatusCode::BAD_REQUEST),
            Code::GraphqlValidationFailed => ("GRAPHQL_VALIDATION_FAILED", StatusCode::BAD_REQUEST),
            // The request was fine but asks for more than one answer may
            // hold: the client's to narrow (a smaller `limit`, fewer fields).
            Code::ResponseTooLarge => ("RESPONSE_TOO_LARGE", StatusCode::BAD_REQUEST),
        }
    }

    /// The `extensions.code` string.
    pub const fn as_str(self) -> &'static str {
        self.spec().0
    }

    /// The HTTP status of a response this error decides alone.
    pub const fn status(self) -> StatusCode {
        self.spec().1
    }

    /// Whether a field error of this code decides the status of the whole
    /// GraphQL answer (the database is gone: 503, so clients retry).
    pub const fn decides_graphql_status(self) -> bool {
        matches!(self, Code::ServiceUnavailable)
    }

    /// Sets this code on a GraphQL error (as `extensions.code`, and as the
    /// error's typed source, which the HTTP layer reads back without
    /// re-parsing anything).
    pub fn mark(self, e: &mut async_graphql::ServerError) {
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", self.as_str());
        e.source = Some(Arc::new(self));
    }

    /// The code of a GraphQL error marked by quire, if any.
    pub fn of(e: &async_graphql::ServerError) -> Option<Code> {
        e.source::<Code>().copied()
    }
}

/// Everything that can go wrong in quire, from the client's point of view.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into
/// a code-less error, so `?` in a resolver must go through the `From` below.
#[derive(Debug)]
pub enum AppError {
    /// No key, malformed, bad checksum, unknown, revoked or expired.
    Unauthenticated,
    /// The key's hourly budget is spent.
    RateLimited { retry_after: u64 },
    /// A missing scope or a view the key may not have.
    Forbidden(String),
    /// Invalid input; `field` names the offending input field.
    BadUserInput {
        message: String,
        field: Option<String>,
    },
    /// A missing thing, where an error is due.
    NotFound(String),
    /// A version or name conflict.
    Conflict(String),
    /// The database cannot be reached; the cause is logged, not shown.
    Unavailable(BoxError),
    /// A bug or an unexpected failure; the cause is logged, not shown.
    Internal(BoxError),
    /// A request that cannot be read (bad JSON, bad parameters, a batch
    /// over the limit).
    BadRequest(String),
    /// A mutation over GET.
    MethodNotAllowed(String),
    /// Nothing acceptable in `Accept`.
    NotAcceptable,
    /// A body over the size limit.
    PayloadTooLarge(String),
    /// A `Content-Type` quire does not read.
    UnsupportedMediaType(String),
    /// Request headers over the size limit.
    HeadersTooLarge,
    /// An answer that would be larger than `QUIRE_MAX_RESPONSE_BYTES`.
    ResponseTooLarge(String),
}

impl AppError {
    /// A `BAD_USER_INPUT` error that names no field.
    pub fn bad_input(message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            message: message.into(),
            field: None,
        }
    }

    /// A `BAD_USER_INPUT` error about one input field.
    pub fn bad_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::BadUserInput {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// An internal error with its cause.
    pub fn internal(cause: impl Into<BoxError>) -> Self {
        AppError::Internal(cause.into())
    }

    /// The database (or another dependency) cannot be reached.
    pub fn unavailable(cause: impl Into<BoxError>) -> Self {
        AppError::Unavailable(cause.into())
    }

    /// The database is known to be unreachable (a probe said so and logged
    /// it once): refused without a log line per request.
    pub fn unreachable() -> Self {
        AppError::Unavailable(Box::new(KnownUnreachable))
    }

    /// Whether this is a refusal by a rule (bad input, a conflict, a missing
    /// thing, a missing scope…), decided before anything was written, as
    /// opposed to a failure of the database or of quire itself.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, AppError::Internal(_) | AppError::Unavailable(_))
    }

    /// The row of the code table this error belongs to.
    pub fn code(&self) -> Code {
        match self {
            AppError::Unauthenticated => Code::Unauthenticated,
            AppError::RateLimited { .. } => Code::RateLimited,
            AppError::Forbidden(_) => Code::Forbidden,
            AppError::BadUserInput { .. } => Code::BadUserInput,
            AppError::NotFound(_) => Code::NotFound,
            AppError::Conflict(_) => Code::Conflict,
            AppError::Unavailable(_) => Code::ServiceUnavailable,
            AppError::Internal(_) => Code::Internal,
            AppError::BadRequest(_) => Code::BadRequest,
            AppError::MethodNotAllowed(_) => Code::MethodNotAllowed,
            AppError::NotAcceptable => Code::NotAcceptable,
            AppError::PayloadTooLarge(_) => Code::PayloadTooLarge,
            AppError::UnsupportedMediaType(_) => Code::UnsupportedMediaType,
            AppError::HeadersTooLarge => Code::HeadersTooLarge,
            AppError::ResponseTooLarge(_) => Code::ResponseTooLarge,
        }
    }

    /// The HTTP status when this error decides the whole response.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The message the client sees (internal causes are never shown).
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated => UNAUTHENTICATED_MESSAGE.to_owned(),
            AppError::RateLimited { retry_after } => {
                format!("rate limit exceeded: retry in {retry_after} s")
            }
            AppError::Forbidden(m)
            | AppError::NotFound(m)
            | AppError::Conflict(m)
            | AppError::BadRequest(m)
            | AppError::MethodNotAllowed(m)
            | AppError::PayloadTooLarge(m)
            | AppError::UnsupportedMediaType(m)
            | AppError::ResponseTooLarge(m) => m.clone(),
            AppError::BadUserInput { message, .. } => message.clone(),
            AppError::Unavailable(_) => {
                "service unavailable: the database cannot be reached".to_owned()
            }
            AppError::Internal(_) => "internal server error".to_owned(),
            AppError::NotAcceptable => {
                "accept application/graphql-response+json or application/json (utf-8)".to_owned()
            }
            AppError::HeadersTooLarge => "request headers too large".to_owned(),
        }
    }

    /// The full cause, for operators (logs and command-line output); the
    /// client's message for errors that have no hidden cause.
    pub fn cause(&self) -> String {
        match self {
            AppError::Internal(cause) | AppError::Unavailable(cause) => {
                chain(cause.as_ref()).to_string()
            }
            other => other.message(),
        }
    }

    /// A whole-operation GraphQL error carrying this error's code.
    pub fn into_server_error(self) -> async_graphql::ServerError {
        self.log_cause();
        let mut e = async_graphql::ServerError::new(self.message(), None);
        self.code().mark(&mut e);
        e
    }

    /// The GraphQL-shaped body `{"errors":[{message, extensions:{code}}]}`.
    pub fn to_body(&self) -> serde_json::Value {
        self.log_cause();
        serde_json::json!({
            "errors": [{ "message": self.message(), "extensions": { "code": self.code().as_str() } }]
        })
    }

    fn log_cause(&self) {
        match self {
            AppError::Internal(cause) => {
                tracing::error!(cause = %chain(cause.as_ref()), "internal error")
            }
            AppError::Unavailable(cause) if !cause.is::<KnownUnreachable>() => {
                tracing::warn!(cause = %chain(cause.as_ref()), "database unavailable")
            }
            _ => {}
        }
    }
}

/// An error and its sources, `outer: inner: innermost`.
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

/// Displays `e` with its whole source chain.
pub fn chain<'a>(e: &'a (dyn std::error::Error + 'static)) -> Chain<'a> {
    Chain(e)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}

/// A GraphQL-shaped JSON body for a response the error decides alone;
/// the HTTP layer sets the negotiated media type where it knows one.
impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::to_vec(&self.to_body()).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        with_status_headers(response)
    }
}

/// What `Retry-After` says on a 503, in seconds: the database is probed
/// several times a second while it is unreachable.
pub const UNAVAILABLE_RETRY_AFTER_SECONDS: u64 = 1;

/// Adds the headers a status calls for: `Retry-After` on a 503 that has
/// none, `WWW-Authenticate: Bearer` on every 401.
pub fn with_status_headers(mut response: Response) -> Response {
    match response.status() {
        StatusCode::SERVICE_UNAVAILABLE => {
            response
                .headers_mut()
                .entry(header::RETRY_AFTER)
                .or_insert(HeaderValue::from(UNAVAILABLE_RETRY_AFTER_SECONDS));
        }
        StatusCode::UNAUTHORIZED => {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        _ => {}
    }
    response
}

/// The cause of [`AppError::unreachable`].
#[derive(Debug, thiserror::Error)]
#[error("the database is unreachable")]
struct KnownUnreachable;

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        let unavailable = match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
            DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))
            | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) => is_connection_error(e),
            _ => false,
        };
        if unavailable {
            AppError::Unavailable(Box::new(err))
        } else {
            AppError::Internal(Box::new(err))
        }
    }
}

/// Whether the database could not answer (rather than refused what was asked):
/// the connection failed, PostgreSQL cancelled a statement that ran past
/// `statement_timeout` (57014), is shutting down (57P01–57P03) or has no
/// connection left (53300), or SQLite's busy timeout ran out.
fn is_connection_error(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            // PostgreSQL's SQLSTATEs, then SQLite's busy and locked codes
            // (its busy timeout ran out).
            Some(
                "57014"
                    | "57P01"
                    | "57P02"
                    | "57P03"
                    | "53300"
                    | "5"
                    | "6"
                    | "261"
                    | "262"
                    | "517"
                    | "773"
            )
        ),
        _ => false,
    }
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.log_cause();
        let code = err.code();
        let field = match &err {
            AppError::BadUserInput { field, .. } => field.clone(),
            _ => None,
        };
        let mut e = async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code.as_str());
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
        });
        e.source = Some(Arc::new(code));
        e
    }
}

/// Result alias for services.
pub type AppResult<T> = Result<T, AppError>;

/// Why quire could not start (configuration, database): for the operator,
/// never a client.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting that cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database cannot be opened or migrated.
    #[error("cannot open the database: {0}")]
    Database(String),
}

impl From<AppError> for StartError {
    fn from(e: AppError) -> Self {
        StartError::Database(e.cause())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_distinct_and_every_refusal_is_an_error_status() {
        let all = [
            Code::Unauthenticated,
            Code::RateLimited,
            Code::Forbidden,
            Code::BadUserInput,
            Code::NotFound,
            Code::Conflict,
            Code::ServiceUnavailable,
            Code::Internal,
            Code::BadRequest,
            Code::MethodNotAllowed,
            Code::NotAcceptable,
            Code::PayloadTooLarge,
            Code::UnsupportedMediaType,
            Code::HeadersTooLarge,
            Code::GraphqlParseFailed,
            Code::GraphqlValidationFailed,
            Code::ResponseTooLarge,
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), all.len());
        assert!(all
            .iter()
            .all(|c| c.status().is_client_error() || c.status().is_server_error()));
    }

    #[test]
    fn the_cause_keeps_its_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = AppError::internal(Outer(std::io::Error::other("inner")));
        assert_eq!(e.cause(), "outer: inner");
        assert_eq!(e.message(), "internal server error");
    }
}
