//! Export and import (SPEC §5): the file holds no secret, imported keys
//! authenticate in the target deployment, the four modes, and the attacks.

use quire::auth::key::{ApiKeySecret, KeyMode, KeyType};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::TestApp;

const EXPORT: &str = "{ exportApiKeys }";
const IMPORT: &str = "mutation($k: JSON!, $m: ImportMode!) { importApiKeys(input: { keys: $k, mode: $m }) { imported overwritten skipped revoked } }";

/// A key that exists nowhere yet, as an export entry: `(plaintext, entry)`.
fn entry(name: &str, key_type: KeyType, mode: KeyMode, scopes: &[&str]) -> (String, Value) {
    let secret = ApiKeySecret::generate(key_type, mode);
    let value = json!({
        "name": name,
        "type": key_type.as_str().to_uppercase(),
        "mode": mode.as_str().to_uppercase(),
        "scopes": scopes,
        "rateLimitPerHour": 1000,
        "expiresAt": null,
        "createdAt": "2026-01-01T00:00:00Z",
        "maskedKey": secret.masked(),
        "hash": secret.hash_hex(),
    });
    (secret.expose().to_owned(), value)
}

/// An entry for an existing plaintext (its hash), under `name`.
fn entry_for(plaintext: &str, name: &str, scopes: &[&str]) -> Value {
    let secret = ApiKeySecret::parse(plaintext).unwrap();
    json!({
        "name": name,
        "type": secret.key_type().as_str(),
        "mode": secret.mode().as_str(),
        "scopes": scopes,
        "rateLimitPerHour": 1000,
        "maskedKey": secret.masked(),
        "hash": secret.hash_hex(),
    })
}

fn file(entries: &[&Value]) -> Value {
    json!({ "version": 1, "keys": entries })
}

async fn import(app: &TestApp, key: &str, keys: Value, mode: &str) -> Value {
    app.data(key, IMPORT, json!({ "k": keys, "m": mode })).await["importApiKeys"].clone()
}

fn counts(imported: i64, overwritten: i64, skipped: i64, revoked: i64) -> Value {
    json!({ "imported": imported, "overwritten": overwritten, "skipped": skipped, "revoked": revoked })
}

both_dbs!(
    export_holds_no_secret_and_imported_keys_work_elsewhere,
    |app: TestApp| async move {
        let root = app.new_key().secret().live().scopes(&["*"]).create().await;
        let web = app
            .new_key()
            .name("web")
            .public()
            .live()
            .scopes(&["records:read"])
            .create_as(&root)
            .await
            .key;
        let ops = app
            .new_key()
            .name("ops")
            .secret()
            .test()
            .scopes(&["records:read", "schemas:read"])
            .create_as(&root)
            .await
            .key;
        let gone = app
            .new_key()
            .name("gone")
            .secret()
            .test()
            .create_as(&root)
            .await;
        app.revoke_api_key(&root, &gone.api_key.id).await;
        let gone = gone.key;
        let exported = app.data(&root, EXPORT, json!({})).await["exportApiKeys"].clone();
        let text = exported.to_string();
        for secret in [&root.secret, &web, &ops, &gone] {
            assert!(
                !text.contains(secret.as_str()) && !text.contains(&secret[8..40]),
                "a plaintext in the export"
            );
        }
        let keys = exported["keys"].as_array().unwrap();
        let names: Vec<&str> = keys.iter().filter_map(|k| k["name"].as_str()).collect();
        assert_eq!(
            keys.len(),
            3,
            "active keys only, the exporter included: {names:?}"
        );
        let ops_entry = keys.iter().find(|k| k["name"] == "ops").unwrap();
        assert_eq!(
            ops_entry["hash"],
            ApiKeySecret::parse(&ops).unwrap().hash_hex()
        );
        assert_eq!(ops_entry["type"], "SECRET");
        assert_eq!(ops_entry["mode"], "TEST");
        assert_eq!(ops_entry["scopes"], json!(["records:read", "schemas:read"]));
        for field in ["rateLimitPerHour", "expiresAt", "createdAt", "maskedKey"] {
            assert!(ops_entry.get(field).is_some(), "{field}");
        }

        // Another deployment (its own database) takes the file.
        let other = TestApp::spawn(app.backend()).await;
        let importer = other
            .new_key()
            .secret()
            .live()
            .scopes(&["*"])
            .create()
            .await;
        assert!(!other.works(&web).await);
        let result = import(&other, &importer, exported.clone(), "ADD_NEW_ONLY").await;
        assert_eq!(result, counts(3, 0, 0, 0));
        let viewer = other
            .data(
                &ops,
                "{ viewer { key { name type mode scopes } project { name } } }",
                json!({}),
            )
            .await;
        assert_eq!(
            viewer["viewer"]["key"],
            json!({ "name": "ops", "type": "SECRET", "mode": "TEST", "scopes": ["records:read", "schemas:read"] })
        );
        assert!(other.works(&web).await && other.works(&root).await);
        assert!(!other.works(&gone).await);
        // Importing again changes nothing.
        assert_eq!(
            import(&other, &importer, exported, "ADD_NEW_ONLY").await,
            counts(0, 0, 3, 0)
        );
    }
);

