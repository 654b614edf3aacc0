//! Webhooks (SPEC §9): management, the SSRF guard, signatures checked by an
//! implementation of the Standard Webhooks scheme written here from the
//! specification, retries, 410, redirects, rotation, filters, and two
//! instances sharing one receiver's deliveries.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use quire::config::Config;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::both_dbs;
use crate::support::ops::UPDATE_RECORD;
use crate::support::{Backend, FreshDb, Server, TestApp};

const CREATE: &str = "mutation($i: WebhookInput!) { createWebhook(input: $i) { secret webhook { id url events modelKeys includeDrafts enabled createdAt } } }";
const UPDATE: &str = "mutation($id: ID!, $i: WebhookInput!) { updateWebhook(id: $id, input: $i) { id url events modelKeys includeDrafts enabled } }";
const DELETE: &str = "mutation($id: ID!) { deleteWebhook(id: $id) }";
const ROTATE: &str =
    "mutation($id: ID!) { rotateWebhookSecret(id: $id) { secret webhook { id } } }";
const LIST: &str = "{ webhooks { id url enabled } }";
const DELIVERIES: &str = "query($id: ID!, $l: Int, $a: String) { webhookDeliveries(webhookId: $id, limit: $l, after: $a) {
    items { id eventId attempt status responseStatus responseBody durationMs error createdAt nextAttemptAt }
    pageInfo { hasNextPage endCursor } } }";
const REDELIVER: &str =
    "mutation($id: ID!) { redeliverWebhook(deliveryId: $id) { id attempt status } }";

// ---- An implementation of the Standard Webhooks scheme, from its text ----

/// HMAC-SHA256 (RFC 2104) over SHA-256 with its 64-byte block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// `v1,` + base64(HMAC-SHA256(base64-decoded secret after `whsec_`,
/// `{id}.{timestamp}.{body}`)).
fn expected_signature(secret: &str, id: &str, timestamp: &str, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut message = format!("{id}.{timestamp}.").into_bytes();
    message.extend_from_slice(body);
    format!("v1,{}", STANDARD.encode(hmac_sha256(&key, &message)))
}

