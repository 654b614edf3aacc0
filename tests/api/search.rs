//! Search (SPEC §8), each rule on SQLite and PostgreSQL: the published
//! view never matches, shows or highlights draft text (also while a
//! published record has newer draft edits); unpublish and delete remove
//! hits before the mutation returns; the grammar (AND, phrases, exclusions,
//! prefix, case and diacritics) and its errors; typo tolerance and ranking;
//! escaped snippets; cursors within the first 1,000 hits; `modelKeys`;
//! both scopes; project isolation; the same record sets on both databases
//! (a table of queries over one corpus); the index rebuilt by `quire admin
//! search reindex` and after the migration; the read cache.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::both_dbs;
use crate::support::ops::{DELETE_RECORD, UNPUBLISH_RECORD, UPDATE_RECORD};
use crate::support::{Tenant, TestApp};

const SEARCH: &str = "query($q: String!, $m: [String!], $p: Boolean, $l: Int, $a: String) {
    search(query: $q, modelKeys: $m, preview: $p, limit: $l, after: $a) {
        items { score record { id modelKey data status } highlights { field snippet } }
        pageInfo { hasNextPage endCursor } } }";

/// The `article` model (a `STRING` title and slug, a `TEXT` body, a
/// number) and the `note` model (a `TEXT` text).
async fn models(app: &TestApp, root: &str) {
    app.create_model(
        root,
        json!({ "key": "article", "name": "Article", "fields": [
            { "name": "slug", "type": "STRING", "required": true, "unique": true },
            { "name": "title", "type": "STRING" },
            { "name": "body", "type": "TEXT" },
            { "name": "rank", "type": "INTEGER" }
        ] }),
    )
    .await;
    app.create_model(
        root,
        json!({ "key": "note", "name": "Note", "fields": [
            { "name": "slug", "type": "STRING", "required": true },
            { "name": "text", "type": "TEXT" }
        ] }),
    )
    .await;
}

async fn setup(app: &TestApp) -> Tenant {
    let t = app.default_tenant().await;
    models(app, &t.root).await;
    t
}

/// Creates and publishes an article; returns its id.
async fn article(app: &TestApp, root: &str, slug: &str, title: &str, body: &str) -> String {
    let r = app
        .create_record(
            root,
            "article",
            json!({ "slug": slug, "title": title, "body": body }),
        )
        .await;
    app.publish_record(root, &r.id).await;
    r.id
}

/// A `pk_live_` key with both scopes in the tenant's project.
async fn live_searcher(app: &TestApp, t: &Tenant) -> String {
    app.new_key()
        .in_project(&t.project)
        .public()
        .live()
        .scopes(&["search:read", "records:read"])
        .create()
        .await
        .to_string()
}

/// The search page's data.
async fn search(app: &TestApp, key: &str, vars: Value) -> Value {
    app.data(key, SEARCH, vars).await["search"].clone()
}

/// The slugs of the hits of `q`, in order.
async fn slugs(app: &TestApp, key: &str, q: &str, preview: bool) -> Vec<String> {
    let page = search(app, key, json!({ "q": q, "p": preview, "l": 100 })).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["record"]["data"]["slug"].as_str().unwrap().to_owned())
        .collect()
}

fn set(slugs: &[&str]) -> BTreeSet<String> {
    slugs.iter().map(|s| (*s).to_owned()).collect()
}

async fn slug_set(app: &TestApp, key: &str, q: &str, preview: bool) -> BTreeSet<String> {
    slugs(app, key, q, preview).await.into_iter().collect()
}

