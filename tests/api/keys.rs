//! Key lifecycle over GraphQL: every rule of SPEC §2, the escalation
//! attacks, rotation with and without grace, the audit log, concurrency and
//! `lastUsedAt`.

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use quire::auth::key::{KeyMode, KeyType};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::{ClockExt, TestApp};

pub const CREATE: &str = "mutation($i: CreateApiKeyInput!) { createApiKey(input: $i) { key apiKey { id name type mode scopes maskedKey rateLimitPerHour status } } }";
pub const ROTATE: &str = "mutation($id: ID!, $g: Int) { rotateApiKey(id: $id, gracePeriodSeconds: $g) { key apiKey { id name type mode scopes maskedKey rateLimitPerHour status } } }";
pub const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id status revokedAt } }";
pub const UPDATE: &str = "mutation($id: ID!, $i: UpdateApiKeyInput!) { updateApiKey(id: $id, input: $i) { id name rateLimitPerHour scopes } }";
pub const AUDIT: &str = "query($l: Int, $a: String) { auditEvents(limit: $l, after: $a) { items { id action actorKeyId targetKeyId detail createdAt } pageInfo { hasNextPage endCursor } } }";

/// Whether `key` authenticates.
pub async fn works(app: &TestApp, key: &str) -> bool {
    let status = app
        .gql(key, "{ viewer { key { id } } }", json!({}))
        .await
        .status;
    assert!(status == 200 || status == 401, "unexpected status {status}");
    status == 200
}

fn input(name: &str, key_type: &str, mode: &str, scopes: &[&str]) -> Value {
    json!({ "i": { "name": name, "type": key_type, "mode": mode, "scopes": scopes } })
}

