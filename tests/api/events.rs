//! Events (SPEC §9): one event per committed change, none for a failed one;
//! the feed as LIVE and TEST keys see it; project isolation; a cursor walk
//! that misses nothing while 8 writers commit; the SSE stream (within 1 s,
//! on another instance too, resuming with `Last-Event-ID`).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{DELETE_RECORD, UNPUBLISH_RECORD, UPDATE_MODEL, UPDATE_RECORD};
use crate::support::{Backend, FreshDb, TestApp, TestKey};

const EVENTS: &str = "query($a: String, $l: Int, $t: [String!]) { events(after: $a, limit: $l, types: $t) {
    items { id type modelKey recordId fileId version createdAt } pageInfo { hasNextPage endCursor } } }";
const DELETE_MODEL: &str = "mutation($k: String!) { deleteModel(key: $k) }";

async fn page_model(app: &TestApp, key: &str) {
    app.create_model(
        key,
        json!({ "key": "page", "name": "Page", "fields": [
            { "name": "title", "type": "STRING", "required": true },
            { "name": "slug", "type": "STRING", "unique": true }
        ] }),
    )
    .await;
}

/// Every event the key sees, walking the feed in pages of `limit`.
async fn all_events(app: &TestApp, key: &str, limit: i64) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let data = app
            .data(key, EVENTS, json!({ "a": after, "l": limit }))
            .await;
        let page = &data["events"];
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        out.extend(items);
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
    }
    out
}

fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

async fn reader(app: &TestApp, project: &entity::projects::Model, live: bool) -> TestKey {
    let b = app
        .new_key()
        .in_project(project)
        .scopes(&["notifications:read"]);
    if live {
        b.public().live().create().await
    } else {
        b.public().test().create().await
    }
}

