//! The server loop (SPEC §1 "connections and shutdown"): HTTP/1 connections
//! served by hyper with a header read timeout (which also closes idle
//! keep-alive connections), request bodies that may not stall (tower-http's
//! `TimeoutBody`), a cap on open connections, and a shutdown in two steps:
//! [`accept_until`] stops accepting and returns a [`Draining`], which lets
//! in-flight requests finish for a bounded time and then closes what is left.
//!
//! The cap is a semaphore with one permit per open connection: while every
//! permit is taken, the loop does not accept (new connections wait in the
//! kernel's backlog), so a flood of slow clients cannot exhaust the file
//! descriptors the database, Redis and `/healthz` need.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tower_http::timeout::RequestBodyTimeout;

use crate::config::Config;

/// How long a client may take to send a request's headers; also how long an
/// idle keep-alive connection stays open (hyper starts the same timer when
/// it waits for the next request).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request body may go without sending anything.
pub const BODY_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a write to the client may go without progress: a client that
/// stops reading its answer is cut off, and the memory and large-answer slot
/// that answer holds are freed.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// File descriptors kept out of the default connection cap: the database
/// pools (at most 16 connections; SQLite keeps 3 files per connection),
/// Redis links, the listener, logs and whatever a library opens.
pub const FD_HEADROOM: u64 = 256;
/// The default cap when the file-descriptor limit cannot be read.
pub const FALLBACK_MAX_CONNECTIONS: usize = 768;
/// The pause after an accept error that is not about one connection (out
/// of file descriptors, memory or buffers), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line per this interval about accept errors.
const ACCEPT_ERROR_LOG_EVERY: Duration = Duration::from_secs(10);
/// At most one log line per this interval about the connection limit.
const LIMIT_LOG_EVERY: Duration = Duration::from_secs(10);
/// After the grace period, how long forcibly closed connections get to go.
const FORCE_CLOSE_WAIT: Duration = Duration::from_secs(1);

/// Connection limits of one server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`BODY_STALL_TIMEOUT`].
    pub body_timeout: Duration,
    /// See [`WRITE_STALL_TIMEOUT`].
    pub write_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Limits {
    /// The SPEC's timeouts and the configured cap (or the one the
    /// file-descriptor limit allows).
    pub fn from_config(config: &Config) -> Self {
        Self {
            header_read_timeout: HEADER_READ_TIMEOUT,
            body_timeout: BODY_STALL_TIMEOUT,
            write_timeout: WRITE_STALL_TIMEOUT,
            max_connections: config
                .max_connections
                .unwrap_or_else(default_max_connections)
                .max(1),
        }
    }
}

/// Raises this process's soft file-descriptor limit to the hard one (each
/// connection costs one) and returns the soft limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the file-descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE)
                .ok()
                .map(|(soft, _)| soft)
        }
    }
}

/// The soft file-descriptor limit less [`FD_HEADROOM`] (at least half of it).
pub fn default_max_connections() -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) if soft != rlimit::INFINITY => {
            let cap = soft.saturating_sub(FD_HEADROOM).max(soft / 2).max(1);
            usize::try_from(cap).unwrap_or(usize::MAX)
        }
        Ok(_) => 1 << 20,
        Err(_) => FALLBACK_MAX_CONNECTIONS,
    }
}

/// A server that has stopped accepting; its connections are still open.
pub struct Draining {
    /// Ends when every connection has closed after answering.
    drained: tokio::task::JoinHandle<()>,
    force: watch::Sender<bool>,
    permits: Arc<Semaphore>,
    max: u32,
}

impl Draining {
    /// Connections still open.
    pub fn open(&self) -> usize {
        (self.max as usize).saturating_sub(self.permits.available_permits())
    }

