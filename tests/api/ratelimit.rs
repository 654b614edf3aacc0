//! Sliding hourly budgets: exactness and pacing on an injected clock (local
//! and Redis stores), concurrency, headers, batches, Redis failure, restart.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use quire::ratelimit::Limiter;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::{
    free_port, redis_url, Backend, FreshDb, OwnRedis, Reply, Server, TestApp, TestKey,
};

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap()
}

fn new_key_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Random bursts and lulls over three hours: no trailing hour ever admits
/// more than the budget, and a retry at `Retry-After` succeeds, at most one
/// bucket later than a perfect sliding window would allow.
async fn never_over_admits(limiter: &Limiter, seed: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let limit = 20;
    let key = new_key_id();
    let start = 1_800_000_000_i64;
    let mut t = start;
    let mut admitted: Vec<i64> = Vec::new();
    let mut refusals = 0;
    while t < start + 3 * 3600 {
        t += match rng.gen_range(0..20) {
            0 => rng.gen_range(300..1200),
            1..=3 => rng.gen_range(10..60),
            _ => rng.gen_range(0..3),
        };
        let d = limiter.check(&key, limit, 1, at(t)).await;
        if d.allowed {
            admitted.push(t);
            continue;
        }
        refusals += 1;
        let retry = d.retry_after.expect("a refusal says when to retry") as i64;
        assert!(retry >= 1);
        // The earliest second a perfect sliding window would admit again.
        let mut perfect = t;
        while admitted
            .iter()
            .filter(|&&a| a > perfect - 3600 && a <= perfect)
            .count() as u64
            >= limit
        {
            perfect += 1;
        }
        assert!(
            t + retry <= perfect + 60,
            "Retry-After {retry} s is more than one bucket late (perfect {})",
            perfect - t
        );
        assert_eq!(
            d.reset_at,
            t + retry,
            "Reset and Retry-After are one instant for a cost of 1"
        );
        let again = limiter.check(&key, limit, 1, at(t + retry)).await;
        assert!(again.allowed, "retry at Retry-After refused");
        t += retry;
        admitted.push(t);
    }
    let mut window: VecDeque<i64> = VecDeque::new();
    for &a in &admitted {
        window.push_back(a);
        while window.front().is_some_and(|&f| f <= a - 3600) {
            window.pop_front();
        }
        assert!(
            window.len() as u64 <= limit,
            "{} admitted in the hour before {a}",
            window.len()
        );
    }
    assert!(
        refusals > 0,
        "the pattern reached the limit ({} admitted)",
        admitted.len()
    );
}

/// A client pacing at 98 % of budget/3,600 per second is never refused.
async fn pacing_is_never_refused(limiter: &Limiter) {
    for limit in [100_u64, 3600, 10_000] {
        let key = new_key_id();
        let start = 1_800_000_000.0_f64;
        let rate = 0.98 * limit as f64 / 3600.0;
        let n = (rate * 3.0 * 3600.0) as u64;
        for i in 0..n {
            let t = (start + i as f64 / rate).floor() as i64;
            let d = limiter.check(&key, limit, 1, at(t)).await;
            assert!(
                d.allowed,
                "request {i} of a paced client refused (limit {limit})"
            );
        }
    }
}

#[tokio::test]
async fn local_store_never_over_admits() {
    let limiter = Limiter::new(None).unwrap();
    for seed in 0..20 {
        never_over_admits(&limiter, seed).await;
    }
    pacing_is_never_refused(&limiter).await;
}

#[tokio::test]
async fn redis_store_never_over_admits() {
    let Some(url) = redis_url() else { return };
    let limiter = Limiter::new(Some(&url)).unwrap();
    for seed in 0..5 {
        never_over_admits(&limiter, seed).await;
    }
    pacing_is_never_refused(&limiter).await;
}

