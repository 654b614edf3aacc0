//! The bounds on the work one request can cause, checked before the work:
//! the query text (`QUIRE_MAX_QUERY_BYTES`, refused before parsing), the
//! `where` rules (`in` of at most 1,000 values, at most 100 conditions and
//! 64 KiB, the same on both databases), the size of an answer
//! (`QUIRE_MAX_RESPONSE_BYTES`: `RESPONSE_TOO_LARGE`), and the request
//! metric's `outcome` label (an internal error is not an "ok" 200).

use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::{Backend, TestApp};

const BY_WHERE: &str =
    "query($w: JSON) { records(modelKey: \"item\", where: $w) { items { id } } }";

/// The `item` model (a unique `slug`, a `rank`, a `body`) in the default
/// project; returns the project's root key.
async fn item_model(app: &TestApp) -> String {
    let tenant = app.default_tenant().await;
    app.create_model(
        &tenant.root.secret,
        json!({ "key": "item", "name": "Item", "fields": [
            { "name": "slug", "type": "STRING", "unique": true },
            { "name": "rank", "type": "INTEGER" },
            { "name": "body", "type": "TEXT" }
        ] }),
    )
    .await;
    tenant.root.secret.clone()
}

/// Creates and publishes an `item` with `data`; returns its id.
async fn published(app: &TestApp, root: &str, data: Value) -> String {
    let record = app.create_record(root, "item", data).await;
    app.publish_record(root, &record.id).await;
    record.id
}

both_dbs!(
    in_takes_at_most_a_thousand_values,
    |app: TestApp| async move {
        let root = item_model(&app).await;
        published(&app, &root, json!({ "slug": "s7", "rank": 7 })).await;
        for field in ["rank", "slug"] {
            let values: Vec<Value> = (0..1_000)
                .map(|i| match field {
                    "rank" => json!(i),
                    _ => json!(format!("s{i}")),
                })
                .collect();
            let ok = app
                .gql(&root, BY_WHERE, json!({ "w": { field: { "in": values } } }))
                .await;
            assert_eq!(
                ok.body["data"]["records"]["items"].as_array().map(Vec::len),
                Some(1),
                "{field}: {}",
                ok.body
            );

            let mut over = values.clone();
            over.push(json!(null));
            let refused = app
                .gql(&root, BY_WHERE, json!({ "w": { field: { "in": over } } }))
                .await;
            assert_eq!(refused.status, 200, "{}", refused.body);
            assert_eq!(
                refused.code(),
                Some("BAD_USER_INPUT"),
                "{field}: {}",
                refused.body
            );
            assert_eq!(refused.error_field(), Some("where"));
            assert!(
                refused.message().contains("at most 1000 values"),
                "{}",
                refused.message()
            );
        }
        // Far past what either database binds: refused the same way, early.
        let huge: Vec<Value> = (0..70_000).map(|i| json!(i)).collect();
        let refused = app
            .gql(&root, BY_WHERE, json!({ "w": { "rank": { "in": huge } } }))
            .await;
        assert_eq!(refused.code(), Some("BAD_USER_INPUT"), "{}", refused.body);
        assert_eq!(refused.body["errors"][0]["path"], json!(["records"]));
    }
);

