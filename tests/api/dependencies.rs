//! A database that does not answer in time (SPEC §1 "dependencies", §3):
//! the statement is abandoned at `QUIRE_DB_TIMEOUT_SECONDS` with a 503 that
//! carries `Retry-After`, the instance keeps serving what needs no lock, and
//! the same write works once the database answers again. Frozen and
//! refusing databases (a TCP proxy in front of PostgreSQL) are in
//! `tests/hardening/postgres.py`.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::both_dbs;
use crate::support::{Backend, Holder, TestApp};

both_dbs!(
    a_statement_past_the_timeout_is_abandoned_with_503_and_retry_after,
    |backend: Backend| async move {
        let Some(app) = TestApp::try_spawn_with(backend, |c| c.db_timeout_seconds = 1).await else {
            return;
        };
        let k = app.default_tenant().await;
        app.create_model(
            &k.root,
            json!({ "key": "note", "name": "Note",
                    "fields": [{ "name": "title", "type": "STRING" }] }),
        )
        .await;
        let create = r#"mutation { createRecord(modelKey: "note", data: { title: "t" }) { id } }"#;

        let holder = Holder::lock(&app, "records").await;
        let started = Instant::now();
        let reply = app.gql(&k.root, create, json!({})).await;
        let waited = started.elapsed();
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert_eq!(reply.code(), Some("SERVICE_UNAVAILABLE"));
        assert_eq!(reply.header("retry-after"), Some("1"));
        // Abandoned at the timeout (1 s), or at the latest one second later.
        assert!(waited < Duration::from_secs(4), "waited {waited:?}");
        // The instance is not taken down by one slow statement.
        let reply = app.gql(&k.root, "{ __typename }", json!({})).await;
        assert_eq!(reply.status, 200, "{}", reply.body);

        holder.release().await;
        let reply = app.gql(&k.root, create, json!({})).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body["data"]["createRecord"]["id"].is_string());
    }
);

#[tokio::test]
async fn readyz_says_the_database_answers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let response = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("quire_db_up 1"), "{metrics}");
}