/// Every audit event the key can see, newest first, walking the pages.
pub async fn all_events(app: &TestApp, key: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = app.data(key, AUDIT, json!({ "l": 100, "a": after })).await;
        let page = &data["auditEvents"];
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        if page["pageInfo"]["hasNextPage"] != json!(true) {
            return out;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

both_dbs!(creation_rules, |app: TestApp| async move {
    let root = app.root_key().await;
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "public key with a secret scope",
            input("a", "PUBLIC", "LIVE", &["records:write"]),
            "BAD_USER_INPUT",
        ),
        (
            "drafts:read on sk_live_",
            input("b", "SECRET", "LIVE", &["drafts:read"]),
            "BAD_USER_INPUT",
        ),
        (
            "drafts:read on pk_test_",
            input("c", "PUBLIC", "TEST", &["drafts:read"]),
            "BAD_USER_INPUT",
        ),
        (
            "unknown scope",
            input("d", "SECRET", "TEST", &["records:reed"]),
            "BAD_USER_INPUT",
        ),
        (
            "empty name",
            input("", "SECRET", "TEST", &[]),
            "BAD_USER_INPUT",
        ),
        (
            "blank name",
            input("   ", "SECRET", "TEST", &[]),
            "BAD_USER_INPUT",
        ),
        (
            "101-character name",
            input(&"n".repeat(101), "SECRET", "TEST", &[]),
            "BAD_USER_INPUT",
        ),
        (
            "limit 0",
            json!({ "i": { "name": "e", "type": "SECRET", "mode": "TEST", "scopes": [], "rateLimitPerHour": 0 } }),
            "BAD_USER_INPUT",
        ),
        (
            "limit above 10,000,000",
            json!({ "i": { "name": "f", "type": "SECRET", "mode": "TEST", "scopes": [], "rateLimitPerHour": 10_000_001 } }),
            "BAD_USER_INPUT",
        ),
        (
            "expiresAt in the past",
            json!({ "i": { "name": "g", "type": "SECRET", "mode": "TEST", "scopes": [], "expiresAt": (app.clock.now_utc() - ChronoDuration::seconds(1)).to_rfc3339() } }),
            "BAD_USER_INPUT",
        ),
    ];
    for (case, vars, code) in cases {
        let reply = app.gql(&root, CREATE, vars).await;
        assert_eq!(reply.code(), Some(code), "{case}: {}", reply.body);
    }
    // 100 characters, the top budget and a future expiry are fine.
    let ok = json!({ "i": { "name": "n".repeat(100), "type": "SECRET", "mode": "TEST", "scopes": ["records:read"],
        "rateLimitPerHour": 10_000_000, "expiresAt": (app.clock.now_utc() + ChronoDuration::hours(1)).to_rfc3339() } });
    app.data(&root, CREATE, ok).await;
    // `*` expands to what the new key may hold.
    let data = app
        .data(
            &root,
            CREATE,
            input("star-public", "PUBLIC", "TEST", &["*"]),
        )
        .await;
    assert_eq!(
        data["createApiKey"]["apiKey"]["scopes"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    let data = app
        .data(
            &root,
            CREATE,
            input("star-secret", "SECRET", "TEST", &["*"]),
        )
        .await;
    assert_eq!(
        data["createApiKey"]["apiKey"]["scopes"]
            .as_array()
            .unwrap()
            .len(),
        21
    );
    // Names are unique among active keys only.
    let data = app
        .data(&root, CREATE, input("dup", "SECRET", "TEST", &[]))
        .await;
    let dup_id = data["createApiKey"]["apiKey"]["id"].clone();
    assert_eq!(
        app.gql(&root, CREATE, input("dup", "PUBLIC", "TEST", &[]))
            .await
            .code(),
        Some("CONFLICT")
    );
    app.data(&root, REVOKE, json!({ "id": dup_id })).await;
    app.data(&root, CREATE, input("dup", "PUBLIC", "TEST", &[]))
        .await;
});

both_dbs!(a_key_cannot_mint_a_broader_key, |app: TestApp| async move {
    let (weak, _) = app
        .key(
            KeyType::Secret,
            KeyMode::Test,
            &["apikeys:create", "records:read"],
        )
        .await;
    for scopes in [
        &["records:write"][..],
        &["records:read", "apikeys:delete"],
        &["*"],
    ] {
        let reply = app
            .gql(&weak, CREATE, input("broader", "SECRET", "TEST", scopes))
            .await;
        assert_eq!(
            reply.code(),
            Some("FORBIDDEN"),
            "{scopes:?}: {}",
            reply.body
        );
        assert!(reply.body["data"].is_null() || reply.body["data"]["createApiKey"].is_null());
    }
    // A subset is fine, and `*` on a public key is within reach only if held.
    app.data(
        &weak,
        CREATE,
        input("narrower", "PUBLIC", "TEST", &["records:read"]),
    )
    .await;
    let reply = app
        .gql(&weak, CREATE, input("pub-star", "PUBLIC", "TEST", &["*"]))
        .await;
    assert_eq!(reply.code(), Some("FORBIDDEN"));
});

both_dbs!(
    a_weaker_key_cannot_rotate_update_or_revoke_a_stronger_one,
    |app: TestApp| async move {
        let (strong, strong_id) = app
            .key(
                KeyType::Secret,
                KeyMode::Test,
                &["records:read", "records:write"],
            )
            .await;
        let (weak, _) = app
            .key(
                KeyType::Secret,
                KeyMode::Test,
                &[
                    "apikeys:update",
                    "apikeys:delete",
                    "apikeys:read",
                    "records:read",
                ],
            )
            .await;
        let reply = app.gql(&weak, ROTATE, json!({ "id": strong_id })).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        assert!(
            !reply.body.to_string().contains("sk_test_"),
            "a secret leaked: {}",
            reply.body
        );
        let reply = app
            .gql(
                &weak,
                UPDATE,
                json!({ "id": strong_id, "i": { "rateLimitPerHour": 1 } }),
            )
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        let reply = app.gql(&weak, REVOKE, json!({ "id": strong_id })).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        assert!(works(&app, &strong).await, "the stronger key still works");
        let key = app
            .data(
                &weak,
                "query($id: ID!) { apiKey(id: $id) { rateLimitPerHour status } }",
                json!({ "id": strong_id }),
            )
            .await;
        assert_eq!(
            key["apiKey"],
            json!({ "rateLimitPerHour": 10_000, "status": "ACTIVE" })
        );
    }
);

both_dbs!(
    test_keys_see_and_manage_test_keys_only,
    |app: TestApp| async move {
        let (live, live_id) = app
            .key(KeyType::Secret, KeyMode::Live, &["records:read"])
            .await;
        let (test_admin, _) = app.key(KeyType::Secret, KeyMode::Test, &["*"]).await;
        let (live_admin, _) = app.key(KeyType::Secret, KeyMode::Live, &["*"]).await;

        let listed = app
            .data(&test_admin, "{ apiKeys { id mode } }", json!({}))
            .await;
        assert!(
            listed["apiKeys"]
                .as_array()
                .unwrap()
                .iter()
                .all(|k| k["mode"] == "TEST"),
            "{listed}"
        );
        let one = app
            .data(
                &test_admin,
                "query($id: ID!) { apiKey(id: $id) { id } }",
                json!({ "id": live_id }),
            )
            .await;
        assert!(one["apiKey"].is_null());
        for (op, vars) in [
            (ROTATE, json!({ "id": live_id })),
            (REVOKE, json!({ "id": live_id })),
            (UPDATE, json!({ "id": live_id, "i": { "name": "x" } })),
        ] {
            let reply = app.gql(&test_admin, op, vars).await;
            assert_eq!(reply.code(), Some("NOT_FOUND"), "{op}: {}", reply.body);
        }
        let reply = app
            .gql(
                &test_admin,
                CREATE,
                input("live-from-test", "SECRET", "LIVE", &["records:read"]),
            )
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        assert!(works(&app, &live).await);
        let export = app.data(&test_admin, "{ exportApiKeys }", json!({})).await;
        assert!(export["exportApiKeys"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["mode"] == "TEST"));

        // A LIVE key manages both modes; the TEST key does not see its events on LIVE keys.
        app.data(
            &live_admin,
            UPDATE,
            json!({ "id": live_id, "i": { "name": "renamed-live" } }),
        )
        .await;
        let listed = app
            .data(&live_admin, "{ apiKeys { mode } }", json!({}))
            .await;
        let modes: Vec<&str> = listed["apiKeys"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k["mode"].as_str())
            .collect();
        assert!(modes.contains(&"LIVE") && modes.contains(&"TEST"));
        let test_events = all_events(&app, &test_admin).await;
        assert!(
            test_events
                .iter()
                .all(|e| e["targetKeyId"] != json!(live_id)),
            "{test_events:?}"
        );
        let live_events = all_events(&app, &live_admin).await;
        assert!(live_events
            .iter()
            .any(|e| e["action"] == "KEY_UPDATED" && e["targetKeyId"] == json!(live_id)));
    }
);

both_dbs!(
    a_public_key_calls_no_key_operation,
    |app: TestApp| async move {
        let (public, id) = app.key(KeyType::Public, KeyMode::Test, &["*"]).await;
        let ops: Vec<(&str, Value)> = vec![
        (CREATE, input("p", "PUBLIC", "TEST", &["records:read"])),
        (ROTATE, json!({ "id": id })),
        (REVOKE, json!({ "id": id })),
        (UPDATE, json!({ "id": id, "i": { "name": "p2" } })),
        ("mutation { importApiKeys(input: { keys: {keys: []}, mode: ADD_NEW_ONLY }) { imported } }", json!({})),
        ("{ apiKeys { id } }", json!({})),
        ("{ exportApiKeys }", json!({})),
        (AUDIT, json!({})),
    ];
        for (op, vars) in ops {
            let reply = app.gql(&public, op, vars).await;
            assert_eq!(reply.code(), Some("FORBIDDEN"), "{op}: {}", reply.body);
        }
        assert!(works(&app, &public).await);
    }
);

both_dbs!(
    update_changes_name_and_budget_only,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let (key, id) = app
            .key(KeyType::Secret, KeyMode::Test, &["records:read"])
            .await;
        assert!(works(&app, &key).await);
        let data = app
            .data(
                &root,
                UPDATE,
                json!({ "id": id, "i": { "name": "renamed", "rateLimitPerHour": 42 } }),
            )
            .await;
        assert_eq!(data["updateApiKey"]["name"], "renamed");
        assert_eq!(data["updateApiKey"]["rateLimitPerHour"], 42);
        assert_eq!(data["updateApiKey"]["scopes"], json!(["records:read"]));
        // The cached principal was dropped: the key sees its new budget at once.
        let viewer = app
            .data(
                &key,
                "{ viewer { key { name rateLimitPerHour } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            viewer["viewer"]["key"],
            json!({ "name": "renamed", "rateLimitPerHour": 42 })
        );
        for (i, code) in [
            (json!({ "name": "" }), "BAD_USER_INPUT"),
            (json!({ "rateLimitPerHour": 0 }), "BAD_USER_INPUT"),
            (json!({ "rateLimitPerHour": 10_000_001 }), "BAD_USER_INPUT"),
        ] {
            assert_eq!(
                app.gql(&root, UPDATE, json!({ "id": id, "i": i }))
                    .await
                    .code(),
                Some(code)
            );
        }
        // Scopes, type and mode are not part of the input at all.
        let reply = app
            .gql(&root, UPDATE, json!({ "id": id, "i": { "scopes": ["*"] } }))
            .await;
        assert!(reply.body["errors"].is_array() && reply.body["data"].is_null());
        let (_, other) = app.key(KeyType::Secret, KeyMode::Test, &[]).await;
        let reply = app
            .gql(
                &root,
                UPDATE,
                json!({ "id": other, "i": { "name": "renamed" } }),
            )
            .await;
        assert_eq!(reply.code(), Some("CONFLICT"));
        app.data(&root, REVOKE, json!({ "id": other })).await;
        let reply = app
            .gql(
                &root,
                UPDATE,
                json!({ "id": other, "i": { "name": "zombie" } }),
            )
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        assert_eq!(
            app.gql(&root, UPDATE, json!({ "id": "nope", "i": { "name": "x" } }))
                .await
                .code(),
            Some("NOT_FOUND")
        );
    }
);

both_dbs!(
    rotation_without_grace_is_immediate_and_keeps_identity,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let created = app
            .data(
                &root,
                CREATE,
                json!({ "i": { "name": "svc", "type": "SECRET", "mode": "TEST",
        "scopes": ["records:read", "apikeys:read"], "rateLimitPerHour": 77 } }),
            )
            .await;
        let old = created["createApiKey"]["key"].as_str().unwrap().to_owned();
        let before = created["createApiKey"]["apiKey"].clone();
        let id = before["id"].clone();
        assert!(works(&app, &old).await, "cached before the rotation");
        let rotated = app.data(&root, ROTATE, json!({ "id": id })).await;
        let new = rotated["rotateApiKey"]["key"].as_str().unwrap().to_owned();
        let after = rotated["rotateApiKey"]["apiKey"].clone();
        assert_ne!(new, old);
        assert!(new.starts_with("sk_test_") && new.len() == 46);
        for field in [
            "id",
            "name",
            "type",
            "mode",
            "scopes",
            "rateLimitPerHour",
            "status",
        ] {
            assert_eq!(before[field], after[field], "{field}");
        }
        assert_ne!(before["maskedKey"], after["maskedKey"]);
        assert!(
            !works(&app, &old).await,
            "the old secret fails as soon as the mutation returns"
        );
        assert!(works(&app, &new).await);
        let viewer = app.data(&new, "{ viewer { key { id } } }", json!({})).await;
        assert_eq!(viewer["viewer"]["key"]["id"], id);
        // A key may rotate itself (its scopes are its own).
        let (me, me_id) = app
            .key(KeyType::Secret, KeyMode::Test, &["apikeys:update"])
            .await;
        let mine = app.data(&me, ROTATE, json!({ "id": me_id })).await;
        assert!(!works(&app, &me).await);
        assert!(works(&app, mine["rotateApiKey"]["key"].as_str().unwrap()).await);
    }
);

