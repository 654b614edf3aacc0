//! Key lifecycle over GraphQL: every rule of SPEC §2, the escalation
//! attacks, rotation with and without grace, the audit log, concurrency and
//! `lastUsedAt`.

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::ApiKey;
use crate::support::ops::{CREATE_API_KEY, REVOKE_API_KEY, ROTATE_API_KEY, UPDATE_API_KEY};
use crate::support::{KeyBuilder, TestApp, TestKey};

const AUDIT: &str = "query($l: Int, $a: String) { auditEvents(limit: $l, after: $a) { items { id action actorKeyId targetKeyId detail createdAt } pageInfo { hasNextPage endCursor } } }";

/// Every audit event the key can see, newest first, walking the pages.
async fn all_events(app: &TestApp, key: &str) -> Vec<Value> {
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
    let key = |name: &str| app.new_key().name(name).secret().test();
    let cases: Vec<(&str, KeyBuilder, &str)> = vec![
        (
            "public key with a secret scope",
            key("a").public().live().scopes(&["records:write"]),
            "BAD_USER_INPUT",
        ),
        (
            "drafts:read on sk_live_",
            key("b").secret().live().scopes(&["drafts:read"]),
            "BAD_USER_INPUT",
        ),
        (
            "drafts:read on pk_test_",
            key("c").public().test().scopes(&["drafts:read"]),
            "BAD_USER_INPUT",
        ),
        (
            "unknown scope",
            key("d").scopes(&["records:reed"]),
            "BAD_USER_INPUT",
        ),
        ("empty name", key(""), "BAD_USER_INPUT"),
        ("blank name", key("   "), "BAD_USER_INPUT"),
        (
            "101-character name",
            key(&"n".repeat(101)),
            "BAD_USER_INPUT",
        ),
        ("limit 0", key("e").limit(0), "BAD_USER_INPUT"),
        (
            "limit above 10,000,000",
            key("f").limit(10_000_001),
            "BAD_USER_INPUT",
        ),
        (
            "expiresAt in the past",
            key("g").expires_in(ChronoDuration::seconds(-1)),
            "BAD_USER_INPUT",
        ),
    ];
    for (case, key, code) in cases {
        let reply = key.try_create_as(&root).await;
        assert_eq!(reply.code(), Some(code), "{case}: {}", reply.body);
    }
    // 100 characters, the top budget and a future expiry are fine.
    key(&"n".repeat(100))
        .scopes(&["records:read"])
        .limit(10_000_000)
        .expires_in(ChronoDuration::hours(1))
        .create_as(&root)
        .await;
    // `*` expands to what the new key may hold.
    let star_public = key("star-public")
        .public()
        .test()
        .scopes(&["*"])
        .create_as(&root)
        .await;
    assert_eq!(star_public.api_key.scopes.len(), 6);
    let star_secret = key("star-secret").scopes(&["*"]).create_as(&root).await;
    assert_eq!(star_secret.api_key.scopes.len(), 21);
    // Names are unique among active keys only.
    let dup = key("dup").create_as(&root).await;
    assert_eq!(
        key("dup").public().test().try_create_as(&root).await.code(),
        Some("CONFLICT")
    );
    app.revoke_api_key(&root, &dup.api_key.id).await;
    key("dup").public().test().create_as(&root).await;
});