both_dbs!(
    each_change_is_one_event_and_failures_none,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let live = reader(&app, &t.project, true).await;
        let test = reader(&app, &t.project, false).await;
        page_model(&app, &t.root).await;
        let r1 = app
            .create_record(&t.root, "page", json!({ "title": "One", "slug": "one" }))
            .await;
        app.data(
            &t.root,
            UPDATE_RECORD,
            json!({ "id": r1.id, "d": { "title": "One!", "slug": "one" } }),
        )
        .await;
        app.publish_record(&t.root, &r1.id).await;
        app.data(
            &t.root,
            UPDATE_RECORD,
            json!({ "id": r1.id, "d": { "title": "One?", "slug": "one" } }),
        )
        .await;
        app.data(&t.root, UNPUBLISH_RECORD, json!({ "id": r1.id }))
            .await;
        let r2 = app
            .create_record(&t.root, "page", json!({ "title": "Two" }))
            .await;
        app.publish_record(&t.root, &r2.id).await;
        // Publishing what is published changes nothing: no event.
        app.publish_record(&t.root, &r2.id).await;

        // Failed mutations write none: invalid data, a unique clash, a stale
        // version, a missing record, a model that still has records.
        for (doc, vars) in [
            (
                crate::support::ops::CREATE_RECORD,
                json!({ "m": "page", "d": { "title": 5 } }),
            ),
            (
                crate::support::ops::CREATE_RECORD,
                json!({ "m": "page", "d": { "title": "x", "slug": "one" } }),
            ),
            (
                UPDATE_RECORD,
                json!({ "id": r1.id, "d": { "title": "late" }, "v": 1 }),
            ),
            (
                crate::support::ops::PUBLISH_RECORD,
                json!({ "id": "no-such-record" }),
            ),
            (DELETE_MODEL, json!({ "k": "page" })),
        ] {
            let reply = app.gql(&t.root, doc, vars).await;
            assert!(reply.code().is_some(), "expected a refusal: {}", reply.body);
        }

        app.data(&t.root, DELETE_RECORD, json!({ "id": r2.id }))
            .await;
        app.data(&t.root, DELETE_RECORD, json!({ "id": r1.id }))
            .await;
        app.data(
            &t.root,
            UPDATE_MODEL,
            json!({ "k": "page", "i": { "name": "Pages" } }),
        )
        .await;
        app.data(&t.root, DELETE_MODEL, json!({ "k": "page" }))
            .await;

        let all = all_events(&app, &test, 3).await;
        assert_eq!(
            types(&all),
            vec![
                "model.created",
                "record.created",
                "record.updated",
                "record.published",
                "record.updated",
                "record.unpublished",
                "record.created",
                "record.published",
                "record.deleted",
                "record.deleted",
                "model.updated",
                "model.deleted",
            ]
        );
        let ids: Vec<i64> = all
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");
        // Payloads: the record, its model, its version after the change.
        let versions: Vec<Value> = all.iter().map(|e| e["version"].clone()).collect();
        assert_eq!(
            versions,
            vec![
                Value::Null,
                json!(1),
                json!(2),
                json!(3),
                json!(4),
                json!(5),
                json!(1),
                json!(2),
                json!(2),
                json!(5),
                Value::Null,
                Value::Null
            ]
        );
        for e in &all {
            assert_eq!(e["modelKey"], "page");
            assert_eq!(e["fileId"], Value::Null);
            assert!(e["createdAt"].as_str().unwrap().ends_with('Z'));
        }
        assert_eq!(all[1]["recordId"], json!(r1.id));
        assert_eq!(all[8]["recordId"], json!(r2.id));
        assert_eq!(all[9]["recordId"], json!(r1.id));
        assert_eq!(all[0]["recordId"], Value::Null);

        // A LIVE key sees what changed the published view only: r1's delete
        // came after it was unpublished, so it is not among them.
        let seen = all_events(&app, &live, 50).await;
        assert_eq!(
            types(&seen),
            vec![
                "model.created",
                "record.published",
                "record.unpublished",
                "record.published",
                "record.deleted",
                "model.updated",
                "model.deleted",
            ]
        );
        assert_eq!(seen[4]["recordId"], json!(r2.id));

        // Type filters, wildcards, refusals.
        let data = app
            .data(&test, EVENTS, json!({ "t": ["record.*"], "l": 50 }))
            .await;
        assert_eq!(data["events"]["items"].as_array().unwrap().len(), 9);
        let data = app
            .data(
                &test,
                EVENTS,
                json!({ "t": ["model.deleted", "record.published"] }),
            )
            .await;
        assert_eq!(
            types(data["events"]["items"].as_array().unwrap()),
            vec!["record.published", "record.published", "model.deleted"]
        );
        for (vars, field) in [
            (json!({ "t": ["record.moved"] }), "types"),
            (json!({ "l": 0 }), "limit"),
            (json!({ "l": 501 }), "limit"),
            (json!({ "a": "not-a-cursor" }), "after"),
            (json!({ "t": vec!["record.created"; 51] }), "types"),
        ] {
            let reply = app.gql(&test, EVENTS, vars).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{}", reply.body);
            assert_eq!(reply.error_field(), Some(field));
        }
        // The scope is needed.
        let other = app
            .new_key()
            .public()
            .test()
            .scopes(&["records:read"])
            .create()
            .await;
        let reply = app.gql(&other, EVENTS, json!({})).await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
    }
);

both_dbs!(projects_see_only_their_events, |app: TestApp| async move {
    let a = app.default_tenant().await;
    let b = app.tenant("other").await;
    page_model(&app, &a.root).await;
    page_model(&app, &b.root).await;
    app.create_record(&b.root, "page", json!({ "title": "B" }))
        .await;
    let ra = app
        .create_record(&a.root, "page", json!({ "title": "A" }))
        .await;
    let seen = all_events(&app, &reader(&app, &a.project, false).await, 50).await;
    assert_eq!(types(&seen), vec!["model.created", "record.created"]);
    assert_eq!(seen[1]["recordId"], json!(ra.id));
    let seen_b = all_events(&app, &reader(&app, &b.project, false).await, 50).await;
    assert_eq!(types(&seen_b), vec!["model.created", "record.created"]);
    assert!(seen.iter().all(|e| !seen_b.contains(e)));
});

