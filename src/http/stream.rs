//! `GET /events/stream`: the project's events as Server-Sent Events (SPEC
//! §9). The key comes in `x-api-key` or `Authorization: Bearer`, needs
//! `notifications:read`, and the connection counts once against its budget.
//! Each message's `id:` is the event id and its `data:` the event as JSON;
//! `Last-Event-ID` resumes after that event (without it the stream starts
//! at the events committed from now on); a comment every 15 s keeps
//! proxies from closing an idle stream.
//!
//! The stream holds at most one page of events: it reads the next page from
//! the database only when the client has taken the last one, so a slow
//! client costs nothing but its connection (and the server closes a
//! connection whose writes stall for 30 s; the client resumes with
//! `Last-Event-ID`). New events wake it at once on this instance and within
//! a poll of [`crate::events::hub::POLL`] on the others.

use std::collections::VecDeque;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use entity::events;
use tokio::sync::watch;
use tokio::time::Instant;

use super::graphql::respond::with_rate_headers;
use crate::app::AppState;
use crate::auth::scopes::Scope;
use crate::error::AppError;
use crate::events::event_json;
use crate::events::feed::{self, FeedQuery};

/// How long a stream stays silent before it sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events read (and held) at once per stream.
const PAGE: u64 = 100;

/// Counts the open streams in `/metrics` while it lives.
struct Open;

impl Open {
    fn new() -> Self {
        metrics::gauge!("quire_event_streams_open").increment(1.0);
        Open
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        metrics::gauge!("quire_event_streams_open").decrement(1.0);
    }
}

/// One stream's position and what it holds.
struct Follow {
    app: AppState,
    project_id: String,
    live_only: bool,
    cursor: i64,
    wake: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    queue: VecDeque<events::Model>,
    last_sent: Instant,
    greeted: bool,
    _open: Open,
}

impl Follow {
    /// The next chunk of the body; `None` ends the stream.
    async fn next(&mut self) -> Option<Bytes> {
        if !self.greeted {
            self.greeted = true;
            self.last_sent = Instant::now();
            // Clients reconnect after 1 s when the connection drops.
            return Some(Bytes::from_static(b"retry: 1000\n\n"));
        }
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(e) = self.queue.pop_front() {
                self.cursor = e.id;
                self.last_sent = Instant::now();
                let data = event_json(&e);
                return Some(Bytes::from(format!("id: {}\ndata: {data}\n\n", e.id)));
            }
            // Seen before reading: a commit during the read wakes us again.
            self.wake.borrow_and_update();
            let q = FeedQuery {
                after: Some(self.cursor),
                limit: PAGE,
                types: None,
                live_only: self.live_only,
            };
            match feed::read(&self.app.db.conn, &self.project_id, &q).await {
                Ok(rows) if !rows.is_empty() => {
                    self.queue.extend(rows);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::info!(error = %e, "closing an event stream: the database did not answer");
                    return None;
                }
            }
            tokio::select! {
                changed = self.wake.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.closing.changed() => return None,
                () = tokio::time::sleep_until(self.last_sent + KEEP_ALIVE) => {
                    self.last_sent = Instant::now();
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
            }
        }
    }
}

/// `GET /events/stream`.
pub async fn events_stream(State(app): State<AppState>, headers: HeaderMap) -> Response {
    let principal = match app.authenticator.authenticate(&headers).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let resume = match headers.get("last-event-id") {
        None => None,
        Some(v) => match v
            .to_str()
            .ok()
            .and_then(|s| feed::parse_cursor(s.trim()).ok())
        {
            Some(id) => Some(id),
            None => {
                return AppError::BadRequest(
                    "Last-Event-ID must be the id of an event this stream sent".into(),
                )
                .into_response()
            }
        },
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
        return with_rate_headers(refusal.into_response(), &decision);
    }
    if !principal.has(Scope::NotificationsRead) {
        let refusal = AppError::Forbidden("this key lacks the scope \"notifications:read\"".into());
        return with_rate_headers(refusal.into_response(), &decision);
    }
    // Subscribed before the first read: no commit falls in between.
    let wake = app.events.hub.subscribe(&principal.project_id);
    let cursor = match resume {
        Some(id) => id,
        None => match feed::latest_id(&app.db.conn, &principal.project_id).await {
            Ok(id) => id,
            Err(e) => return with_rate_headers(AppError::from(e).into_response(), &decision),
        },
    };
    let closing = app.events.hub.closing();
    let follow = Follow {
        project_id: principal.project_id.clone(),
        live_only: feed::live_only(&principal),
        app,
        cursor,
        wake,
        closing,
        queue: VecDeque::new(),
        last_sent: Instant::now(),
        greeted: false,
        _open: Open::new(),
    };
    let body = futures::stream::unfold(follow, |mut f| async move {
        f.next()
            .await
            .map(|chunk| (Ok::<_, std::convert::Infallible>(chunk), f))
    });
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    with_rate_headers(response, &decision)
}
