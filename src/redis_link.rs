//! One Redis connection that is made lazily and given up on quickly: a call
//! that fails or takes longer than a second leaves Redis alone for a second
//! (so a dead Redis adds no latency to requests), drops the connection so the
//! next try reconnects, and warns at most once a minute. The limiter's Redis
//! store, the read cache's generations and the key broadcast each hold one.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

/// How long one Redis call may take before the caller does without it.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long to leave Redis alone after a failure.
const BACKOFF: Duration = Duration::from_secs(1);

/// Why a call returned no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// Redis failed recently; it was not tried.
    BackingOff,
    /// Redis was tried and failed or timed out.
    Failed,
}

/// A lazily made, quickly abandoned Redis connection.
pub struct RedisLink {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    /// What the warning says quire does without Redis.
    fallback: &'static str,
    started: Instant,
    /// Milliseconds since `started` before which Redis is not tried again.
    retry_at_ms: AtomicI64,
    /// Milliseconds since `started` of the last warning (-1: never).
    warned_at_ms: AtomicI64,
    /// Whether the last call reached Redis.
    up: AtomicBool,
}

impl RedisLink {
    /// Prepares a link to `url`; connects on first use. `fallback` finishes
    /// the sentence "Redis is unreachable: …" in the warning.
    pub fn new(url: &str, fallback: &'static str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid QUIRE_REDIS_URL: {e}"))?;
        Ok(Self {
            client,
            conn: Mutex::new(None),
            fallback,
            started: Instant::now(),
            retry_at_ms: AtomicI64::new(0),
            warned_at_ms: AtomicI64::new(-1),
            up: AtomicBool::new(true),
        })
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The client, for what needs a connection of its own (a subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Whether the last call reached Redis.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs `call` on the connection, within the timeout, unless Redis failed
    /// in the last second.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, Unanswered>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if self.elapsed_ms() < self.retry_at_ms.load(Ordering::Relaxed) {
            return Err(Unanswered::BackingOff);
        }
        let attempt = async {
            let conn = self.connection().await?;
            call(conn).await
        };
        match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(value)) => {
                self.up.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(e)) => {
                self.failed(&e.to_string()).await;
                Err(Unanswered::Failed)
            }
            Err(_) => {
                self.failed("timed out").await;
                Err(Unanswered::Failed)
            }
        }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut guard = self.conn.lock().await;
        match guard.as_ref() {
            Some(c) => Ok(c.clone()),
            None => {
                let c = ConnectionManager::new(self.client.clone()).await?;
                *guard = Some(c.clone());
                Ok(c)
            }
        }
    }

    async fn failed(&self, cause: &str) {
        self.up.store(false, Ordering::Relaxed);
        let now = self.elapsed_ms();
        self.retry_at_ms
            .store(now + BACKOFF.as_millis() as i64, Ordering::Relaxed);
        // Drop the connection so the next try reconnects from scratch.
        *self.conn.lock().await = None;
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        if last < 0 || now - last >= 60_000 {
            self.warned_at_ms.store(now, Ordering::Relaxed);
            tracing::warn!(%cause, "Redis is unreachable: {}", self.fallback);
        }
    }
}
