//! Content: models, records, the publish lifecycle, the published and draft
//! views, validation, `where`/`orderBy`, cursors and project isolation.

use std::collections::HashSet;

use chrono::Duration as ChronoDuration;
use quire::auth::key::{KeyMode, KeyType};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{
    CREATE_MODEL, CREATE_RECORD, DELETE_RECORD, PUBLISH_RECORD, UNPUBLISH_RECORD, UPDATE_MODEL,
    UPDATE_RECORD,
};
use crate::support::{Backend, Reply, TestApp, TestKey};

const RECORD: &str = "query($id: ID!, $p: Boolean) { record(id: $id, preview: $p) { id modelKey data status version publishedAt } }";
const RECORDS: &str =
    "query($m: String!, $l: Int, $a: String, $p: Boolean, $w: JSON, $o: [RecordOrder!]) {
    records(modelKey: $m, limit: $l, after: $a, preview: $p, where: $w, orderBy: $o) {
        items { id data status } pageInfo { hasNextPage endCursor } totalCount } }";

/// `person` (name) and `page` (one field of each type).
async fn blog_models(app: &TestApp, key: &str) {
    app.create_model(
        key,
        json!({ "key": "person", "name": "Person", "fields": [
            { "name": "name", "type": "STRING", "required": true }
        ] }),
    )
    .await;
    app.create_model(
        key,
        json!({ "key": "page", "name": "Page", "fields": [
            { "name": "title", "type": "STRING", "required": true },
            { "name": "slug", "type": "STRING", "unique": true },
            { "name": "body", "type": "TEXT" },
            { "name": "rank", "type": "INTEGER" },
            { "name": "score", "type": "NUMBER" },
            { "name": "featured", "type": "BOOLEAN" },
            { "name": "date", "type": "DATETIME" },
            { "name": "meta", "type": "JSON" },
            { "name": "author", "type": "REFERENCE", "referenceModelKey": "person" }
        ] }),
    )
    .await;
}

async fn list(app: &TestApp, key: &str, vars: Value) -> Reply {
    let mut vars = vars;
    if vars.get("m").is_none() {
        vars["m"] = json!("page");
    }
    app.gql(key, RECORDS, vars).await
}

/// `records` items' ids, asserting no error.
async fn ids(app: &TestApp, key: &str, vars: Value) -> Vec<String> {
    let reply = list(app, key, vars).await;
    assert!(reply.body.get("errors").is_none(), "{}", reply.body);
    reply.body["data"]["records"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn total(app: &TestApp, key: &str, vars: Value) -> i64 {
    let reply = list(app, key, vars).await;
    assert!(reply.body.get("errors").is_none(), "{}", reply.body);
    reply.body["data"]["records"]["totalCount"]
        .as_i64()
        .unwrap()
}

both_dbs!(publish_lifecycle, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let created = app
        .create_record(
            &k.root,
            "page",
            json!({ "title": "Hello", "slug": "hello" }),
        )
        .await;
    let id = created.id;
    assert_eq!(created.model_key, "page");
    assert_eq!(created.data, json!({ "title": "Hello", "slug": "hello" }));
    assert_eq!(created.status, "DRAFT");
    assert_eq!(created.version, 1);
    assert_eq!(created.published_at, None);

    // A draft is invisible to a live key: by id, in lists, in counts.
    let by_id = app.data(&k.live, RECORD, json!({ "id": id })).await;
    assert_eq!(by_id["record"], Value::Null);
    assert!(ids(&app, &k.live, json!({})).await.is_empty());
    assert_eq!(total(&app, &k.live, json!({})).await, 0);
    assert_eq!(
        total(&app, &k.live, json!({ "w": { "slug": "hello" } })).await,
        0
    );
    // The draft view shows it.
    assert_eq!(total(&app, &k.root, json!({ "p": true })).await, 1);

    // Published, it appears.
    app.clock.advance(ChronoDuration::seconds(5));
    let published = app.publish_record(&k.root, &id).await;
    assert_eq!(published.status, "PUBLISHED");
    assert_eq!(published.version, 2);
    assert!(published.published_at.is_some());
    let seen = app.data(&k.live, RECORD, json!({ "id": id })).await;
    assert_eq!(
        seen["record"]["data"],
        json!({ "title": "Hello", "slug": "hello" })
    );
    assert_eq!(seen["record"]["status"], "PUBLISHED");
    assert_eq!(ids(&app, &k.live, json!({})).await, vec![id.clone()]);

    // Edited: the live key still gets the published data, status CHANGED.
    let updated = app
        .data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "Hello, world", "slug": "hello" } }),
        )
        .await;
    assert_eq!(updated["updateRecord"]["status"], "CHANGED");
    assert_eq!(updated["updateRecord"]["version"], 3);
    let seen = app.data(&k.live, RECORD, json!({ "id": id })).await;
    assert_eq!(seen["record"]["data"]["title"], "Hello");
    assert_eq!(seen["record"]["status"], "CHANGED");
    let preview = app
        .data(&k.root, RECORD, json!({ "id": id, "p": true }))
        .await;
    assert_eq!(preview["record"]["data"]["title"], "Hello, world");
    // The published view cannot filter or count by the draft value.
    assert_eq!(
        total(&app, &k.live, json!({ "w": { "title": "Hello, world" } })).await,
        0
    );
    assert_eq!(
        total(&app, &k.live, json!({ "w": { "title": "Hello" } })).await,
        1
    );
    assert_eq!(
        total(
            &app,
            &k.root,
            json!({ "p": true, "w": { "title": "Hello, world" } })
        )
        .await,
        1
    );

    // Publishing again publishes the edit.
    app.publish_record(&k.root, &id).await;
    let seen = app.data(&k.live, RECORD, json!({ "id": id })).await;
    assert_eq!(seen["record"]["data"]["title"], "Hello, world");
    assert_eq!(seen["record"]["status"], "PUBLISHED");

    // Unpublished, it disappears (and stays a draft).
    let unpublished = app
        .data(&k.root, UNPUBLISH_RECORD, json!({ "id": id }))
        .await;
    assert_eq!(unpublished["unpublishRecord"]["status"], "DRAFT");
    assert_eq!(unpublished["unpublishRecord"]["publishedAt"], Value::Null);
    assert_eq!(
        app.data(&k.live, RECORD, json!({ "id": id })).await["record"],
        Value::Null
    );
    assert!(ids(&app, &k.live, json!({})).await.is_empty());
    assert_eq!(total(&app, &k.root, json!({ "p": true })).await, 1);

    // Deleted, it is gone from every view; its unique value is free again.
    app.publish_record(&k.root, &id).await;
    assert_eq!(
        app.data(&k.root, DELETE_RECORD, json!({ "id": id })).await["deleteRecord"],
        true
    );
    assert_eq!(
        app.data(&k.live, RECORD, json!({ "id": id })).await["record"],
        Value::Null
    );
    assert_eq!(
        app.data(&k.root, RECORD, json!({ "id": id, "p": true }))
            .await["record"],
        Value::Null
    );
    assert_eq!(total(&app, &k.root, json!({ "p": true })).await, 0);
    assert_eq!(total(&app, &k.live, json!({})).await, 0);
    assert_eq!(
        app.gql(&k.root, DELETE_RECORD, json!({ "id": id }))
            .await
            .code(),
        Some("NOT_FOUND")
    );
    assert_eq!(
        app.gql(&k.root, PUBLISH_RECORD, json!({ "id": id }))
            .await
            .code(),
        Some("NOT_FOUND")
    );
    app.create_record(
        &k.root,
        "page",
        json!({ "title": "Again", "slug": "hello" }),
    )
    .await;
});