both_dbs!(
    rotation_with_grace_keeps_the_old_secret_until_then,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let (old, id) = app
            .key(KeyType::Public, KeyMode::Test, &["records:read"])
            .await;
        assert!(works(&app, &old).await);
        for bad in [-1, 7 * 24 * 3600 + 1] {
            let reply = app.gql(&root, ROTATE, json!({ "id": id, "g": bad })).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "grace {bad}");
        }
        let rotated = app
            .data(&root, ROTATE, json!({ "id": id, "g": 3600 }))
            .await;
        let new = rotated["rotateApiKey"]["key"].as_str().unwrap().to_owned();
        assert!(works(&app, &old).await, "old secret within grace");
        assert!(works(&app, &new).await);
        app.clock.advance(ChronoDuration::seconds(3599));
        assert!(works(&app, &old).await, "one second before the grace ends");
        app.clock.advance(ChronoDuration::seconds(1));
        assert!(!works(&app, &old).await, "grace over");
        assert!(works(&app, &new).await);
        // The top grace (7 days) is accepted; revoking ends both secrets.
        let again = app
            .data(&root, ROTATE, json!({ "id": id, "g": 7 * 24 * 3600 }))
            .await;
        let newest = again["rotateApiKey"]["key"].as_str().unwrap().to_owned();
        assert!(works(&app, &new).await && works(&app, &newest).await);
        app.data(&root, REVOKE, json!({ "id": id })).await;
        assert!(!works(&app, &new).await && !works(&app, &newest).await);
        let reply = app.gql(&root, ROTATE, json!({ "id": id })).await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "a revoked key cannot be rotated"
        );
        // Nor can an expired one (rotation keeps expiresAt; it would stay dead).
        let expires = (app.clock.now_utc() + ChronoDuration::minutes(1)).to_rfc3339();
        let created = app
            .data(
                &root,
                CREATE,
                json!({ "i": { "name": "brief", "type": "SECRET", "mode": "TEST", "scopes": [], "expiresAt": expires } }),
            )
            .await;
        app.clock.advance(ChronoDuration::minutes(2));
        let id = created["createApiKey"]["apiKey"]["id"].clone();
        let reply = app.gql(&root, ROTATE, json!({ "id": id })).await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "an expired key cannot be rotated"
        );
    }
);