#[test]
fn the_reference_implementation_matches_the_specification_example() {
    assert_eq!(
        expected_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

// ---- A local receiver ----

/// One POST the receiver got.
#[derive(Clone, Debug)]
struct Receipt {
    path: String,
    id: String,
    timestamp: String,
    signatures: Vec<String>,
    body: Bytes,
    /// The status the receiver answered.
    answered: u16,
}

impl Receipt {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    fn signed_by(&self, secret: &str) -> bool {
        let want = expected_signature(secret, &self.id, &self.timestamp, &self.body);
        self.signatures.contains(&want)
    }
}

#[derive(Default)]
struct ReceiverState {
    receipts: Vec<Receipt>,
    /// Statuses to answer, first first; 200 when empty.
    script: Vec<u16>,
    /// Answer 500 to everything while set.
    down: bool,
}

#[derive(Clone)]
struct Receiver {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let h = |n: &str| {
        headers
            .get(n)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    let mut s = state.lock().unwrap();
    let status = if uri.path() == "/redirect" {
        302
    } else if s.down {
        500
    } else if s.script.is_empty() {
        200
    } else {
        s.script.remove(0)
    };
    s.receipts.push(Receipt {
        path: uri.path().to_owned(),
        id: h("webhook-id"),
        timestamp: h("webhook-timestamp"),
        signatures: h("webhook-signature")
            .split(' ')
            .map(str::to_owned)
            .collect(),
        body,
        answered: status,
    });
    if status == 302 {
        return (StatusCode::FOUND, [("location", "/target")]).into_response();
    }
    (StatusCode::from_u16(status).unwrap(), "receiver says hi").into_response()
}

impl Receiver {
    async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let router = Router::new()
            .route("/hook", post(receive))
            .route("/redirect", post(receive))
            .route("/target", post(receive).get(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Receiver { addr, state }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script = statuses.to_vec();
    }

    fn set_down(&self, down: bool) {
        self.state.lock().unwrap().down = down;
    }

    fn receipts(&self) -> Vec<Receipt> {
        self.state.lock().unwrap().receipts.clone()
    }

    /// Waits until `n` receipts came (at most `within`), then returns them all.
    async fn wait_for(&self, n: usize, within: Duration) -> Vec<Receipt> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.receipts();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A server that may call loopback receivers, retrying at once (`retries`
/// times).
async fn spawn(backend: Backend, retries: usize) -> Option<TestApp> {
    TestApp::try_spawn_with(backend, |c: &mut Config| {
        c.webhook_allow_private = true;
        c.webhook_retry_seconds = vec![0; retries];
    })
    .await
}

async fn page_model(app: &TestApp, key: &str) {
    app.create_model(
        key,
        json!({ "key": "page", "name": "Page", "fields": [ { "name": "title", "type": "STRING" } ] }),
    )
    .await;
}

async fn create_hook(app: &TestApp, key: &str, input: Value) -> (String, String) {
    let data = app.data(key, CREATE, json!({ "i": input })).await;
    let created = &data["createWebhook"];
    (
        created["webhook"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

async fn deliveries(app: &TestApp, key: &str, hook: &str) -> Vec<Value> {
    let data = app
        .data(key, DELIVERIES, json!({ "id": hook, "l": 500 }))
        .await;
    data["webhookDeliveries"]["items"]
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until the webhook's newest delivery is no longer pending.
async fn settled(app: &TestApp, key: &str, hook: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deliveries(app, key, hook).await;
        if d.len() >= n && d.iter().all(|d| d["status"] != "PENDING") {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries did not settle: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

macro_rules! with_receiver {
    ($name:ident, $retries:expr, |$app:ident, $rx:ident| $body:expr) => {
        mod $name {
            use super::*;
            async fn run(backend: Backend) {
                let Some($app) = spawn(backend, $retries).await else {
                    return;
                };
                let $rx = Receiver::start().await;
                $body.await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                run(Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                run(Backend::Postgres).await
            }
        }
    };
}

with_receiver!(
    a_delivery_is_signed_as_the_standard_says,
    0,
    |app, rx| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let (hook, secret) = create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["record.*"] }),
        )
        .await;
        assert!(secret.starts_with("whsec_"));
        assert_eq!(STANDARD.decode(&secret[6..]).unwrap().len(), 32);
        let r = app
            .create_record(&t.root, "page", json!({ "title": "Hi" }))
            .await;
        app.publish_record(&t.root, &r.id).await;
        rx.wait_for(1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let got = rx.receipts();
        assert_eq!(
            got.len(),
            1,
            "drafts are not delivered without includeDrafts"
        );
        let receipt = &got[0];
        assert!(
            receipt.signed_by(&secret),
            "signature {:?}",
            receipt.signatures
        );
        assert!(!receipt.signed_by("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"));
        let body = receipt.json();
        assert_eq!(body["id"], json!(receipt.id));
        assert_eq!(body["type"], "record.published");
        assert_eq!(
            body["data"],
            json!({ "modelKey": "page", "recordId": r.id, "fileId": null, "version": 2 })
        );
        assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));
        let ts: i64 = receipt.timestamp.parse().unwrap();
        assert!((ts - app.clock.now_utc_secs()).abs() <= 5);
        // A tampered body does not verify.
        let mut tampered = receipt.clone();
        tampered.body = Bytes::from(receipt.body.iter().rev().copied().collect::<Vec<u8>>());
        assert!(!tampered.signed_by(&secret));
        let d = settled(&app, &t.root, &hook, 1).await;
        assert_eq!(d[0]["status"], "SUCCEEDED");
        assert_eq!(d[0]["attempt"], 1);
        assert_eq!(d[0]["responseStatus"], 200);
        assert_eq!(d[0]["responseBody"], "receiver says hi");
        assert_eq!(d[0]["eventId"], json!(receipt.id));
        assert_eq!(d[0]["nextAttemptAt"], Value::Null);
    }
);

trait NowSecs {
    fn now_utc_secs(&self) -> i64;
}

impl NowSecs for quire::clock::ManualClock {
    fn now_utc_secs(&self) -> i64 {
        quire::clock::Clock::now(self).timestamp()
    }
}

with_receiver!(
    failing_twice_then_200_takes_three_attempts_in_order,
    2,
    |app, rx| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        rx.script(&[500, 503]);
        let (hook, _) = create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true }),
        )
        .await;
        let first = app
            .create_record(&t.root, "page", json!({ "title": "1" }))
            .await;
        let second = app
            .create_record(&t.root, "page", json!({ "title": "2" }))
            .await;
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        let order: Vec<String> = got
            .iter()
            .map(|r| r.json()["data"]["recordId"].as_str().unwrap().to_owned())
            .collect();
        // The failing first event holds the second until it succeeds.
        assert_eq!(
            order,
            vec![first.id.clone(), first.id.clone(), first.id, second.id]
        );
        assert_eq!(
            got[0].id, got[2].id,
            "one webhook-id per event, across retries"
        );
        let d = settled(&app, &t.root, &hook, 2).await;
        // Newest event first.
        assert_eq!(d[1]["status"], "SUCCEEDED");
        assert_eq!(d[1]["attempt"], 3);
        assert_eq!(d[1]["responseStatus"], 200);
        assert_eq!(d[0]["attempt"], 1);
    }
);

with_receiver!(
    always_failing_ends_failed_and_lets_the_next_go,
    2,
    |app, rx| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        rx.script(&[500, 500, 500]);
        let (hook, _) = create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["*"], "includeDrafts": true }),
        )
        .await;
        app.create_record(&t.root, "page", json!({ "title": "doomed" }))
            .await;
        app.create_record(&t.root, "page", json!({ "title": "fine" }))
            .await;
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 4);
        let d = settled(&app, &t.root, &hook, 2).await;
        assert_eq!(d[1]["status"], "FAILED");
        assert_eq!(d[1]["attempt"], 3);
        assert_eq!(d[1]["responseStatus"], 500);
        assert!(d[1]["error"].as_str().unwrap().contains("500"));
        assert_eq!(d[0]["status"], "SUCCEEDED");

        // Redelivered: pending again, one more attempt, which now succeeds.
        let again = app
            .data(&t.root, REDELIVER, json!({ "id": d[1]["id"] }))
            .await;
        assert_eq!(again["redeliverWebhook"]["status"], "PENDING");
        rx.wait_for(5, Duration::from_secs(10)).await;
        let d = settled(&app, &t.root, &hook, 2).await;
        assert_eq!(d[1]["status"], "SUCCEEDED");
        assert_eq!(d[1]["attempt"], 4);
    }
);