both_dbs!(
    published_view_never_sees_draft_words,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let live = live_searcher(&app, &t).await;
        let root = t.root.to_string();
        // A draft: nothing in the published view, found with preview.
        let r = app
            .create_record(
                &root,
                "article",
                json!({ "slug": "a", "title": "Zeppelin", "body": "secretword here" }),
            )
            .await;
        assert!(slugs(&app, &live, "zeppelin", false).await.is_empty());
        assert_eq!(slugs(&app, &root, "zeppelin", true).await, ["a"]);
        assert!(slugs(&app, &root, "zeppelin", false).await.is_empty());
        // Published: found in both views, at once.
        app.publish_record(&root, &r.id).await;
        assert_eq!(slugs(&app, &live, "zeppelin", false).await, ["a"]);
        // Edited after publishing: the new draft words stay out of the
        // published view (matched, shown or highlighted) until republished.
        app.data(
            &root,
            UPDATE_RECORD,
            json!({ "id": r.id, "d": { "slug": "a", "title": "Zeppelin airship", "body": "draftonly words" } }),
        )
        .await;
        assert!(slugs(&app, &live, "draftonly", false).await.is_empty());
        assert!(slugs(&app, &live, "airship", false).await.is_empty());
        assert!(slugs(&app, &live, "zeppelin airship", false)
            .await
            .is_empty());
        let page = search(&app, &live, json!({ "q": "zeppelin" })).await;
        let hit = &page["items"][0];
        assert_eq!(hit["record"]["data"]["title"], "Zeppelin");
        assert_eq!(hit["record"]["status"], "CHANGED");
        assert_eq!(
            hit["highlights"],
            json!([{ "field": "title", "snippet": "<mark>Zeppelin</mark>" }])
        );
        // The old published words still match in the published view only.
        assert_eq!(slugs(&app, &live, "secretword", false).await, ["a"]);
        assert!(slugs(&app, &root, "secretword", true).await.is_empty());
        assert_eq!(slugs(&app, &root, "draftonly", true).await, ["a"]);
        // Republished: the new words are public.
        app.publish_record(&root, &r.id).await;
        assert_eq!(slugs(&app, &live, "draftonly", false).await, ["a"]);
        assert!(slugs(&app, &live, "secretword", false).await.is_empty());
        // Unpublished: gone from the published view when the mutation
        // returns; the draft stays searchable with preview.
        app.data(&root, UNPUBLISH_RECORD, json!({ "id": r.id }))
            .await;
        assert!(slugs(&app, &live, "zeppelin", false).await.is_empty());
        assert_eq!(slugs(&app, &root, "zeppelin", true).await, ["a"]);
        // Deleted: gone from every view.
        app.publish_record(&root, &r.id).await;
        assert_eq!(slugs(&app, &live, "zeppelin", false).await, ["a"]);
        app.data(&root, DELETE_RECORD, json!({ "id": r.id })).await;
        assert!(slugs(&app, &live, "zeppelin", false).await.is_empty());
        assert!(slugs(&app, &root, "zeppelin", true).await.is_empty());
    }
);

both_dbs!(grammar_and_folding, |app: TestApp| async move {
    let t = setup(&app).await;
    let k = t.root.to_string();
    article(&app, &k, "a", "Red bicycle", "A big red bike near the café").await;
    article(&app, &k, "b", "Blue bicycle", "The bike is red and big").await;
    article(&app, &k, "c", "Big red car", "No wheels here. CAFÉ au lait").await;
    for (q, expected) in [
        ("red", set(&["a", "b", "c"])),
        ("red bicycle", set(&["a", "b"])),
        ("RED Bicycle", set(&["a", "b"])),
        ("\"big red\"", set(&["a", "c"])),
        ("\"red big\"", set(&[])),
        ("red -blue", set(&["a", "c"])),
        ("red -\"big red\"", set(&["b"])),
        ("bicy", set(&["a", "b"])),
        ("red bicy", set(&["a", "b"])),
        ("bicy red", set(&[])),
        ("cafe", set(&["a", "c"])),
        ("Café", set(&["a", "c"])),
        ("caf", set(&["a", "c"])),
        ("\"wheels here\"", set(&["c"])),
        // A phrase does not run across two fields.
        ("\"bicycle a\"", set(&[])),
        ("nothing", set(&[])),
        ("e-mail", set(&[])),
    ] {
        assert_eq!(slug_set(&app, &k, q, false).await, expected, "{q}");
    }
});

