//! The read cache: no stale read after any change the published view shows,
//! on one instance and across instances sharing Redis (and after Redis loses
//! its data); no draft in a published answer; a cached answer only for a key
//! that may have it; rate limits on hits; the figures in `/metrics`. And
//! Redis in trouble: a paused Redis costs one short probe a second, not a
//! wait per request; the figures are exported from the start and an outage
//! is logged once; a writer cut off from Redis is followed by the others
//! through the database within a second.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{DELETE_RECORD, UNPUBLISH_RECORD, UPDATE_MODEL, UPDATE_RECORD};
use crate::support::{
    dead_redis_url, free_port, redis_url, Backend, FreshDb, OwnRedis, Server, Tenant, TestApp,
    TestKey,
};

const LIST: &str = "{ records(modelKey: \"page\") { items { id data status version updatedAt publishedAt } totalCount } }";
const ONE: &str = "query($id: ID!) { record(id: $id) { id data status version } }";
const BY_SLUG: &str =
    "query($w: JSON) { records(modelKey: \"page\", where: $w) { items { id data } } }";
const TMP: &str = "{ records(modelKey: \"tmp\") { items { id } } }";

/// The default project's keys (`root`: an `sk_test_` key with every scope,
/// `live`: a `pk_live_` key reading records) and its `page` model.
async fn setup(app: &TestApp) -> Tenant {
    let tenant = app.default_tenant().await;
    page_model(app, &tenant.root).await;
    tenant
}

/// The `page` model: a unique `slug` and a `title`.
async fn page_model(app: &TestApp, root: &str) {
    app.create_model(
        root,
        json!({ "key": "page", "name": "Page", "fields": [
            { "name": "slug", "type": "STRING", "required": true, "unique": true },
            { "name": "title", "type": "STRING" }
        ] }),
    )
    .await;
}

/// What the published view should show of the one record: `None` when it
/// shows nothing, else `(title, status, version)`.
type Shown = Option<(&'static str, &'static str, i64)>;

/// Reads the three queries twice each on `reader`; every answer must be
/// `expected`, and the second read of each must be a cache hit.
async fn reads_show(reader: &TestApp, key: &str, id: &str, expected: Shown, step: &str) {
    let (hits_before, _) = reader.state.read_cache.stats();
    for _ in 0..2 {
        let list = reader.data(key, LIST, json!({})).await;
        let one = reader.data(key, ONE, json!({ "id": id })).await;
        let by_slug = reader
            .data(key, BY_SLUG, json!({ "w": { "slug": "a" } }))
            .await;
        let items = list["records"]["items"].as_array().unwrap();
        match expected {
            None => {
                assert!(items.is_empty(), "{step}: list shows {list}");
                assert_eq!(list["records"]["totalCount"], 0, "{step}");
                assert!(one["record"].is_null(), "{step}: record shows {one}");
                assert_eq!(by_slug["records"]["items"], json!([]), "{step}");
            }
            Some((title, status, version)) => {
                assert_eq!(items.len(), 1, "{step}: {list}");
                let seen = (
                    items[0]["data"]["title"].as_str().unwrap(),
                    items[0]["status"].as_str().unwrap(),
                    items[0]["version"].as_i64().unwrap(),
                );
                assert_eq!(seen, (title, status, version), "{step}: list");
                assert_eq!(one["record"]["data"]["title"], title, "{step}: record");
                assert_eq!(one["record"]["status"], status, "{step}: record");
                assert_eq!(one["record"]["version"], version, "{step}: record");
                assert_eq!(
                    by_slug["records"]["items"][0]["data"]["title"], title,
                    "{step}: where"
                );
            }
        }
    }
    let (hits_after, _) = reader.state.read_cache.stats();
    assert!(
        hits_after >= hits_before + 3,
        "{step}: the second reads were not served from the cache"
    );
}

/// The one `page` record, `{ slug: "a", title: "v1" }`, published: its id.
async fn published_v1(app: &TestApp, root: &str) -> String {
    let id = app
        .create_record(root, "page", json!({ "slug": "a", "title": "v1" }))
        .await
        .id;
    app.publish_record(root, &id).await;
    id
}