both_dbs!(a_key_cannot_mint_a_broader_key, |app: TestApp| async move {
    let weak = app
        .new_key()
        .secret()
        .test()
        .scopes(&["apikeys:create", "records:read"])
        .create()
        .await;
    for scopes in [
        &["records:write"][..],
        &["records:read", "apikeys:delete"],
        &["*"],
    ] {
        let reply = app
            .new_key()
            .name("broader")
            .secret()
            .test()
            .scopes(scopes)
            .try_create_as(&weak)
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
    app.new_key()
        .name("narrower")
        .public()
        .test()
        .scopes(&["records:read"])
        .create_as(&weak)
        .await;
    let reply = app
        .new_key()
        .name("pub-star")
        .public()
        .test()
        .scopes(&["*"])
        .try_create_as(&weak)
        .await;
    assert_eq!(reply.code(), Some("FORBIDDEN"));
});

both_dbs!(
    a_weaker_key_cannot_rotate_update_or_revoke_a_stronger_one,
    |app: TestApp| async move {
        let strong = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read", "records:write"])
            .create()
            .await;
        let weak = app
            .new_key()
            .secret()
            .test()
            .scopes(&[
                "apikeys:update",
                "apikeys:delete",
                "apikeys:read",
                "records:read",
            ])
            .create()
            .await;
        let reply = app
            .gql(&weak, ROTATE_API_KEY, json!({ "id": strong.id }))
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        assert!(
            !reply.body.to_string().contains("sk_test_"),
            "a secret leaked: {}",
            reply.body
        );
        let reply = app
            .gql(
                &weak,
                UPDATE_API_KEY,
                json!({ "id": strong.id, "i": { "rateLimitPerHour": 1 } }),
            )
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        let reply = app
            .gql(&weak, REVOKE_API_KEY, json!({ "id": strong.id }))
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        assert!(app.works(&strong).await, "the stronger key still works");
        let key = app
            .data(
                &weak,
                "query($id: ID!) { apiKey(id: $id) { rateLimitPerHour status } }",
                json!({ "id": strong.id }),
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
        let live = app
            .new_key()
            .secret()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        let test_admin = app.new_key().secret().test().scopes(&["*"]).create().await;
        let live_admin = app.new_key().secret().live().scopes(&["*"]).create().await;

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
                json!({ "id": live.id }),
            )
            .await;
        assert!(one["apiKey"].is_null());
        for (op, vars) in [
            (ROTATE_API_KEY, json!({ "id": live.id })),
            (REVOKE_API_KEY, json!({ "id": live.id })),
            (
                UPDATE_API_KEY,
                json!({ "id": live.id, "i": { "name": "x" } }),
            ),
        ] {
            let reply = app.gql(&test_admin, op, vars).await;
            assert_eq!(reply.code(), Some("NOT_FOUND"), "{op}: {}", reply.body);
        }
        let reply = app
            .new_key()
            .name("live-from-test")
            .secret()
            .live()
            .scopes(&["records:read"])
            .try_create_as(&test_admin)
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        assert!(app.works(&live).await);
        let export = app.data(&test_admin, "{ exportApiKeys }", json!({})).await;
        assert!(export["exportApiKeys"]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["mode"] == "TEST"));

        // A LIVE key manages both modes; the TEST key does not see its events on LIVE keys.
        app.data(
            &live_admin,
            UPDATE_API_KEY,
            json!({ "id": live.id, "i": { "name": "renamed-live" } }),
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
                .all(|e| e["targetKeyId"] != json!(live.id)),
            "{test_events:?}"
        );
        let live_events = all_events(&app, &live_admin).await;
        assert!(live_events
            .iter()
            .any(|e| e["action"] == "KEY_UPDATED" && e["targetKeyId"] == json!(live.id)));
    }
);

both_dbs!(
    a_public_key_calls_no_key_operation,
    |app: TestApp| async move {
        let public = app.new_key().public().test().scopes(&["*"]).create().await;
        let create = app
            .new_key()
            .name("p")
            .public()
            .test()
            .scopes(&["records:read"])
            .input();
        let ops: Vec<(&str, Value)> = vec![
        (CREATE_API_KEY, create),
        (ROTATE_API_KEY, json!({ "id": public.id })),
        (REVOKE_API_KEY, json!({ "id": public.id })),
        (UPDATE_API_KEY, json!({ "id": public.id, "i": { "name": "p2" } })),
        ("mutation { importApiKeys(input: { keys: {keys: []}, mode: ADD_NEW_ONLY }) { imported } }", json!({})),
        ("{ apiKeys { id } }", json!({})),
        ("{ exportApiKeys }", json!({})),
        (AUDIT, json!({})),
    ];
        for (op, vars) in ops {
            let reply = app.gql(&public, op, vars).await;
            assert_eq!(reply.code(), Some("FORBIDDEN"), "{op}: {}", reply.body);
        }
        assert!(app.works(&public).await);
    }
);

