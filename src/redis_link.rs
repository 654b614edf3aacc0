//! The one Redis connection of an instance, behind a circuit breaker. The
//! limiter's Redis store, the read cache's generations and the key
//! broadcast share it (an `Arc`); the key-change subscription keeps a
//! connection of its own but reports to the same breaker.
//!
//! While Redis answers (the breaker is closed) every call goes straight to
//! one multiplexed connection and may take at most [`CALL_TIMEOUT`]. The
//! first call that fails or times out opens the breaker. While it is open,
//! a call does not wait for Redis at all: it answers
//! [`Unanswered::BackingOff`] at once and its caller decides locally (the
//! limiter with its local store, the read cache by bypassing, the key
//! broadcast by leaving it to the database feed). Once a second one call
//! (single-flight, whoever comes first) is the probe: it reconnects and
//! runs within [`PROBE_TIMEOUT`], and its success closes the breaker.
//!
//! No lock is held across a connect or a call: the connection is cloned out
//! of a short synchronous lock. `redis`'s `ConnectionManager` is not used on
//! purpose: by default it retries a failed reconnect six times with
//! exponential backoff and has no response timeout, so one call could wait
//! for seconds; here the multiplexed connection gets connect and response
//! timeouts and the breaker does the reconnecting.
//!
//! Logging is per instance and the same for every Redis user: one warning
//! when the breaker opens, at most one a minute while it stays open, one
//! line when Redis answers again. `/metrics` carries `quire_redis_up`,
//! `quire_redis_probes_total{result}` and `quire_redis_calls_skipped_total`
//! from the start.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::AsyncConnectionConfig;

/// How long one call may take while Redis is believed up, before the
/// caller does without it (and the breaker opens).
pub const CALL_TIMEOUT: Duration = Duration::from_millis(250);
/// How long the probe (reconnect and call) may take while the breaker is
/// open: the most a request waits on a Redis that is down.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(250);
/// At most one probe per this interval.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// At most one "still unreachable" warning per this interval.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// What quire does without Redis (ends the "unreachable" warning).
const FALLBACK: &str = "rate limits fall back to this instance's local store, the read cache is bypassed, key changes travel through the database feed";

/// Why a call returned no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unanswered {
    /// The breaker is open and this call was not the probe: Redis was not
    /// tried, and no time was spent.
    BackingOff,
    /// Redis was tried and failed or timed out.
    Failed,
}

type Connecting = Shared<BoxFuture<'static, Result<MultiplexedConnection, String>>>;

/// The connection, tagged with the epoch it belongs to (the epoch moves
/// each time the breaker opens, so a late failure of an old connection
/// cannot open the breaker again after a probe closed it).
enum Slot {
    Empty,
    /// The first connection, being made; callers share the attempt.
    Connecting(Connecting, u64),
    Ready(MultiplexedConnection, u64),
}

/// The shared, breaker-guarded Redis connection of one instance.
pub struct RedisLink {
    client: redis::Client,
    slot: Mutex<Slot>,
    /// Breaker closed: Redis is believed to answer.
    up: AtomicBool,
    /// Moves each time the breaker opens.
    epoch: AtomicU64,
    /// A probe is in flight.
    probing: AtomicBool,
    started: Instant,
    /// Milliseconds since `started` before which no probe starts.
    next_probe_ms: AtomicI64,
    /// Milliseconds since `started` when the breaker last opened.
    down_since_ms: AtomicI64,
    /// Milliseconds since `started` of the last warning.
    warned_at_ms: AtomicI64,
    probes: AtomicU64,
    skipped: AtomicU64,
}