with_receiver!(a_410_disables_the_webhook, 3, |app, rx| async move {
    let t = app.default_tenant().await;
    page_model(&app, &t.root).await;
    rx.script(&[410]);
    let (hook, _) = create_hook(
        &app,
        &t.root,
        json!({ "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true }),
    )
    .await;
    app.create_record(&t.root, "page", json!({ "title": "gone" }))
        .await;
    let d = settled(&app, &t.root, &hook, 1).await;
    assert_eq!(d[0]["status"], "FAILED");
    assert_eq!(d[0]["attempt"], 1);
    assert_eq!(d[0]["responseStatus"], 410);
    let list = app.data(&t.root, LIST, json!({})).await;
    assert_eq!(list["webhooks"][0]["enabled"], false);
    app.create_record(&t.root, "page", json!({ "title": "unheard" }))
        .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(rx.receipts().len(), 1, "a disabled webhook gets nothing");
});

with_receiver!(a_redirect_is_not_followed, 0, |app, rx| async move {
    let t = app.default_tenant().await;
    page_model(&app, &t.root).await;
    let (hook, _) = create_hook(
        &app,
        &t.root,
        json!({ "url": rx.url("/redirect"), "events": ["record.created"], "includeDrafts": true }),
    )
    .await;
    app.create_record(&t.root, "page", json!({ "title": "moved" }))
        .await;
    let d = settled(&app, &t.root, &hook, 1).await;
    assert_eq!(d[0]["status"], "FAILED");
    assert_eq!(d[0]["responseStatus"], 302);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paths: Vec<String> = rx.receipts().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec!["/redirect"]);
});

with_receiver!(a_rotated_secret_signs_twice, 0, |app, rx| async move {
    let t = app.default_tenant().await;
    page_model(&app, &t.root).await;
    let (hook, old) = create_hook(
        &app,
        &t.root,
        json!({ "url": rx.url("/hook"), "events": ["model.*"] }),
    )
    .await;
    let data = app.data(&t.root, ROTATE, json!({ "id": hook })).await;
    let new = data["rotateWebhookSecret"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new, old);
    app.data(
        &t.root,
        crate::support::ops::UPDATE_MODEL,
        json!({ "k": "page", "i": { "name": "Pages" } }),
    )
    .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].signatures.len(), 2, "{:?}", got[0].signatures);
    assert!(got[0].signed_by(&new) && got[0].signed_by(&old));
    // After 24 hours only the new secret signs.
    app.clock.advance(chrono::Duration::hours(25));
    app.data(
        &t.root,
        crate::support::ops::UPDATE_MODEL,
        json!({ "k": "page", "i": { "name": "Pages!" } }),
    )
    .await;
    let got = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(got[1].signatures.len(), 1);
    assert!(got[1].signed_by(&new) && !got[1].signed_by(&old));
});