both_dbs!(
    update_changes_name_and_budget_only,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let key = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        assert!(app.works(&key).await);
        let data = app
            .data(
                &root,
                UPDATE_API_KEY,
                json!({ "id": key.id, "i": { "name": "renamed", "rateLimitPerHour": 42 } }),
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
                app.gql(&root, UPDATE_API_KEY, json!({ "id": key.id, "i": i }))
                    .await
                    .code(),
                Some(code)
            );
        }
        // Scopes, type and mode are not part of the input at all.
        let reply = app
            .gql(
                &root,
                UPDATE_API_KEY,
                json!({ "id": key.id, "i": { "scopes": ["*"] } }),
            )
            .await;
        assert!(reply.body["errors"].is_array() && reply.body["data"].is_null());
        let other = app.new_key().secret().test().create().await;
        let reply = app
            .gql(
                &root,
                UPDATE_API_KEY,
                json!({ "id": other.id, "i": { "name": "renamed" } }),
            )
            .await;
        assert_eq!(reply.code(), Some("CONFLICT"));
        app.revoke_api_key(&root, &other.id).await;
        let reply = app
            .gql(
                &root,
                UPDATE_API_KEY,
                json!({ "id": other.id, "i": { "name": "zombie" } }),
            )
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        assert_eq!(
            app.gql(
                &root,
                UPDATE_API_KEY,
                json!({ "id": "nope", "i": { "name": "x" } })
            )
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
            .new_key()
            .name("svc")
            .secret()
            .test()
            .scopes(&["records:read", "apikeys:read"])
            .limit(77)
            .create_as(&root)
            .await;
        let old = created.key;
        let before = created.api_key;
        assert!(app.works(&old).await, "cached before the rotation");
        let rotated = app.rotate_api_key(&root, &before.id, 0).await;
        let new = rotated.key;
        let after = rotated.api_key;
        assert_ne!(new, old);
        assert!(new.starts_with("sk_test_") && new.len() == 46);
        // Everything but the secret stays: id, name, type, mode, scopes,
        // rateLimitPerHour, status.
        assert_eq!(
            ApiKey {
                masked_key: before.masked_key.clone(),
                ..after.clone()
            },
            before
        );
        assert_ne!(before.masked_key, after.masked_key);
        assert!(
            !app.works(&old).await,
            "the old secret fails as soon as the mutation returns"
        );
        assert!(app.works(&new).await);
        let viewer = app.data(&new, "{ viewer { key { id } } }", json!({})).await;
        assert_eq!(viewer["viewer"]["key"]["id"], before.id);
        // A key may rotate itself (its scopes are its own).
        let me = app
            .new_key()
            .secret()
            .test()
            .scopes(&["apikeys:update"])
            .create()
            .await;
        let mine = app.rotate_api_key(&me, &me.id, 0).await;
        assert!(!app.works(&me).await);
        assert!(app.works(&mine.key).await);
    }
);