both_dbs!(a_key_may_always_revoke_itself, |app: TestApp| async move {
    let (me, me_id) = app
        .key(KeyType::Secret, KeyMode::Test, &["apikeys:delete"])
        .await;
    let data = app.data(&me, REVOKE, json!({ "id": me_id })).await;
    assert_eq!(data["revokeApiKey"]["status"], "REVOKED");
    assert!(!works(&app, &me).await);
});

both_dbs!(
    audit_log_tells_the_story_without_secrets,
    |app: TestApp| async move {
        let (root, root_id) = app.key(KeyType::Secret, KeyMode::Test, &["*"]).await;
        let created = app
            .data(
                &root,
                CREATE,
                input("story", "SECRET", "TEST", &["records:read"]),
            )
            .await;
        let first = created["createApiKey"]["key"].as_str().unwrap().to_owned();
        let id = created["createApiKey"]["apiKey"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        app.data(
            &root,
            UPDATE,
            json!({ "id": id, "i": { "rateLimitPerHour": 5 } }),
        )
        .await;
        let rotated = app.data(&root, ROTATE, json!({ "id": id, "g": 60 })).await;
        let second = rotated["rotateApiKey"]["key"].as_str().unwrap().to_owned();
        let export = app.data(&root, "{ exportApiKeys }", json!({})).await;
        app.data(&root, "mutation($k: JSON!) { importApiKeys(input: { keys: $k, mode: ADD_NEW_ONLY }) { skipped } }",
        json!({ "k": export["exportApiKeys"] })).await;
        app.data(&root, REVOKE, json!({ "id": id })).await;

        let events = all_events(&app, &root).await;
        let ours: Vec<&Value> = events
            .iter()
            .filter(|e| e["actorKeyId"] == json!(root_id))
            .collect();
        let actions: Vec<&str> = ours
            .iter()
            .rev()
            .filter_map(|e| e["action"].as_str())
            .collect();
        assert_eq!(
            actions,
            [
                "KEY_CREATED",
                "KEY_UPDATED",
                "KEY_ROTATED",
                "KEYS_EXPORTED",
                "KEYS_IMPORTED",
                "KEY_REVOKED"
            ]
        );
        for e in &ours {
            if e["action"].as_str().unwrap().starts_with("KEY_") {
                assert_eq!(e["targetKeyId"], json!(id), "{e}");
            }
            assert!(e["createdAt"].is_string());
        }
        let updated = ours.iter().find(|e| e["action"] == "KEY_UPDATED").unwrap();
        assert_eq!(
            updated["detail"]["changes"]["rateLimitPerHour"],
            json!({ "from": 10_000, "to": 5 })
        );
        // The key made by `quire admin` (the root key itself) has an admin event.
        let admin = events
            .iter()
            .find(|e| e["targetKeyId"] == json!(root_id))
            .unwrap();
        assert_eq!(admin["actorKeyId"], Value::Null);
        assert_eq!(admin["detail"]["source"], "admin");
        let text = serde_json::to_string(&events).unwrap();
        for secret in [&root, &first, &second] {
            assert!(
                !text.contains(secret.as_str()) && !text.contains(&secret[8..40]),
                "a secret in the audit log"
            );
        }
        // Pagination: pages of 2 walk every event once, newest first.
        let mut seen = Vec::new();
        let mut after = Value::Null;
        loop {
            let page = app.data(&root, AUDIT, json!({ "l": 2, "a": after })).await;
            let items = page["auditEvents"]["items"].as_array().unwrap().clone();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|e| e["id"].clone()));
            if page["auditEvents"]["pageInfo"]["hasNextPage"] != json!(true) {
                break;
            }
            after = page["auditEvents"]["pageInfo"]["endCursor"].clone();
        }
        let all_ids: Vec<Value> = events.iter().map(|e| e["id"].clone()).collect();
        assert_eq!(seen, all_ids);
        for (l, a) in [
            (json!(0), Value::Null),
            (json!(101), Value::Null),
            (json!(10), json!("garbage")),
        ] {
            let reply = app.gql(&root, AUDIT, json!({ "l": l, "a": a })).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        }
    }
);

