//! Usage (SPEC §10): every request made with a valid key counts in its
//! key's hourly and daily buckets (requests, 429s, errors), off the request
//! path; instances add up; a graceful restart keeps the counts; `keyUsage`
//! shows each key only to those who may see it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::server::admin_key;
use crate::support::{Backend, ClockExt, FreshDb, Holder, Server, TestApp, TestKey};

const USAGE: &str =
    "query($from: DateTime!, $to: DateTime!, $g: UsageGranularity = DAY, $ids: [ID!]) {
  keyUsage(from: $from, to: $to, granularity: $g, keyIds: $ids) {
    start keyId keyName maskedKey requests rateLimited errors } }";

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A secret LIVE key holding `analytics:read` (sees every key's usage).
async fn reader(app: &TestApp) -> TestKey {
    app.new_key()
        .secret()
        .live()
        .scopes(&["analytics:read"])
        .create()
        .await
}

/// `keyUsage` over the last day and the next, at `granularity`.
async fn usage(app: &TestApp, key: &str, granularity: &str, ids: Option<Vec<&str>>) -> Vec<Value> {
    let now = app.clock.now_utc();
    let data = app
        .data(
            key,
            USAGE,
            json!({
                "from": stamp(now - chrono::Duration::days(1)),
                "to": stamp(now + chrono::Duration::days(1)),
                "g": granularity,
                "ids": ids,
            }),
        )
        .await;
    data["keyUsage"].as_array().unwrap().clone()
}

/// (requests, rateLimited, errors) summed over `buckets` of `key_id`.
fn totals(buckets: &[Value], key_id: &str) -> (i64, i64, i64) {
    buckets
        .iter()
        .filter(|b| b["keyId"] == key_id)
        .fold((0, 0, 0), |(r, l, e), b| {
            (
                r + b["requests"].as_i64().unwrap(),
                l + b["rateLimited"].as_i64().unwrap(),
                e + b["errors"].as_i64().unwrap(),
            )
        })
}

/// A raw POST of `body` with `key`; the status.
async fn post(app: &TestApp, key: &str, body: Value) -> u16 {
    app.client
        .post(app.url("/graphql"))
        .header("x-api-key", key)
        .header("accept", "application/graphql-response+json")
        .json(&body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The known sequence: with a budget of 8, 3 good queries, 1 forbidden
/// field (200 with errors), 1 parse error (400), a batch of 2 with one
/// forbidden operation, a batch of 2 refused whole (429), 1 good query
/// (the last of the budget), 1 more (429).
async fn known_sequence(app: &TestApp, key: &str) {
    let ok = json!({ "query": "{ viewer { key { id } } }" });
    let forbidden = json!({ "query": "{ apiKeys { id } }" });
    for _ in 0..3 {
        assert_eq!(post(app, key, ok.clone()).await, 200);
    }
    assert_eq!(post(app, key, forbidden.clone()).await, 200);
    assert_eq!(post(app, key, json!({ "query": "{ viewer {" })).await, 400);
    assert_eq!(
        post(app, key, json!([ok.clone(), forbidden.clone()])).await,
        200
    );
    assert_eq!(post(app, key, json!([ok.clone(), ok.clone()])).await, 429);
    assert_eq!(post(app, key, ok.clone()).await, 200);
    assert_eq!(post(app, key, ok).await, 429);
}
/// What [`known_sequence`] counts: 11 requests, 3 rate limited, 3 errors.
const KNOWN: (i64, i64, i64) = (11, 3, 3);

both_dbs!(
    counts_are_exact_for_a_known_sequence,
    |app: TestApp| async move {
        let counted = app
            .new_key()
            .public()
            .live()
            .scopes(&["records:read"])
            .limit(8)
            .create()
            .await;
        let reader = reader(&app).await;
        known_sequence(&app, &counted).await;
        app.state.usage.flush().await.unwrap();
        for granularity in ["HOUR", "DAY"] {
            let buckets = usage(&app, &reader, granularity, Some(vec![&counted.id])).await;
            assert_eq!(buckets.len(), 1, "{granularity}: one bucket: {buckets:?}");
            assert_eq!(totals(&buckets, &counted.id), KNOWN, "{granularity}");
            let b = &buckets[0];
            let start = DateTime::parse_from_rfc3339(b["start"].as_str().unwrap()).unwrap();
            let period = if granularity == "HOUR" { 3600 } else { 86_400 };
            assert_eq!(
                start.timestamp() % period,
                0,
                "start is the bucket's first instant"
            );
            assert!(b["maskedKey"].as_str().unwrap().contains('…'));
            assert!(!b.to_string().contains(&counted.secret), "never the secret");
        }
        // A second flush adds only what came since: the reader's own queries.
        app.state.usage.flush().await.unwrap();
        let buckets = usage(&app, &reader, "DAY", None).await;
        assert_eq!(totals(&buckets, &counted.id), KNOWN);
        assert_eq!(
            totals(&buckets, &reader.id).0,
            2,
            "the reader's two earlier queries"
        );
    }
);

both_dbs!(
    counts_are_not_written_on_the_request_path,
    |app: TestApp| async move {
        let key = reader(&app).await;
        for _ in 0..5 {
            app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        }
        // Nothing is in the database until a flush.
        assert!(usage(&app, &key, "DAY", None).await.is_empty());
        assert!(app.state.usage.pending() >= 1);
        app.state.usage.flush().await.unwrap();
        assert_eq!(app.state.usage.pending(), 0);
        assert_eq!(totals(&usage(&app, &key, "DAY", None).await, &key.id).0, 6);
    }
);

// The database is held (a lock the flush's statement waits on past the
// statement timeout): the flush fails, is counted in /metrics, keeps the
// counts, and the next flush writes them all, with what came meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_flush_keeps_the_counts_for_the_next() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::try_spawn_with(backend, |c| c.db_timeout_seconds = 1).await else {
            continue;
        };
        let key = reader(&app).await;
        for _ in 0..4 {
            app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        }
        let holder = Holder::lock(&app, "key_usage_hourly").await;
        let failures = || async {
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
                .find(|l| l.starts_with("quire_usage_flush_failures_total"))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|n| n.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let before = failures().await;
        assert!(
            app.state.usage.flush().await.is_err(),
            "{backend:?}: the flush cannot write"
        );
        assert!(
            failures().await >= before + 1.0,
            "{backend:?}: counted in /metrics"
        );
        assert!(
            app.state.usage.pending() >= 1,
            "{backend:?}: the counts are kept"
        );
        holder.release().await;
        app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        app.state.usage.flush().await.unwrap();
        let buckets = usage(&app, &key, "DAY", None).await;
        assert_eq!(
            totals(&buckets, &key.id).0,
            5,
            "{backend:?}: nothing lost, nothing doubled"
        );
    }
}

both_dbs!(two_instances_add_up, |app: TestApp| async move {
    let other = app.sibling(|_| {}).await;
    let key = reader(&app).await;
    for i in 0..10 {
        let instance = if i % 2 == 0 { &app } else { &other };
        instance
            .data(&key, "{ viewer { key { id } } }", json!({}))
            .await;
    }
    // Both flush into the same hourly and daily rows.
    app.state.usage.flush().await.unwrap();
    other.state.usage.flush().await.unwrap();
    for granularity in ["HOUR", "DAY"] {
        let buckets = usage(&app, &key, granularity, None).await;
        assert_eq!(buckets.len(), 1, "{buckets:?}");
        assert_eq!(totals(&buckets, &key.id), (10, 0, 0));
    }
});

both_dbs!(
    hours_and_days_are_separate_buckets,
    |app: TestApp| async move {
        let key = reader(&app).await;
        let start = app.clock.now_utc();
        app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        app.clock.advance(chrono::Duration::hours(1));
        app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        app.state.usage.flush().await.unwrap();
        let hours = usage(&app, &key, "HOUR", None).await;
        assert_eq!(hours.len(), 2, "{hours:?}");
        let days = usage(&app, &key, "DAY", None).await;
        // Two hours fall in one day unless the first was the day's last hour.
        let same_day = (start + chrono::Duration::hours(1)).date_naive() == start.date_naive();
        assert_eq!(days.len(), if same_day { 1 } else { 2 });
        assert_eq!(totals(&days, &key.id).0, 2);
    }
);

both_dbs!(
    visibility_follows_the_key_rules,
    |app: TestApp| async move {
        let live_admin = reader(&app).await;
        let test_admin = app
            .new_key()
            .secret()
            .test()
            .scopes(&["analytics:read"])
            .create()
            .await;
        let site = app
            .new_key()
            .public()
            .live()
            .scopes(&["analytics:read", "records:read"])
            .create()
            .await;
        let gone = app
            .new_key()
            .secret()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        let other = app.tenant("usage-other").await;
        let outsider = app
            .new_key()
            .secret()
            .live()
            .scopes(&["analytics:read"])
            .in_project(&other.project)
            .create()
            .await;
        for key in [&live_admin, &test_admin, &site, &gone, &outsider] {
            app.data(key, "{ viewer { key { id } } }", json!({})).await;
        }
        let revoker = app
            .new_key()
            .secret()
            .live()
            .scopes(&["apikeys:delete", "records:read"])
            .create()
            .await;
        app.revoke_api_key(&revoker, &gone.id).await;
        app.state.usage.flush().await.unwrap();
        let ids = |buckets: Vec<Value>| {
            let mut ids: Vec<String> = buckets
                .iter()
                .map(|b| b["keyId"].as_str().unwrap().to_owned())
                .collect();
            ids.sort();
            ids.dedup();
            ids
        };
        let sorted = |keys: &[&TestKey]| {
            let mut ids: Vec<String> = keys.iter().map(|k| k.id.clone()).collect();
            ids.sort();
            ids
        };
        // A LIVE secret key: every key of its project, the revoked one included.
        let seen = ids(usage(&app, &live_admin, "DAY", None).await);
        for key in [&live_admin, &test_admin, &site, &gone] {
            assert!(seen.contains(&key.id), "live admin sees {}", key.id);
        }
        assert!(!seen.contains(&outsider.id), "never another project's key");
        // A TEST key: TEST keys only.
        assert_eq!(
            ids(usage(&app, &test_admin, "DAY", None).await),
            sorted(&[&test_admin])
        );
        // A public key: itself, even when it asks for others.
        assert_eq!(ids(usage(&app, &site, "DAY", None).await), sorted(&[&site]));
        let asked = usage(&app, &site, "DAY", Some(vec![&live_admin.id, &gone.id])).await;
        assert!(
            asked.is_empty(),
            "a public key never sees another key: {asked:?}"
        );
        // Another project's key sees only its own project.
        assert_eq!(
            ids(usage(&app, &outsider, "DAY", None).await),
            sorted(&[&outsider])
        );
        // keyIds narrows.
        let one = usage(&app, &live_admin, "DAY", Some(vec![&site.id])).await;
        assert_eq!(ids(one), sorted(&[&site]));
    }
);

both_dbs!(scope_and_range_are_checked, |app: TestApp| async move {
    let reader = reader(&app).await;
    let without = app
        .new_key()
        .secret()
        .live()
        .scopes(&["records:read"])
        .create()
        .await;
    let now = app.clock.now_utc();
    let ask = |key: TestKey, days: i64, g: &'static str| {
        let app = app.clone();
        async move {
            app.gql(
                &key,
                USAGE,
                json!({ "from": stamp(now - chrono::Duration::days(days)), "to": stamp(now), "g": g }),
            )
            .await
        }
    };
    assert_eq!(
        ask(without.clone(), 1, "DAY").await.code(),
        Some("FORBIDDEN")
    );
    assert_eq!(ask(reader.clone(), 90, "HOUR").await.code(), None);
    assert_eq!(
        ask(reader.clone(), 91, "HOUR").await.code(),
        Some("BAD_USER_INPUT")
    );
    assert_eq!(ask(reader.clone(), 400, "DAY").await.code(), None);
    assert_eq!(
        ask(reader.clone(), 401, "DAY").await.code(),
        Some("BAD_USER_INPUT")
    );
    let backwards = app
        .gql(
            &reader,
            USAGE,
            json!({ "from": stamp(now), "to": stamp(now - chrono::Duration::hours(1)) }),
        )
        .await;
    assert_eq!(backwards.code(), Some("BAD_USER_INPUT"));
});