both_dbs!(import_modes, |app: TestApp| async move {
    let root = app.new_key().secret().live().scopes(&["*"]).create().await;
    let keep_old = app
        .new_key()
        .name("keep")
        .secret()
        .test()
        .scopes(&["records:read"])
        .create_as(&root)
        .await
        .key;

    // ADD_NEW_ONLY: existing names are skipped.
    let (keep_1, keep_1_entry) = entry("keep", KeyType::Secret, KeyMode::Test, &["records:read"]);
    let (fresh, fresh_entry) = entry("fresh", KeyType::Public, KeyMode::Live, &["records:read"]);
    let result = import(
        &app,
        &root,
        file(&[&keep_1_entry, &fresh_entry]),
        "ADD_NEW_ONLY",
    )
    .await;
    assert_eq!(result, counts(1, 0, 1, 0));
    assert!(app.works(&keep_old).await && !app.works(&keep_1).await && app.works(&fresh).await);

    // ERROR_IF_EXISTS: one existing name and nothing is imported.
    let (other, other_entry) = entry("other", KeyType::Secret, KeyMode::Test, &[]);
    let reply = app
        .gql(
            &root,
            IMPORT,
            json!({ "k": file(&[&other_entry, &keep_1_entry]), "m": "ERROR_IF_EXISTS" }),
        )
        .await;
    assert_eq!(reply.code(), Some("CONFLICT"), "{}", reply.body);
    assert!(!app.works(&other).await && app.works(&keep_old).await);
    assert_eq!(
        import(&app, &root, file(&[&other_entry]), "ERROR_IF_EXISTS").await,
        counts(1, 0, 0, 0)
    );
    assert!(app.works(&other).await);

    // OVERWRITE_IF_EXISTS: the existing key of that name is replaced at once.
    let (newer, newer_entry) = entry("newer", KeyType::Secret, KeyMode::Test, &["records:read"]);
    let result = import(
        &app,
        &root,
        file(&[&keep_1_entry, &newer_entry]),
        "OVERWRITE_IF_EXISTS",
    )
    .await;
    assert_eq!(result, counts(1, 1, 0, 0));
    assert!(
        !app.works(&keep_old).await,
        "the overwritten key fails at once"
    );
    assert!(app.works(&keep_1).await && app.works(&newer).await);

    // REPLACE_ALL by a weaker importer: revokes what it may revoke, except itself.
    let strong = app
        .new_key()
        .secret()
        .live()
        .scopes(&["records:write"])
        .create()
        .await;
    let weak = app
        .new_key()
        .secret()
        .live()
        .scopes(&["apikeys:import", "apikeys:read", "records:read"])
        .create()
        .await;
    let weak_name = app
        .data(&weak, "{ viewer { key { name } } }", json!({}))
        .await["viewer"]["key"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, me_entry) = entry(
        &weak_name,
        KeyType::Secret,
        KeyMode::Live,
        &["records:read"],
    );
    let (alpha, alpha_entry) = entry("alpha", KeyType::Public, KeyMode::Test, &["records:read"]);
    let result = import(&app, &weak, file(&[&me_entry, &alpha_entry]), "REPLACE_ALL").await;
    // keep, fresh, other, newer are revoked; root and strong hold scopes weak lacks.
    assert_eq!(result, counts(1, 0, 1, 4));
    for (k, alive) in [
        (&keep_1, false),
        (&fresh, false),
        (&other, false),
        (&newer, false),
        (&alpha, true),
        (&root.secret, true),
        (&strong.secret, true),
        (&weak.secret, true),
    ] {
        assert_eq!(app.works(k).await, alive, "{}", &k[..12]);
    }

    // REPLACE_ALL with the project's own export brings the same keys back.
    let exported = app.data(&root, EXPORT, json!({})).await["exportApiKeys"].clone();
    let result = import(&app, &root, exported, "REPLACE_ALL").await;
    assert_eq!(
        result,
        counts(0, 3, 1, 0),
        "alpha, strong and weak are replaced by themselves; root skips itself"
    );
    for k in [&alpha, &root.secret, &strong.secret, &weak.secret] {
        assert!(app.works(k).await);
    }
});

