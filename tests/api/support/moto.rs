//! A local S3-protocol server for the S3 file store: `moto_server` (PyPI
//! `moto[server]`, installed by `.ci/run`), started once per test process
//! on a free port, with a watchdog that stops it when the tests end.
//! Where it is not installed the S3 tests say so and skip.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use super::server::free_port;

static MOTO: OnceLock<Option<u16>> = OnceLock::new();

/// The port of the shared `moto_server`, started on first use; `None`
/// (saying so) when `moto_server` is not installed. Points the `AWS_*`
/// variables of this process at it (only the S3 tests read them).
pub fn moto_port() -> Option<u16> {
    *MOTO.get_or_init(|| {
        let found = std::process::Command::new("sh")
            .args(["-c", "command -v moto_server"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !found {
            eprintln!("skipped: moto_server is not installed (pip install 'moto[server]')");
            return None;
        }
        let port = free_port();
        let me = std::process::id();
        // The watchdog stops moto when this test process is gone.
        let script = format!(
            "moto_server -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; \
             while kill -0 {me} 2>/dev/null; do sleep 1; done; kill $m"
        );
        if std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .is_err()
        {
            eprintln!("skipped: cannot start moto_server");
            return None;
        }
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if started.elapsed() > Duration::from_secs(30) {
                eprintln!("skipped: moto_server did not start listening in 30 s");
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{port}"));
        Some(port)
    })
}

/// A fresh bucket on the shared server: its name, or `None` when moto is
/// not available.
pub async fn fresh_bucket() -> Option<(u16, String)> {
    let port = tokio::task::spawn_blocking(moto_port).await.ok()??;
    let bucket = format!("quire-{}", uuid::Uuid::new_v4().simple());
    let r = reqwest::Client::new()
        .put(format!("http://127.0.0.1:{port}/{bucket}"))
        .send()
        .await
        .expect("create a bucket on moto");
    assert!(
        r.status().is_success(),
        "moto refused the bucket: {}",
        r.status()
    );
    Some((port, bucket))
}

/// The multipart uploads still open in `bucket` (what an aborted upload
/// must not leave).
pub async fn open_multipart_uploads(port: u16, bucket: &str) -> usize {
    let xml = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/{bucket}?uploads"))
        .send()
        .await
        .expect("list multipart uploads")
        .text()
        .await
        .expect("body");
    xml.matches("<UploadId>").count()
}