both_dbs!(
    malformed_queries_and_arguments_are_bad_input,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(&app, &k, "a", "Red", "").await;
        let long = "a".repeat(257);
        for vars in [
            json!({ "q": "" }),
            json!({ "q": "   " }),
            json!({ "q": "\"unclosed quote" }),
            json!({ "q": "-only -exclusions" }),
            json!({ "q": long }),
            json!({ "q": "a b c d e f g h i j k" }),
            json!({ "q": "red", "m": ["article", "nosuchmodel"] }),
            json!({ "q": "red", "l": 0 }),
            json!({ "q": "red", "l": 101 }),
            json!({ "q": "red", "a": "not-a-cursor" }),
        ] {
            let reply = app.gql(&k, SEARCH, vars.clone()).await;
            assert_eq!(reply.code(), Some("BAD_USER_INPUT"), "{vars}");
        }
        // At the bounds: fine.
        let ten = "red red red red red red red red red red";
        assert_eq!(slugs(&app, &k, ten, false).await, ["a"]);
        let q = format!("red {}", "x".repeat(252));
        assert!(slugs(&app, &k, &q, false).await.is_empty());
    }
);

both_dbs!(
    typos_match_long_words_and_rank_below_exact,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(&app, &k, "exact", "Restaurant guide", "").await;
        article(&app, &k, "typo1", "Restaurnt guide", "").await;
        article(&app, &k, "typo2", "Resturnt guide", "").await;
        article(&app, &k, "cat", "Cat", "").await;
        article(&app, &k, "bike", "Bikes", "").await;
        // Nine characters or more: two typos; exact first.
        let hits = slugs(&app, &k, "restaurant", false).await;
        assert_eq!(hits[0], "exact");
        assert_eq!(
            hits.iter().cloned().collect::<BTreeSet<_>>(),
            set(&["exact", "typo1", "typo2"])
        );
        let page = search(&app, &k, json!({ "q": "restaurant" })).await;
        let scores: Vec<f64> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["score"].as_f64().unwrap())
            .collect();
        assert!(scores[1..].iter().all(|s| *s < scores[0]), "{scores:?}");
        // A typo hit is highlighted where the variant matched.
        let typo = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["record"]["data"]["slug"] == "typo1")
            .unwrap();
        assert_eq!(
            typo["highlights"][0]["snippet"],
            "<mark>Restaurnt</mark> guide"
        );
        // Five to eight characters: one typo, not two.
        assert_eq!(
            slug_set(&app, &k, "guidd", false).await,
            set(&["exact", "typo1", "typo2"])
        );
        assert!(slugs(&app, &k, "guxdd", false).await.is_empty());
        // Fewer than five: exact (or prefix, as the last word) only.
        assert!(slugs(&app, &k, "cut guide", false).await.is_empty());
        assert_eq!(slugs(&app, &k, "bikez", false).await, ["bike"]);
        // Not inside a phrase.
        assert_eq!(
            slug_set(&app, &k, "\"restaurnt guide\"", false).await,
            set(&["typo1"])
        );
        // A word new to the vocabulary is found with a typo at once.
        article(&app, &k, "new", "Xylophone", "").await;
        assert_eq!(slugs(&app, &k, "xylophono", false).await, ["new"]);
    }
);

