//! Authentication: every 401 case looks the same; bad shapes cost no
//! lookup; concurrent first uses share one lookup. (Which scope each field
//! needs: `authorization.rs`.)

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use quire::keys::Actor;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::TestApp;

const VIEWER: &str = "{ viewer { key { id name scopes } } }";
const GOOD_SHAPE_UNKNOWN: &str = "sk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa492pXL";

async fn unauthenticated_body(app: &TestApp, key: Option<&str>) -> (u16, Value) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": VIEWER }));
    if let Some(key) = key {
        req = req.header("x-api-key", key);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap())
}

both_dbs!(every_401_is_identical, |app: TestApp| async move {
    let expired_key = app
        .new_key()
        .name("short-lived")
        .secret()
        .test()
        .scopes(&["records:read"])
        .limit(100)
        .expires_in(ChronoDuration::minutes(5))
        .create()
        .await;
    // The key works (and is cached) before it expires.
    assert_eq!(unauthenticated_body(&app, Some(&expired_key)).await.0, 200);
    app.clock.advance(ChronoDuration::minutes(6));

    let revoked_key = app
        .new_key()
        .secret()
        .test()
        .scopes(&["records:read"])
        .create()
        .await;
    assert_eq!(unauthenticated_body(&app, Some(&revoked_key)).await.0, 200);
    app.state
        .keys
        .revoke(&Actor::Admin, None, &revoked_key.id)
        .await
        .unwrap();

    let mut wrong_checksum = GOOD_SHAPE_UNKNOWN.to_owned();
    wrong_checksum.replace_range(45.., "M");
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("malformed", Some("sk_live_nope".into())),
        ("wrong checksum", Some(wrong_checksum)),
        ("unknown", Some(GOOD_SHAPE_UNKNOWN.into())),
        ("revoked", Some(revoked_key.secret)),
        ("expired", Some(expired_key.secret)),
    ];
    let mut bodies = Vec::new();
    for (case, key) in &cases {
        let (status, body) = unauthenticated_body(&app, key.as_deref()).await;
        assert_eq!(status, 401, "{case}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{case}"
        );
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "bodies differ: {bodies:?}"
    );
});

both_dbs!(bad_shapes_cost_no_lookup, |app: TestApp| async move {
    let before = app.state.key_cache.lookups();
    let mut wrong_checksum = GOOD_SHAPE_UNKNOWN.to_owned();
    wrong_checksum.replace_range(45.., "M");
    for key in [
        "",
        "pk_live_",
        "sk_live_short",
        "xx_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa492pXL",
        &wrong_checksum,
    ] {
        for _ in 0..5 {
            let (status, _) = unauthenticated_body(&app, Some(key)).await;
            assert_eq!(status, 401);
        }
    }
    assert_eq!(
        app.state.key_cache.lookups(),
        before,
        "a malformed key reached the database"
    );
    // A well-formed unknown key is looked up once, then absorbed by the negative cache.
    for _ in 0..5 {
        assert_eq!(
            unauthenticated_body(&app, Some(GOOD_SHAPE_UNKNOWN)).await.0,
            401
        );
    }
    assert_eq!(app.state.key_cache.lookups(), before + 1);
});

both_dbs!(
    concurrent_first_requests_share_one_lookup,
    |app: TestApp| async move {
        let key = app
            .new_key()
            .public()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        let before = app.state.key_cache.lookups();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let app = app.clone();
            let key = key.clone();
            tasks.push(tokio::spawn(async move {
                app.gql(&key, "{ __typename }", json!({})).await.status
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        assert_eq!(app.state.key_cache.lookups() - before, 1);
    }
);

both_dbs!(bearer_header_is_accepted, |app: TestApp| async move {
    let key = app.root_key().await;
    let res = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&key)
        .json(&json!({ "query": "{ viewer { key { name } } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
});

both_dbs!(
    admin_revoke_reaches_running_server,
    |app: TestApp| async move {
        let key = app
            .new_key()
            .public()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
            .args(["admin", "keys", "revoke", &key.id])
            .env("QUIRE_DATABASE_URL", app.database_url())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let revoked_at = Instant::now();
        loop {
            let status = app.gql(&key, "{ __typename }", json!({})).await.status;
            if status == 401 {
                break;
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(2),
                "still accepted after 2 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
);

both_dbs!(viewer_shows_the_calling_key, |app: TestApp| async move {
    let key = app
        .new_key()
        .public()
        .live()
        .scopes(&["records:read"])
        .create()
        .await;
    let data = app
        .data(
            &key,
            "{ viewer { key { id type mode scopes maskedKey status } project { name } } }",
            json!({}),
        )
        .await;
    assert_eq!(data["viewer"]["key"]["id"], key.id);
    assert_eq!(data["viewer"]["key"]["type"], "PUBLIC");
    assert_eq!(data["viewer"]["key"]["mode"], "LIVE");
    assert_eq!(data["viewer"]["key"]["scopes"], json!(["records:read"]));
    assert_eq!(data["viewer"]["key"]["status"], "ACTIVE");
    assert_eq!(data["viewer"]["project"]["name"], "default");
    let masked = data["viewer"]["key"]["maskedKey"].as_str().unwrap();
    assert_eq!(masked, format!("{}…{}", &key[..12], &key[42..]));
});

/// POSTs `{ __typename }` with these headers: (status, `WWW-Authenticate`).
async fn with_headers(app: &TestApp, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let mut req = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({ "query": "{ __typename }" }));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = req.send().await.unwrap();
    let challenge = res
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (res.status().as_u16(), challenge)
}

#[tokio::test]
async fn two_different_keys_are_refused_and_every_401_asks_for_a_bearer() {
    let app = TestApp::spawn(crate::support::Backend::Sqlite).await;
    let one = app.root_key().await.secret;
    let other = app.root_key().await.secret;
    let (b_one, b_other) = (format!("Bearer {one}"), format!("Bearer {other}"));

    // One key, either way, or the same key both ways: accepted.
    for headers in [
        vec![("x-api-key", one.as_str())],
        vec![("authorization", b_one.as_str())],
        vec![
            ("x-api-key", one.as_str()),
            ("authorization", b_one.as_str()),
        ],
        // A proxy's own Authorization scheme does not get in the way.
        vec![("x-api-key", one.as_str()), ("authorization", "Basic dTpw")],
    ] {
        let (status, challenge) = with_headers(&app, &headers).await;
        assert_eq!(status, 200, "{headers:?}");
        assert_eq!(challenge, None);
    }
    // Two different keys (both valid; in two headers or one header twice),
    // no key, a bad one: 401 with the challenge.
    for headers in [
        vec![("x-api-key", one.as_str()), ("x-api-key", other.as_str())],
        vec![
            ("authorization", b_one.as_str()),
            ("authorization", b_other.as_str()),
        ],
        vec![
            ("x-api-key", one.as_str()),
            ("authorization", b_other.as_str()),
        ],
        vec![],
        vec![("x-api-key", "sk_live_nope")],
        vec![("authorization", "Basic dTpw")],
        vec![("x-api-key", GOOD_SHAPE_UNKNOWN)],
    ] {
        let (status, challenge) = with_headers(&app, &headers).await;
        assert_eq!(status, 401, "{headers:?}");
        assert_eq!(challenge.as_deref(), Some("Bearer"), "{headers:?}");
    }
}