impl RedisLink {
    /// Prepares the link to `url`; connects on first use. Needs no runtime.
    pub fn new(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid QUIRE_REDIS_URL: {e}"))?;
        Self::describe_metrics();
        Ok(Self {
            client,
            slot: Mutex::new(Slot::Empty),
            up: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            started: Instant::now(),
            next_probe_ms: AtomicI64::new(0),
            down_since_ms: AtomicI64::new(0),
            warned_at_ms: AtomicI64::new(0),
            probes: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    /// Exports the link's figures at their starting values, so that they
    /// are in `/metrics` before anything happens.
    pub fn describe_metrics() {
        metrics::gauge!("quire_redis_up").set(1.0);
        for result in ["ok", "failed"] {
            metrics::counter!("quire_redis_probes_total", "result" => result).increment(0);
        }
        metrics::counter!("quire_redis_calls_skipped_total").increment(0);
    }

    fn elapsed_ms(&self) -> i64 {
        i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    /// The client, for what needs a connection of its own (a subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }

    /// Whether the breaker is closed (Redis answered last time).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// Probes started since the link was made (each waited for Redis at
    /// most [`PROBE_TIMEOUT`]).
    pub fn probes(&self) -> u64 {
        self.probes.load(Ordering::Relaxed)
    }

    /// Calls answered at once without trying Redis (breaker open).
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// Runs `call` on the connection: straight away while the breaker is
    /// closed (within [`CALL_TIMEOUT`]); while it is open, only when this
    /// call is the probe of this second (within [`PROBE_TIMEOUT`]), else
    /// `Err(BackingOff)` at once.
    pub async fn run<T, F, Fut>(&self, call: F) -> Result<T, Unanswered>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return self.probe(call).await;
        }
        let (conn, epoch) = match self.connection().await {
            Ok(ready) => ready,
            Err((cause, epoch)) => {
                self.trip(epoch, &cause);
                return Err(Unanswered::Failed);
            }
        };
        match tokio::time::timeout(CALL_TIMEOUT, call(conn)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => {
                self.trip(epoch, &e.to_string());
                Err(Unanswered::Failed)
            }
            Err(_) => {
                self.trip(epoch, "timed out");
                Err(Unanswered::Failed)
            }
        }
    }

    /// Says that Redis failed for a user with a connection of its own (the
    /// subscription): the breaker opens as if a call had failed.
    pub fn report_failure(&self, cause: &str) {
        if self.is_up() {
            self.trip(self.epoch.load(Ordering::Acquire), cause);
        }
    }

    /// The current connection, making the first one (shared by every
    /// caller waiting for it) when there is none.
    async fn connection(&self) -> Result<(MultiplexedConnection, u64), (String, u64)> {
        let (attempt, epoch) = {
            let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Slot::Ready(conn, epoch) => return Ok((conn.clone(), *epoch)),
                Slot::Connecting(attempt, epoch) => (attempt.clone(), *epoch),
                Slot::Empty => {
                    let epoch = self.epoch.load(Ordering::Acquire);
                    let attempt = connect(self.client.clone()).boxed().shared();
                    *slot = Slot::Connecting(attempt.clone(), epoch);
                    (attempt, epoch)
                }
            }
        };
        let conn = match tokio::time::timeout(CALL_TIMEOUT, attempt).await {
            Ok(Ok(conn)) => conn,
            Ok(Err(cause)) => return Err((cause, epoch)),
            Err(_) => return Err(("connecting timed out".to_owned(), epoch)),
        };
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(&*slot, Slot::Connecting(_, e) if *e == epoch) {
            *slot = Slot::Ready(conn.clone(), epoch);
        }
        Ok((conn, epoch))
    }

    /// While the breaker is open: runs `call` on a fresh connection if no
    /// probe ran in the last [`PROBE_INTERVAL`] and none is in flight.
    async fn probe<T, F, Fut>(&self, call: F) -> Result<T, Unanswered>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let now = self.elapsed_ms();
        if now < self.next_probe_ms.load(Ordering::Acquire)
            || self.probing.swap(true, Ordering::AcqRel)
        {
            self.skip();
            return Err(Unanswered::BackingOff);
        }
        // Cleared on every exit, a cancelled probe's included.
        let _probing = ProbingGuard(&self.probing);
        if now < self.next_probe_ms.load(Ordering::Acquire) {
            // Another probe ran between the check and the flag.
            self.skip();
            return Err(Unanswered::BackingOff);
        }
        // Set before trying, so a cancelled probe still counts for its second.
        self.next_probe_ms
            .store(now + PROBE_INTERVAL.as_millis() as i64, Ordering::Release);
        self.probes.fetch_add(1, Ordering::Relaxed);
        let epoch = self.epoch.load(Ordering::Acquire);
        let attempt = async {
            let conn = connect(self.client.clone()).await?;
            let value = call(conn.clone()).await.map_err(|e| e.to_string())?;
            Ok::<_, String>((conn, value))
        };
        let outcome = match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err("timed out".to_owned()),
        };
        match outcome {
            Ok((conn, value)) => {
                metrics::counter!("quire_redis_probes_total", "result" => "ok").increment(1);
                *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Slot::Ready(conn, epoch);
                if !self.up.swap(true, Ordering::AcqRel) {
                    metrics::gauge!("quire_redis_up").set(1.0);
                    let down_for_s = (now - self.down_since_ms.load(Ordering::Acquire)) / 1000;
                    tracing::warn!(down_for_s, "Redis answers again: shared rate limits, read cache and key broadcast resume");
                }
                Ok(value)
            }
            Err(cause) => {
                metrics::counter!("quire_redis_probes_total", "result" => "failed").increment(1);
                let last = self.warned_at_ms.load(Ordering::Acquire);
                if now - last >= WARN_INTERVAL.as_millis() as i64 {
                    self.warned_at_ms.store(now, Ordering::Release);
                    let down_for_s = (now - self.down_since_ms.load(Ordering::Acquire)) / 1000;
                    tracing::warn!(%cause, down_for_s, "Redis is still unreachable: {FALLBACK}");
                }
                Err(Unanswered::Failed)
            }
        }
    }

    fn skip(&self) {
        self.skipped.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("quire_redis_calls_skipped_total").increment(1);
    }

    /// Opens the breaker, once per epoch: drops the connection, and leaves
    /// Redis alone until the next probe is due.
    fn trip(&self, epoch: u64, cause: &str) {
        if self
            .epoch
            .compare_exchange(epoch, epoch + 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return; // another caller opened it for this connection already
        }
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Slot::Empty;
        let now = self.elapsed_ms();
        self.next_probe_ms
            .store(now + PROBE_INTERVAL.as_millis() as i64, Ordering::Release);
        if self.up.swap(false, Ordering::AcqRel) {
            metrics::gauge!("quire_redis_up").set(0.0);
            self.down_since_ms.store(now, Ordering::Release);
            self.warned_at_ms.store(now, Ordering::Release);
            tracing::warn!(%cause, "Redis is unreachable: {FALLBACK}; trying it again once a second");
        }
    }
}