/// 50 parallel rotations (and, in the second round, revocations) of one
/// key: exactly one valid secret remains (none after a revoke), and the
/// audit log counts the same story.
async fn race(app: &TestApp, revocations: usize) {
    let root = app.root_key().await;
    let (original, id) = app
        .key(KeyType::Secret, KeyMode::Test, &["records:read"])
        .await;
    assert!(works(app, &original).await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let root = root.clone();
        let id = id.clone();
        let revoke = i % 10 == 5 && i / 10 < revocations;
        tasks.push(tokio::spawn(async move {
            if revoke {
                let reply = app.gql(&root, REVOKE, json!({ "id": id })).await;
                assert!(reply.body.get("errors").is_none(), "{}", reply.body);
                None
            } else {
                let reply = app.gql(&root, ROTATE, json!({ "id": id })).await;
                match reply.body["data"]["rotateApiKey"]["key"].as_str() {
                    Some(key) => Some(Some(key.to_owned())),
                    None => {
                        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
                        Some(None)
                    }
                }
            }
        }));
    }
    let mut secrets = vec![original];
    for t in tasks {
        if let Some(Some(secret)) = t.await.unwrap() {
            secrets.push(secret);
        }
    }
    let mut valid = Vec::new();
    for s in &secrets {
        if works(app, s).await {
            valid.push(s.clone());
        }
    }
    let events: Vec<Value> = all_events(app, &root)
        .await
        .into_iter()
        .filter(|e| e["targetKeyId"] == json!(id))
        .rev()
        .collect();
    let rotations = events
        .iter()
        .filter(|e| e["action"] == "KEY_ROTATED")
        .count();
    assert_eq!(
        rotations,
        secrets.len() - 1,
        "one KEY_ROTATED per secret handed out"
    );
    let last = events.last().unwrap();
    if revocations == 0 {
        assert_eq!(valid.len(), 1, "exactly one valid secret");
        assert_eq!(last["action"], "KEY_ROTATED");
        let masked = last["detail"]["maskedKey"].as_str().unwrap();
        let v = &valid[0];
        assert_eq!(
            masked,
            format!("{}…{}", &v[..12], &v[42..]),
            "the last rotation is the valid one"
        );
    } else {
        assert!(valid.is_empty(), "no secret survives a revoke: {valid:?}");
        let revokes = events
            .iter()
            .filter(|e| e["action"] == "KEY_REVOKED")
            .count();
        assert_eq!(revokes, 1, "one revocation wins");
        assert_eq!(
            last["action"], "KEY_REVOKED",
            "no rotation after the revoke"
        );
    }
}