/// Every kind of change, made through `writer`, then read through `reader`.
async fn no_stale_reads(writer: &TestApp, reader: &TestApp, root: &str, live: &str) {
    let id = writer
        .create_record(root, "page", json!({ "slug": "a", "title": "v1" }))
        .await
        .id;
    reads_show(reader, live, &id, None, "draft only").await;

    writer.publish_record(root, &id).await;
    reads_show(reader, live, &id, Some(("v1", "PUBLISHED", 2)), "published").await;

    writer
        .data(
            root,
            UPDATE_RECORD,
            json!({ "id": id, "d": { "slug": "a", "title": "v2" } }),
        )
        .await;
    reads_show(
        reader,
        live,
        &id,
        Some(("v1", "CHANGED", 3)),
        "draft edit of a published record",
    )
    .await;

    writer.publish_record(root, &id).await;
    reads_show(
        reader,
        live,
        &id,
        Some(("v2", "PUBLISHED", 4)),
        "republished",
    )
    .await;

    writer
        .data(root, UNPUBLISH_RECORD, json!({ "id": id }))
        .await;
    reads_show(reader, live, &id, None, "unpublished").await;

    writer.publish_record(root, &id).await;
    reads_show(
        reader,
        live,
        &id,
        Some(("v2", "PUBLISHED", 6)),
        "published again",
    )
    .await;

    // A model change moves the generation: the next read is not a hit.
    writer
        .data(
            root,
            UPDATE_MODEL,
            json!({ "k": "page", "i": { "fields": [
                { "name": "slug", "type": "STRING", "required": true, "unique": true },
                { "name": "title", "type": "STRING" },
                { "name": "rank", "type": "INTEGER" }
            ] } }),
        )
        .await;
    let (_, misses) = reader.state.read_cache.stats();
    reader.data(live, LIST, json!({})).await;
    assert_eq!(reader.state.read_cache.stats().1, misses + 1, "updateModel");
    reads_show(
        reader,
        live,
        &id,
        Some(("v2", "PUBLISHED", 6)),
        "model changed",
    )
    .await;

    // A deleted model's records are an error, not a cached empty page.
    writer
        .create_model(
            root,
            json!({ "key": "tmp", "name": "Tmp", "fields": [{ "name": "x", "type": "STRING" }] }),
        )
        .await;
    for _ in 0..2 {
        let empty = reader.data(live, TMP, json!({})).await;
        assert_eq!(empty["records"]["items"], json!([]));
    }
    writer
        .data(root, "mutation { deleteModel(key: \"tmp\") }", json!({}))
        .await;
    let gone = reader.gql(live, TMP, json!({})).await;
    assert!(
        gone.code().is_some(),
        "deleted model still answered: {}",
        gone.body
    );

    writer.data(root, DELETE_RECORD, json!({ "id": id })).await;
    reads_show(reader, live, &id, None, "deleted").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_on_one_sqlite_instance() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let Tenant { root, live, .. } = setup(&app).await;
    no_stale_reads(&app, &app, &root, &live).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_on_one_postgres_instance_with_redis() {
    let Some(url) = redis_url() else { return };
    let Some(app) =
        TestApp::try_spawn_with(Backend::Postgres, |c| c.redis_url = Some(url.into())).await
    else {
        return;
    };
    let Tenant { root, live, .. } = setup(&app).await;
    no_stale_reads(&app, &app, &root, &live).await;
}

// Two instances behind a load balancer: writes on one, reads on the other.
both_dbs!(
    no_stale_reads_across_instances_sharing_redis,
    |backend: Backend| async move {
        let Some(url) = redis_url() else { return };
        let shared = url.clone();
        let Some(writer) =
            TestApp::try_spawn_with(backend, |c| c.redis_url = Some(shared.into())).await
        else {
            return;
        };
        let reader = writer.sibling(|c| c.redis_url = Some(url.into())).await;
        let Tenant { root, live, .. } = setup(&writer).await;
        no_stale_reads(&writer, &reader, &root, &live).await;
    }
);

// PostgreSQL without Redis: each cached request reads the project's content
// generation from the database, so the cache is on and exact across
// instances (and so is each instance's copy of the models).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_reads_across_postgres_instances_without_redis() {
    let Some(writer) = TestApp::try_spawn(Backend::Postgres).await else {
        return;
    };
    let reader = writer.sibling(|_| {}).await;
    assert!(writer.state.read_cache.is_enabled() && reader.state.read_cache.is_enabled());
    let Tenant { root, live, .. } = setup(&writer).await;
    no_stale_reads(&writer, &reader, &root, &live).await;
    let (hits, misses) = reader.state.read_cache.stats();
    for _ in 0..3 {
        reader.data(&live, LIST, json!({})).await;
    }
    let (hits_after, misses_after) = reader.state.read_cache.stats();
    assert!(
        hits_after >= hits + 2 && misses_after <= misses + 1,
        "repeated reads are answered by the cache: {hits}/{misses} -> {hits_after}/{misses_after}"
    );
    // Concurrent requests share reads of the generation, never one that
    // began before they came: every read after the publish sees it.
    for round in 0..5 {
        let id = published_v1(&writer, &root).await;
        let reads = (0..16).map(|_| reader.data(&live, ONE, json!({ "id": id })));
        for seen in futures::future::join_all(reads).await {
            assert_eq!(
                seen["record"]["data"]["title"], "v1",
                "round {round}: {seen}"
            );
        }
        writer.data(&root, DELETE_RECORD, json!({ "id": id })).await;
        let reads = (0..16).map(|_| reader.data(&live, ONE, json!({ "id": id })));
        for seen in futures::future::join_all(reads).await {
            assert!(seen["record"].is_null(), "round {round}: {seen}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drafts_never_reach_the_published_view() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let Tenant { root, live, .. } = setup(&app).await;
    let id = app
        .create_record(&root, "page", json!({ "slug": "a", "title": "public" }))
        .await
        .id;
    app.publish_record(&root, &id).await;
    app.data(
        &root,
        UPDATE_RECORD,
        json!({ "id": id, "d": { "slug": "a", "title": "draft" } }),
    )
    .await;

    // The draft view, asked for literally and through a variable, by the
    // key allowed to see it, twice: never stored, never a hit.
    let literal = "{ records(modelKey: \"page\", preview: true) { items { data } } }";
    let variable =
        "query($p: Boolean) { records(modelKey: \"page\", preview: $p) { items { data } } }";
    let (hits, _) = app.state.read_cache.stats();
    for _ in 0..2 {
        let seen = app.data(&root, literal, json!({})).await;
        assert_eq!(seen["records"]["items"][0]["data"]["title"], "draft");
        let seen = app.data(&root, variable, json!({ "p": true })).await;
        assert_eq!(seen["records"]["items"][0]["data"]["title"], "draft");
    }
    assert_eq!(
        app.state.read_cache.stats().0,
        hits,
        "a draft answer was cached"
    );

    // The same texts with the published view answer from the published data.
    for _ in 0..2 {
        let seen = app.data(&root, variable, json!({ "p": false })).await;
        assert_eq!(seen["records"]["items"][0]["data"]["title"], "public");
        let seen = app.data(&live, LIST, json!({})).await;
        assert_eq!(seen["records"]["items"][0]["data"]["title"], "public");
    }
    // A public key asking for the draft view is refused, cache or not.
    let refused = app.gql(&live, literal, json!({})).await;
    assert_eq!(refused.code(), Some("FORBIDDEN"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cached_answers_only_reach_keys_that_may_read_them() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let Tenant { root, live, .. } = setup(&app).await;
    let id = app
        .create_record(&root, "page", json!({ "slug": "a", "title": "mine" }))
        .await
        .id;
    app.publish_record(&root, &id).await;
    for _ in 0..2 {
        app.data(&live, LIST, json!({})).await;
        app.data(&live, ONE, json!({ "id": id })).await;
    }

    // Same project, no records:read: FORBIDDEN, not the cached page.
    let schemas_only = app
        .new_key()
        .secret()
        .test()
        .scopes(&["schemas:read"])
        .create()
        .await;
    for query in [LIST, ONE] {
        let reply = app.gql(&schemas_only, query, json!({ "id": id })).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"), "{}", reply.body);
        assert!(!reply.body.to_string().contains("mine"));
    }

    // Another project, same query texts: its own (empty) content.
    let other = app.tenant("other").await;
    let missing = app.gql(&other.live, LIST, json!({})).await;
    assert!(missing.code().is_some(), "{}", missing.body);
    page_model(&app, &other.root).await;
    for _ in 0..2 {
        let theirs = app.data(&other.live, LIST, json!({})).await;
        assert_eq!(theirs["records"]["items"], json!([]));
        let theirs = app.data(&other.live, ONE, json!({ "id": id })).await;
        assert!(theirs["record"].is_null());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cache_hits_count_against_the_budget() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let root = setup(&app).await.root;
    let created = app
        .new_key()
        .name("tight")
        .public()
        .test()
        .scopes(&["records:read"])
        .limit(3)
        .create_as(&root)
        .await;
    let tight = created.key.as_str();
    for remaining in ["2", "1", "0"] {
        let reply = app.gql(tight, LIST, json!({})).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.header("x-ratelimit-limit"), Some("3"));
        assert_eq!(reply.header("x-ratelimit-remaining"), Some(remaining));
        assert!(reply.header("x-ratelimit-reset").is_some());
    }
    assert!(
        app.state.read_cache.stats().0 >= 2,
        "the repeats were not hits"
    );
    let refused = app.gql(tight, LIST, json!({})).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.code(), Some("RATE_LIMITED"));
    assert!(refused.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_show_hit_rate_and_size() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let live = setup(&app).await.live;
    for _ in 0..3 {
        app.data(&live, LIST, json!({})).await;
    }
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
        "quire_read_cache_requests_total{result=\"hit\"}",
        "quire_read_cache_requests_total{result=\"miss\"}",
        "quire_read_cache_entries",
        "quire_read_cache_bytes",
        "quire_read_cache_hit_ratio",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}");
    }
}

/// Our own Redis and an instance on it, with one published record (`v1`)
/// whose reads are cached; `None` (saying so) without `redis-server`.
async fn published_v1_on_own_redis() -> Option<(OwnRedis, String, TestApp, TestKey, TestKey, String)>
{
    let port = free_port();
    let Some(redis) = OwnRedis::start(port).await else {
        eprintln!("skipped: redis-server is not installed");
        return None;
    };
    let url = format!("redis://127.0.0.1:{port}");
    let app = TestApp::try_spawn_with(Backend::Sqlite, |c| c.redis_url = Some(url.clone().into()))
        .await
        .unwrap();
    let Tenant { root, live, .. } = setup(&app).await;
    let id = published_v1(&app, &root).await;
    reads_show(
        &app,
        &live,
        &id,
        Some(("v1", "PUBLISHED", 2)),
        "before trouble",
    )
    .await;
    Some((redis, url, app, root, live, id))
}

/// Redis stops: reads bypass the cache and stay right; Redis comes back
/// empty: its new generation matches no old entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_and_data_loss_serve_nothing_stale() {
    let Some((mut redis, _url, app, root, live, id)) = published_v1_on_own_redis().await else {
        return;
    };

    redis.child.kill().await.unwrap();
    let _ = redis.child.wait().await;
    // Published while Redis is down: no instance can be told.
    app.data(
        &root,
        UPDATE_RECORD,
        json!({ "id": id, "d": { "slug": "a", "title": "v2" } }),
    )
    .await;
    app.publish_record(&root, &id).await;
    let during = app.data(&live, ONE, json!({ "id": id })).await;
    assert_eq!(
        during["record"]["data"]["title"], "v2",
        "stale during the outage"
    );

    let Some(_restarted) = OwnRedis::start(redis.port).await else {
        panic!("redis-server did not restart");
    };
    // Past the one-second backoff and the next retry of the change made
    // during the outage, Redis answers again, empty.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    reads_show(
        &app,
        &live,
        &id,
        Some(("v2", "PUBLISHED", 4)),
        "after Redis lost its data",
    )
    .await;
}

/// Redis stalls (keeping its data) while a change is made: the change cannot
/// be announced in time, yet once Redis answers again no read returns the
/// answer from before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_change_redis_missed_is_announced_later() {
    let Some((_redis, url, app, root, live, id)) = published_v1_on_own_redis().await else {
        return;
    };

    // Every client's commands wait 2.5 s: the announcement times out (1 s).
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(2_500)
        .arg("ALL")
        .query_async::<()>(&mut admin)
        .await
        .unwrap();
    app.data(
        &root,
        UPDATE_RECORD,
        json!({ "id": id, "d": { "slug": "a", "title": "v2" } }),
    )
    .await;
    app.publish_record(&root, &id).await;
    let during = app.data(&live, ONE, json!({ "id": id })).await;
    assert_eq!(
        during["record"]["data"]["title"], "v2",
        "stale during the stall"
    );

    // Redis answers again with its data intact; the change gets announced
    // (retried every 500 ms: a second of slack for a loaded machine).
    tokio::time::sleep(Duration::from_millis(4_000)).await;
    reads_show(
        &app,
        &live,
        &id,
        Some(("v2", "PUBLISHED", 4)),
        "after the stall",
    )
    .await;
}