struct ProbingGuard<'a>(&'a AtomicBool);

impl Drop for ProbingGuard<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A new multiplexed connection whose connect and every response are bounded.
async fn connect(client: redis::Client) -> Result<MultiplexedConnection, String> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(PROBE_TIMEOUT)
        .set_response_timeout(CALL_TIMEOUT);
    let attempt = client.get_multiplexed_async_connection_with_config(&config);
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("connecting timed out".to_owned()),
    }
}

/// Pause before subscribing again after a failure.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);
/// How long subscribing may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Messages on one Redis channel: published through the shared link
/// without waiting, received by a subscription of its own that is taken
/// again after failures (only once the link's probe answers). Used where a
/// database feed is the guarantee and Redis only makes it faster (key
/// changes, event wake-ups).
pub struct Broadcast {
    link: Arc<RedisLink>,
    channel: &'static str,
}

impl Broadcast {
    /// A broadcaster on `channel` through the instance's Redis link.
    pub fn new(link: Arc<RedisLink>, channel: &'static str) -> Self {
        Self { link, channel }
    }

    /// Publishes `message`; never waits (a background task sends; the
    /// caller's database feed covers a publish that fails).
    pub fn publish(self: &Arc<Self>, message: &str) {
        let this = Arc::clone(self);
        let message = message.to_owned();
        tokio::spawn(async move {
            let channel = this.channel;
            let sent = this
                .link
                .run(|mut conn| async move {
                    redis::cmd("PUBLISH")
                        .arg(channel)
                        .arg(&message)
                        .query_async::<i64>(&mut conn)
                        .await
                })
                .await;
            if sent.is_err() {
                tracing::debug!(channel, "a message was not published to Redis");
            }
        });
    }