both_dbs!(
    import_attacks_are_refused_whole,
    |app: TestApp| async move {
        let weak = app
            .new_key()
            .secret()
            .test()
            .scopes(&["apikeys:import", "apikeys:read", "records:read"])
            .create()
            .await;
        let (fine, fine_entry) = entry("fine", KeyType::Secret, KeyMode::Test, &["records:read"]);

        // More scopes than the importer.
        let (broad, broad_entry) = entry(
            "broad",
            KeyType::Secret,
            KeyMode::Test,
            &["records:read", "records:write"],
        );
        let reply = app
            .gql(
                &weak,
                IMPORT,
                json!({ "k": file(&[&fine_entry, &broad_entry]), "m": "ADD_NEW_ONLY" }),
            )
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        assert!(
            !app.works(&broad).await && !app.works(&fine).await,
            "nothing imported"
        );

        // A TEST key importing a LIVE key.
        let (live, live_entry) = entry("live", KeyType::Public, KeyMode::Live, &["records:read"]);
        let reply = app
            .gql(
                &weak,
                IMPORT,
                json!({ "k": file(&[&live_entry]), "m": "ADD_NEW_ONLY" }),
            )
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
        assert!(!app.works(&live).await);

        // A hash that another project holds, active or revoked.
        let other = app.tenant("other").await;
        let foreign = app
            .new_key()
            .in_project(&other.project)
            .secret()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        let stolen = entry_for(&foreign, "stolen", &["records:read"]);
        for _ in 0..2 {
            let reply = app
                .gql(
                    &weak,
                    IMPORT,
                    json!({ "k": file(&[&fine_entry, &stolen]), "m": "ADD_NEW_ONLY" }),
                )
                .await;
            assert_eq!(reply.code(), Some("CONFLICT"), "{}", reply.body);
            assert!(!app.works(&fine).await, "nothing imported");
            app.state
                .keys
                .revoke(&quire::keys::Actor::Admin, None, &foreign.id)
                .await
                .unwrap();
        }

        // The importer's own name or hash is always skipped.
        let me = app
            .data(&weak, "{ viewer { key { name } } }", json!({}))
            .await;
        let my_name = me["viewer"]["key"]["name"].as_str().unwrap();
        let (_, same_name) = entry(my_name, KeyType::Secret, KeyMode::Test, &["records:read"]);
        let same_hash = entry_for(&weak, "my-twin", &["records:read"]);
        for mode in [
            "ADD_NEW_ONLY",
            "OVERWRITE_IF_EXISTS",
            "REPLACE_ALL",
            "ERROR_IF_EXISTS",
        ] {
            let result = import(&app, &weak, file(&[&same_name, &same_hash]), mode).await;
            assert_eq!(result, counts(0, 0, 2, 0), "{mode}");
        }
        assert!(app.works(&weak).await);

        // A key revoked in this project cannot come back through an import.
        let dead = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        app.data(&weak, "{ apiKeys { id } }", json!({})).await;
        app.state
            .keys
            .revoke(&quire::keys::Actor::Admin, None, &dead.id)
            .await
            .unwrap();
        let zombie = entry_for(&dead, "zombie", &["records:read"]);
        let reply = app
            .gql(
                &weak,
                IMPORT,
                json!({ "k": file(&[&zombie]), "m": "ADD_NEW_ONLY" }),
            )
            .await;
        assert_eq!(reply.code(), Some("CONFLICT"));
        assert!(!app.works(&dead).await);

        // Malformed files.
        let (_, twin_a) = entry("twin", KeyType::Secret, KeyMode::Test, &[]);
        let (_, twin_b) = entry("twin", KeyType::Secret, KeyMode::Test, &[]);
        let mut drafts_live = entry("drafts", KeyType::Secret, KeyMode::Live, &[]).1;
        drafts_live["scopes"] = json!(["drafts:read"]);
        for bad in [
            json!({ "nope": [] }),
            json!("keys"),
            file(&[&twin_a, &twin_b]),
            file(&[&drafts_live]),
        ] {
            let reply = app
                .gql(&weak, IMPORT, json!({ "k": bad, "m": "ADD_NEW_ONLY" }))
                .await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
        }
        assert!(!app.works(&fine).await);
    }
);

