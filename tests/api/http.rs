//! GraphQL over HTTP: status codes, negotiation, limits, hostile input,
//! CORS, GraphiQL, health and metrics.

use serde_json::{json, Value};

use crate::support::{Backend, Reply, TestApp};

const GRJ: &str = "application/graphql-response+json";

async fn sqlite() -> TestApp {
    TestApp::spawn(Backend::Sqlite).await
}

async fn post_raw(
    app: &TestApp,
    key: &str,
    accept: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let res = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", key)
        .header("accept", accept)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    Reply::from(res).await
}

#[tokio::test]
async fn negotiates_media_types_and_statuses() {
    let app = sqlite().await;
    let key = app.root_key().await;
    let ok = post_raw(
        &app,
        &key,
        GRJ,
        "application/json",
        r#"{"query":"{ __typename }"}"#,
    )
    .await;
    assert_eq!(ok.status, 200);
    assert!(ok.header("content-type").unwrap().starts_with(GRJ));
    assert_eq!(ok.body["data"]["__typename"], "Query");

    let invalid = post_raw(
        &app,
        &key,
        GRJ,
        "application/json",
        r#"{"query":"{ nope }"}"#,
    )
    .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.code(), Some("GRAPHQL_VALIDATION_FAILED"));
    assert!(invalid.body.get("data").is_none());
    let invalid_json = post_raw(
        &app,
        &key,
        "application/json",
        "application/json",
        r#"{"query":"{ nope }"}"#,
    )
    .await;
    assert_eq!(invalid_json.status, 200);
    assert!(invalid_json
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));

    let unparsable = post_raw(&app, &key, GRJ, "application/json", r#"{"query":"{"}"#).await;
    assert_eq!(unparsable.status, 400);
    assert_eq!(unparsable.code(), Some("GRAPHQL_PARSE_FAILED"));

    let not_acceptable = post_raw(
        &app,
        &key,
        "text/plain",
        "application/json",
        r#"{"query":"{ __typename }"}"#,
    )
    .await;
    assert_eq!(not_acceptable.status, 406);
    let bad_type = post_raw(
        &app,
        &key,
        GRJ,
        "text/plain",
        r#"{"query":"{ __typename }"}"#,
    )
    .await;
    assert_eq!(bad_type.status, 415);
}

#[tokio::test]
async fn get_runs_queries_but_not_mutations() {
    let app = sqlite().await;
    let key = app.root_key().await;
    let get = |q: &str| {
        app.client
            .get(app.url("/graphql"))
            .query(&[("query", q)])
            .header("x-api-key", &key)
            .header("accept", GRJ)
            .send()
    };
    let ok = Reply::from(get("{ __typename }").await.unwrap()).await;
    assert_eq!(ok.status, 200);
    let refused = Reply::from(
        get("mutation { revokeApiKey(id: \"x\") { id } }")
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(refused.status, 405);
    assert_eq!(refused.header("allow"), Some("POST"));
}

#[tokio::test]
async fn hostile_input_gets_4xx_and_the_server_keeps_answering() {
    let app = sqlite().await;
    let key = app.root_key().await;
    let deep = format!("{}{}", "{ viewer ".repeat(1000), "}".repeat(1000));
    let aliases: String = (0..10_000).map(|i| format!("a{i}: __typename ")).collect();
    let big = format!(
        r#"{{"query":"{{ __typename }}","pad":"{}"}}"#,
        "x".repeat(5 * 1024 * 1024)
    );
    let batch: Vec<Value> = (0..100)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();

    let cases: Vec<(&str, Reply, u16)> = vec![
        (
            "depth 1000",
            post_raw(
                &app,
                &key,
                GRJ,
                "application/json",
                json!({ "query": deep }).to_string(),
            )
            .await,
            400,
        ),
        (
            "10,000 aliases",
            post_raw(
                &app,
                &key,
                GRJ,
                "application/json",
                json!({ "query": format!("{{ {aliases} }}") }).to_string(),
            )
            .await,
            400,
        ),
        (
            "5 MiB body",
            post_raw(&app, &key, GRJ, "application/json", big).await,
            413,
        ),
        (
            "invalid JSON",
            post_raw(&app, &key, GRJ, "application/json", "{\"query\": ").await,
            400,
        ),
        (
            "invalid UTF-8",
            post_raw(
                &app,
                &key,
                GRJ,
                "application/json",
                vec![b'{', 0xff, 0xfe, b'}'],
            )
            .await,
            400,
        ),
        (
            "100-operation batch",
            post_raw(
                &app,
                &key,
                GRJ,
                "application/json",
                Value::Array(batch).to_string(),
            )
            .await,
            400,
        ),
    ];
    for (case, reply, status) in cases {
        assert_eq!(reply.status.as_u16(), status, "{case}: {}", reply.body);
    }
    let huge_header = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", &key)
        .header("x-padding", "y".repeat(100 * 1024))
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert!(
        huge_header.status().is_client_error(),
        "100 KB header: {}",
        huge_header.status()
    );

    // Still answering.
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
}

#[tokio::test]
async fn batches_up_to_the_limit() {
    let app = sqlite().await;
    let key = app.root_key().await;
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let reply = post_raw(
        &app,
        &key,
        "application/json",
        "application/json",
        Value::Array(batch).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body.as_array().map(Vec::len), Some(10));
}

#[tokio::test]
async fn batches_can_be_refused() {
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.max_batch = 0)
        .await
        .unwrap();
    let key = app.root_key().await;
    let reply = post_raw(
        &app,
        &key,
        GRJ,
        "application/json",
        r#"[{"query":"{ __typename }"}]"#,
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.batch_codes(), vec![Some("BAD_REQUEST".to_owned())]);

    // A body of half a million "operations" is not answered half a million
    // times: the refusal repeats at most a thousand error objects.
    let hostile = format!("[{}0]", "0,".repeat(500_000));
    let reply = post_raw(&app, &key, GRJ, "application/json", hostile).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.batch_codes().len(), 1_000);
}