both_dbs!(
    preview_is_for_secret_test_keys_with_drafts_read,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let id = app
            .create_record(&k.root, "page", json!({ "title": "Secret draft" }))
            .await
            .id;
        let cases = [
            (
                KeyType::Public,
                KeyMode::Test,
                vec!["records:read"],
                "public key",
            ),
            (
                KeyType::Public,
                KeyMode::Live,
                vec!["records:read"],
                "public key",
            ),
            (KeyType::Secret, KeyMode::Live, vec!["*"], "LIVE key"),
            (
                KeyType::Secret,
                KeyMode::Test,
                vec!["records:read"],
                "drafts:read",
            ),
        ];
        for (key_type, mode, scopes, reason) in cases {
            let key = app
                .new_key()
                .kind(key_type, mode)
                .scopes(&scopes)
                .create()
                .await;
            for reply in [
                list(&app, &key, json!({ "p": true })).await,
                app.gql(&key, RECORD, json!({ "id": id, "p": true })).await,
            ] {
                assert_eq!(
                    reply.code(),
                    Some("FORBIDDEN"),
                    "{key_type:?} {mode:?}: {}",
                    reply.body
                );
                assert!(reply.message().contains(reason), "{}", reply.message());
                assert!(!reply.message().contains("Secret draft"));
            }
        }
        let reader = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read", "drafts:read"])
            .create()
            .await;
        assert_eq!(
            ids(&app, &reader, json!({ "p": true })).await,
            vec![id.clone()]
        );
        assert_eq!(
            app.data(&reader, RECORD, json!({ "id": id, "p": true }))
                .await["record"]["id"],
            id
        );
        // drafts:read alone does not replace records:read.
        let no_read = app
            .new_key()
            .secret()
            .test()
            .scopes(&["drafts:read"])
            .create()
            .await;
        assert_eq!(
            list(&app, &no_read, json!({ "p": true })).await.code(),
            Some("FORBIDDEN")
        );
    }
);