both_dbs!(
    where_holds_at_most_a_hundred_conditions_and_64_kib,
    |app: TestApp| async move {
        let root = item_model(&app).await;
        // Counted before anything else: unknown fields are not even looked up.
        let conditions = |n: usize| -> Value {
            (0..n)
                .map(|i| (format!("f{i}"), json!(1)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let hundred = app
            .gql(&root, BY_WHERE, json!({ "w": conditions(100) }))
            .await;
        assert!(
            hundred.message().contains("unknown field"),
            "{}",
            hundred.body
        );
        let over = app
            .gql(&root, BY_WHERE, json!({ "w": conditions(101) }))
            .await;
        assert_eq!(over.code(), Some("BAD_USER_INPUT"));
        assert!(over.message().contains("at most 100"), "{}", over.message());
        // Operators count one each.
        let ops: serde_json::Map<String, Value> = (0..13)
        .map(|i| (format!("f{i}"), json!({ "eq": 1, "ne": 2, "gt": 0, "gte": 0, "lt": 9, "lte": 9, "in": [1], "contains": "x" })))
        .collect();
        let over = app.gql(&root, BY_WHERE, json!({ "w": ops })).await;
        assert!(
            over.message().contains("104 conditions"),
            "{}",
            over.message()
        );

        // 64 KiB of JSON: in variables (refused before they become GraphQL
        // values) and written in the query.
        let long = "x".repeat(70 * 1024);
        let big = app
            .gql(
                &root,
                BY_WHERE,
                json!({ "w": { "body": { "contains": long } } }),
            )
            .await;
        assert_eq!(
            (big.status.as_u16(), big.code()),
            (200, Some("BAD_USER_INPUT")),
            "{}",
            big.body
        );
        assert!(big.message().contains("65536 bytes"), "{}", big.message());
        let nested = app
        .gql(
            &root,
            "query($s: String) { records(modelKey: \"item\", where: { body: { contains: $s } }) { items { id } } }",
            json!({ "s": long }),
        )
        .await;
        assert!(nested.message().contains("65536 bytes"), "{}", nested.body);
        let inline = format!(
        "{{ records(modelKey: \"item\", where: {{ body: {{ contains: \"{long}\" }} }}) {{ items {{ id }} }} }}"
    );
        let inline = app.gql(&root, &inline, json!({})).await;
        assert_eq!(inline.code(), Some("BAD_USER_INPUT"), "{}", inline.body);
        assert!(
            inline.message().contains("65536 bytes"),
            "{}",
            inline.message()
        );
        let fits = app
            .gql(
                &root,
                BY_WHERE,
                json!({ "w": { "body": { "contains": "x".repeat(60 * 1024) } } }),
            )
            .await;
        assert_eq!(
            fits.body["data"]["records"]["items"],
            json!([]),
            "{}",
            fits.body
        );
    }
);

#[tokio::test]
async fn query_text_over_the_limit_is_refused_before_parsing() {
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.max_query_bytes = 1_000)
        .await
        .unwrap();
    let root = app.default_tenant().await.root.secret.clone();
    let padded = |len: usize| {
        let q = "{ __typename }";
        // Not even valid GraphQL past the padding: never parsed when too long.
        format!("{q}{}", " ".repeat(len - q.len()))
    };
    let fits = app.gql(&root, &padded(1_000), json!({})).await;
    assert_eq!(fits.body["data"]["__typename"], "Query", "{}", fits.body);

    let over = app.gql(&root, &(padded(1_000) + "{"), json!({})).await;
    assert_eq!(
        over.code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        over.body
    );
    assert!(
        over.message().contains("at most 1000"),
        "{}",
        over.message()
    );

    // The same over GET and in each operation of a batch.
    let url = format!("{}?query={}", app.url("/graphql"), "%20".repeat(1_001));
    let get = crate::support::Reply::from(
        app.client
            .get(url)
            .header("x-api-key", &root)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        get.code(),
        Some("GRAPHQL_VALIDATION_FAILED"),
        "{}",
        get.body
    );
    let batch = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", &root)
        .json(&json!([{ "query": padded(1_000) }, { "query": padded(1_001) }]))
        .send()
        .await
        .unwrap();
    let batch: Value = batch.json().await.unwrap();
    assert_eq!(batch[0]["data"]["__typename"], "Query", "{batch}");
    assert_eq!(
        batch[1]["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{batch}"
    );
}

both_dbs!(
    answers_over_the_limit_are_refused,
    |backend: Backend| async move {
        let Some(app) =
            TestApp::try_spawn_with(backend, |c| c.max_response_bytes = 250 * 1024).await
        else {
            return;
        };
        let root = item_model(&app).await;
        // Records over the inline size are loaded after the budget admits them.
        let a = published(
            &app,
            &root,
            json!({ "slug": "a", "body": "a".repeat(100 * 1024) }),
        )
        .await;
        published(
            &app,
            &root,
            json!({ "slug": "b", "body": "b".repeat(100 * 1024) }),
        )
        .await;
        let list =
            "query($n: Int) { records(modelKey: \"item\", limit: $n) { items { id data } } }";
        let two = app.gql(&root, list, json!({ "n": 2 })).await;
        let items = two.body["data"]["records"]["items"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(items.len(), 2, "{}", two.body["errors"]);
        assert_eq!(
            items[0]["data"]["body"].as_str().map(str::len),
            Some(100 * 1024)
        );
        let one = app
            .gql(
                &root,
                "query($id: ID!) { record(id: $id) { data } }",
                json!({ "id": a }),
            )
            .await;
        assert_eq!(one.body["data"]["record"]["data"]["slug"], "a");

        published(
            &app,
            &root,
            json!({ "slug": "c", "body": "c".repeat(100 * 1024) }),
        )
        .await;
        let three = app.gql(&root, list, json!({ "n": 3 })).await;
        assert_eq!(three.status, 200);
        assert_eq!(
            three.code(),
            Some("RESPONSE_TOO_LARGE"),
            "{}",
            three.body["errors"]
        );
        assert!(three.message().contains("256000"), "{}", three.message());
        assert!(three.body["data"].is_null());
        // Aliases share the request's budget.
        let aliased = app
        .gql(
            &root,
            "query($id: ID!) { a: record(id: $id) { data } b: record(id: $id) { data } c: record(id: $id) { data } }",
            json!({ "id": a }),
        )
        .await;
        assert!(
            aliased.codes().contains(&"RESPONSE_TOO_LARGE".to_owned()),
            "{}",
            aliased.body["errors"]
        );
    }
);

#[tokio::test]
async fn answers_are_capped_when_serialized_too() {
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.max_response_bytes = 1_000)
        .await
        .unwrap();
    let root = item_model(&app).await;
    let small = app.gql(&root, "{ models { key } }", json!({})).await;
    assert_eq!(
        small.body["data"]["models"][0]["key"], "item",
        "{}",
        small.body
    );
    // No record data here: the bytes written are what is counted.
    let all = "models { key name fields { name type required unique referenceModelKey } }";
    let big = app
        .gql(
            &root,
            &format!("{{ a: {all} b: {all} c: {all} d: {all} }}"),
            json!({}),
        )
        .await;
    assert_eq!(big.code(), Some("RESPONSE_TOO_LARGE"), "{}", big.body);
}

/// The counter of requests to `/graphql` with these labels, from `/metrics`.
async fn graphql_requests(app: &TestApp, status: &str, outcome: &str) -> f64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("quire_http_requests_total{"))
        .filter(|l| {
            l.contains("path=\"/graphql\"")
                && l.contains(&format!("status=\"{status}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn metrics_count_requests_by_their_outcome() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let root = item_model(&app).await;
    let id = published(&app, &root, json!({ "slug": "x" })).await;
    let before = [
        graphql_requests(&app, "200", "ok").await,
        graphql_requests(&app, "200", "user_error").await,
        graphql_requests(&app, "200", "internal").await,
        graphql_requests(&app, "401", "refused").await,
    ];

    app.data(&root, "{ __typename }", json!({})).await;
    let bad = app
        .gql(&root, BY_WHERE, json!({ "w": { "nope": 1 } }))
        .await;
    assert_eq!(bad.code(), Some("BAD_USER_INPUT"));
    // A record the database holds but quire cannot read: an internal error
    // inside a 200 answer.
    app.state
        .db
        .conn
        .execute_unprepared(&format!(
            "UPDATE records SET published_data = 'not json' WHERE id = '{id}'"
        ))
        .await
        .unwrap();
    let broken = app
        .gql(
            &root,
            "query($id: ID!) { record(id: $id) { data } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        (broken.status.as_u16(), broken.code()),
        (200, Some("INTERNAL_SERVER_ERROR")),
        "{}",
        broken.body
    );
    let nobody = app.gql("pk_live_nope", "{ __typename }", json!({})).await;
    assert_eq!(nobody.status, 401);

    let after = [
        graphql_requests(&app, "200", "ok").await,
        graphql_requests(&app, "200", "user_error").await,
        graphql_requests(&app, "200", "internal").await,
        graphql_requests(&app, "401", "refused").await,
    ];
    for (i, what) in ["ok", "user_error", "internal", "refused"]
        .iter()
        .enumerate()
    {
        assert!(
            after[i] >= before[i] + 1.0,
            "{what}: {} -> {}",
            before[i],
            after[i]
        );
    }
}

#[tokio::test]
async fn data_selected_many_times_is_whole_every_time() {
    // The last selection of a record's data takes it instead of copying:
    // every other selection (aliases, fragments, repeated lists) still
    // gets the whole of it.
    let app = TestApp::spawn(Backend::Sqlite).await;
    let root = item_model(&app).await;
    let id = published(
        &app,
        &root,
        json!({ "slug": "m", "body": "b".repeat(70 * 1024) }),
    )
    .await;
    let reply = app
        .gql(
            &root,
            "query($id: ID!) { records(modelKey: \"item\") { a: items { x: data y: data ...D } b: items { data } }
               one: record(id: $id) { data d2: data ... on Record { data } } }
             fragment D on Record { data }",
            json!({ "id": id }),
        )
        .await;
    let d = &reply.body["data"];
    let whole = |v: &Value| v["slug"] == "m" && v["body"].as_str().map(str::len) == Some(70 * 1024);
    for v in [
        &d["records"]["a"][0]["x"],
        &d["records"]["a"][0]["y"],
        &d["records"]["a"][0]["data"],
        &d["records"]["b"][0]["data"],
        &d["one"]["data"],
        &d["one"]["d2"],
    ] {
        assert!(whole(v), "{}", reply.body);
    }
}