// A write a rule refuses wrote nothing: the cached answers stay valid (and
// the next read is a hit), while the refused write answers with its code.
both_dbs!(refused_writes_keep_the_cache, |app: TestApp| async move {
    if !app.state.read_cache.is_enabled() {
        return; // PostgreSQL without Redis: no cache to keep
    }
    let Tenant { root, live, .. } = setup(&app).await;
    let id = published_v1(&app, &root).await;
    reads_show(&app, &live, &id, Some(("v1", "PUBLISHED", 2)), "published").await;
    for (case, variables, code) in [
        (
            "stale version",
            json!({ "id": id, "d": { "slug": "a", "title": "v2" }, "v": 1 }),
            "CONFLICT",
        ),
        (
            "unknown field",
            json!({ "id": id, "d": { "slug": "a", "nope": 1 } }),
            "BAD_USER_INPUT",
        ),
        (
            "no such record",
            json!({ "id": "missing", "d": { "slug": "b" } }),
            "NOT_FOUND",
        ),
    ] {
        let reply = app.gql(&root, UPDATE_RECORD, variables).await;
        assert_eq!(reply.code(), Some(code), "{case}: {}", reply.body);
        let (hits, _) = app.state.read_cache.stats();
        app.data(&live, LIST, json!({})).await;
        assert_eq!(
            app.state.read_cache.stats().0,
            hits + 1,
            "{case}: the cache was invalidated by a write that wrote nothing"
        );
    }
});