both_dbs!(
    writes_are_validated_naming_the_field,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let ann = app
            .create_record(&k.root, "person", json!({ "name": "Ann" }))
            .await
            .id;
        let taken = app
            .create_record(
                &k.root,
                "page",
                json!({ "title": "Taken", "slug": "taken" }),
            )
            .await
            .id;
        let cases: Vec<(Value, &str, &str)> = vec![
            (
                json!({ "title": "x", "colour": "red" }),
                "colour",
                "unknown field",
            ),
            (json!({ "slug": "no-title" }), "title", "required"),
            (json!({ "title": null }), "title", "required"),
            (json!({ "title": 5 }), "title", "string"),
            (json!({ "title": "x", "body": false }), "body", "string"),
            (json!({ "title": "x", "rank": 1.5 }), "rank", "integer"),
            (json!({ "title": "x", "rank": "1" }), "rank", "integer"),
            (json!({ "title": "x", "score": "high" }), "score", "number"),
            (
                json!({ "title": "x", "featured": "yes" }),
                "featured",
                "boolean",
            ),
            (
                json!({ "title": "x", "date": "23/11/2026" }),
                "date",
                "RFC 3339",
            ),
            (
                json!({ "title": "x", "date": "2026-11-23" }),
                "date",
                "RFC 3339",
            ),
            (
                json!({ "title": "x", "author": "no-such-id" }),
                "author",
                "does not exist",
            ),
            (
                json!({ "title": "x", "author": taken }),
                "author",
                "must reference a \"person\"",
            ),
            (json!({ "title": "x", "author": 7 }), "author", "string"),
            (json!({ "title": "x", "slug": "taken" }), "slug", "unique"),
            (json!({ "title": "x".repeat(513) }), "title", "at most"),
        ];
        for (data, field, needle) in cases {
            let reply = app
                .gql(&k.root, CREATE_RECORD, json!({ "m": "page", "d": data }))
                .await;
            assert_eq!(
                reply.code(),
                Some("BAD_USER_INPUT"),
                "{data}: {}",
                reply.body
            );
            assert_eq!(reply.error_field(), Some(field), "{data}: {}", reply.body);
            assert!(reply.message().contains(field), "{}", reply.message());
            assert!(
                reply.message().contains(needle),
                "{data}: {}",
                reply.message()
            );
        }
        let reply = app
            .gql(&k.root, CREATE_RECORD, json!({ "m": "page", "d": [1] }))
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        assert_eq!(reply.error_field(), Some("data"));
        let reply = app
            .gql(&k.root, CREATE_RECORD, json!({ "m": "nope", "d": {} }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"));

        // Valid values, DATETIME normalized to UTC.
        let ok = app
        .data(
            &k.root,
            CREATE_RECORD,
            json!({ "m": "page", "d": { "title": "Full", "slug": "full", "body": "b", "rank": -3,
                "score": 2.5, "featured": true, "date": "2026-11-23T12:00:00+02:00",
                "meta": { "any": [1, "thing"] }, "author": ann } }),
        )
        .await;
        assert_eq!(
            ok["createRecord"]["data"]["date"],
            "2026-11-23T10:00:00.000Z"
        );
        let full = ok["createRecord"]["id"].as_str().unwrap().to_owned();

        // Updates are validated the same way, unique values included (a record
        // may keep its own value).
        let reply = app
            .gql(
                &k.root,
                UPDATE_RECORD,
                json!({ "id": full, "d": { "title": "Full", "slug": "taken" } }),
            )
            .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        assert_eq!(reply.error_field(), Some("slug"));
        app.data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": full, "d": { "title": "Full 2", "slug": "full" } }),
        )
        .await;

        // A value stays reserved while the published snapshot holds it.
        app.publish_record(&k.root, &taken).await;
        app.data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": taken, "d": { "title": "Taken", "slug": "moved" } }),
        )
        .await;
        let reply = app
            .gql(
                &k.root,
                CREATE_RECORD,
                json!({ "m": "page", "d": { "title": "y", "slug": "taken" } }),
            )
            .await;
        assert_eq!(reply.error_field(), Some("slug"), "{}", reply.body);
        app.publish_record(&k.root, &taken).await;
        app.create_record(&k.root, "page", json!({ "title": "y", "slug": "taken" }))
            .await;
    }
);

both_dbs!(
    concurrent_duplicates_are_refused_by_the_database,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let attempts = (0..8).map(|i| {
            let app = app.clone();
            let key = k.root.clone();
            async move {
                app.gql(
                    &key,
                    CREATE_RECORD,
                    json!({ "m": "page", "d": { "title": format!("t{i}"), "slug": "same" } }),
                )
                .await
            }
        });
        let replies = futures::future::join_all(attempts).await;
        let ok = replies
            .iter()
            .filter(|r| r.body.get("errors").is_none())
            .count();
        assert_eq!(
            ok,
            1,
            "{:?}",
            replies
                .iter()
                .map(|r| r.body.to_string())
                .collect::<Vec<_>>()
        );
        for r in replies.iter().filter(|r| r.body.get("errors").is_some()) {
            // SQLite may report a busy database instead; never a second success.
            assert!(
                matches!(
                    r.code(),
                    Some("BAD_USER_INPUT") | Some("INTERNAL_SERVER_ERROR")
                ),
                "{}",
                r.body
            );
        }
        assert_eq!(
            total(&app, &k.root, json!({ "p": true, "w": { "slug": "same" } })).await,
            1
        );
    }
);

// Writes that arrive together commit together on SQLite (one transaction,
// a savepoint each): a refused write must roll back only itself, and every
// acknowledged write must be there afterwards.
both_dbs!(
    concurrent_writes_commit_and_fail_one_by_one,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let attempts = (0..48).map(|i| {
            let app = app.clone();
            let key = k.root.clone();
            async move {
                let slug = format!("s{}", i % 16);
                let reply = app
                    .gql(
                        &key,
                        CREATE_RECORD,
                        json!({ "m": "page", "d": { "title": format!("t{i}"), "slug": slug } }),
                    )
                    .await;
                (slug, format!("t{i}"), reply)
            }
        });
        let replies = futures::future::join_all(attempts).await;
        let mut won = std::collections::BTreeMap::new();
        for (slug, title, reply) in &replies {
            if reply.body.get("errors").is_none() {
                assert!(
                    won.insert(slug.clone(), title.clone()).is_none(),
                    "{slug} twice"
                );
            } else {
                assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
                assert_eq!(
                    reply.body["errors"][0]["extensions"]["field"], "slug",
                    "{}",
                    reply.body
                );
            }
        }
        assert_eq!(won.len(), 16, "one create per slug succeeds");
        assert_eq!(total(&app, &k.root, json!({ "p": true })).await, 16);
        for (slug, title) in &won {
            let found = list(&app, &k.root, json!({ "p": true, "w": { "slug": slug } })).await;
            assert_eq!(
                found.body["data"]["records"]["items"][0]["data"]["title"], *title,
                "{}",
                found.body
            );
        }
        if app.state.db.backend() == sea_orm::DbBackend::Sqlite {
            let metrics = app
                .client
                .get(app.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let figure = |name: &str| -> f64 {
                metrics
                    .lines()
                    .find(|l| l.starts_with(name))
                    .and_then(|l| l.split_whitespace().last())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0)
            };
            let (writes, groups) = (
                figure("quire_write_group_size_sum"),
                figure("quire_write_group_size_count"),
            );
            assert!(
                writes >= 48.0,
                "every write went through a group: {metrics}"
            );
            eprintln!("{writes} writes in {groups} groups");
        }
    }
);