both_dbs!(
    a_second_rotation_never_cuts_the_first_ones_grace,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let first = app
            .new_key()
            .public()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        let id = first.id.clone();
        let first = first.secret;
        let second = app.rotate_api_key(&root, &id, 3600).await.key;
        let third = app.rotate_api_key(&root, &id, 60).await.key;
        for (name, secret) in [("first", &first), ("second", &second), ("third", &third)] {
            assert!(app.works(secret).await, "{name} secret works");
        }
        // Each old secret works until its own grace ends.
        app.clock.advance(ChronoDuration::seconds(61));
        assert!(
            !app.works(&second).await,
            "the second secret's 60 s are over"
        );
        assert!(app.works(&first).await, "the first secret keeps its hour");
        app.clock.advance(ChronoDuration::seconds(3600 - 61));
        assert!(!app.works(&first).await, "the first secret's hour is over");
        assert!(app.works(&third).await);

        // At most five graces run at once; a rotation without grace still works.
        let mut secrets = vec![third];
        for _ in 0..5 {
            secrets.push(app.rotate_api_key(&root, &id, 3600).await.key);
        }
        let reply = app
            .gql(&root, ROTATE_API_KEY, json!({ "id": id, "g": 3600 }))
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
        assert_eq!(reply.error_field(), Some("gracePeriodSeconds"));
        assert!(reply.message().contains('5'), "{}", reply.message());
        for secret in &secrets {
            assert!(
                app.works(secret).await,
                "a refused rotation changes nothing"
            );
        }
        let latest = app.rotate_api_key(&root, &id, 0).await.key;
        assert!(
            !app.works(secrets.last().unwrap()).await,
            "no grace: fails at once"
        );
        for secret in &secrets[..secrets.len() - 1] {
            assert!(app.works(secret).await, "the five running graces go on");
        }
        // Revocation ends every secret at once.
        app.revoke_api_key(&root, &id).await;
        for secret in secrets.iter().chain([&latest]) {
            assert!(!app.works(secret).await);
        }
    }
);

both_dbs!(
    rotation_with_grace_keeps_the_old_secret_until_then,
    |app: TestApp| async move {
        let root = app.root_key().await;
        let old = app
            .new_key()
            .public()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        let id = old.id.clone();
        assert!(app.works(&old).await);
        for bad in [-1, 7 * 24 * 3600 + 1] {
            let reply = app
                .gql(&root, ROTATE_API_KEY, json!({ "id": id, "g": bad }))
                .await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "grace {bad}");
        }
        let new = app.rotate_api_key(&root, &id, 3600).await.key;
        assert!(app.works(&old).await, "old secret within grace");
        assert!(app.works(&new).await);
        app.clock.advance(ChronoDuration::seconds(3599));
        assert!(app.works(&old).await, "one second before the grace ends");
        app.clock.advance(ChronoDuration::seconds(1));
        assert!(!app.works(&old).await, "grace over");
        assert!(app.works(&new).await);
        // The top grace (7 days) is accepted; revoking ends both secrets.
        let newest = app.rotate_api_key(&root, &id, 7 * 24 * 3600).await.key;
        assert!(app.works(&new).await && app.works(&newest).await);
        app.revoke_api_key(&root, &id).await;
        assert!(!app.works(&new).await && !app.works(&newest).await);
        let reply = app.gql(&root, ROTATE_API_KEY, json!({ "id": id })).await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "a revoked key cannot be rotated"
        );
        // Nor can an expired one (rotation keeps expiresAt; it would stay dead).
        let brief = app
            .new_key()
            .name("brief")
            .secret()
            .test()
            .expires_in(ChronoDuration::minutes(1))
            .create_as(&root)
            .await;
        app.clock.advance(ChronoDuration::minutes(2));
        let reply = app
            .gql(&root, ROTATE_API_KEY, json!({ "id": brief.api_key.id }))
            .await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "an expired key cannot be rotated"
        );
    }
);

both_dbs!(a_key_may_always_revoke_itself, |app: TestApp| async move {
    let me = app
        .new_key()
        .secret()
        .test()
        .scopes(&["apikeys:delete"])
        .create()
        .await;
    let revoked = app.revoke_api_key(&me, &me.id).await;
    assert_eq!(revoked.status, "REVOKED");
    assert!(!app.works(&me).await);
});