both_dbs!(
    pruning_keeps_90_days_of_hours_and_400_of_days,
    |app: TestApp| async move {
        let key = reader(&app).await;
        app.data(&key, "{ viewer { key { id } } }", json!({})).await;
        app.state.usage.flush().await.unwrap();
        let conn = &app.state.db.conn;
        let now = app.clock.now_utc();
        // Nothing is old enough yet; pruning twice is harmless.
        assert_eq!(quire::usage::store::prune(conn, now).await.unwrap(), 0);
        assert_eq!(quire::usage::store::prune(conn, now).await.unwrap(), 0);
        // 91 days on, the hour goes and the day stays; 401 days on, both.
        let pruned = quire::usage::store::prune(conn, now + chrono::Duration::days(91))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        let pruned = quire::usage::store::prune(conn, now + chrono::Duration::days(401))
            .await
            .unwrap();
        assert_eq!(pruned, 1);
        assert!(usage(&app, &key, "DAY", None).await.is_empty());
    }
);

// A real process: counts survive a graceful restart (flushed at SIGTERM,
// with a flush interval far longer than the test), and a `kill -9` loses at
// most the last flush interval.
both_dbs!(
    a_graceful_restart_keeps_the_counts,
    |db: FreshDb| async move {
        let envs = [("QUIRE_USAGE_FLUSH_SECONDS", "3600")];
        let key = admin_key(&db.url, &READER).await;
        let server = Server::start(&db.url, &envs).await;
        for _ in 0..7 {
            query(&server, &key, "{ viewer { key { id } } }").await;
        }
        server.terminate().await;
        let server = Server::start(&db.url, &envs).await;
        let (requests, buckets) = server_requests(&server, &key).await;
        assert_eq!(requests, 7, "{buckets:?}");
        server.stop().await;
    }
);