with_receiver!(
    filters_pick_types_models_and_views,
    0,
    |app, rx| async move {
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        app.create_model(
        &t.root,
        json!({ "key": "post", "name": "Post", "fields": [ { "name": "title", "type": "STRING" } ] }),
    )
    .await;
        create_hook(
        &app,
        &t.root,
        json!({ "url": rx.url("/hook"), "events": ["record.published", "record.updated"], "modelKeys": ["post"] }),
    )
    .await;
        let page = app
            .create_record(&t.root, "page", json!({ "title": "p" }))
            .await;
        app.publish_record(&t.root, &page.id).await;
        let post = app
            .create_record(&t.root, "post", json!({ "title": "q" }))
            .await;
        app.data(
            &t.root,
            UPDATE_RECORD,
            json!({ "id": post.id, "d": { "title": "q2" } }),
        )
        .await;
        app.publish_record(&t.root, &post.id).await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got_all = rx.receipts();
        assert_eq!(
            got_all.len(),
            1,
            "{:?}",
            got_all.iter().map(Receipt::json).collect::<Vec<_>>()
        );
        assert_eq!(got[0].json()["type"], "record.published");
        assert_eq!(got[0].json()["data"]["recordId"], json!(post.id));
    }
);

both_dbs!(management_and_refusals, |app: TestApp| async move {
    let t = app.default_tenant().await;
    // Without QUIRE_WEBHOOK_ALLOW_PRIVATE, private targets are refused.
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]:9/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "http://[fe80::1]/hook",
        "ftp://93.184.216.34/hook",
    ] {
        let reply = app
            .gql(
                &t.root,
                CREATE,
                json!({ "i": { "url": url, "events": ["*"] } }),
            )
            .await;
        assert_eq!(
            reply.code(),
            Some("BAD_USER_INPUT"),
            "{url}: {}",
            reply.body
        );
        assert_eq!(reply.error_field(), Some("url"));
    }
    // A public address is fine (nothing is sent until an event comes).
    let (hook, _) = create_hook(
        &app,
        &t.root,
        json!({ "url": "http://93.184.216.34/hook", "events": ["record.*"] }),
    )
    .await;
    let reply = app
        .gql(
            &t.root,
            UPDATE,
            json!({ "id": hook, "i": { "url": "http://127.0.0.1/x", "events": ["*"] } }),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    let reply = app
        .gql(
            &t.root,
            CREATE,
            json!({ "i": { "url": "http://93.184.216.34/", "events": ["record.moved"] } }),
        )
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    assert_eq!(reply.error_field(), Some("events"));
    // includeDrafts: TEST keys only.
    let live = app
        .new_key()
        .secret()
        .live()
        .scopes(&["extensions:manage"])
        .create()
        .await;
    let reply = app
        .gql(&live, CREATE, json!({ "i": { "url": "http://93.184.216.34/", "events": ["*"], "includeDrafts": true } }))
        .await;
    assert_eq!(reply.code(), Some("BAD_USER_INPUT"));
    assert_eq!(reply.error_field(), Some("includeDrafts"));
    // The scope is needed.
    let reader = app
        .new_key()
        .secret()
        .test()
        .scopes(&["records:read"])
        .create()
        .await;
    assert_eq!(
        app.gql(&reader, LIST, json!({})).await.code(),
        Some("FORBIDDEN")
    );
    // Update, list, delete; another project sees none of it.
    let updated = app
        .data(
            &t.root,
            UPDATE,
            json!({ "id": hook, "i": { "url": "http://93.184.216.34/v2", "events": ["model.*"], "modelKeys": ["page"], "enabled": false } }),
        )
        .await;
    assert_eq!(updated["updateWebhook"]["url"], "http://93.184.216.34/v2");
    assert_eq!(updated["updateWebhook"]["events"], json!(["model.*"]));
    assert_eq!(updated["updateWebhook"]["modelKeys"], json!(["page"]));
    assert_eq!(updated["updateWebhook"]["enabled"], false);
    let other = app.tenant("other").await;
    assert_eq!(
        app.data(&other.root, LIST, json!({})).await["webhooks"],
        json!([])
    );
    let reply = app.gql(&other.root, DELETE, json!({ "id": hook })).await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    let reply = app
        .gql(&other.root, DELIVERIES, json!({ "id": hook }))
        .await;
    assert_eq!(reply.code(), Some("NOT_FOUND"));
    assert_eq!(
        app.data(&t.root, DELETE, json!({ "id": hook })).await["deleteWebhook"],
        true
    );
    assert_eq!(
        app.data(&t.root, LIST, json!({})).await["webhooks"],
        json!([])
    );

    // Bounds: URL length, model keys, event types, webhooks per project.
    let long = format!("http://93.184.216.34/{}", "a".repeat(2048));
    let many: Vec<String> = (0..51).map(|i| format!("m{i}")).collect();
    let types: Vec<&str> = vec!["record.created"; 51];
    for (input, field) in [
        (json!({ "url": long, "events": ["*"] }), "url"),
        (
            json!({ "url": "http://93.184.216.34/", "events": ["*"], "modelKeys": many }),
            "modelKeys",
        ),
        (
            json!({ "url": "http://93.184.216.34/", "events": types }),
            "events",
        ),
        (
            json!({ "url": "http://93.184.216.34/", "events": [] }),
            "events",
        ),
    ] {
        let reply = app.gql(&t.root, CREATE, json!({ "i": input })).await;
        assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
        assert_eq!(reply.error_field(), Some(field));
    }
    for _ in 0..50 {
        create_hook(
            &app,
            &t.root,
            json!({ "url": "http://93.184.216.34/", "events": ["*"] }),
        )
        .await;
    }
    let reply = app
        .gql(
            &t.root,
            CREATE,
            json!({ "i": { "url": "http://93.184.216.34/", "events": ["*"] } }),
        )
        .await;
    assert_eq!(
        reply.code(),
        Some("BAD_USER_INPUT"),
        "the 51st webhook: {}",
        reply.body
    );
});