both_dbs!(
    a_cursor_walk_sees_every_event_once_under_8_writers,
    |app: TestApp| async move {
        const WRITERS: usize = 8;
        const PER_WRITER: usize = 25;
        let t = app.default_tenant().await;
        let key = reader(&app, &t.project, false).await;
        page_model(&app, &t.root).await;
        let start = all_events(&app, &key, 50).await;
        let mut after = start
            .last()
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned);

        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let app = app.clone();
            let root = t.root.clone();
            writers.push(tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    app.create_record(&root, "page", json!({ "title": format!("w{w}-{i}") }))
                        .await;
                }
            }));
        }
        let mut seen: Vec<i64> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let done = writers.iter().all(|w| w.is_finished());
            // Drain what is committed now; after the writers finished, once more.
            loop {
                let data = app.data(&key, EVENTS, json!({ "a": after, "l": 7 })).await;
                let items = data["events"]["items"].as_array().unwrap().clone();
                for e in &items {
                    seen.push(e["id"].as_str().unwrap().parse().unwrap());
                }
                if let Some(end) = data["events"]["pageInfo"]["endCursor"].as_str() {
                    after = Some(end.to_owned());
                }
                if items.len() < 7 {
                    break;
                }
            }
            if done {
                break;
            }
            assert!(Instant::now() < deadline, "writers did not finish in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for w in writers {
            w.await.unwrap();
        }
        let unique: HashSet<i64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "an event was seen twice");
        assert_eq!(seen.len(), WRITERS * PER_WRITER, "the walk missed events");
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        let everything = all_events(&app, &key, 500).await;
        let all_ids: Vec<i64> = everything[start.len()..]
            .iter()
            .map(|e| e["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert_eq!(all_ids, seen);
    }
);