/// Redis freezes (SIGSTOP): once the breaker is open, concurrent requests do
/// not each wait for it (at most one probe a second does, for at most
/// 250 ms), answers stay right, and after SIGCONT the instance is back on
/// Redis (shared limiter, read cache hits).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_redis_is_waited_for_by_one_probe_a_second() {
    let Some((redis, _url, app, _root, live, id)) = published_v1_on_own_redis().await else {
        return;
    };
    let link = app.state.redis.clone().expect("Redis is configured");
    redis.pause().await;
    // The first request finds the breaker closed: it waits one call
    // timeout and opens it.
    app.data(&live, LIST, json!({})).await;
    assert!(!link.is_up(), "the breaker did not open");

    let probes_before = link.probes();
    let started = Instant::now();
    let mut took = Vec::new();
    while started.elapsed() < Duration::from_secs(3) {
        let rounds: Vec<_> = (0..16)
            .map(|i| {
                let (app, live, id) = (app.clone(), live.clone(), id.clone());
                tokio::spawn(async move {
                    let t = Instant::now();
                    let reply = if i % 2 == 0 {
                        app.gql(&live, "{ __typename }", json!({})).await
                    } else {
                        app.gql(&live, ONE, json!({ "id": id })).await
                    };
                    (reply, t.elapsed())
                })
            })
            .collect();
        for round in rounds {
            let (reply, elapsed) = round.await.unwrap();
            assert_eq!(reply.status, 200, "{}", reply.body);
            if let Some(record) = reply.body["data"].get("record") {
                assert_eq!(record["data"]["title"], "v1", "{}", reply.body);
            }
            took.push(elapsed);
        }
    }
    let seconds = started.elapsed().as_secs() + 1;
    let probes = link.probes() - probes_before;
    took.sort();
    let median = took[took.len() / 2];
    let waited = took
        .iter()
        .filter(|t| **t >= Duration::from_millis(240))
        .count() as u64;
    eprintln!(
        "paused Redis: {} requests, median {median:?}, max {:?}, {waited} waited, {probes} probes",
        took.len(),
        took[took.len() - 1]
    );
    assert!(probes <= seconds + 1, "{probes} probes in {seconds} s");
    assert!(
        waited <= probes + 2,
        "{waited} of {} requests waited for Redis; {probes} probes",
        took.len()
    );
    assert!(median < Duration::from_millis(100), "median {median:?}");
    assert!(
        took[took.len() - 1] < Duration::from_secs(1),
        "a request took {:?}",
        took[took.len() - 1]
    );

    redis.resume().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        app.gql(&live, "{ __typename }", json!({})).await;
        let shared = app.state.limiter.redis_health().is_some_and(|h| h.0);
        if link.is_up() && shared {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not back on Redis 5 s after SIGCONT"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    reads_show(
        &app,
        &live,
        &id,
        Some(("v1", "PUBLISHED", 2)),
        "after SIGCONT",
    )
    .await;
}