both_dbs!(
    deliveries_page_newest_first,
    |backend: Backend| async move {
        let Some(app) = spawn(backend, 0).await else {
            return;
        };
        let rx = Receiver::start().await;
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let (hook, _) = create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true }),
        )
        .await;
        for i in 0..5 {
            app.create_record(&t.root, "page", json!({ "title": format!("{i}") }))
                .await;
        }
        settled(&app, &t.root, &hook, 5).await;
        let mut after: Option<String> = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let data = app
                .data(
                    &t.root,
                    DELIVERIES,
                    json!({ "id": hook, "l": 2, "a": after }),
                )
                .await;
            let page = &data["webhookDeliveries"];
            for d in page["items"].as_array().unwrap() {
                seen.push(d["eventId"].as_str().unwrap().parse::<i64>().unwrap());
            }
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        assert_eq!(seen.len(), 5);
        assert!(seen.windows(2).all(|w| w[0] > w[1]));
    }
);

// Two servers on one database share one receiver's deliveries: each of
// 200 events arrives once, in order.
both_dbs!(
    two_instances_deliver_each_event_once_in_order,
    |backend: Backend| async move {
        const EVENTS: usize = 200;
        let Some(app) = spawn(backend, 3).await else {
            return;
        };
        let other = app
            .sibling(|c: &mut Config| {
                c.webhook_allow_private = true;
                c.webhook_retry_seconds = vec![0; 3];
            })
            .await;
        let rx = Receiver::start().await;
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true }),
        )
        .await;
        let started = Instant::now();
        for i in 0..EVENTS {
            // Writes alternate between the instances.
            let via = if i % 2 == 0 { &app } else { &other };
            via.create_record(&t.root, "page", json!({ "title": format!("{i}") }))
                .await;
        }
        let got = rx.wait_for(EVENTS, Duration::from_secs(60)).await;
        let took = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got_all = rx.receipts();
        assert_eq!(got.len(), EVENTS);
        assert_eq!(got_all.len(), EVENTS, "no duplicates");
        let ids: Vec<i64> = got_all.iter().map(|r| r.id.parse().unwrap()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in event order");
        eprintln!("{EVENTS} events written and delivered by two instances in {took:?}");
    }
);

