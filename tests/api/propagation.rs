//! Several processes on one database: revocations, rotations and updates
//! made through one instance (or `quire admin`) reach the others within 2 s;
//! a debug-level log never holds a plaintext key; the `quire api-keys`
//! client commands.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{CREATE_API_KEY, REVOKE_API_KEY, ROTATE_API_KEY, UPDATE_API_KEY};
use crate::support::{redis_url, Backend, FreshDb, Server, TestApp};

async fn call(server: &Server, key: &str, query: &str, variables: Value) -> (u16, String) {
    let res = reqwest::Client::new()
        .post(server.url("/graphql"))
        .header("x-api-key", key)
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

async fn data(server: &Server, key: &str, query: &str, variables: Value) -> Value {
    let (status, body) = call(server, key, query, variables).await;
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(
        status == 200 && body.get("errors").is_none(),
        "{query}: {body}"
    );
    body["data"].clone()
}

async fn status(server: &Server, key: &str) -> u16 {
    call(server, key, "{ viewer { key { id } } }", json!({}))
        .await
        .0
}

/// Waits (at most 2 s) until `key` is refused by `server`.
async fn refused_within_2s(server: &Server, key: &str, what: &str) {
    let started = Instant::now();
    while status(server, key).await != 401 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: still accepted after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn bootstrap_key(server: &Server) -> String {
    let started = Instant::now();
    loop {
        if let Some(line) = server.printed_keys().first() {
            return line.trim().to_owned();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no bootstrap key printed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn create_key(server: &Server, root: &str, name: &str) -> (String, String) {
    let created = data(
        server,
        root,
        CREATE_API_KEY,
        json!({ "i": { "name": name, "type": "SECRET", "mode": "TEST", "scopes": ["records:read"] } }),
    )
    .await;
    (
        created["createApiKey"]["key"].as_str().unwrap().to_owned(),
        created["createApiKey"]["apiKey"]["id"]
            .as_str()
            .unwrap()
            .to_owned(),
    )
}

both_dbs!(changes_reach_the_other_instance, |db: FreshDb| async move {
    let a = Server::start(&db.url, &[]).await;
    let root = bootstrap_key(&a).await;
    let b = Server::start(&db.url, &[]).await;

    // Revoked through A: refused by A at once, by B within 2 s.
    let (k1, k1_id) = create_key(&a, &root, "k1").await;
    assert_eq!(status(&b, &k1).await, 200, "cached on B");
    data(&a, &root, REVOKE_API_KEY, json!({ "id": k1_id })).await;
    assert_eq!(status(&a, &k1).await, 401);
    refused_within_2s(&b, &k1, "revoked through A").await;

    // Rotated through A without grace: the old secret dies on B too.
    let (k2, k2_id) = create_key(&a, &root, "k2").await;
    assert_eq!(status(&b, &k2).await, 200);
    let rotated = data(&a, &root, ROTATE_API_KEY, json!({ "id": k2_id })).await;
    let k2_new = rotated["rotateApiKey"]["key"].as_str().unwrap().to_owned();
    refused_within_2s(&b, &k2, "rotated through A").await;
    assert_eq!(status(&b, &k2_new).await, 200);

    // A new budget reaches B's cached principal.
    data(
        &a,
        &root,
        UPDATE_API_KEY,
        json!({ "id": k2_id, "i": { "rateLimitPerHour": 321 } }),
    )
    .await;
    let started = Instant::now();
    loop {
        let v = data(
            &b,
            &k2_new,
            "{ viewer { key { rateLimitPerHour } } }",
            json!({}),
        )
        .await;
        if v["viewer"]["key"]["rateLimitPerHour"] == 321 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "update not seen by B within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // `quire admin keys revoke` (a third process): both instances within 2 s.
    let (k3, k3_id) = create_key(&a, &root, "k3").await;
    assert_eq!(status(&a, &k3).await, 200);
    assert_eq!(status(&b, &k3).await, 200);
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(["admin", "keys", "revoke", &k3_id])
        .env("QUIRE_DATABASE_URL", &db.url)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    refused_within_2s(&a, &k3, "admin revoke on A").await;
    refused_within_2s(&b, &k3, "admin revoke on B").await;

    a.stop().await;
    b.stop().await;
});

both_dbs!(no_plaintext_in_logs, |db: FreshDb| async move {
    let server = Server::start(&db.url, &[("RUST_LOG", "debug")]).await;
    let root = bootstrap_key(&server).await;
    let mut secrets = vec![root.clone()];
    // Every response except the one that created or rotated a key.
    let mut others: Vec<String> = Vec::new();
    let mut record = |(status, body): (u16, String)| {
        assert!(status == 200 || status == 401, "{status}: {body}");
        others.push(body);
    };

    let (k, k_id) = create_key(&server, &root, "watched").await;
    secrets.push(k.clone());
    record(
        call(
            &server,
            &k,
            "{ viewer { key { id name maskedKey } } }",
            json!({}),
        )
        .await,
    );
    let rotated = data(
        &server,
        &root,
        ROTATE_API_KEY,
        json!({ "id": k_id, "g": 60 }),
    )
    .await;
    let k2 = rotated["rotateApiKey"]["key"].as_str().unwrap().to_owned();
    secrets.push(k2.clone());
    for key in [&k, &k2, &root] {
        record(
            call(
                &server,
                key,
                "{ viewer { key { id name maskedKey } } }",
                json!({}),
            )
            .await,
        );
    }
    let mut wrong = k2.clone();
    wrong.replace_range(45.., if k2.ends_with('A') { "B" } else { "A" });
    record(call(&server, &wrong, "{ viewer { key { id } } }", json!({})).await);
    record(
        call(
            &server,
            &root,
            "{ apiKeys(includeRevoked: true) { id maskedKey } }",
            json!({}),
        )
        .await,
    );
    record(
        call(
            &server,
            &root,
            "query($id: ID!) { apiKey(id: $id) { id maskedKey } }",
            json!({ "id": k_id }),
        )
        .await,
    );
    record(
        call(
            &server,
            &root,
            UPDATE_API_KEY,
            json!({ "id": k_id, "i": { "name": "watched-2" } }),
        )
        .await,
    );
    let (status, export) = call(&server, &root, "{ exportApiKeys }", json!({})).await;
    let exported = serde_json::from_str::<Value>(&export).unwrap()["data"]["exportApiKeys"].clone();
    record((status, export));
    record(
        call(
            &server,
            &root,
            "mutation($k: JSON!) { importApiKeys(input: { keys: $k, mode: OVERWRITE_IF_EXISTS }) { imported overwritten skipped } }",
            json!({ "k": exported }),
        )
        .await,
    );
    record(call(&server, &root, REVOKE_API_KEY, json!({ "id": k_id })).await);
    for key in [&k, &k2] {
        record(call(&server, key, "{ viewer { key { id } } }", json!({})).await);
    }
    record(
        call(
            &server,
            &root,
            "{ auditEvents(limit: 100) { items { action detail } } }",
            json!({}),
        )
        .await,
    );
    // Let the background writers (lastUsedAt) log what they log.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let log = server.stderr.lock().unwrap().join("\n");
    assert!(log.contains("DEBUG"), "the server logged at debug level");
    for secret in &secrets {
        let body = &secret[8..40];
        assert!(!log.contains(body), "a plaintext key in the log");
        for response in &others {
            assert!(
                !response.contains(body),
                "a plaintext key in a response: {response}"
            );
        }
    }
    server.stop().await;
});

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn quire(app: &TestApp, key: &str, args: &[&str]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
        .args(args)
        .env("QUIRE_URL", app.url(""))
        .env("QUIRE_API_KEY", key)
        .output()
        .await
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

both_dbs!(api_keys_client_commands, |app: TestApp| async move {
    let root = app.new_key().secret().live().scopes(&["*"]).create().await;
    let data = r#"{"name":"cli","type":"secret","mode":"test","scopes":["records:read"],"rateLimitPerHour":99}"#;
    let run = quire(
        &app,
        &root,
        &["api-keys", "create", "--data", data, "--json"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let created: Value = serde_json::from_str(&run.stdout).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    let id = created["apiKey"]["id"].as_str().unwrap().to_owned();
    assert_eq!(created["apiKey"]["rateLimitPerHour"], 99);

    let run = quire(&app, &root, &["api-keys", "list", "--json"]).await;
    let listed: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(listed
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k["id"] == json!(id)));
    assert!(!run.stdout.contains(&key));
    let run = quire(&app, &root, &["api-keys", "list"]).await;
    assert!(run.ok && run.stdout.contains("cli") && !run.stdout.contains(&key));

    let run = quire(
        &app,
        &root,
        &["api-keys", "rotate", &id, "--grace", "60", "--json"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let rotated: Value = serde_json::from_str(&run.stdout).unwrap();
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["apiKey"]["id"], json!(id));
    let run = quire(&app, &new, &["whoami"]).await;
    assert!(run.ok && run.stdout.contains("cli"), "{}", run.stderr);

    let run = quire(&app, &root, &["api-keys", "export"]).await;
    assert!(run.ok && !run.stdout.contains(&new));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.json");
    std::fs::write(&path, &run.stdout).unwrap();
    let path = path.to_str().unwrap();
    let run = quire(
        &app,
        &root,
        &[
            "api-keys",
            "import",
            path,
            "--mode",
            "add-new-only",
            "--json",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let result: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result["skipped"], 2);
    let run = quire(
        &app,
        &root,
        &["api-keys", "import", path, "--mode", "Error_If-Exists"],
    )
    .await;
    assert!(!run.ok && run.stderr.contains("CONFLICT"), "{}", run.stderr);
    let run = quire(
        &app,
        &root,
        &["api-keys", "import", path, "--mode", "merge"],
    )
    .await;
    assert!(!run.ok && run.stderr.contains("--mode"));

    let run = quire(&app, &root, &["api-keys", "revoke", &id]).await;
    assert!(run.ok && run.stdout.contains("revoked"), "{}", run.stderr);
    let run = quire(&app, &new, &["whoami"]).await;
    assert!(!run.ok && run.stderr.contains("UNAUTHENTICATED"));
    let run = quire(&app, &root, &["api-keys", "revoke", "no-such-id"]).await;
    assert!(
        !run.ok && run.stderr.contains("NOT_FOUND"),
        "{}",
        run.stderr
    );
    let run = quire(&app, &root, &["api-keys", "create", "--data", "not json"]).await;
    assert!(!run.ok && !run.stderr.is_empty());
});

// With Redis, a change reaches an instance that does not even poll the
// database feed.
both_dbs!(redis_carries_key_changes, |backend: Backend| async move {
    let Some(redis_url) = redis_url() else { return };
    let url = redis_url.clone();
    let Some(app) = TestApp::try_spawn_with(backend, move |c| c.redis_url = Some(url.into())).await
    else {
        return;
    };
    let mut config = quire::config::Config::for_database(app.database_url().to_owned());
    config.redis_url = Some(redis_url.into());
    let other = quire::App::with_clock(config, app.clock.clone())
        .await
        .unwrap();
    other
        .keys
        .spawn_broadcast_listener()
        .expect("a Redis listener");
    // Let the subscription settle.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let root = app.root_key().await;
    let key = app
        .new_key()
        .secret()
        .test()
        .scopes(&["records:read"])
        .create()
        .await;
    let hash = quire::auth::key::ApiKeySecret::parse(&key).unwrap().hash();
    let now = || quire::clock::Clock::now(&*app.clock);
    assert!(
        other
            .key_cache
            .resolve(&other.db.conn, hash, now())
            .await
            .is_ok(),
        "cached on the other instance"
    );
    assert!(app.revoke_api_key(&root, &key.id).await.status == "REVOKED");
    let started = Instant::now();
    while other
        .key_cache
        .resolve(&other.db.conn, hash, now())
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "Redis did not carry the revocation"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
});