both_dbs!(versions_and_expected_version, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let id = app
        .create_record(&k.root, "page", json!({ "title": "v1" }))
        .await
        .id;
    let d = app
        .data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "v2" }, "v": 1 }),
        )
        .await;
    assert_eq!(d["updateRecord"]["version"], 2);
    let stale = app
        .gql(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "v3" }, "v": 1 }),
        )
        .await;
    assert_eq!(stale.code(), Some("CONFLICT"));
    assert!(stale.message().contains("version 2"), "{}", stale.message());
    let d = app
        .data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "v3" } }),
        )
        .await;
    assert_eq!(d["updateRecord"]["version"], 3);
    // updateRecord replaces data whole.
    let d = app
        .data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "v4", "rank": 1 } }),
        )
        .await;
    let d2 = app
        .data(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "title": "v5" } }),
        )
        .await;
    assert_eq!(d["updateRecord"]["data"]["rank"], 1);
    assert_eq!(d2["updateRecord"]["data"], json!({ "title": "v5" }));
    assert_eq!(
        app.gql(&k.root, UPDATE_RECORD, json!({ "id": "missing", "d": {} }))
            .await
            .code(),
        Some("NOT_FOUND")
    );
});

both_dbs!(scopes_gate_content_fields, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let id = app
        .create_record(&k.root, "page", json!({ "title": "t" }))
        .await
        .id;
    let reader = app
        .new_key()
        .secret()
        .live()
        .scopes(&["records:read"])
        .create()
        .await;
    let cases = [
        (CREATE_RECORD, json!({ "m": "page", "d": { "title": "x" } })),
        (UPDATE_RECORD, json!({ "id": id, "d": { "title": "x" } })),
        (PUBLISH_RECORD, json!({ "id": id })),
        (UNPUBLISH_RECORD, json!({ "id": id })),
        (DELETE_RECORD, json!({ "id": id })),
        ("{ models { key } }", json!({})),
        ("{ model(key: \"page\") { key } }", json!({})),
        (
            CREATE_MODEL,
            json!({ "i": { "key": "x", "name": "X", "fields": [] } }),
        ),
    ];
    for (query, vars) in cases {
        let reply = app.gql(&reader, query, vars).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{query}: {}", reply.body);
    }
    let writer = app
        .new_key()
        .secret()
        .live()
        .scopes(&["records:write"])
        .create()
        .await;
    assert_eq!(
        list(&app, &writer, json!({})).await.code(),
        Some("FORBIDDEN")
    );
});

both_dbs!(
    documented_query_works_with_a_public_live_key,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let id = app
            .create_record(&k.root, "page", json!({ "title": "Home", "slug": "home" }))
            .await
            .id;
        app.create_record(&k.root, "page", json!({ "title": "Draft only" }))
            .await;
        app.publish_record(&k.root, &id).await;
        let reply = app
            .gql(
                &k.live,
                r#"{ records(modelKey: "page", limit: 10) { items { id data } } }"#,
                json!({}),
            )
            .await;
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.body,
            json!({ "data": { "records": { "items": [ { "id": id, "data": { "title": "Home", "slug": "home" } } ] } } })
        );
        // JSON arguments may be written inline, as the README does.
        let d = app
            .data(&k.root, r#"mutation { createRecord(modelKey: "page", data: { title: "Inline", slug: "inline" }) { id } }"#, json!({}))
            .await;
        let inline = d["createRecord"]["id"].as_str().unwrap().to_owned();
        app.publish_record(&k.root, &inline).await;
        let d = app
            .data(&k.live, r#"{ records(modelKey: "page", limit: 10, where: { slug: "inline" }) { items { id } totalCount } }"#, json!({}))
            .await;
        assert_eq!(
            d["records"],
            json!({ "items": [ { "id": inline } ], "totalCount": 1 })
        );
    }
);