async fn exactly_the_budget_under_contention(limiter: Arc<Limiter>) {
    let key = new_key_id();
    let admitted = Arc::new(AtomicU64::new(0));
    let now = Utc::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (limiter, key, admitted) = (limiter.clone(), key.clone(), admitted.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..1000 {
                if limiter.check(&key, 5000, 1, now).await.allowed {
                    admitted.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        limiter.redis_health().map_or(0, |h| h.1),
        0,
        "no decision fell back to the local store"
    );
    assert_eq!(admitted.load(Ordering::Relaxed), 5000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_store_admits_exactly_the_budget_under_contention() {
    exactly_the_budget_under_contention(Arc::new(Limiter::new(None).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_store_admits_exactly_the_budget_under_contention() {
    let Some(url) = redis_url() else { return };
    exactly_the_budget_under_contention(Arc::new(Limiter::new(Some(&url)).unwrap())).await;
}

fn rate_headers(reply: &Reply) -> (u64, u64, i64) {
    let n = |h: &str| {
        reply
            .header(h)
            .unwrap_or_else(|| panic!("missing {h}: {}", reply.body))
            .parse::<i64>()
            .unwrap()
    };
    (
        n("x-ratelimit-limit") as u64,
        n("x-ratelimit-remaining") as u64,
        n("x-ratelimit-reset"),
    )
}

async fn limited_key(app: &TestApp, limit: i64) -> TestKey {
    let key = app.new_key().secret().test().scopes(&["*"]).create().await;
    set_limit(app, &key.id, limit).await;
    key
}

async fn set_limit(app: &TestApp, id: &str, limit: i64) {
    let update = quire::keys::KeyUpdate {
        name: None,
        rate_limit_per_hour: Some(limit),
    };
    let project = app.state.keys.project_by_name("default").await.unwrap();
    app.state
        .keys
        .update(&quire::keys::Actor::Admin, &project.unwrap().id, id, update)
        .await
        .unwrap();
}

async fn post(app: &TestApp, key: &str, body: Value) -> Reply {
    let res = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    Reply::from(res).await
}

#[tokio::test]
async fn headers_viewer_batches_and_429() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = limited_key(&app, 5).await;
    let query = "{ viewer { rateLimit { limit remaining resetAt } } }";
    let first = app.gql(&key, query, json!({})).await;
    let (limit, remaining, reset) = rate_headers(&first);
    assert_eq!((limit, remaining), (5, 4));
    let rl = &first.body["data"]["viewer"]["rateLimit"];
    assert_eq!(rl["limit"], 5);
    assert_eq!(rl["remaining"], 4);
    let reset_at = DateTime::parse_from_rfc3339(rl["resetAt"].as_str().unwrap()).unwrap();
    assert_eq!(reset_at.timestamp(), reset);

    // An oversized batch is a 400 that costs nothing but carries the headers.
    let big: Vec<Value> = (0..11)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let refused = post(&app, &key, Value::Array(big)).await;
    assert_eq!(refused.status, 400);
    assert_eq!(rate_headers(&refused).1, 4);

    // A batch of 3 counts 3.
    let three: Vec<Value> = (0..3)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let ok = post(&app, &key, Value::Array(three)).await;
    assert_eq!(ok.status, 200);
    assert_eq!(rate_headers(&ok).1, 1);

    // A batch of 2 does not fit the 1 left: a 429 as a whole, nothing counted.
    let two: Vec<Value> = (0..2)
        .map(|_| json!({ "query": "{ __typename }" }))
        .collect();
    let limited = post(&app, &key, Value::Array(two)).await;
    assert_eq!(limited.status, 429);
    // One error object per operation, so batching clients can match them up.
    assert_eq!(
        limited.batch_codes(),
        vec![Some("RATE_LIMITED".to_owned()); 2]
    );
    assert_eq!(rate_headers(&limited).1, 1);
    let retry: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);

    // The last one fits; then 429 with Remaining 0 and Retry-After == Reset - now.
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
    let exhausted = app.gql(&key, "{ __typename }", json!({})).await;
    assert_eq!(exhausted.status, 429);
    let (_, remaining, reset) = rate_headers(&exhausted);
    assert_eq!(remaining, 0);
    let retry: i64 = exhausted.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(
        quire::clock::Clock::now(&*app.clock).timestamp() + retry,
        reset
    );

    // A retry at Retry-After succeeds.
    app.clock.advance(chrono::Duration::seconds(retry));
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
}

#[tokio::test]
async fn a_new_limit_applies_from_the_next_request() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let key = app.new_key().secret().test().scopes(&["*"]).create().await;
    set_limit(&app, &key.id, 2).await;
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
    assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 429);
    set_limit(&app, &key.id, 3).await;
    let reply = app.gql(&key, "{ __typename }", json!({})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(rate_headers(&reply), (3, 0, rate_headers(&reply).2));
}

#[tokio::test]
async fn unauthenticated_requests_carry_no_rate_headers() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let reply = app.gql("sk_live_nope", "{ __typename }", json!({})).await;
    assert_eq!(reply.status, 401);
    assert!(reply.header("x-ratelimit-limit").is_none());
}

async fn admin_key(database_url: &str, limit: u32) -> String {
    let limit = limit.to_string();
    let args = [
        "--type",
        "public",
        "--mode",
        "live",
        "--scopes",
        "records:read",
        "--rate-limit",
        limit.as_str(),
    ];
    crate::support::server::admin_key(database_url, &args).await
}

async fn count_ok(servers: &[&Server], key: &str, n: usize) -> usize {
    let client = reqwest::Client::new();
    let mut ok = 0;
    for i in 0..n {
        let res = client
            .post(servers[i % servers.len()].url("/graphql"))
            .header("x-api-key", key)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn two_processes_sharing_redis_admit_exactly_the_budget() {
    let Some(url) = redis_url() else { return };
    let db = FreshDb::create(Backend::Sqlite).await.unwrap();
    let a = Server::start(&db.url, &[("QUIRE_REDIS_URL", &url)]).await;
    let b = Server::start(&db.url, &[("QUIRE_REDIS_URL", &url)]).await;
    let key = admin_key(&db.url, 40).await;
    assert_eq!(count_ok(&[&a, &b], &key, 100).await, 40);
    a.stop().await;
    b.stop().await;
}

// A graceful restart keeps each key's remaining budget (the local store
// saves its windows on SIGTERM and loads them on start).
both_dbs!(
    restart_keeps_the_remaining_budget,
    |db: FreshDb| async move {
        let server = Server::start(&db.url, &[]).await;
        let key = admin_key(&db.url, 1000).await;
        assert_eq!(count_ok(&[&server], &key, 30).await, 30);
        server.terminate().await;
        let server = Server::start(&db.url, &[]).await;
        let res = reqwest::Client::new()
            .post(server.url("/graphql"))
            .header("x-api-key", &key)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap();
        let remaining: u64 = res.headers()["x-ratelimit-remaining"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(remaining, 1000 - 31);
        server.stop().await;
    }
);

// The local store's windows survive a restart through the database:
// `persist` saves them, a new limiter's `restore` loads them and leaves them
// saved (a crash before the next save still finds them).
both_dbs!(
    a_restored_limiter_keeps_the_window,
    |db: FreshDb| async move {
        let database = db.open().await;
        let t0 = at(1_800_000_000);
        let (key, other) = (new_key_id(), new_key_id());
        let before = Limiter::new(None).unwrap();
        for minute in 0..3 {
            for _ in 0..10 {
                let now = t0 + chrono::Duration::minutes(minute);
                assert!(before.check(&key, 100, 1, now).await.allowed);
            }
        }
        assert!(before.check(&other, 5, 5, t0).await.allowed);
        let saved_at = t0 + chrono::Duration::minutes(3);
        assert_eq!(before.persist(&database, saved_at).await.unwrap(), 2);

        // A new process: nothing counted until it restores.
        let later = saved_at + chrono::Duration::seconds(10);
        let after = Limiter::new(None).unwrap();
        assert_eq!(after.peek(&key, 100, later).await.remaining, 100);
        assert_eq!(after.restore(&database, later).await.unwrap(), 2);
        assert_eq!(
            after.peek(&key, 100, later).await,
            before.peek(&key, 100, later).await,
            "the same window: remaining budget and reset"
        );
        assert_eq!(after.peek(&key, 100, later).await.remaining, 70);
        // From here on it decides as the limiter that never stopped does.
        for limiter in [&before, &after] {
            let next = limiter.check(&key, 100, 1, later).await;
            assert!(next.allowed);
            assert_eq!(next.remaining, 69);
            assert!(limiter.check(&key, 100, 69, later).await.allowed);
            assert!(!limiter.check(&key, 100, 1, later).await.allowed, "spent");
            assert!(!limiter.check(&other, 5, 1, later).await.allowed, "spent");
        }
        for minutes in [10, 59, 60, 61, 62, 63, 64, 90] {
            let then = t0 + chrono::Duration::minutes(minutes);
            assert_eq!(
                after.peek(&key, 100, then).await,
                before.peek(&key, 100, then).await,
                "{minutes} minutes on"
            );
        }
        // The first minute's requests age out of the window (within a bucket).
        let aged = t0 + chrono::Duration::seconds(3_600 + 60);
        assert!(after.peek(&key, 100, aged).await.remaining >= 10);

        // Restoring did not consume them: a second restart finds the same.
        let again = Limiter::new(None).unwrap();
        assert_eq!(again.restore(&database, later).await.unwrap(), 2);
        assert_eq!(again.peek(&key, 100, later).await.remaining, 70);
        // A later save replaces what was saved rather than adding to it.
        assert_eq!(after.persist(&database, later).await.unwrap(), 2);
        let last = Limiter::new(None).unwrap();
        assert_eq!(last.restore(&database, later).await.unwrap(), 2);
        assert_eq!(last.peek(&key, 100, later).await.remaining, 0);
    }
);

// A window saved more than an hour ago has nothing left to restore; the
// next save drops it.
both_dbs!(
    a_window_saved_over_an_hour_ago_is_not_restored,
    |db: FreshDb| async move {
        let database = db.open().await;
        let t0 = at(1_800_000_000);
        let key = new_key_id();
        let before = Limiter::new(None).unwrap();
        assert!(before.check(&key, 10, 10, t0).await.allowed);
        assert_eq!(before.persist(&database, t0).await.unwrap(), 1);

        let after = Limiter::new(None).unwrap();
        let two_hours_later = t0 + chrono::Duration::hours(2);
        assert_eq!(after.restore(&database, two_hours_later).await.unwrap(), 0);
        assert_eq!(after.peek(&key, 10, two_hours_later).await.remaining, 10);
        // Dropped by the next save: not even a restore dated back at the
        // first save finds it.
        assert_eq!(after.persist(&database, two_hours_later).await.unwrap(), 0);
        let back_then = Limiter::new(None).unwrap();
        assert_eq!(back_then.restore(&database, t0).await.unwrap(), 0);
        assert_eq!(back_then.peek(&key, 10, t0).await.remaining, 10);
    }
);

// SIGTERM with a connection whose headers never finish: the windows are
// saved before the drain, the straggler is closed at the end of the grace
// period, and the process exits 0 (it used to wait for it forever).
#[tokio::test]
async fn sigterm_with_a_half_open_connection_exits_within_the_grace() {
    let db = FreshDb::create(Backend::Sqlite).await.unwrap();
    let grace = [("QUIRE_SHUTDOWN_GRACE_SECONDS", "2")];
    let mut server = Server::start(&db.url, &grace).await;
    let key = admin_key(&db.url, 1000).await;
    assert_eq!(count_ok(&[&server], &key, 20).await, 20);
    let mut half_open = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut half_open, b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let pid = server.child.id().expect("running");
    let started = std::time::Instant::now();
    let status = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exited = tokio::time::timeout(Duration::from_secs(8), server.child.wait())
        .await
        .expect("quire did not stop within the grace period")
        .unwrap();
    assert!(exited.success(), "{exited:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let server = Server::start(&db.url, &grace).await;
    let res = reqwest::Client::new()
        .post(server.url("/graphql"))
        .header("x-api-key", &key)
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-ratelimit-remaining"], "979");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_failure_falls_back_and_recovers() {
    let port = free_port();
    let Some(mut redis) = OwnRedis::start(port).await else {
        eprintln!("skipped: redis-server is not installed");
        return;
    };
    let url = redis.url();
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.redis_url = Some(url.clone().into()))
        .await
        .unwrap();
    let key = app.root_key().await;
    let other = Limiter::new(Some(&url)).unwrap();
    let first = app.gql(&key, "{ viewer { key { id } } }", json!({})).await;
    assert_eq!(first.status, 200);
    let key_id = first.body["data"]["viewer"]["key"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Shared: a second limiter on the same Redis sees the request.
    let now = quire::clock::Clock::now(&*app.clock);
    assert_eq!(other.peek(&key_id, 10_000, now).await.remaining, 9_999);

    redis.child.kill().await.unwrap();
    for _ in 0..20 {
        assert_eq!(
            app.gql(&key, "{ __typename }", json!({})).await.status,
            200,
            "requests keep flowing"
        );
    }
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    // The gauge is process-wide (other tests share this process), so read
    // this instance's own figures too.
    assert!(metrics.contains("quire_ratelimit_redis_up"), "{metrics}");
    assert!(
        metrics.contains("quire_ratelimit_redis_fallback_total"),
        "{metrics}"
    );
    let (up, fallbacks) = app.state.limiter.redis_health().unwrap();
    assert!(!up && fallbacks >= 20, "up {up}, fallbacks {fallbacks}");

    let _redis = OwnRedis::start(port).await.expect("redis restarts");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..3 {
        assert_eq!(app.gql(&key, "{ __typename }", json!({})).await.status, 200);
    }
    assert!(app.state.limiter.redis_health().unwrap().0, "back on Redis");
    let other = Limiter::new(Some(&url)).unwrap();
    let shared = other.peek(&key_id, 10_000, now).await.remaining;
    assert_eq!(shared, 10_000 - 3, "counting through Redis resumed");
}
