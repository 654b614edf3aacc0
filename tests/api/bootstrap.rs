//! First start: the `bootstrap` key is printed once, by one instance only.
//! These tests run the real `quire` binary.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::support::{Backend, FreshDb};

/// A `quire serve` child process and what it printed on stdout.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub stdout: Arc<Mutex<Vec<String>>>,
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
            .stderr(Stdio::null())
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
        let server = Server {
            child,
            port,
            stdout,
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
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn bootstrap_prints_once(backend: Backend) {
    let Some(db) = FreshDb::create(backend).await else {
        return;
    };
    let first = Server::start(&db.url, &[]).await;
    // Give the stdout reader a moment: the key is printed before listening.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let keys = first.printed_keys();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = keys[0].trim().to_owned();
    assert!(key.starts_with("sk_test_") && key.len() == 46, "{key}");
    let stdout = first.stdout.lock().unwrap().join("\n");
    assert!(stdout.contains("not be shown again"), "{stdout}");

    let res: Value = reqwest::Client::new()
        .post(first.url("/graphql"))
        .header("x-api-key", &key)
        .json(&json!({ "query": "{ viewer { key { name scopes type mode } } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(res["data"]["viewer"]["key"]["name"], "bootstrap");
    assert_eq!(
        res["data"]["viewer"]["key"]["scopes"]
            .as_array()
            .map(Vec::len),
        Some(21)
    );
    first.stop().await;

    let second = Server::start(&db.url, &[]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        second.printed_keys().is_empty(),
        "printed again: {:?}",
        second.printed_keys()
    );
    second.stop().await;
    db.cleanup().await;
}

async fn two_instances_bootstrap_one_key(backend: Backend) {
    let Some(db) = FreshDb::create(backend).await else {
        return;
    };
    let (a, b) = tokio::join!(Server::start(&db.url, &[]), Server::start(&db.url, &[]));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let printed = a.printed_keys().len() + b.printed_keys().len();
    assert_eq!(
        printed,
        1,
        "a: {:?} b: {:?}",
        a.printed_keys(),
        b.printed_keys()
    );
    a.stop().await;
    b.stop().await;
    let conn = quire::db::Database::connect(&db.url).await.unwrap();
    use sea_orm::{EntityTrait, PaginatorTrait};
    assert_eq!(
        entity::api_keys::Entity::find()
            .count(&conn.conn)
            .await
            .unwrap(),
        1
    );
    conn.conn.close().await.unwrap();
    db.cleanup().await;
}

#[tokio::test]
async fn bootstrap_prints_once_sqlite() {
    bootstrap_prints_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn bootstrap_prints_once_postgres() {
    bootstrap_prints_once(Backend::Postgres).await;
}

#[tokio::test]
async fn two_instances_bootstrap_one_key_sqlite() {
    two_instances_bootstrap_one_key(Backend::Sqlite).await;
}

#[tokio::test]
async fn two_instances_bootstrap_one_key_postgres() {
    two_instances_bootstrap_one_key(Backend::Postgres).await;
}