both_dbs!(
    strings_rank_above_text_and_snippets_are_escaped,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(
            &app,
            &k,
            "body",
            "Other",
            "all about the lighthouse and the sea",
        )
        .await;
        article(&app, &k, "title", "Lighthouse", "nothing").await;
        article(
            &app,
            &k,
            "xss",
            "<script>alert(1)</script>",
            "a <b>lighthouse</b> & \"quotes\" 'too'",
        )
        .await;
        let page = search(&app, &k, json!({ "q": "lighthouse" })).await;
        let items = page["items"].as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0]["record"]["data"]["slug"], "title");
        let xss = items
            .iter()
            .find(|h| h["record"]["data"]["slug"] == "xss")
            .unwrap();
        assert_eq!(
            xss["highlights"],
            json!([{ "field": "body",
                "snippet": "a &lt;b&gt;<mark>lighthouse</mark>&lt;/b&gt; &amp; &quot;quotes&quot; &#39;too&#39;" }])
        );
        let page = search(&app, &k, json!({ "q": "script alert" })).await;
        assert_eq!(
            page["items"][0]["highlights"],
            json!([{ "field": "title",
                "snippet": "&lt;<mark>script</mark>&gt;<mark>alert</mark>(1)&lt;/<mark>script</mark>&gt;" }])
        );
        // Scores descend.
        let scores: Vec<f64> = items.iter().map(|h| h["score"].as_f64().unwrap()).collect();
        assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    }
);

both_dbs!(
    model_keys_restrict_and_both_scopes_are_needed,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(&app, &k, "art", "Harbour", "").await;
        let n = app
            .create_record(
                &k,
                "note",
                json!({ "slug": "note", "text": "harbour notes" }),
            )
            .await;
        app.publish_record(&k, &n.id).await;
        assert_eq!(
            slug_set(&app, &k, "harbour", false).await,
            set(&["art", "note"])
        );
        let only = |m: Value| json!({ "q": "harbour", "m": m });
        let page = search(&app, &k, only(json!(["note"]))).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 1);
        assert_eq!(page["items"][0]["record"]["modelKey"], "note");
        let page = search(&app, &k, only(json!(["note", "article"]))).await;
        assert_eq!(page["items"].as_array().unwrap().len(), 2);
        // Scopes: both needed.
        for scopes in [vec!["records:read"], vec!["search:read"]] {
            let key = app
                .new_key()
                .in_project(&t.project)
                .public()
                .live()
                .scopes(&scopes)
                .create()
                .await;
            let reply = app.gql(&key, SEARCH, json!({ "q": "harbour" })).await;
            assert_eq!(reply.code(), Some("FORBIDDEN"), "{scopes:?}");
        }
        // Preview follows the drafts:read rule.
        let live = live_searcher(&app, &t).await;
        let reply = app
            .gql(&live, SEARCH, json!({ "q": "harbour", "p": true }))
            .await;
        assert_eq!(reply.code(), Some("FORBIDDEN"));
    }
);

both_dbs!(projects_are_isolated, |app: TestApp| async move {
    let t = setup(&app).await;
    let other = app.tenant("other").await;
    models(&app, &other.root).await;
    article(&app, &t.root, "mine", "Lighthouse keeper", "").await;
    article(&app, &other.root, "theirs", "Lighthouse keeper", "").await;
    let r = app
        .create_record(
            &other.root,
            "article",
            json!({ "slug": "x", "title": "Unicornish" }),
        )
        .await;
    app.publish_record(&other.root, &r.id).await;
    assert_eq!(slugs(&app, &t.root, "lighthouse", false).await, ["mine"]);
    assert_eq!(
        slugs(&app, &other.root, "lighthouse", false).await,
        ["theirs"]
    );
    // Neither words nor typo variants cross projects.
    assert!(slugs(&app, &t.root, "unicornish", true).await.is_empty());
    assert!(slugs(&app, &t.root, "unicornisj", true).await.is_empty());
});