    /// Calls `on_message` with every message published by any instance,
    /// until the process ends; resubscribes after failures.
    pub fn spawn_listener(
        self: &Arc<Self>,
        on_message: impl Fn(&str) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let reachable =
                    this.link
                        .run(|mut conn| async move {
                            redis::cmd("PING").query_async::<()>(&mut conn).await
                        })
                        .await
                        .is_ok();
                if reachable {
                    let subscribed = tokio::time::timeout(SUBSCRIBE_TIMEOUT, async {
                        let mut pubsub = this.link.client().get_async_pubsub().await?;
                        pubsub.subscribe(this.channel).await?;
                        Ok::<_, redis::RedisError>(pubsub)
                    })
                    .await;
                    match subscribed {
                        Ok(Ok(mut pubsub)) => {
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                if let Ok(message) = msg.get_payload::<String>() {
                                    on_message(&message);
                                }
                            }
                            this.link.report_failure("a Redis subscription ended");
                        }
                        Ok(Err(e)) => this.link.report_failure(&e.to_string()),
                        Err(_) => this.link.report_failure("subscribing timed out"),
                    }
                }
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        })
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A "paused Redis": accepts connections and never answers.
    async fn silent_server() -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        (format!("redis://127.0.0.1:{port}"), task)
    }

    async fn ping(link: &RedisLink) -> Result<(), Unanswered> {
        link.run(|mut c| async move { redis::cmd("PING").query_async::<()>(&mut c).await })
            .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_silent_redis_is_waited_for_by_one_probe_a_second() {
        let (url, _server) = silent_server().await;
        let link = Arc::new(RedisLink::new(&url).unwrap());
        // The first calls wait for the first connection, time out, and
        // open the breaker.
        assert_eq!(ping(&link).await, Err(Unanswered::Failed));
        assert!(!link.is_up());

        // 200 concurrent calls, repeated over about 2.5 s: at most one per
        // second waits (the probe); the others answer at once.
        let started = Instant::now();
        let mut slow = 0;
        while started.elapsed() < Duration::from_millis(2_500) {
            let calls: Vec<_> = (0..200)
                .map(|_| {
                    let link = link.clone();
                    tokio::spawn(async move {
                        let t = Instant::now();
                        let r = ping(&link).await;
                        (r, t.elapsed())
                    })
                })
                .collect();
            for call in calls {
                let (r, took) = call.await.unwrap();
                assert!(r.is_err());
                if took > Duration::from_millis(100) {
                    slow += 1;
                    assert!(took < Duration::from_secs(2), "a call took {took:?}");
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let probes = link.probes();
        assert!((1..=4).contains(&probes), "{probes} probes in 2.5 s");
        assert!(slow <= probes, "{slow} slow calls, {probes} probes");
        assert!(link.skipped() > 1_000, "{} skipped", link.skipped());
    }

    #[tokio::test]
    async fn a_dead_port_fails_fast_and_is_probed_once_a_second() {
        // Nothing listens here (bound, then closed).
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let link = RedisLink::new(&format!("redis://127.0.0.1:{port}")).unwrap();
        assert_eq!(ping(&link).await, Err(Unanswered::Failed));
        assert_eq!(ping(&link).await, Err(Unanswered::BackingOff));
        link.report_failure("ignored while down");
        assert_eq!(link.probes(), 0);
        tokio::time::sleep(PROBE_INTERVAL).await;
        assert_eq!(ping(&link).await, Err(Unanswered::Failed));
        assert_eq!(link.probes(), 1);
        assert!(!link.is_up());
    }
}
