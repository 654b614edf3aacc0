//! One error type and one code table: each variant maps once to an HTTP
//! status and a GraphQL `extensions.code`.
//!
//! Internal causes are logged where they are turned into a response and reach
//! the client only as an opaque message.

use async_graphql::ErrorExtensions;
use axum::http::StatusCode;

/// The message every authentication failure shares, so keys cannot be probed.
pub const UNAUTHENTICATED_MESSAGE: &str = "invalid or missing API key";

/// Everything that can go wrong in quire, from the client's point of view.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type into
/// a code-less error, so `?` in a resolver must go through the `From` below.
#[derive(Debug)]
pub enum AppError {
    /// 401: no key, malformed, bad checksum, unknown, revoked or expired.
    Unauthenticated,
    /// 429: the key's hourly budget is spent.
    RateLimited { retry_after: u64 },
    /// 200 + `FORBIDDEN`: a missing scope or a view the key may not have.
    Forbidden(String),
    /// 200 + `BAD_USER_INPUT`; `field` names the offending input field.
    BadUserInput {
        message: String,
        field: Option<String>,
    },
    /// 200 + `NOT_FOUND`.
    NotFound(String),
    /// 200 + `CONFLICT`: a version or name conflict.
    Conflict(String),
    /// 503: the database cannot be reached.
    Unavailable(String),
    /// 500: a bug or an unexpected failure; the cause is logged, not shown.
    Internal(String),
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

    /// The message the client sees (internal causes are never shown).
    pub fn message(&self) -> String {
        match self {
            AppError::Unauthenticated => UNAUTHENTICATED_MESSAGE.to_owned(),
            AppError::RateLimited { retry_after } => {
                format!("rate limit exceeded: retry in {retry_after} s")
            }
            AppError::Forbidden(m) | AppError::NotFound(m) | AppError::Conflict(m) => m.clone(),
            AppError::BadUserInput { message, .. } => message.clone(),
            AppError::Unavailable(_) => {
                "service unavailable: the database cannot be reached".to_owned()
            }
            AppError::Internal(_) => "internal server error".to_owned(),
        }
    }

    /// The code table: `extensions.code` and HTTP status per variant.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Unauthenticated => "UNAUTHENTICATED",
            AppError::RateLimited { .. } => "RATE_LIMITED",
            AppError::Forbidden(_) => "FORBIDDEN",
            AppError::BadUserInput { .. } => "BAD_USER_INPUT",
            AppError::NotFound(_) => "NOT_FOUND",
            AppError::Conflict(_) => "CONFLICT",
            AppError::Unavailable(_) => "SERVICE_UNAVAILABLE",
            AppError::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The HTTP status when this error decides the whole response.
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::Unauthenticated => StatusCode::UNAUTHORIZED,
            AppError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::OK,
        }
    }

    /// The GraphQL-shaped body `{"errors":[{message, extensions:{code}}]}`.
    pub fn to_body(&self) -> serde_json::Value {
        self.log_cause();
        serde_json::json!({
            "errors": [{ "message": self.message(), "extensions": { "code": self.code() } }]
        })
    }

    fn log_cause(&self) {
        match self {
            AppError::Internal(cause) => tracing::error!(%cause, "internal error"),
            AppError::Unavailable(cause) => tracing::warn!(%cause, "database unavailable"),
            _ => {}
        }
    }
}

impl From<sea_orm::DbErr> for AppError {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::DbErr;
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => AppError::Unavailable(err.to_string()),
            DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))
            | DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
                if is_connection_error(e) =>
            {
                AppError::Unavailable(err.to_string())
            }
            _ => AppError::Internal(err.to_string()),
        }
    }
}

fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Tls(_)
    )
}

impl From<AppError> for async_graphql::Error {
    fn from(err: AppError) -> Self {
        err.log_cause();
        let code = err.code();
        let field = match &err {
            AppError::BadUserInput { field, .. } => field.clone(),
            _ => None,
        };
        async_graphql::Error::new(err.message()).extend_with(|_, ext| {
            ext.set("code", code);
            if let Some(field) = &field {
                ext.set("field", field.as_str());
            }
        })
    }
}

/// Result alias for services.
pub type AppResult<T> = Result<T, AppError>;