both_dbs!(
    cursors_walk_every_hit_once_within_the_first_thousand,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        // Drafts (preview) keep the setup short: 1,006 matching records,
        // the oldest the only one with the word in a `STRING` field: it
        // comes first, although 1,005 newer ones match in `TEXT`.
        app.create_record(&k, "note", json!({ "slug": "common title", "text": "x" }))
            .await;
        for i in 0..1005 {
            let body = format!("common word {}", "filler ".repeat(i % 7));
            app.create_record(&k, "note", json!({ "slug": format!("n{i}"), "text": body }))
                .await;
        }
        let mut seen = BTreeSet::new();
        let mut last_score = f64::INFINITY;
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let page = search(
                &app,
                &k,
                json!({ "q": "common", "p": true, "l": 100, "a": after }),
            )
            .await;
            if pages == 0 {
                assert_eq!(page["items"][0]["record"]["data"]["slug"], "common title");
            }
            pages += 1;
            for h in page["items"].as_array().unwrap() {
                let score = h["score"].as_f64().unwrap();
                assert!(score <= last_score);
                last_score = score;
                assert!(seen.insert(h["record"]["id"].as_str().unwrap().to_owned()));
            }
            if !page["pageInfo"]["hasNextPage"].as_bool().unwrap() {
                break;
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
        assert_eq!((seen.len(), pages), (1000, 10));
        // A cursor at the bound gives nothing more.
        let page = search(
            &app,
            &k,
            json!({ "q": "common", "p": true, "l": 100, "a": after }),
        )
        .await;
        assert_eq!(page["items"].as_array().unwrap().len(), 100);
        let end = page["pageInfo"]["endCursor"].as_str().unwrap().to_owned();
        let page = search(&app, &k, json!({ "q": "common", "p": true, "a": end })).await;
        assert!(page["items"].as_array().unwrap().is_empty());
        assert_eq!(page["pageInfo"]["hasNextPage"], false);
    }
);

/// One corpus and the record sets its queries must find, whatever the
/// database: run on both, the table is the comparison.
const CORPUS: &[(&str, &str, &str)] = &[
    (
        "p1",
        "The Old Lighthouse",
        "A lighthouse keeper's diary, written by the sea in Brittany.",
    ),
    (
        "p2",
        "Café Society",
        "Paris cafés and the people who sat in them: écrivains, peintres.",
    ),
    (
        "p3",
        "Bicycle Repair",
        "How to fix a puncture on a road bicycle; tyres, tubes and levers.",
    ),
    (
        "p4",
        "Sea Kayaking",
        "Paddling along the coast; the sea can be rough near the lighthouse.",
    ),
    (
        "p5",
        "Mountain Bikes",
        "Suspension, gears and brakes of modern mountain bicycles.",
    ),
    (
        "p6",
        "Naïve Art",
        "Naive painters of the twentieth century and their café scenes.",
    ),
    (
        "p7",
        "Deep Sea Fish",
        "Anglerfish live in the deep sea, far from any coast.",
    ),
    (
        "p8",
        "Road Trips",
        "Driving the coast road from Nice to Genoa, with stops for coffee.",
    ),
];

both_dbs!(
    same_record_sets_on_both_databases,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        for (slug, title, body) in CORPUS {
            article(&app, &k, slug, title, body).await;
        }
        let table: &[(&str, &[&str])] = &[
            ("sea", &["p1", "p4", "p7"]),
            ("lighthouse", &["p1", "p4"]),
            ("sea lighthouse", &["p1", "p4"]),
            ("\"deep sea\"", &["p7"]),
            ("\"sea deep\"", &[]),
            ("sea -lighthouse", &["p7"]),
            ("coast -\"deep sea\"", &["p4", "p8"]),
            ("cafe", &["p2", "p6"]),
            ("CAFÉS", &["p2", "p6"]),
            ("\"cafés\"", &["p2"]),
            ("naive", &["p6"]),
            ("ecrivains", &["p2"]),
            ("bicycle", &["p3", "p5"]),
            ("bicyle", &["p3"]),
            ("bicyclez", &["p3", "p5"]),
            // A swap of two letters is two edits.
            ("mountian", &[]),
            ("bicy", &["p3", "p5"]),
            ("mountain bicy", &["p5"]),
            ("lighthuose", &["p1", "p4"]),
            ("lighthoose keeper", &["p1"]),
            ("\"lighthoose keeper\"", &[]),
            ("twentieth centurx", &["p6"]),
            ("coast road", &["p8"]),
            ("\"road bicycle\"", &["p3"]),
            ("road", &["p3", "p8"]),
            ("ro", &["p3", "p4", "p8"]),
            ("keeper s", &["p1"]),
            ("zzz", &[]),
            ("sea -sea", &[]),
        ];
        for (q, expected) in table {
            assert_eq!(slug_set(&app, &k, q, false).await, set(expected), "{q}");
            assert_eq!(
                slug_set(&app, &k, q, true).await,
                set(expected),
                "{q} (preview)"
            );
        }
    }
);