both_dbs!(
    audit_log_tells_the_story_without_secrets,
    |app: TestApp| async move {
        let root = app.new_key().secret().test().scopes(&["*"]).create().await;
        let root_id = root.id.clone();
        let created = app
            .new_key()
            .name("story")
            .secret()
            .test()
            .scopes(&["records:read"])
            .create_as(&root)
            .await;
        let first = created.key;
        let id = created.api_key.id;
        app.data(
            &root,
            UPDATE_API_KEY,
            json!({ "id": id, "i": { "rateLimitPerHour": 5 } }),
        )
        .await;
        let second = app.rotate_api_key(&root, &id, 60).await.key;
        let export = app.data(&root, "{ exportApiKeys }", json!({})).await;
        app.data(&root, "mutation($k: JSON!) { importApiKeys(input: { keys: $k, mode: ADD_NEW_ONLY }) { skipped } }",
        json!({ "k": export["exportApiKeys"] })).await;
        app.revoke_api_key(&root, &id).await;

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
        for secret in [&root.secret, &first, &second] {
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
    let TestKey {
        secret: original,
        id,
    } = app
        .new_key()
        .secret()
        .test()
        .scopes(&["records:read"])
        .create()
        .await;
    assert!(app.works(&original).await);
    let mut tasks = Vec::new();
    for i in 0..50 {
        let app = app.clone();
        let root = root.clone();
        let id = id.clone();
        let revoke = i % 10 == 5 && i / 10 < revocations;
        tasks.push(tokio::spawn(async move {
            if revoke {
                let reply = app.gql(&root, REVOKE_API_KEY, json!({ "id": id })).await;
                assert!(reply.body.get("errors").is_none(), "{}", reply.body);
                None
            } else {
                let reply = app.gql(&root, ROTATE_API_KEY, json!({ "id": id })).await;
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
        if app.works(s).await {
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
        let root = app.root_key().await.secret;
        let TestKey { secret: key, id } = app
            .new_key()
            .public()
            .test()
            .scopes(&["records:read"])
            .create()
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
            assert!(app.works(&key).await);
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
            assert!(app.works(&key).await);
        }
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(read(app.clone(), root.clone(), id.clone()).await, first);
        // The root key's own uses are written too; at most two rows so far.
        assert!(app.state.authenticator.last_used().writes() - writes <= 2);
        app.clock.advance(ChronoDuration::seconds(2));
        assert!(app.works(&key).await);
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
        app.rotate_api_key(&root, &id, 0).await;
        assert_eq!(read(app.clone(), root.clone(), id.clone()).await, before);
    }
);

/// Every timestamp the API writes is RFC 3339 UTC with milliseconds and `Z`
/// (SPEC §3); any RFC 3339 instant is accepted as input.
#[tokio::test]
async fn timestamps_are_utc_with_milliseconds_and_z() {
    use crate::support::ClockExt;
    let app = TestApp::spawn(crate::support::Backend::Sqlite).await;
    let root = app.root_key().await;
    let shaped = |v: &Value| {
        let s = v.as_str().unwrap_or_else(|| panic!("a timestamp: {v}"));
        let b = s.as_bytes();
        s.len() == 24
            && s.ends_with('Z')
            && b[4] == b'-'
            && b[10] == b'T'
            && b[19] == b'.'
            && b[20..23].iter().all(u8::is_ascii_digit)
    };
    let expires = (app.clock.now_utc() + ChronoDuration::days(2))
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, false);
    assert!(expires.ends_with("+02:00"));
    let created = app
        .data(
            &root,
            "mutation($e: DateTime) { createApiKey(input: { name: \"stamped\", type: SECRET, mode: TEST, scopes: [\"records:read\"], expiresAt: $e }) { apiKey { createdAt expiresAt } } }",
            json!({ "e": expires }),
        )
        .await;
    let key = &created["createApiKey"]["apiKey"];
    assert!(shaped(&key["createdAt"]), "{key}");
    assert!(shaped(&key["expiresAt"]), "{key}");
    let viewer = app
        .data(&root, "{ viewer { rateLimit { resetAt } } }", json!({}))
        .await;
    assert!(
        shaped(&viewer["viewer"]["rateLimit"]["resetAt"]),
        "{viewer}"
    );
    let refused = app
        .gql(
            &root,
            "mutation { createApiKey(input: { name: \"bad\", type: SECRET, mode: TEST, scopes: [], expiresAt: \"tomorrow\" }) { key } }",
            json!({}),
        )
        .await;
    assert!(refused.message().contains("RFC 3339"), "{}", refused.body);
}
