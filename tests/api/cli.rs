//! The client commands as a user meets them (SPEC §6): `QUIRE_URL` with or
//! without `/graphql` or a scheme, a network failure named by its cause, a
//! server that never answers given up on at `--timeout`, and a missing key
//! that names `QUIRE_API_KEY`.

use std::time::{Duration, Instant};

use crate::support::{free_port, Backend, TestApp};

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn quire(url: &str, key: Option<&str>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"));
    command
        .args(args)
        .env("QUIRE_URL", url)
        .env_remove("QUIRE_API_KEY");
    if let Some(key) = key {
        command.env("QUIRE_API_KEY", key);
    }
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the command ends")
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn quire_url_may_end_in_graphql_or_lack_a_scheme() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.root_key().await;
    let bare = app.url("");
    let no_scheme = bare.trim_start_matches("http://").to_owned();
    for url in [
        bare.clone(),
        format!("{bare}/"),
        format!("{bare}/graphql"),
        no_scheme,
    ] {
        let run = quire(&url, Some(&key), &["whoami", "--json"]).await;
        assert!(run.ok, "{url}: {}", run.stderr);
        assert!(run.stdout.contains("\"project\""), "{url}: {}", run.stdout);
    }
}

#[tokio::test]
async fn a_network_failure_is_named_by_its_cause() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let run = quire(&url, Some("sk_test_x"), &["whoami"]).await;
    assert!(!run.ok);
    assert!(
        run.stderr.to_lowercase().contains("connection refused"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains(&url), "{}", run.stderr);
}

#[tokio::test]
async fn a_server_that_never_answers_is_given_up_on_at_the_timeout() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let started = Instant::now();
    let run = quire(&url, Some("sk_test_x"), &["whoami", "--timeout", "1"]).await;
    assert!(!run.ok);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.stderr.contains("did not answer within 1 s"),
        "{}",
        run.stderr
    );
    held.abort();
}

#[tokio::test]
async fn a_missing_key_names_quire_api_key() {
    let run = quire("http://127.0.0.1:9", None, &["whoami"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("QUIRE_API_KEY"), "{}", run.stderr);
}

// `quire api-keys usage` (SPEC §10): the last 30 days by day, as a table
// (one row per day and key) or as the `keyUsage` JSON.
#[tokio::test]
async fn api_keys_usage_prints_a_table_or_json() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app
        .new_key()
        .secret()
        .live()
        .scopes(&["analytics:read"])
        .name("usage-cli")
        .create()
        .await;
    for _ in 0..3 {
        app.data(&key, "{ viewer { key { id } } }", serde_json::json!({}))
            .await;
    }
    app.state.usage.flush().await.unwrap();
    let url = app.url("");
    let run = quire(&url, Some(&key), &["api-keys", "usage", "--json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let buckets: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(buckets[0]["keyName"], "usage-cli");
    assert_eq!(buckets[0]["requests"], 3);
    let run = quire(&url, Some(&key), &["api-keys", "usage"]).await;
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("DAY"), "{}", run.stdout);
    assert!(
        lines[1].contains("usage-cli") && lines[1].trim_end().ends_with('0'),
        "{}",
        run.stdout
    );
    let run = quire(&url, Some(&key), &["api-keys", "usage", "--from", "soon"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("--from"), "{}", run.stderr);
}