// A server killed (SIGKILL) while deliveries are pending: after a restart,
// every event is delivered (at least once; none lost).
both_dbs!(
    pending_deliveries_survive_a_kill_9,
    |db: FreshDb| async move {
        const RECORDS: usize = 5;
        let rx = Receiver::start().await;
        rx.set_down(true);
        let env = [
            ("QUIRE_WEBHOOK_ALLOW_PRIVATE", "true"),
            (
                "QUIRE_WEBHOOK_RETRY_SECONDS",
                "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
            ),
        ];
        let first = Server::start(&db.url, &env).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let key = first.printed_keys()[0].trim().to_owned();
        let client = reqwest::Client::new();
        let gql = |url: String, query: &'static str, variables: Value| {
            let client = client.clone();
            let key = key.clone();
            async move {
                let body: Value = client
                    .post(url)
                    .header("x-api-key", key)
                    .json(&json!({ "query": query, "variables": variables }))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert!(body.get("errors").is_none(), "{body}");
                body
            }
        };
        gql(
        first.url("/graphql"),
        crate::support::ops::CREATE_MODEL,
        json!({ "i": { "key": "page", "name": "Page", "fields": [ { "name": "title", "type": "STRING" } ] } }),
    )
    .await;
        gql(
        first.url("/graphql"),
        CREATE,
        json!({ "i": { "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true } }),
    )
    .await;
        let mut ids = Vec::new();
        for i in 0..RECORDS {
            let r = gql(
                first.url("/graphql"),
                crate::support::ops::CREATE_RECORD,
                json!({ "m": "page", "d": { "title": format!("{i}") } }),
            )
            .await;
            ids.push(r["data"]["createRecord"]["id"].as_str().unwrap().to_owned());
        }
        rx.wait_for(2, Duration::from_secs(10)).await;
        first.stop().await; // SIGKILL
        rx.set_down(false);
        let second = Server::start(&db.url, &env).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let delivered: std::collections::HashSet<String> = rx
                .receipts()
                .iter()
                .filter(|r| r.answered == 200)
                .map(|r| r.json()["data"]["recordId"].as_str().unwrap().to_owned())
                .collect();
            if ids.iter().all(|id| delivered.contains(id)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "not delivered after the restart: {delivered:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        second.stop().await;
    }
);

both_dbs!(
    metrics_count_events_deliveries_and_streams,
    |backend: Backend| async move {
        let Some(app) = spawn(backend, 0).await else {
            return;
        };
        let rx = Receiver::start().await;
        let t = app.default_tenant().await;
        page_model(&app, &t.root).await;
        let (hook, _) = create_hook(
            &app,
            &t.root,
            json!({ "url": rx.url("/hook"), "events": ["record.created"], "includeDrafts": true }),
        )
        .await;
        app.create_record(&t.root, "page", json!({ "title": "m" }))
            .await;
        settled(&app, &t.root, &hook, 1).await;
        let stream = app
            .client
            .get(app.url("/events/stream"))
            .header("x-api-key", &t.root.secret)
            .send()
            .await
            .unwrap();
        assert_eq!(stream.status(), 200);
        let text = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        for name in [
            "quire_events_written_total",
            "quire_webhook_deliveries_total{outcome=\"succeeded\"}",
            "quire_webhook_attempt_duration_seconds",
            "quire_webhook_delivery_latency_seconds",
            "quire_webhook_oldest_pending_delivery_seconds",
            "quire_event_streams_open",
        ] {
            assert!(text.contains(name), "{name} missing from /metrics");
        }
        let open: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("quire_event_streams_open "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(open >= 1.0);
        drop(stream);
    }
);