    /// Lets the open connections finish their requests (idle ones close at
    /// once) until `deadline`, then closes what is left. Returns how many
    /// connections were closed with a request unfinished.
    pub async fn finish(self, deadline: tokio::time::Instant) -> usize {
        let Self {
            mut drained,
            force,
            permits,
            max,
        } = self;
        if tokio::time::timeout_at(deadline, &mut drained)
            .await
            .is_ok()
        {
            return 0;
        }
        drained.abort();
        let left = (max as usize).saturating_sub(permits.available_permits());
        let _ = force.send(true);
        // Every connection task gives its permit back when it ends.
        let _ = tokio::time::timeout(FORCE_CLOSE_WAIT, permits.acquire_many(max)).await;
        left
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` resolves;
/// then stops accepting (the listener is closed), asks every connection to
/// close once its request is answered, and returns the connections still
/// open. A listener error is logged, counted and retried, never returned.
pub async fn accept_until(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send,
) -> Draining {
    let max = u32::try_from(limits.max_connections)
        .unwrap_or(u32::MAX)
        .max(1);
    let permits = Arc::new(Semaphore::new(max as usize));
    let graceful = GracefulShutdown::new();
    let (force, forced) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let service = RequestBodyTimeout::new(router, limits.body_timeout);
    export_metrics(max);
    let mut accept_errors = AcceptErrors::default();
    let mut at_limit = AtLimit::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                at_limit.note(max);
                tokio::select! {
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => break,
                    },
                }
            }
        };
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    accept_errors.note(&e).await;
                    continue;
                }
            },
        };
        let mut stream = tokio_io_timeout::TimeoutStream::new(stream);
        stream.set_write_timeout(Some(limits.write_timeout));
        let connection = builder.serve_connection(
            TokioIo::new(Box::pin(stream)),
            TowerToHyperService::new(service.clone()),
        );
        let connection = graceful.watch(connection);
        let mut forced = forced.clone();
        metrics::gauge!("quire_connections_open").increment(1.0);
        tokio::spawn(async move {
            tokio::select! {
                // Errors here are the client's (a reset, a header timeout):
                // hyper has already answered what could be answered.
                _ = connection => {}
                _ = forced.wait_for(|f| *f) => {}
            }
            metrics::gauge!("quire_connections_open").decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    // Asks every connection to close once its request is answered (an idle
    // one closes now), while the caller goes on with its own shutdown.
    let drained = tokio::spawn(graceful.shutdown());
    Draining {
        drained,
        force,
        permits,
        max,
    }
}

/// Publishes the connection metrics at once, so they exist before they move.
fn export_metrics(max: u32) {
    metrics::gauge!("quire_connections_max").set(f64::from(max));
    metrics::gauge!("quire_connections_open").increment(0.0);
    metrics::counter!("quire_connection_limit_reached_total").increment(0);
    metrics::counter!("quire_accept_errors_total").increment(0);
}

/// Times the connection limit was reached since the last log line.
#[derive(Default)]
struct AtLimit {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl AtLimit {
    /// Counts one time the loop had to wait for a connection to close; logs
    /// at most once per [`LIMIT_LOG_EVERY`] (under a flood of slow clients
    /// the limit is reached again each time one is dropped).
    fn note(&mut self, max: u32) {
        metrics::counter!("quire_connection_limit_reached_total").increment(1);
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= LIMIT_LOG_EVERY)
        {
            tracing::warn!(
                max_connections = max,
                times = self.unlogged,
                "connection limit reached: not accepting until a connection closes \
                 (QUIRE_MAX_CONNECTIONS)"
            );
            self.logged_at = Some(Instant::now());
            self.unlogged = 0;
        }
    }
}

/// Accept errors since the last log line.
#[derive(Default)]
struct AcceptErrors {
    logged_at: Option<Instant>,
    unlogged: u64,
}

impl AcceptErrors {
    /// Counts an accept error; one that is not about a single connection
    /// (EMFILE, ENFILE, ENOBUFS, ENOMEM) is logged at most once per
    /// [`ACCEPT_ERROR_LOG_EVERY`] and followed by a short pause.
    async fn note(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind;
        // A client that gave up before we accepted: nothing to wait for.
        if matches!(
            e.kind(),
            ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset | ErrorKind::Interrupted
        ) {
            return;
        }
        metrics::counter!("quire_accept_errors_total").increment(1);
        self.unlogged += 1;
        if self
            .logged_at
            .is_none_or(|t| t.elapsed() >= ACCEPT_ERROR_LOG_EVERY)
        {
            // ENFILE (23) and EMFILE (24): the system's or our fd limit.
            let out_of_fds = matches!(e.raw_os_error(), Some(23 | 24));
            tracing::error!(
                error = %e,
                errors = self.unlogged,
                out_of_file_descriptors = out_of_fds,
                "cannot accept connections; pausing the listener briefly"
            );
            self.logged_at = Some(Instant::now());
            self.unlogged = 0;
        }
        tokio::time::sleep(ACCEPT_BACKOFF).await;
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, clippy::expect_used, reason = "tests fail loudly")]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    const SHORT: Duration = Duration::from_millis(300);

    /// Answers of `/big` not yet dropped by the server.
    static BIG_ANSWERS_ALIVE: std::sync::atomic::AtomicUsize =
        std::sync::atomic::AtomicUsize::new(0);

    /// Counts itself in [`BIG_ANSWERS_ALIVE`] while the answer lives.
    struct Alive;

    impl Alive {
        fn new() -> Self {
            BIG_ANSWERS_ALIVE.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Alive
        }
    }

    impl Drop for Alive {
        fn drop(&mut self) {
            BIG_ANSWERS_ALIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// 64 MiB, more than loopback's socket buffers hold.
    fn big_answer() -> axum::body::Body {
        static ZEROS: [u8; 65_536] = [0; 65_536];
        let alive = Alive::new();
        let chunks = futures::StreamExt::map(futures::stream::iter(0..1024), move |_| {
            let _ = &alive;
            Ok::<_, std::io::Error>(axum::body::Bytes::from_static(&ZEROS))
        });
        axum::body::Body::from_stream(chunks)
    }

    fn router() -> Router {
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route("/big", get(|| async { big_answer() }))
            .route(
                "/echo",
                post(|body: axum::body::Body| async move {
                    match axum::body::to_bytes(body, 1 << 20).await {
                        Ok(b) => format!("got {}", b.len()),
                        Err(_) => "body failed".to_owned(),
                    }
                }),
            )
    }

    /// A server with short timeouts and at most `max` connections; the
    /// sender stops it.
    async fn start(
        max: usize,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Draining>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = Limits {
            header_read_timeout: SHORT,
            body_timeout: SHORT,
            write_timeout: SHORT,
            max_connections: max,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(accept_until(listener, router(), limits, async move {
            let _ = stopped.await;
        }));
        (addr, stop, server)
    }

    /// Reads until the server closes the connection (or `within` passes):
    /// what it sent and how long it took.
    async fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<(String, Duration)> {
        let started = Instant::now();
        let mut out = Vec::new();
        let done = tokio::time::timeout(within, s.read_to_end(&mut out)).await;
        match done {
            Ok(_) => Some((
                String::from_utf8_lossy(&out).into_owned(),
                started.elapsed(),
            )),
            Err(_) => None,
        }
    }

    async fn healthz(addr: std::net::SocketAddr) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        read_to_close(&mut s, Duration::from_secs(5))
            .await
            .map(|(text, _)| text)
            .unwrap_or_default()
    }

    #[test]
    fn the_defaults_are_the_specs() {
        let limits = Limits::from_config(&Config::for_database("sqlite::memory:"));
        assert_eq!(limits.header_read_timeout, Duration::from_secs(10));
        assert_eq!(limits.body_timeout, Duration::from_secs(30));
        assert!(limits.max_connections >= 1);
        let mut config = Config::for_database("sqlite::memory:");
        config.max_connections = Some(200);
        assert_eq!(Limits::from_config(&config).max_connections, 200);
    }

    #[tokio::test]
    async fn headers_that_do_not_arrive_close_the_connection() {
        let (addr, _stop, _server) = start(100).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let (_, took) = read_to_close(&mut slow, Duration::from_secs(5))
            .await
            .expect("the connection was not closed");
        assert!(
            took >= SHORT / 2 && took < SHORT * 5,
            "closed after {took:?}"
        );
        assert!(healthz(addr).await.ends_with("ok"));
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed() {
        let (addr, _stop, _server) = start(100).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let (text, took) = read_to_close(&mut s, Duration::from_secs(5))
            .await
            .expect("the idle connection was not closed");
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(took < SHORT * 5, "closed after {took:?}");
    }

    #[tokio::test]
    async fn a_stalled_body_closes_the_connection() {
        let (addr, _stop, _server) = start(100).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nabc")
            .await
            .unwrap();
        let (text, took) = read_to_close(&mut s, Duration::from_secs(5))
            .await
            .expect("the stalled connection was not closed");
        assert!(text.contains("body failed"), "{text}");
        assert!(took < SHORT * 5, "closed after {took:?}");
        // A body that keeps moving, if slowly, is read whole.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            b"POST /echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: 4\r\n\r\n",
        )
        .await
        .unwrap();
        for _ in 0..4 {
            tokio::time::sleep(SHORT / 2).await;
            s.write_all(b"x").await.unwrap();
        }
        let (text, _) = read_to_close(&mut s, Duration::from_secs(5)).await.unwrap();
        assert!(text.ends_with("got 4"), "{text}");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off_and_its_answer_dropped() {
        let (addr, _stop, _server) = start(100).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        // The answer starts, then the socket buffers fill and writes stall.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while BIG_ANSWERS_ALIVE.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the answer never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Never read: the write timeout closes the connection and drops the answer.
        while BIG_ANSWERS_ALIVE.load(std::sync::atomic::Ordering::SeqCst) > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "a client that stopped reading still holds its answer"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(s);
    }

    #[tokio::test]
    async fn at_the_limit_the_server_waits_for_a_connection_to_close() {
        let (addr, _stop, _server) = start(2).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The third one waits in the backlog until a slow one is dropped
        // by the header timeout, then is answered.
        let started = Instant::now();
        let answer = healthz(addr).await;
        assert!(answer.ends_with("ok"), "{answer}");
        assert!(
            started.elapsed() >= SHORT / 2,
            "answered after {:?}: the limit did not hold",
            started.elapsed()
        );
    }

    #[tokio::test]
    async fn shutdown_stops_accepting_and_closes_what_is_left_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Timeouts far longer than the test: only the deadline can close it.
        let limits = Limits {
            header_read_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(60),
            max_connections: 10,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(accept_until(listener, router(), limits, async move {
            let _ = stopped.await;
        }));
        let mut half_open = TcpStream::connect(addr).await.unwrap();
        half_open
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.send(()).unwrap();
        let draining = server.await.unwrap();
        assert!(draining.open() >= 1, "the half-open connection is counted");
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting");
        // The idle keep-alive connection closes at once.
        let (_, took) = read_to_close(&mut idle, Duration::from_secs(2))
            .await
            .expect("the idle connection stayed open");
        assert!(took < Duration::from_secs(1));
        let started = Instant::now();
        let cut = draining.finish(tokio::time::Instant::now() + SHORT).await;
        assert_eq!(cut, 1);
        assert!(
            started.elapsed() < SHORT * 5,
            "took {:?}",
            started.elapsed()
        );
        assert!(
            read_to_close(&mut half_open, Duration::from_secs(2))
                .await
                .is_some(),
            "the half-open connection was not closed"
        );
    }
}
