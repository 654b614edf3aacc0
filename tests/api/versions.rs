//! Record versions (SPEC §11): every publish keeps a published version and
//! every create or update a draft version (the latest 50 drafts per record;
//! published versions all kept); `recordVersions` in the view the key may
//! have (a live key never sees a draft version, nor a record that is not
//! published now); `restoreRecordVersion` into the draft only; isolation
//! between projects; scopes.

use sea_orm::EntityTrait;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{DELETE_RECORD, UNPUBLISH_RECORD, UPDATE_RECORD};
use crate::support::TestApp;

const VERSIONS: &str = "query($id: ID!, $p: Boolean, $l: Int, $a: String) {
    recordVersions(id: $id, preview: $p, limit: $l, after: $a) {
        items { version data published createdAt } pageInfo { hasNextPage endCursor } } }";
const RESTORE: &str = "mutation($id: ID!, $v: Int!, $e: Int) {
    restoreRecordVersion(id: $id, version: $v, expectedVersion: $e) { id data status version } }";
const RECORD: &str =
    "query($id: ID!, $p: Boolean) { record(id: $id, preview: $p) { data status version } }";

async fn page_model(app: &TestApp, key: &str) {
    app.create_model(
        key,
        json!({ "key": "page", "name": "Page", "fields": [
            { "name": "title", "type": "STRING", "required": true }
        ] }),
    )
    .await;
}

async fn update(app: &TestApp, key: &str, id: &str, title: &str) {
    app.data(
        key,
        UPDATE_RECORD,
        json!({ "id": id, "d": { "title": title } }),
    )
    .await;
}

/// `(version, published, title)` of every version the key lists, walking
/// pages of `limit`.
async fn versions(
    app: &TestApp,
    key: &str,
    id: &str,
    preview: bool,
    limit: i64,
) -> Vec<(i64, bool, String)> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = app
            .data(
                key,
                VERSIONS,
                json!({ "id": id, "p": preview, "l": limit, "a": after }),
            )
            .await;
        let page = &data["recordVersions"];
        for v in page["items"].as_array().unwrap() {
            assert!(v["createdAt"].as_str().unwrap().ends_with('Z'));
            out.push((
                v["version"].as_i64().unwrap(),
                v["published"].as_bool().unwrap(),
                v["data"]["title"].as_str().unwrap().to_owned(),
            ));
        }
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            return out;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
}

fn v(version: i64, published: bool, title: &str) -> (i64, bool, String) {
    (version, published, title.to_owned())
}

both_dbs!(
    each_publish_and_update_keeps_a_version,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let r = app
            .create_record(&t.root, "page", json!({ "title": "one" }))
            .await; // v1 draft
        update(&app, &t.root, &r.id, "two").await; // v2 draft
        app.publish_record(&t.root, &r.id).await; // v3 published "two"
        update(&app, &t.root, &r.id, "three").await; // v4 draft
        app.data(&t.root, UNPUBLISH_RECORD, json!({ "id": r.id }))
            .await; // v5: no data changed, no version kept
        app.publish_record(&t.root, &r.id).await; // v6 published "three"

        let all = vec![
            v(6, true, "three"),
            v(4, false, "three"),
            v(3, true, "two"),
            v(2, false, "two"),
            v(1, false, "one"),
        ];
        // The draft view, in pages of every size.
        for limit in [1, 2, 20] {
            assert_eq!(versions(&app, &t.root, &r.id, true, limit).await, all);
        }
        // Without preview: the published versions only, for any key.
        let published = vec![v(6, true, "three"), v(3, true, "two")];
        assert_eq!(versions(&app, &t.root, &r.id, false, 1).await, published);
        assert_eq!(versions(&app, &t.live, &r.id, false, 20).await, published);

        // Bad page arguments.
        for vars in [
            json!({ "id": r.id, "l": 0 }),
            json!({ "id": r.id, "l": 101 }),
            json!({ "id": r.id, "a": "not-a-cursor" }),
        ] {
            let reply = app.gql(&t.root, VERSIONS, vars).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
        }
    }
);

both_dbs!(
    a_live_key_never_sees_a_draft_version,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let sk_live = app.new_key().secret().live().scopes(&["*"]).create().await;
        let no_drafts = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        let draft = app
            .create_record(&t.root, "page", json!({ "title": "secret draft" }))
            .await;
        let r = app
            .create_record(&t.root, "page", json!({ "title": "public" }))
            .await;
        app.publish_record(&t.root, &r.id).await;
        update(&app, &t.root, &r.id, "unreleased").await;

        for key in [&*t.live, &*sk_live, &*no_drafts] {
            // preview is refused, naming what is missing.
            let reply = app
                .gql(key, VERSIONS, json!({ "id": r.id, "p": true }))
                .await;
            assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
            assert!(reply.message().contains("drafts:read"));
            // The published view: the published version, never the draft.
            assert_eq!(
                versions(&app, key, &r.id, false, 20).await,
                vec![v(2, true, "public")]
            );
            // A record that was never published is not there at all.
            let reply = app.gql(key, VERSIONS, json!({ "id": draft.id })).await;
            assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);
            assert!(!reply.body.to_string().contains("secret draft"));
        }

        // Unpublished: its published versions leave the published view too.
        app.data(&t.root, UNPUBLISH_RECORD, json!({ "id": r.id }))
            .await;
        let reply = app.gql(&t.live, VERSIONS, json!({ "id": r.id })).await;
        assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);
        assert_eq!(versions(&app, &t.root, &r.id, true, 20).await.len(), 3);
    }
);