both_dbs!(
    repeated_published_searches_come_from_the_read_cache,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let live = live_searcher(&app, &t).await;
        let id = article(&app, &t.root, "a", "Harbour", "").await;
        // No `preview` argument (a variable could ask for drafts): cacheable.
        let published = "query($q: String!) { search(query: $q) {
            items { score record { id data } highlights { field snippet } } } }";
        let q = json!({ "q": "harbour" });
        let first = app.data(&live, published, q.clone()).await;
        let (hits, _) = app.state.read_cache.stats();
        let second = app.data(&live, published, q.clone()).await;
        assert_eq!(first, second);
        assert_eq!(first["search"]["items"].as_array().unwrap().len(), 1);
        assert_eq!(app.state.read_cache.stats().0, hits + 1);
        // An unpublish moves the generation: the next answer is fresh.
        app.data(&t.root, UNPUBLISH_RECORD, json!({ "id": id }))
            .await;
        let third = app.data(&live, published, q).await;
        assert!(third["search"]["items"].as_array().unwrap().is_empty());
        // With preview, never from the cache.
        let (hits, _) = app.state.read_cache.stats();
        for _ in 0..2 {
            search(&app, &t.root, json!({ "q": "harbour", "p": true })).await;
        }
        assert_eq!(app.state.read_cache.stats().0, hits);
    }
);

both_dbs!(
    reindex_rebuilds_the_index_and_the_migration_queue_builds_it,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(&app, &k, "a", "Lighthouse", "keeper").await;
        let d = app
            .create_record(
                &k,
                "article",
                json!({ "slug": "d", "title": "Lighthouse draft" }),
            )
            .await
            .id;
        let db = app.database().open().await;
        let wipe = |db: quire::db::Database| async move {
            use sea_orm::ConnectionTrait;
            let mut tables = vec!["search_docs", "search_terms"];
            if db.backend() == sea_orm::DbBackend::Sqlite {
                tables.push("search_fts");
            }
            for table in tables {
                db.conn
                    .execute_unprepared(&format!("DELETE FROM {table}"))
                    .await
                    .unwrap();
            }
        };
        wipe(db.clone()).await;
        assert!(slugs(&app, &k, "lighthouse", true).await.is_empty());
        // `quire admin search reindex`.
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_quire"))
            .args([
                "admin",
                "search",
                "reindex",
                "--project",
                "default",
                "--json",
            ])
            .env("QUIRE_DATABASE_URL", app.database_url())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(printed, json!([{ "project": "default", "records": 2 }]));
        assert_eq!(
            slug_set(&app, &k, "lighthouse", true).await,
            set(&["a", "d"])
        );
        assert_eq!(slugs(&app, &k, "lighthouse", false).await, ["a"]);
        assert_eq!(slugs(&app, &k, "lighthose", false).await, ["a"]);
        // What the migration does for existing content: queue the project;
        // the next start builds its index.
        wipe(db.clone()).await;
        {
            use sea_orm::ConnectionTrait;
            db.conn
                .execute_unprepared(&format!(
                    "INSERT INTO search_reindex (project_id) VALUES ('{}')",
                    t.project.id
                ))
                .await
                .unwrap();
        }
        let next = app.sibling(|_| {}).await;
        assert_eq!(slugs(&next, &k, "lighthouse", false).await, ["a"]);
        assert_eq!(slug_set(&next, &k, "keeper", true).await, set(&["a"]));
        if db.backend() == sea_orm::DbBackend::Sqlite {
            // Each view's counts (BM25's N and average length) match its
            // documents, after writes, deletes and rebuilds alike.
            app.data(&k, DELETE_RECORD, json!({ "id": d })).await;
            use sea_orm::ConnectionTrait;
            let counts = |sql: &'static str| {
                let db = db.clone();
                async move {
                    let rows = db
                        .conn
                        .query_all(sea_orm::Statement::from_string(
                            sea_orm::DbBackend::Sqlite,
                            sql,
                        ))
                        .await
                        .unwrap();
                    rows.iter()
                        .map(|r| {
                            (
                                r.try_get::<String>("", "view").unwrap(),
                                r.try_get::<i64>("", "n").unwrap(),
                                r.try_get::<i64>("", "w").unwrap(),
                            )
                        })
                        .collect::<Vec<_>>()
                }
            };
            let kept =
                counts("SELECT view, docs AS n, words AS w FROM search_tags ORDER BY view").await;
            let real = counts(
                "SELECT view, count(*) AS n, sum(len) AS w FROM search_docs GROUP BY view ORDER BY view",
            )
            .await;
            assert_eq!(kept, real);
            assert_eq!(kept, [("d".to_owned(), 1, 3), ("p".to_owned(), 1, 3)]);
        }
    }
);

