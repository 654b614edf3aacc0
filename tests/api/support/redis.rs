//! Redis for tests: the shared server of `QUIRE_TEST_REDIS_URL`, or a
//! private `redis-server` ([`OwnRedis`]) a test may kill and restart.

use std::process::Stdio;
use std::time::{Duration, Instant};

/// `QUIRE_TEST_REDIS_URL`, or `None` (saying the Redis variant is skipped).
pub fn redis_url() -> Option<String> {
    let url = std::env::var("QUIRE_TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: QUIRE_TEST_REDIS_URL is not set (Redis variant)");
    }
    url
}

/// Our own redis-server on a free port, killed and restarted mid-run.
pub struct OwnRedis {
    pub child: tokio::process::Child,
    pub port: u16,
}

impl OwnRedis {
    /// Starts one on `port`; `None` when `redis-server` is not installed or
    /// does not answer within 10 s.
    pub async fn start(port: u16) -> Option<Self> {
        let child = tokio::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(Self { child, port });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    /// `redis://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel
    /// and never answered, as with a stalled or black-holed Redis.
    pub async fn pause(&self) {
        self.signal("-STOP").await;
    }

    /// Thaws a paused server (SIGCONT).
    pub async fn resume(&self) {
        self.signal("-CONT").await;
    }

    async fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("redis-server is running");
        let status = tokio::process::Command::new("kill")
            .args([signal, &pid.to_string()])
            .status()
            .await
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }
}

/// A Redis URL nothing listens on (a port bound, then released).
pub fn dead_redis_url() -> String {
    format!("redis://127.0.0.1:{}", super::free_port())
}
