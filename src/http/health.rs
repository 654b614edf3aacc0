//! `/healthz` (the process is up), `/readyz` (the database answers) and
//! `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;

pub async fn healthz() -> &'static str {
    "ok"
}

pub async fn readyz(State(app): State<AppState>) -> Response {
    match app.db.ping().await {
        Ok(()) => "ok".into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn metrics(State(app): State<AppState>) -> Response {
    app.read_cache.publish_metrics();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}