both_dbs!(
    the_view_tags_migration_rebuilds_existing_content,
    |app: TestApp| async move {
        use migration::MigratorTrait;
        let t = setup(&app).await;
        let k = t.root.to_string();
        article(&app, &k, "a", "Lighthouse", "keeper").await;
        // Back to before `m20261129_000090_search_views` (the newest
        // migration touching search) and up again, with content in place:
        // the next start rebuilds the index it dropped.
        let db = app.database().open().await;
        let applied = migration::Migrator::get_applied_migrations(&db.conn)
            .await
            .unwrap();
        let newer = applied
            .iter()
            .rev()
            .position(|m| m.name() == "m20261129_000090_search_views")
            .unwrap();
        migration::Migrator::down(&db.conn, Some(u32::try_from(newer + 1).unwrap()))
            .await
            .unwrap();
        migration::Migrator::up(&db.conn, None).await.unwrap();
        let next = app.sibling(|_| {}).await;
        assert_eq!(slugs(&next, &k, "lighthouse", false).await, ["a"]);
        assert_eq!(slug_set(&next, &k, "keeper", true).await, set(&["a"]));
        assert_eq!(slugs(&next, &k, "lighthose", false).await, ["a"]);
    }
);

both_dbs!(
    a_long_document_is_found_by_any_word_and_ranked_by_its_start,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        // 12,000 words: past what ranking reads, but all indexed.
        let body = format!("lantern {} tailword", "filler ".repeat(12_000));
        article(&app, &k, "long", "Long read", &body).await;
        article(&app, &k, "short", "Short", "lantern").await;
        assert_eq!(slugs(&app, &k, "tailword", false).await, ["long"]);
        // Same word count in each; the short document ranks first.
        assert_eq!(slugs(&app, &k, "lantern", false).await, ["short", "long"]);
    }
);

both_dbs!(
    a_new_document_never_meets_a_deleted_ones_ranking_copy,
    |app: TestApp| async move {
        let t = setup(&app).await;
        let k = t.root.to_string();
        // A draft, searched: its document is kept for ranking, by id.
        let a = app
            .create_record(&k, "article", json!({ "slug": "a", "body": "appleword" }))
            .await;
        assert_eq!(slugs(&app, &k, "appleword", true).await, ["a"]);
        // Deleted while it was the newest document; the next one must not
        // get its id (SQLite would give a deleted newest rowid again), or
        // the kept copy would stand for it.
        app.data(&k, DELETE_RECORD, json!({ "id": a.id })).await;
        app.create_record(&k, "article", json!({ "slug": "b", "body": "bananaword" }))
            .await;
        assert_eq!(slugs(&app, &k, "bananaword", true).await, ["b"]);
        assert!(slugs(&app, &k, "appleword", true).await.is_empty());
    }
);