both_dbs!(
    cursor_walk_visits_every_record_once_under_inserts,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let mut originals = HashSet::new();
        for i in 0..23 {
            app.clock
                .advance(ChronoDuration::milliseconds(if i % 3 == 0 { 0 } else { 1 }));
            let id = app
                .create_record(
                    &k.root,
                    "page",
                    json!({ "title": format!("p{i:02}"), "rank": i % 4 }),
                )
                .await
                .id;
            app.publish_record(&k.root, &id).await;
            originals.insert(id);
        }
        let orders = [
            json!(null),
            json!([{ "field": "createdAt", "direction": "DESC" }]),
            json!([{ "field": "rank" }, { "field": "title", "direction": "DESC" }]),
            json!([{ "field": "rank", "direction": "DESC" }]),
            json!([{ "field": "publishedAt" }]),
            json!([{ "field": "score" }]),
        ];
        for order in orders {
            let mut seen = Vec::new();
            let mut after: Option<String> = None;
            let mut inserted = 0;
            loop {
                let reply = list(&app, &k.live, json!({ "l": 5, "a": after, "o": order })).await;
                assert!(reply.body.get("errors").is_none(), "{}", reply.body);
                let page = &reply.body["data"]["records"];
                for item in page["items"].as_array().unwrap() {
                    seen.push(item["id"].as_str().unwrap().to_owned());
                }
                // Meanwhile, others insert (before and after the cursor).
                for j in 0..2 {
                    let id = app
                        .create_record(
                            &k.root,
                            "page",
                            json!({ "title": format!("new{inserted}-{j}"), "rank": j * 3 }),
                        )
                        .await
                        .id;
                    app.publish_record(&k.root, &id).await;
                    inserted += 1;
                }
                if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                    break;
                }
                after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
            }
            let unique: HashSet<_> = seen.iter().cloned().collect();
            assert_eq!(
                unique.len(),
                seen.len(),
                "a record was visited twice with {order}"
            );
            assert!(
                originals.is_subset(&unique),
                "a record was skipped with {order}"
            );
        }
        for limit in [0, 101, -1] {
            let reply = list(&app, &k.live, json!({ "l": limit })).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{limit}");
            assert_eq!(reply.error_field(), Some("limit"));
        }
        assert_eq!(ids(&app, &k.live, json!({ "l": 100 })).await.len(), 100);
        // A cursor is only good for the ordering it came from.
        let first = list(&app, &k.live, json!({ "l": 1 })).await;
        let cursor = first.body["data"]["records"]["pageInfo"]["endCursor"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = list(
            &app,
            &k.live,
            json!({ "a": cursor, "o": [{ "field": "title" }] }),
        )
        .await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
        assert_eq!(
            list(&app, &k.live, json!({ "a": "garbage!" })).await.code(),
            Some("BAD_USER_INPUT")
        );
    }
);

both_dbs!(
    concurrent_inserts_during_a_walk,
    |app: TestApp| async move {
        let k = app.default_tenant().await;
        blog_models(&app, &k.root).await;
        let mut originals = HashSet::new();
        for i in 0..30 {
            app.clock.advance(ChronoDuration::milliseconds(1));
            originals.insert(
                app.create_record(&k.root, "page", json!({ "title": format!("p{i}") }))
                    .await
                    .id,
            );
        }
        let writer = {
            let app = app.clone();
            let key = k.root.clone();
            tokio::spawn(async move {
                for i in 0..30 {
                    app.create_record(&key, "page", json!({ "title": format!("c{i}") }))
                        .await;
                }
            })
        };
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let reply = list(&app, &k.root, json!({ "l": 4, "a": after, "p": true })).await;
            assert!(reply.body.get("errors").is_none(), "{}", reply.body);
            let page = &reply.body["data"]["records"];
            seen.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["id"].as_str().unwrap().to_owned()),
            );
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = Some(page["pageInfo"]["endCursor"].as_str().unwrap().to_owned());
        }
        writer.await.unwrap();
        let unique: HashSet<_> = seen.iter().cloned().collect();
        assert_eq!(unique.len(), seen.len());
        assert!(originals.is_subset(&unique));
    }
);

both_dbs!(where_semantics, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let rows = [
        json!({ "title": "Alpha", "slug": "a", "rank": 1, "score": 1.5, "featured": true, "date": "2026-01-01T00:00:00Z", "body": "Hello World" }),
        json!({ "title": "beta", "slug": "b", "rank": 2, "score": 2, "featured": false, "date": "2026-06-01T00:00:00Z" }),
        json!({ "title": "Gamma", "slug": "g", "rank": 3, "featured": null, "body": "hello world" }),
        json!({ "title": "Delta" }),
    ];
    let mut id = Vec::new();
    for r in rows {
        let i = app.create_record(&k.root, "page", r).await.id;
        app.publish_record(&k.root, &i).await;
        id.push(i);
    }
    let check = |w: Value, expected: Vec<usize>| {
        let app = app.clone();
        let key = k.live.clone();
        let id = id.clone();
        async move {
            let mut got = ids(&app, &key, json!({ "w": w })).await;
            got.sort();
            let mut want: Vec<String> = expected.iter().map(|i| id[*i].clone()).collect();
            want.sort();
            assert_eq!(got, want, "where {w}");
            assert_eq!(
                total(&app, &key, json!({ "w": w })).await,
                want.len() as i64,
                "count where {w}"
            );
        }
    };
    check(json!({ "slug": "b" }), vec![1]).await;
    check(json!({ "slug": { "eq": "b" } }), vec![1]).await;
    check(json!({ "slug": { "in": ["a", "g", "zz"] } }), vec![0, 2]).await;
    check(json!({ "slug": null }), vec![3]).await;
    check(json!({ "slug": { "eq": null } }), vec![3]).await;
    check(json!({ "slug": { "ne": null } }), vec![0, 1, 2]).await;
    check(json!({ "slug": { "ne": "a" } }), vec![1, 2]).await;
    check(json!({ "featured": null }), vec![2, 3]).await;
    check(json!({ "featured": true }), vec![0]).await;
    check(json!({ "featured": { "ne": true } }), vec![1]).await;
    check(json!({ "rank": { "gt": 1 } }), vec![1, 2]).await;
    check(json!({ "rank": { "gte": 1, "lt": 3 } }), vec![0, 1]).await;
    check(json!({ "rank": { "lte": 2 } }), vec![0, 1]).await;
    check(json!({ "rank": { "in": [3, null] } }), vec![2, 3]).await;
    check(json!({ "rank": { "in": [] } }), vec![]).await;
    check(json!({ "score": { "gt": 1.6 } }), vec![1]).await;
    check(json!({ "score": 2.0 }), vec![1]).await;
    check(
        json!({ "date": { "gt": "2026-03-01T00:00:00+01:00" } }),
        vec![1],
    )
    .await;
    check(json!({ "date": { "lt": "2026-03-01T00:00:00Z" } }), vec![0]).await;
    check(json!({ "title": { "gt": "B" } }), vec![1, 2, 3]).await; // bytewise: "beta" > "B"
    check(
        json!({ "title": { "gte": "Alpha", "lt": "Delta" } }),
        vec![0],
    )
    .await;
    check(json!({ "body": { "contains": "World" } }), vec![0]).await;
    check(json!({ "body": { "contains": "world" } }), vec![2]).await;
    check(json!({ "title": { "contains": "a" } }), vec![0, 1, 2, 3]).await;
    check(json!({ "title": { "contains": "%" } }), vec![]).await;
    check(json!({ "rank": 2, "featured": false }), vec![1]).await;
    check(json!({ "meta": null }), vec![0, 1, 2, 3]).await;

    let bad = [
        json!({ "nope": 1 }),
        json!({ "rank": { "contains": "1" } }),
        json!({ "rank": { "gt": null } }),
        json!({ "rank": { "gt": "one" } }),
        json!({ "rank": { "like": 1 } }),
        json!({ "rank": { "in": 3 } }),
        json!({ "featured": { "gt": true } }),
        json!({ "meta": { "eq": { "a": 1 } } }),
        json!({ "date": { "gt": "yesterday" } }),
        json!([1]),
    ];
    for w in bad {
        let reply = list(&app, &k.live, json!({ "w": w })).await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "where {w}: {}",
            reply.body
        );
    }
    let reply = list(&app, &k.live, json!({ "w": { "nope": 1 } })).await;
    assert!(reply.message().contains("nope"));
});