#[tokio::test]
async fn public_keys_get_no_introspection_and_no_suggestions() {
    let app = sqlite().await;
    let public = app
        .new_key()
        .public()
        .live()
        .scopes(&["records:read"])
        .create()
        .await;
    let secret = app.root_key().await;
    let introspect = "{ __schema { queryType { name } } }";
    assert!(app
        .gql(&public, introspect, json!({}))
        .await
        .body
        .get("errors")
        .is_some());
    assert_eq!(
        app.data(&secret, introspect, json!({})).await["__schema"]["queryType"]["name"],
        "Query"
    );

    let typo = "{ viewr { key { id } } }";
    let secret_msg = app.gql(&secret, typo, json!({})).await.body.to_string();
    let public_msg = app.gql(&public, typo, json!({})).await.body.to_string();
    assert!(secret_msg.contains("Did you mean"), "{secret_msg}");
    assert!(!public_msg.contains("Did you mean"), "{public_msg}");
    // __typename is not introspection: the GraphQL floor works for public keys.
    assert_eq!(
        app.data(&public, "{ __typename }", json!({})).await["__typename"],
        "Query"
    );
}

#[tokio::test]
async fn cors_lets_browsers_call_with_a_key() {
    let app = sqlite().await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/graphql"))
        .header("origin", "https://site.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "x-api-key, content-type, apollographql-client-name, sentry-trace, baggage, x-my-app",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    let allow_headers = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for asked in [
        "x-api-key",
        "content-type",
        "apollographql-client-name",
        "sentry-trace",
        "baggage",
        "x-my-app",
    ] {
        assert!(allow_headers.contains(asked), "{asked}: {allow_headers}");
    }
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    // Browser code can read the budget and when to come back.
    let key = app.root_key().await;
    let answer = app
        .client
        .post(app.url("/graphql"))
        .header("origin", "https://site.example")
        .header("x-api-key", key.secret.as_str())
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    let exposed = answer.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    for header in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
    ] {
        assert!(exposed.contains(header), "{header}: {exposed}");
    }

    let restricted = TestApp::try_spawn_with(Backend::Sqlite, |c| {
        c.cors_origins = vec!["https://ok.example".into()]
    })
    .await
    .unwrap();
    let denied = restricted
        .client
        .request(reqwest::Method::OPTIONS, restricted.url("/graphql"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn graphiql_health_and_metrics() {
    let app = sqlite().await;
    let page = app
        .client
        .get(app.url("/graphql"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("graphiql"));

    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let _ = app.gql("sk_live_nope", "{ __typename }", json!({})).await;
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("quire_http_requests_total"), "{metrics}");
    assert!(metrics.contains("quire_auth_failures_total"), "{metrics}");
    assert!(
        metrics.contains("quire_http_request_duration_seconds"),
        "{metrics}"
    );
}

#[tokio::test]
async fn readyz_reports_an_unreachable_database() {
    let app = sqlite().await;
    app.state.db.conn.clone().close().await.unwrap();
    let res = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let body: Value = res.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "SERVICE_UNAVAILABLE"
    );
}

#[tokio::test]
async fn limit_and_parse_errors_are_one_line_that_names_the_limit_or_position() {
    // The alias limit raised, so the complexity check is the one that answers.
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.max_aliases = 100_000)
        .await
        .unwrap();
    let key = app.root_key().await;
    let config = app.state.config.clone();
    let depth = config.max_depth + 2;
    let deep = format!("{}{}", "{ viewer ".repeat(depth), "}".repeat(depth));
    // Three fields an alias; enough aliases to go over the complexity limit.
    let wide: String = (0..config.max_complexity / 3 + 10)
        .map(|i| format!("v{i}: viewer {{ project {{ id }} }} "))
        .collect();
    let cases = [
        (
            deep,
            "GRAPHQL_VALIDATION_FAILED",
            format!("at most {} levels", config.max_depth),
        ),
        (
            format!("{{ {wide} }}"),
            "GRAPHQL_VALIDATION_FAILED",
            format!("at most {} fields", config.max_complexity),
        ),
        (
            "{ viewer { key ".to_owned(),
            "GRAPHQL_PARSE_FAILED",
            "syntax error at line 1, column 16".to_owned(),
        ),
    ];
    for (query, code, says) in cases {
        let reply = post_raw(
            &app,
            &key,
            GRJ,
            "application/json",
            json!({ "query": query }).to_string(),
        )
        .await;
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(reply.code(), Some(code), "{}", reply.body);
        let message = reply.message();
        assert!(!message.contains('\n'), "one line: {message:?}");
        assert!(message.contains(&says), "{message:?} should say {says:?}");
    }
}