both_dbs!(
    import_errors_name_the_field_and_the_event_tells_each_entry,
    |app: TestApp| async move {
        let root = app.new_key().secret().live().scopes(&["*"]).create().await;

        // A bad entry is named by its index and field; nothing is imported.
        let (good, good_entry) = entry("good", KeyType::Secret, KeyMode::Test, &["records:read"]);
        let (_, mut bad_entry) = entry("bad", KeyType::Secret, KeyMode::Test, &["records:read"]);
        bad_entry["scopes"] = json!(["records:read", "nope"]);
        let reply = app
            .gql(
                &root,
                IMPORT,
                json!({ "k": file(&[&good_entry, &bad_entry]), "m": "ADD_NEW_ONLY" }),
            )
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
        assert_eq!(
            reply.body.pointer("/errors/0/extensions/field"),
            Some(&json!("keys[1].scopes"))
        );
        assert!(!app.works(&good).await);

        // REPLACE_ALL: `old` is revoked, `web` comes back renamed by its own
        // entry, `fresh` is new, and the importer's twin is skipped.
        let web = app
            .new_key()
            .name("web")
            .public()
            .live()
            .scopes(&["records:read"])
            .create_as(&root)
            .await
            .key;
        let old = app
            .new_key()
            .name("old")
            .secret()
            .test()
            .create_as(&root)
            .await
            .key;
        let twin = entry_for(&root, "twin", &["records:read"]);
        let site = entry_for(&web, "site", &["records:read"]);
        let (fresh, fresh_entry) =
            entry("fresh", KeyType::Secret, KeyMode::Test, &["records:read"]);
        let result = import(
            &app,
            &root,
            file(&[&twin, &site, &fresh_entry]),
            "REPLACE_ALL",
        )
        .await;
        assert_eq!(result, counts(1, 1, 1, 1));
        assert!(app.works(&web).await && app.works(&fresh).await);
        assert!(!app.works(&old).await);
        let viewer = app
            .data(&web, "{ viewer { key { name } } }", json!({}))
            .await;
        assert_eq!(viewer["viewer"]["key"]["name"], "site");
        let events = app
            .data(
                &root,
                "{ auditEvents(limit: 1) { items { action detail } } }",
                json!({}),
            )
            .await;
        let event = &events["auditEvents"]["items"][0];
        assert_eq!(event["action"], "KEYS_IMPORTED");
        assert_eq!(
            event["detail"],
            json!({
                "mode": "REPLACE_ALL",
                "imported": 1, "overwritten": 1, "skipped": 1, "revoked": 1,
                "names": {
                    "imported": ["fresh"],
                    "overwritten": ["site"],
                    "skipped": ["twin"],
                    "revoked": ["old"],
                },
            })
        );
    }
);

/// Runs `quire admin …` on a database.
async fn admin(database_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
        .arg("admin")
        .args(args)
        .env("QUIRE_DATABASE_URL", database_url)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both_dbs!(
    the_operator_moves_every_key_of_a_project_between_deployments,
    |from: TestApp| async move {
        // Keys no single API key could export and import together: a TEST
        // key with drafts:read, LIVE keys, public and secret.
        let keys = [
            from.new_key().secret().test().scopes(&["*"]).create().await,
            from.new_key().secret().live().scopes(&["*"]).create().await,
            from.new_key()
                .public()
                .live()
                .scopes(&["records:read"])
                .create()
                .await,
            from.new_key()
                .public()
                .test()
                .scopes(&["records:read"])
                .create()
                .await,
        ];
        let (ok, file, err) = admin(
            from.database_url(),
            &["keys", "export", "--project", "default"],
        )
        .await;
        assert!(ok, "{err}");
        let exported: Value = serde_json::from_str(&file).unwrap();
        assert!(!file.contains(&keys[0].secret), "an export holds no secret");
        assert_eq!(exported["keys"].as_array().unwrap().len(), keys.len());

        let to = from.sibling_on_fresh_db().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        std::fs::write(&path, &file).unwrap();
        let (ok, out, err) = admin(
            to.database_url(),
            &[
                "keys",
                "import",
                path.to_str().unwrap(),
                "--project",
                "default",
                "--mode",
                "add-new-only",
                "--json",
            ],
        )
        .await;
        assert!(ok, "{err}");
        let result: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(result, counts(keys.len() as i64, 0, 0, 0));
        for key in &keys {
            assert!(
                to.works(key).await,
                "an imported key works in the new deployment"
            );
        }
        // The import is audited as the operator's.
        let events = to
            .data(
                &keys[1],
                "{ auditEvents(limit: 1) { items { action actorKeyId detail } } }",
                json!({}),
            )
            .await;
        let event = &events["auditEvents"]["items"][0];
        assert_eq!(event["action"], "KEYS_IMPORTED");
        assert_eq!(event["actorKeyId"], Value::Null);
        assert_eq!(event["detail"]["source"], "admin");
    }
);