both_dbs!(order_by_semantics, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let mut id = Vec::new();
    for (title, rank) in [
        ("c", json!(2)),
        ("a", json!(1)),
        ("b", json!(null)),
        ("d", json!(2)),
    ] {
        app.clock.advance(ChronoDuration::seconds(1));
        let i = app
            .create_record(&k.root, "page", json!({ "title": title, "rank": rank }))
            .await
            .id;
        id.push(i);
    }
    // Published in reverse order.
    for i in id.iter().rev() {
        app.clock.advance(ChronoDuration::seconds(1));
        app.publish_record(&k.root, i).await;
    }
    let order = |o: Value| {
        let app = app.clone();
        let key = k.live.clone();
        async move { ids(&app, &key, json!({ "o": o })).await }
    };
    assert_eq!(order(json!(null)).await, id.clone());
    assert_eq!(
        order(json!([{ "field": "createdAt", "direction": "DESC" }])).await,
        id.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        order(json!([{ "field": "publishedAt" }])).await,
        id.iter().rev().cloned().collect::<Vec<_>>()
    );
    assert_eq!(
        order(json!([{ "field": "title" }])).await,
        vec![id[1].clone(), id[2].clone(), id[0].clone(), id[3].clone()]
    );
    // Nulls last ascending, first descending; ties by id.
    let by_rank = order(json!([{ "field": "rank" }])).await;
    assert_eq!(by_rank[0], id[1]);
    assert_eq!(by_rank[3], id[2]);
    let mut tie = [id[0].clone(), id[3].clone()];
    tie.sort();
    assert_eq!(by_rank[1..3], tie[..]);
    let by_rank_desc = order(json!([{ "field": "rank", "direction": "DESC" }])).await;
    assert_eq!(by_rank_desc[0], id[2]);
    assert_eq!(by_rank_desc[3], id[1]);
    let by_rank_title = order(json!([{ "field": "rank", "direction": "DESC" }, { "field": "title", "direction": "DESC" }])).await;
    assert_eq!(
        by_rank_title,
        vec![id[2].clone(), id[3].clone(), id[0].clone(), id[1].clone()]
    );

    for bad in [
        json!([{ "field": "nope" }]),
        json!([{ "field": "meta" }]),
        json!([{ "field": "featured" }]),
    ] {
        assert_eq!(
            list(&app, &k.live, json!({ "o": bad })).await.code(),
            Some("BAD_USER_INPUT"),
            "{bad}"
        );
    }
    // The published view orders by published values: a draft edit does not move a record.
    app.data(
        &k.root,
        UPDATE_RECORD,
        json!({ "id": id[1], "d": { "title": "zzz", "rank": 1 } }),
    )
    .await;
    assert_eq!(order(json!([{ "field": "title" }])).await[0], id[1]);
    let preview = ids(
        &app,
        &k.root,
        json!({ "p": true, "o": [{ "field": "title" }] }),
    )
    .await;
    assert_eq!(preview[3], id[1]);
});