/// An open SSE stream and what came through it.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(app: &TestApp, key: &str, last_event_id: Option<&str>) -> reqwest::Response {
        let mut req = app
            .client
            .get(app.url("/events/stream"))
            .header("x-api-key", key);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        req.send().await.unwrap()
    }

    async fn connect(app: &TestApp, key: &str, last_event_id: Option<&str>) -> Stream {
        let response = Self::open(app, key, last_event_id).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next message with data (skipping comments and `retry:`), as
    /// (id, event), or `None` after `within`.
    async fn next(&mut self, within: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let message: String = self.buffer.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in message.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = Some(v.to_owned());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str::<Value>(v).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Some((id, data));
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            let chunk = chunk.unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

both_dbs!(
    the_stream_pushes_within_a_second_and_resumes,
    |app: TestApp| async move {
        let t = app.default_tenant().await;
        let key = reader(&app, &t.project, false).await;
        let live = reader(&app, &t.project, true).await;
        page_model(&app, &t.root).await;
        let mut stream = Stream::connect(&app, &key, None).await;
        let mut live_stream = Stream::connect(&app, &live, None).await;

        // Pushed within a second of the commit.
        let started = Instant::now();
        let r = app
            .create_record(&t.root, "page", json!({ "title": "Now" }))
            .await;
        let (id, event) = stream
            .next(Duration::from_secs(1))
            .await
            .expect("an event within 1 s");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(event["type"], "record.created");
        assert_eq!(event["recordId"], json!(r.id));
        assert_eq!(event["id"], json!(id));
        // The live stream does not see a draft, but sees the publish.
        app.publish_record(&t.root, &r.id).await;
        let (_, e) = live_stream
            .next(Duration::from_secs(1))
            .await
            .expect("the publish");
        assert_eq!(e["type"], "record.published");
        let (publish_id, e) = stream
            .next(Duration::from_secs(1))
            .await
            .expect("the publish");
        assert_eq!(e["type"], "record.published");

        // Gone for a while: what was committed meanwhile comes on reconnecting.
        drop(stream);
        let mut missed = Vec::new();
        for i in 0..5 {
            missed.push(
                app.create_record(&t.root, "page", json!({ "title": format!("m{i}") }))
                    .await
                    .id,
            );
        }
        let mut stream = Stream::connect(&app, &key, Some(&publish_id)).await;
        for expected in &missed {
            let (_, e) = stream
                .next(Duration::from_secs(2))
                .await
                .expect("a missed event");
            assert_eq!(e["recordId"], json!(expected));
        }
        assert!(
            stream.next(Duration::from_millis(300)).await.is_none(),
            "nothing more"
        );

        // Another instance's stream sees this one's commit within a second.
        let sibling = app.sibling(|_| {}).await;
        let mut there = Stream::connect(&sibling, &key, None).await;
        let started = Instant::now();
        let r = app
            .create_record(&t.root, "page", json!({ "title": "There" }))
            .await;
        let (_, e) = there
            .next(Duration::from_secs(1))
            .await
            .expect("an event on the sibling within 1 s");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(e["recordId"], json!(r.id));
    }
);

// With Redis, the committing instance announces the project there and the
// other instances wake their streams from it (the poll stays the guarantee).
both_dbs!(
    other_instances_are_woken_through_redis,
    |backend: Backend| async move {
        let Some(url) = crate::support::redis::redis_url() else {
            return;
        };
        let shared = url.clone();
        let Some(app) =
            TestApp::try_spawn_with(backend, |c| c.redis_url = Some(shared.into())).await
        else {
            return;
        };
        let sibling = app.sibling(|c| c.redis_url = Some(url.into())).await;
        let t = app.default_tenant().await;
        let key = reader(&app, &t.project, false).await;
        page_model(&app, &t.root).await;
        let mut there = Stream::connect(&sibling, &key, None).await;
        let project = t.project.id.clone();
        let before = sibling.state.events.hub.redis_wakeups(&project);
        let r = app
            .create_record(&t.root, "page", json!({ "title": "Through Redis" }))
            .await;
        let (_, e) = there
            .next(Duration::from_secs(1))
            .await
            .expect("an event on the sibling within 1 s");
        assert_eq!(e["recordId"], json!(r.id));
        let deadline = Instant::now() + Duration::from_secs(2);
        while sibling.state.events.hub.redis_wakeups(&project) == before {
            assert!(Instant::now() < deadline, "no wake-up came through Redis");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
);

both_dbs!(
    the_stream_needs_a_key_with_the_scope,
    |app: TestApp| async move {
        let none = app
            .client
            .get(app.url("/events/stream"))
            .send()
            .await
            .unwrap();
        assert_eq!(none.status(), 401);
        let reader_key = app
            .new_key()
            .public()
            .live()
            .scopes(&["notifications:read"])
            .create()
            .await;
        let other = app
            .new_key()
            .public()
            .live()
            .scopes(&["records:read"])
            .create()
            .await;
        let refused = Stream::open(&app, &other, None).await;
        assert_eq!(refused.status(), 403);
        let body: Value = refused.json().await.unwrap();
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
        let bearer = app
            .client
            .get(app.url("/events/stream"))
            .header("authorization", format!("Bearer {}", reader_key.secret))
            .send()
            .await
            .unwrap();
        assert_eq!(bearer.status(), 200);
        // The connection counted once against the key's budget.
        assert_eq!(bearer.headers()["x-ratelimit-remaining"], "9999");
        let bad = Stream::open(&app, &reader_key, Some("yesterday")).await;
        assert_eq!(bad.status(), 400);
    }
);

// The mechanism behind the cursor's promise, shown directly: a second
// writer in the same project waits at `append` until the first commits, so
// it takes a larger id and cannot commit before it. (On SQLite the single
// writer gives the same order; the wait is PostgreSQL's.)
both_dbs!(
    a_second_writer_waits_for_the_first_to_commit,
    |db: FreshDb| async move {
        use quire::events::{append, EventType, NewEvent};
        use sea_orm::TransactionTrait;
        let database = db.open().await;
        let project = quire::db::project_by_name(&database.conn, quire::db::DEFAULT_PROJECT)
            .await
            .unwrap()
            .unwrap();
        let now = chrono::Utc::now();
        let first = database.writer.begin().await.unwrap();
        append(
            &first,
            &NewEvent::model(&project.id, EventType::ModelCreated, "first", now),
        )
        .await
        .unwrap();
        if db.backend == Backend::Postgres {
            let writer = database.writer.clone();
            let project_id = project.id.clone();
            let second = tokio::spawn(async move {
                let txn = writer.begin().await.unwrap();
                append(
                    &txn,
                    &NewEvent::model(&project_id, EventType::ModelCreated, "second", now),
                )
                .await
                .unwrap();
                txn.commit().await.unwrap();
            });
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !second.is_finished(),
                "the second writer committed before the first"
            );
            first.commit().await.unwrap();
            tokio::time::timeout(Duration::from_secs(5), second)
                .await
                .unwrap()
                .unwrap();
        } else {
            first.commit().await.unwrap();
            let txn = database.writer.begin().await.unwrap();
            append(
                &txn,
                &NewEvent::model(&project.id, EventType::ModelCreated, "second", now),
            )
            .await
            .unwrap();
            txn.commit().await.unwrap();
        }
        let q = quire::events::feed::FeedQuery {
            after: None,
            limit: 10,
            types: None,
            live_only: false,
        };
        let rows = quire::events::feed::read(&database.conn, &project.id, &q)
            .await
            .unwrap();
        let keys: Vec<&str> = rows
            .iter()
            .map(|e| e.model_key.as_deref().unwrap())
            .collect();
        assert_eq!(keys, vec!["first", "second"]);
        assert!(rows[0].id < rows[1].id);
        // A rolled-back transaction leaves no event.
        let txn = database.writer.begin().await.unwrap();
        append(
            &txn,
            &NewEvent::model(&project.id, EventType::ModelDeleted, "gone", now),
        )
        .await
        .unwrap();
        txn.rollback().await.unwrap();
        let rows = quire::events::feed::read(&database.conn, &project.id, &q)
            .await
            .unwrap();
        assert_eq!(rows.len(), 2);
    }
);

both_dbs!(
    an_idle_stream_gets_a_keep_alive_comment,
    |app: TestApp| async move {
        let key = app
            .new_key()
            .public()
            .live()
            .scopes(&["notifications:read"])
            .create()
            .await;
        let mut response = Stream::open(&app, &key, None).await;
        assert_eq!(response.status(), 200);
        let mut text = String::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(17);
        while !text.contains(": keep-alive\n\n") {
            let chunk = tokio::time::timeout_at(deadline, response.chunk())
                .await
                .expect("a keep-alive comment within 17 s")
                .unwrap()
                .expect("the stream stays open");
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        assert!(text.starts_with("retry: 1000\n\n"), "{text}");
    }
);

// A stream client that never reads (a small receive buffer, so the
// server's writes to it stall) holds up no writer: 400 records created by
// 8 concurrent writers all commit, and a client that does read receives
// every one of their events, in order. The stalled stream holds at most one
// page of events; the server closes it when its writes stall for 30 s
// (`http::server`), and it would resume with `Last-Event-ID`.
both_dbs!(
    a_stream_client_that_never_reads_holds_up_no_writer,
    |app: TestApp| async move {
        use tokio::io::AsyncWriteExt;
        let t = app.default_tenant().await;
        let key = reader(&app, &t.project, false).await;
        page_model(&app, &t.root).await;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(2048).unwrap();
        let mut stalled = socket.connect(app.addr).await.unwrap();
        let request = format!(
            "GET /events/stream HTTP/1.1\r\nhost: quire\r\nx-api-key: {}\r\n\r\n",
            key.secret
        );
        stalled.write_all(request.as_bytes()).await.unwrap();
        let mut reading = Stream::connect(&app, &key, None).await;

        let started = Instant::now();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let (app, root) = (app.clone(), t.root.clone());
                tokio::spawn(async move {
                    for i in 0..50 {
                        let title = format!("w{w} r{i} {}", "x".repeat(200));
                        app.create_record(&root, "page", json!({ "title": title }))
                            .await;
                    }
                })
            })
            .collect();
        for w in writers {
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("a writer was held up")
                .unwrap();
        }
        let writing = started.elapsed();

        let mut ids = Vec::new();
        while ids.len() < 400 {
            let (id, event) = reading
                .next(Duration::from_secs(10))
                .await
                .unwrap_or_else(|| panic!("only {} of 400 events came", ids.len()));
            if event["type"] == "record.created" {
                ids.push(id.parse::<i64>().unwrap());
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
        eprintln!("400 writes with a stalled stream open: {writing:?}");
        drop(stalled);
    }
);