/// A fresh process with an unreachable Redis: every Redis figure is in
/// `/metrics` before anything moved it, and the outage is logged once (not
/// once a second per Redis user).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_figures_start_at_zero_and_an_outage_is_logged_once() {
    let db = FreshDb::create(Backend::Sqlite).await.unwrap();
    let dead = dead_redis_url();
    let server = Server::start(&db.url, &[("QUIRE_REDIS_URL", dead.as_str())]).await;
    let client = reqwest::Client::new();
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "quire_ratelimit_redis_fallback_total 0",
        "quire_read_cache_invalidation_failures_total 0",
        "quire_read_cache_requests_total{result=\"bypass\"} 0",
        "quire_redis_calls_skipped_total ",
        "quire_redis_probes_total{result=\"failed\"} ",
        "quire_redis_up ",
        "quire_ratelimit_redis_up ",
    ] {
        assert!(
            metrics.contains(line),
            "/metrics lacks {line:?}:\n{metrics}"
        );
    }

    tokio::time::sleep(Duration::from_millis(100)).await;
    let key = server.printed_keys()[0].trim().to_owned();
    let started = Instant::now();
    while started.elapsed() < Duration::from_millis(3_500) {
        let reply: Value = client
            .post(server.url("/graphql"))
            .header("x-api-key", &key)
            .json(&json!({ "query": "{ __typename }" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(reply["data"]["__typename"], "Query", "{reply}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log: Vec<String> = server
        .stderr
        .lock()
        .unwrap()
        .iter()
        .chain(server.stdout.lock().unwrap().iter())
        .filter(|l| l.contains("Redis"))
        .cloned()
        .collect();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert!(log[0].contains("unreachable"), "{log:#?}");
    server.stop().await;
}

// Two instances on one database: the writer cannot reach Redis, the reader
// can. The writer's change is not announced through Redis, yet the reader's
// cached answer gives way within a second (through the database's content
// generation).
both_dbs!(
    a_writer_cut_off_from_redis_is_followed_through_the_database,
    |backend: Backend| async move {
        let Some(redis) = OwnRedis::start(free_port()).await else {
            eprintln!("skipped: redis-server is not installed");
            return;
        };
        let dead = dead_redis_url();
        let Some(writer) =
            TestApp::try_spawn_with(backend, |c| c.redis_url = Some(dead.into())).await
        else {
            return;
        };
        let url = redis.url();
        let reader = writer.sibling(|c| c.redis_url = Some(url.into())).await;
        let Tenant { root, live, .. } = setup(&writer).await;
        let id = published_v1(&writer, &root).await;
        // Past two polls, so that the reader's cache settles on the writes
        // made so far.
        tokio::time::sleep(Duration::from_millis(600)).await;
        reads_show(
            &reader,
            &live,
            &id,
            Some(("v1", "PUBLISHED", 2)),
            "cached on the reader",
        )
        .await;

        writer
            .data(
                &root,
                UPDATE_RECORD,
                json!({ "id": id, "d": { "slug": "a", "title": "v2" } }),
            )
            .await;
        writer.publish_record(&root, &id).await;
        let published = Instant::now();
        loop {
            let seen = reader.data(&live, ONE, json!({ "id": id })).await;
            if seen["record"]["data"]["title"] == "v2" {
                break;
            }
            assert_eq!(seen["record"]["data"]["title"], "v1", "{seen}");
            assert!(
                published.elapsed() < Duration::from_secs(1),
                "the reader still serves v1 {:?} after the publish",
                published.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        eprintln!("the reader saw the change after {:?}", published.elapsed());
        assert!(
            writer.state.read_cache.is_enabled() && reader.state.read_cache.is_enabled(),
            "both instances cache"
        );
    }
);
