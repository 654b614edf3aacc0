//! The code table seen from outside: every refusal of a request, whatever
//! the stage that refuses it, is a GraphQL-shaped body whose code matches
//! its status (SPEC §3).

use crate::support::{Backend, Reply, TestApp};

#[tokio::test]
async fn every_refusal_carries_its_code() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.root_key().await;
    let url = app.url("/graphql");
    let c = &app.client;
    let huge = "x".repeat(app.state.config.max_body_bytes + 1);
    let batch: Vec<_> = (0..=app.state.config.max_batch)
        .map(|_| serde_json::json!({ "query": "{ __typename }" }))
        .collect();
    let cases = [
        (
            "no key",
            c.post(&url)
                .json(&serde_json::json!({ "query": "{ __typename }" })),
            401,
            "UNAUTHENTICATED",
        ),
        (
            "nothing acceptable",
            c.post(&url)
                .header("x-api-key", &key)
                .header("accept", "text/plain"),
            406,
            "NOT_ACCEPTABLE",
        ),
        (
            "not JSON",
            c.post(&url)
                .header("x-api-key", &key)
                .header("content-type", "text/plain")
                .body("{ __typename }"),
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (
            "too large",
            c.post(&url)
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body(huge),
            413,
            "PAYLOAD_TOO_LARGE",
        ),
        (
            "bad JSON",
            c.post(&url)
                .header("x-api-key", &key)
                .header("content-type", "application/json")
                .body("{"),
            400,
            "BAD_REQUEST",
        ),
        (
            "oversized batch",
            c.post(&url).header("x-api-key", &key).json(&batch),
            400,
            "BAD_REQUEST",
        ),
        (
            "mutation over GET",
            c.get(format!(
                "{url}?query=mutation%7BdeleteRecord(id%3A%221%22)%7D"
            ))
            .header("x-api-key", &key),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "a method /graphql does not take",
            c.put(&url).header("x-api-key", &key).body("{}"),
            405,
            "METHOD_NOT_ALLOWED",
        ),
        (
            "headers too large",
            c.post(&url)
                .header("x-api-key", &key)
                .header("x-filler", "y".repeat(40 * 1024)),
            431,
            "REQUEST_HEADER_FIELDS_TOO_LARGE",
        ),
        (
            "no such route",
            c.get(app.url("/nowhere")),
            404,
            "NOT_FOUND",
        ),
    ];
    for (case, request, status, code) in cases {
        let reply = Reply::from(request.send().await.unwrap()).await;
        assert_eq!(reply.status, status, "{case}: {}", reply.body);
        assert_eq!(reply.code(), Some(code), "{case}: {}", reply.body);
        assert!(
            reply.first()["errors"][0]["message"].is_string(),
            "{case}: {}",
            reply.body
        );
        if case == "oversized batch" {
            // One error object per operation (SPEC §3).
            assert_eq!(
                reply.batch_codes(),
                vec![Some(code.to_owned()); batch.len()],
                "{case}"
            );
        }
        if status == 405 {
            assert!(reply.header("allow").is_some(), "{case}: no Allow header");
        }
    }
}