both_dbs!(projects_are_isolated, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let mine = app
        .create_record(&k.root, "page", json!({ "title": "Mine", "slug": "mine" }))
        .await
        .id;
    app.publish_record(&k.root, &mine).await;

    let other = app.tenant("other").await;

    // No model "page" there yet: it is missing, not someone else's.
    assert_eq!(
        list(&app, &other.live, json!({})).await.code(),
        Some("NOT_FOUND")
    );
    let models = app.data(&other.root, "{ models { key } }", json!({})).await;
    assert_eq!(models["models"], json!([]));
    assert_eq!(
        app.data(&other.root, "{ model(key: \"page\") { key } }", json!({}))
            .await["model"],
        Value::Null
    );

    // The same model key may exist in both; contents stay apart.
    blog_models(&app, &other.root).await;
    let theirs = app
        .create_record(
            &other.root,
            "page",
            json!({ "title": "Theirs", "slug": "mine" }),
        )
        .await
        .id;
    app.publish_record(&other.root, &theirs).await;
    assert_eq!(
        ids(&app, &other.live, json!({})).await,
        vec![theirs.clone()]
    );
    assert_eq!(
        total(&app, &other.live, json!({ "w": { "slug": "mine" } })).await,
        1
    );
    assert_eq!(
        total(&app, &k.live, json!({ "w": { "slug": "mine" } })).await,
        1
    );
    assert_eq!(
        ids(&app, &k.live, json!({ "w": { "title": "Theirs" } })).await,
        Vec::<String>::new()
    );

    for (key, foreign) in [(&other.root, &mine), (&k.root, &theirs)] {
        assert_eq!(
            app.data(key, RECORD, json!({ "id": foreign, "p": true }))
                .await["record"],
            Value::Null
        );
        for (query, vars) in [
            (
                UPDATE_RECORD,
                json!({ "id": foreign, "d": { "title": "hijack" } }),
            ),
            (PUBLISH_RECORD, json!({ "id": foreign })),
            (UNPUBLISH_RECORD, json!({ "id": foreign })),
            (DELETE_RECORD, json!({ "id": foreign })),
        ] {
            let reply = app.gql(key, query, vars).await;
            assert_eq!(reply.code(), Some("NOT_FOUND"), "{query}: {}", reply.body);
        }
    }
    // A reference cannot point into another project.
    let person = app
        .create_record(&k.root, "person", json!({ "name": "Ann" }))
        .await
        .id;
    let reply = app
        .gql(
            &other.root,
            CREATE_RECORD,
            json!({ "m": "page", "d": { "title": "x", "author": person } }),
        )
        .await;
    assert_eq!(reply.error_field(), Some("author"));
    // Still intact.
    let seen = app.data(&k.live, RECORD, json!({ "id": mine })).await;
    assert_eq!(seen["record"]["data"]["title"], "Mine");
});

both_dbs!(models_lifecycle, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let models = app.data(&k.root, "{ models { key name fields { name type required unique referenceModelKey } createdAt } }", json!({})).await;
    assert_eq!(models["models"].as_array().unwrap().len(), 2);
    let page = app
        .data(
            &k.root,
            "{ model(key: \"page\") { fields { name type referenceModelKey } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        page["model"]["fields"][8],
        json!({ "name": "author", "type": "REFERENCE", "referenceModelKey": "person" })
    );

    // Creation rules.
    let dup = app
        .gql(
            &k.root,
            CREATE_MODEL,
            json!({ "i": { "key": "page", "name": "Again", "fields": [] } }),
        )
        .await;
    assert_eq!(dup.code(), Some("CONFLICT"));
    let bad_models = [
        (json!({ "key": "Page", "name": "x", "fields": [] }), "key"),
        (json!({ "key": "a-b", "name": "x", "fields": [] }), "key"),
        (json!({ "key": "ok", "name": "", "fields": [] }), "name"),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "Bad", "type": "STRING" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "a", "type": "STRING" }, { "name": "a", "type": "TEXT" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "id", "type": "STRING" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "r", "type": "REFERENCE" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "r", "type": "REFERENCE", "referenceModelKey": "nope" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "s", "type": "STRING", "referenceModelKey": "page" }] }),
            "fields",
        ),
        (
            json!({ "key": "ok", "name": "x", "fields": [{ "name": "j", "type": "JSON", "unique": true }] }),
            "fields",
        ),
    ];
    for (input, field) in bad_models {
        let reply = app.gql(&k.root, CREATE_MODEL, json!({ "i": input })).await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "{input}: {}",
            reply.body
        );
        assert_eq!(reply.error_field(), Some(field), "{input}");
    }
    // A model may reference itself.
    let node = app
        .create_model(
            &k.root,
            json!({ "key": "node", "name": "Node", "fields": [
            { "name": "parent", "type": "REFERENCE", "referenceModelKey": "node" } ] }),
        )
        .await;
    assert_eq!((node.key.as_str(), node.name.as_str()), ("node", "Node"));
    let parent = &node.fields[0];
    assert_eq!(
        (parent.name.as_str(), parent.field_type.as_str()),
        ("parent", "REFERENCE")
    );
    assert!(!parent.required && !parent.unique);
    assert_eq!(parent.reference_model_key.as_deref(), Some("node"));

    // updateModel: add fields; tighten only when the data allows.
    let a = app
        .create_record(&k.root, "person", json!({ "name": "Ann" }))
        .await
        .id;
    let b = app
        .create_record(&k.root, "person", json!({ "name": "Ann" }))
        .await
        .id;
    let fields = |extra: Value, name_unique: bool| {
        let mut f = vec![
            json!({ "name": "name", "type": "STRING", "required": true, "unique": name_unique }),
        ];
        if let Value::Array(more) = extra {
            f.extend(more);
        }
        json!(f)
    };
    let reply = app
        .gql(
            &k.root,
            UPDATE_MODEL,
            json!({ "k": "person", "i": { "fields": fields(json!([]), true) } }),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    assert!(
        reply.message().contains(&a) || reply.message().contains(&b),
        "{}",
        reply.message()
    );
    let reply = app.gql(&k.root, UPDATE_MODEL, json!({ "k": "person", "i": {
        "fields": fields(json!([{ "name": "email", "type": "STRING", "required": true }]), false) } })).await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    assert!(
        reply.message().contains(&a) && reply.message().contains(&b),
        "{}",
        reply.message()
    );
    let reply = app
        .gql(
            &k.root,
            UPDATE_MODEL,
            json!({ "k": "person", "i": { "fields": [] } }),
        )
        .await;
    assert!(reply.message().contains("cannot be removed"));
    let reply = app
        .gql(
            &k.root,
            UPDATE_MODEL,
            json!({ "k": "person", "i": { "fields": [{ "name": "name", "type": "TEXT" }] } }),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));

    // email is not a field yet.
    let reply = app
        .gql(
            &k.root,
            UPDATE_RECORD,
            json!({ "id": b, "d": { "name": "Bob", "email": "bob@example.com" } }),
        )
        .await;
    assert_eq!(reply.error_field(), Some("email"));
    app.data(
        &k.root,
        UPDATE_RECORD,
        json!({ "id": b, "d": { "name": "Bob" } }),
    )
    .await;
    let changed = app
        .data(
            &k.root,
            UPDATE_MODEL,
            json!({ "k": "person", "i": { "name": "People",
        "fields": fields(json!([{ "name": "email", "type": "STRING", "unique": true }]), true) } }),
        )
        .await;
    assert_eq!(changed["updateModel"]["name"], "People");
    assert_eq!(changed["updateModel"]["fields"][0]["unique"], true);
    // Now enforced.
    let reply = app
        .gql(
            &k.root,
            CREATE_RECORD,
            json!({ "m": "person", "d": { "name": "Ann" } }),
        )
        .await;
    assert_eq!(reply.error_field(), Some("name"));
    // Loosened again, duplicates are fine.
    app.data(
        &k.root,
        UPDATE_MODEL,
        json!({ "k": "person", "i": {
        "fields": fields(json!([{ "name": "email", "type": "STRING" }]), false) } }),
    )
    .await;
    app.create_record(&k.root, "person", json!({ "name": "Ann" }))
        .await;

    // deleteModel: not while records exist or another model references it.
    let reply = app
        .gql(
            &k.root,
            "mutation { deleteModel(key: \"person\") }",
            json!({}),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    let reply = app
        .gql(
            &k.root,
            "mutation { deleteModel(key: \"nope\") }",
            json!({}),
        )
        .await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    let d = app
        .data(
            &k.root,
            "mutation { deleteModel(key: \"node\") }",
            json!({}),
        )
        .await;
    assert_eq!(d["deleteModel"], true);
    assert_eq!(
        app.data(&k.root, "{ model(key: \"node\") { key } }", json!({}))
            .await["model"],
        Value::Null
    );
});

