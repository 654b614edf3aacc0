//! `quire serve` as a child process ([`Server`]), for tests of what only a
//! real process shows: what it prints, its log, its exit, several processes
//! on one database.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `quire serve` child process and what it printed on stdout and stderr
/// (the log).
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `quire serve` on a free port and waits until `/healthz` answers.
    pub async fn start(database_url: &str, envs: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_quire"));
        cmd.arg("serve")
            .env("QUIRE_LISTEN", format!("127.0.0.1:{port}"))
            .env("QUIRE_DATABASE_URL", database_url)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn quire");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let lines = stdout.clone();
        let out = child.stdout.take().expect("stdout");
        tokio::spawn(async move {
            let mut reader = BufReader::new(out).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        tokio::spawn(async move {
            let mut reader = BufReader::new(err).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                lines.lock().unwrap().push(line);
            }
        });
        let server = Server {
            child,
            port,
            stdout,
            stderr,
        };
        server.wait_healthy().await;
        server
    }

    async fn wait_healthy(&self) {
        let started = Instant::now();
        let client = reqwest::Client::new();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(r) = client.get(self.url("/healthz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("quire did not become healthy on port {}", self.port);
    }

    /// `http://127.0.0.1:port` + path.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Printed lines that look like a key.
    pub fn printed_keys(&self) -> Vec<String> {
        self.stdout
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("sk_") || l.contains("pk_"))
            .cloned()
            .collect()
    }

    /// Stops the process.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// SIGTERM, then waits (at most 10 s) for a graceful exit.
    pub async fn terminate(mut self) {
        let pid = self.child.id().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        let exited = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        assert!(exited.is_ok(), "quire did not stop on SIGTERM");
    }
}

/// Creates a key with `quire admin keys create` on the database at
/// `database_url` (project `default`, a unique name) with `args` (type,
/// mode, scopes, limit…) and returns its secret.
pub async fn admin_key(database_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(["admin", "keys", "create", "--project", "default", "--name"])
        .arg(format!("key-{}", uuid::Uuid::new_v4().simple()))
        .args(args)
        .arg("--json")
        .env("QUIRE_DATABASE_URL", database_url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    created["key"].as_str().unwrap().to_owned()
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