both_dbs!(
    restoring_copies_into_the_draft_only,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let r = app
            .create_record(&t.root, "page", json!({ "title": "first" }))
            .await; // v1
        app.publish_record(&t.root, &r.id).await; // v2 published "first"
        update(&app, &t.root, &r.id, "second").await; // v3
        app.publish_record(&t.root, &r.id).await; // v4 published "second"

        // A stale expectedVersion is CONFLICT and writes nothing.
        let reply = app
            .gql(&t.root, RESTORE, json!({ "id": r.id, "v": 1, "e": 3 }))
            .await;
        assert_eq!(reply.code(), Some("CONFLICT"), "{}", reply.body);
        // A version that was never kept is NOT_FOUND.
        let reply = app
            .gql(&t.root, RESTORE, json!({ "id": r.id, "v": 99 }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);

        let restored = app
            .data(&t.root, RESTORE, json!({ "id": r.id, "v": 1, "e": 4 }))
            .await;
        let restored = &restored["restoreRecordVersion"];
        assert_eq!(restored["data"], json!({ "title": "first" }));
        assert_eq!(restored["version"], 5);
        assert_eq!(restored["status"], "CHANGED");

        // The published data is unchanged until the next publish.
        let live = app.data(&t.live, RECORD, json!({ "id": r.id })).await;
        assert_eq!(live["record"]["data"], json!({ "title": "second" }));
        let draft = app
            .data(&t.root, RECORD, json!({ "id": r.id, "p": true }))
            .await;
        assert_eq!(draft["record"]["data"], json!({ "title": "first" }));
        // The restore is a new draft version.
        assert_eq!(
            versions(&app, &t.root, &r.id, true, 20).await[0],
            v(5, false, "first")
        );
        app.publish_record(&t.root, &r.id).await;
        let live = app.data(&t.live, RECORD, json!({ "id": r.id })).await;
        assert_eq!(live["record"]["data"], json!({ "title": "first" }));
        assert_eq!(
            versions(&app, &t.live, &r.id, false, 20).await,
            vec![
                v(6, true, "first"),
                v(4, true, "second"),
                v(2, true, "first")
            ]
        );
    }
);

both_dbs!(
    versions_stay_in_their_project_and_need_their_scopes,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let other = app.tenant("other").await;
        page_model(&app, &t.root).await;
        let r = app
            .create_record(&t.root, "page", json!({ "title": "mine" }))
            .await;
        app.publish_record(&t.root, &r.id).await;

        // Another project's keys: as if the record did not exist.
        for (key, preview) in [
            (&other.root, true),
            (&other.root, false),
            (&other.live, false),
        ] {
            let reply = app
                .gql(key, VERSIONS, json!({ "id": r.id, "p": preview }))
                .await;
            assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);
        }
        let reply = app
            .gql(&other.root, RESTORE, json!({ "id": r.id, "v": 1 }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);

        // Scopes: records:read to list, records:write to restore.
        let no_read = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:write", "drafts:read"])
            .create()
            .await;
        let reply = app.gql(&no_read, VERSIONS, json!({ "id": r.id })).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        let no_write = app
            .new_key()
            .secret()
            .test()
            .scopes(&["records:read", "records:publish", "drafts:read"])
            .create()
            .await;
        let reply = app
            .gql(&no_write, RESTORE, json!({ "id": r.id, "v": 1 }))
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        let reply = app
            .gql(&no_read, RESTORE, json!({ "id": r.id, "v": 1 }))
            .await;
        assert!(reply.code().is_none(), "{}", reply.body);

        // A deleted record takes its versions with it.
        app.data(&t.root, DELETE_RECORD, json!({ "id": r.id }))
            .await;
        let reply = app
            .gql(&t.root, VERSIONS, json!({ "id": r.id, "p": true }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);
        let left: Vec<Value> = entity::record_versions::Entity::find()
            .all(&app.state.db.conn)
            .await
            .unwrap()
            .into_iter()
            .map(|v| v.data)
            .collect();
        assert!(left.is_empty(), "versions left: {left:?}");
    }
);

both_dbs!(
    the_last_50_drafts_and_every_publish_are_kept,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let r = app
            .create_record(&t.root, "page", json!({ "title": "t1" }))
            .await; // v1
        app.publish_record(&t.root, &r.id).await; // v2 published
        for n in 3..=57 {
            update(&app, &t.root, &r.id, &format!("t{n}")).await;
        }
        let kept = versions(&app, &t.root, &r.id, true, 100).await;
        let drafts: Vec<i64> = kept.iter().filter(|k| !k.1).map(|k| k.0).collect();
        assert_eq!(drafts, (8..=57).rev().collect::<Vec<_>>());
        assert_eq!(kept.last(), Some(&v(2, true, "t1")));
        assert_eq!(kept.len(), 51);
        // A dropped draft version cannot be restored; a kept one can.
        let reply = app
            .gql(&t.root, RESTORE, json!({ "id": r.id, "v": 7 }))
            .await;
        assert_eq!(reply.code(), Some("NOT_FOUND"), "{}", reply.body);
        app.data(&t.root, RESTORE, json!({ "id": r.id, "v": 2 }))
            .await;
    }
);