both_dbs!(records_list_command, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let id = app
        .create_record(&k.root, "page", json!({ "title": "Home" }))
        .await
        .id;
    app.create_record(&k.root, "page", json!({ "title": "Draft" }))
        .await;
    app.publish_record(&k.root, &id).await;
    let run = |key: TestKey, args: Vec<&'static str>| {
        let url = app.url("");
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
                .args(args)
                .env("QUIRE_URL", url)
                .env("QUIRE_API_KEY", key.secret)
                .output()
                .await
                .unwrap()
        }
    };
    let out = run(k.live.clone(), vec!["records", "list", "page", "--json"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 1);
    assert_eq!(items[0]["id"], id);
    let out = run(
        k.root.clone(),
        vec!["records", "list", "page", "--preview", "--json"],
    )
    .await;
    let items: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(items.as_array().unwrap().len(), 2);
    let out = run(k.root.clone(), vec!["records", "list", "page"]).await;
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&id));
    let out = run(k.live.clone(), vec!["records", "list", "page", "--preview"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("FORBIDDEN"));
    let out = run(k.live.clone(), vec!["records", "list", "nope"]).await;
    assert!(!out.status.success());
});

both_dbs!(concurrent_writes_all_succeed, |app: TestApp| async move {
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let writes = (0..32).map(|i| {
        let app = app.clone();
        let key = k.root.clone();
        async move {
            let reply = app
                .gql(&key, CREATE_RECORD, json!({ "m": "page", "d": { "title": format!("t{i}"), "slug": format!("s{i}") } }))
                .await;
            assert!(reply.body.get("errors").is_none(), "{}", reply.body);
            let id = reply.body["data"]["createRecord"]["id"].as_str().unwrap().to_owned();
            let reply = app.gql(&key, PUBLISH_RECORD, json!({ "id": id })).await;
            assert!(reply.body.get("errors").is_none(), "{}", reply.body);
        }
    });
    futures::future::join_all(writes).await;
    assert_eq!(total(&app, &k.live, json!({})).await, 32);
});

/// `where` on a unique field finds rows through primary keys, not by walking
/// the model's ordering index (which made it cost a scan of the model).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn where_on_a_unique_field_reads_through_primary_keys() {
    use quire::content::query::{explain, ListRecords};
    use quire::content::View;

    let app = TestApp::spawn(Backend::Sqlite).await;
    let k = app.default_tenant().await;
    blog_models(&app, &k.root).await;
    let project = quire::db::project_by_name(&app.state.db.conn, "default")
        .await
        .unwrap()
        .unwrap();
    let plan = explain(
        &app.state.db.conn,
        &project.id,
        &ListRecords {
            model_key: "page".into(),
            view: View::Published,
            limit: 20,
            after: None,
            filter: Some(json!({ "slug": "hello" })),
            order: Vec::new(),
        },
    )
    .await
    .unwrap()
    .join("\n");
    assert!(
        plan.contains("SEARCH r USING INDEX sqlite_autoindex_records_1 (id=?)"),
        "{plan}"
    );
    assert!(!plan.contains("idx_records_model_created"), "{plan}");
}