both_dbs!(
    kill_9_loses_at_most_the_last_interval,
    |db: FreshDb| async move {
        let envs = [("QUIRE_USAGE_FLUSH_SECONDS", "1")];
        let key = admin_key(&db.url, &READER).await;
        let server = Server::start(&db.url, &envs).await;
        for _ in 0..5 {
            query(&server, &key, "{ viewer { key { id } } }").await;
        }
        // Two intervals: the first five are flushed by the timer.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        for _ in 0..3 {
            query(&server, &key, "{ viewer { key { id } } }").await;
        }
        server.stop().await; // SIGKILL
        let server = Server::start(&db.url, &[("QUIRE_USAGE_FLUSH_SECONDS", "3600")]).await;
        let (requests, buckets) = server_requests(&server, &key).await;
        assert!(
            (5..=8).contains(&requests),
            "kept {requests} of 8: {buckets:?}"
        );
        server.stop().await;
    }
);

async fn query(server: &Server, key: &str, query: &str) -> Value {
    reqwest::Client::new()
        .post(server.url("/graphql"))
        .header("x-api-key", key)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// `quire admin keys create` flags of a key that reads usage.
const READER: [&str; 6] = [
    "--type",
    "secret",
    "--mode",
    "live",
    "--scopes",
    "analytics:read",
];

/// The requests `server`'s `keyUsage` counts for `key`'s project, and the
/// buckets they came from.
async fn server_requests(server: &Server, key: &str) -> (i64, Vec<Value>) {
    let buckets = server_usage(server, key).await;
    let requests = buckets
        .iter()
        .map(|b| b["requests"].as_i64().unwrap())
        .sum();
    (requests, buckets)
}

async fn server_usage(server: &Server, key: &str) -> Vec<Value> {
    let now = Utc::now();
    let body = reqwest::Client::new()
        .post(server.url("/graphql"))
        .header("x-api-key", key)
        .json(&json!({ "query": USAGE, "variables": {
            "from": stamp(now - chrono::Duration::days(1)),
            "to": stamp(now + chrono::Duration::days(1)),
        }}))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    body["data"]["keyUsage"]
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("{body}"))
}