both_dbs!(
    fifty_parallel_rotations_leave_one_secret,
    |app: TestApp| async move {
        race(&app, 0).await;
    }
);

both_dbs!(
    parallel_rotations_and_revocations_leave_none,
    |app: TestApp| async move {
        race(&app, 5).await;
    }
);

both_dbs!(
    last_used_at_is_written_off_path_at_most_once_a_minute,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let (key, id) = app
            .key(KeyType::Public, KeyMode::Test, &["records:read"])
            .await;
        let q = "query($id: ID!) { apiKey(id: $id) { lastUsedAt } }";
        let read = |app: TestApp, root: String, id: String| async move {
            app.data(&root, q, json!({ "id": id })).await["apiKey"]["lastUsedAt"].clone()
        };
        assert_eq!(
            read(app.clone(), root.clone(), id.clone()).await,
            Value::Null
        );
        let writes = app.state.authenticator.last_used().writes();
        for _ in 0..20 {
            assert!(works(&app, &key).await);
        }
        let started = Instant::now();
        let first = loop {
            let v = read(app.clone(), root.clone(), id.clone()).await;
            if !v.is_null() {
                break v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "lastUsedAt never written"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        // Twenty uses within a minute: one write for this key.
        tokio::time::sleep(Duration::from_millis(600)).await;
        app.clock.advance(ChronoDuration::seconds(59));
        for _ in 0..5 {
            assert!(works(&app, &key).await);
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(read(app.clone(), root.clone(), id.clone()).await, first);
        // The root key's own uses are written too; at most two rows so far.
        assert!(app.state.authenticator.last_used().writes() - writes <= 2);
        app.clock.advance(ChronoDuration::seconds(2));
        assert!(works(&app, &key).await);
        let started = Instant::now();
        loop {
            let v = read(app.clone(), root.clone(), id.clone()).await;
            if v != first {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(3),
                "lastUsedAt not moved after a minute"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Rotation keeps usage.
        let before = read(app.clone(), root.clone(), id.clone()).await;
        app.data(&root, ROTATE, json!({ "id": id })).await;
        assert_eq!(read(app.clone(), root.clone(), id.clone()).await, before);
    }
);
