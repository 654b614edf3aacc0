//! The two steps of an uncached read that issue 13 took out of the
//! database and the JSON tree, each against the way it was done before,
//! measured in the same run (read the ratio, not the absolute times):
//!
//! - **page JSON**: ten records' data, as the database returns it (JSON
//!   text of ~360 bytes), to the bytes of the answer. Before: parse each
//!   into a `serde_json::Value`, convert it to async-graphql's value, and
//!   serialize the answer with serde. Now: check each text with a scan
//!   (`content::query::checked_text`) and copy it into the answer
//!   (`http::graphql::respond::write_answer`).
//! - **model lookup**: the model a `records` query needs. Before: a query
//!   of the database (SQLite, the pooled reader). Now: the in-memory
//!   catalog (`content::catalog::Catalog`), after its first load.
//!
//! Run: `cargo bench --bench read_path`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use async_graphql::{Name, Value as GqlValue};
use criterion::{criterion_group, criterion_main, Criterion};
use quire::config::Config;
use quire::content::catalog::Catalog;
use quire::content::fields::{FieldDef, FieldType};
use quire::content::models::{create_model, NewModel};
use quire::content::query::checked_text;
use quire::content::schema::require_model;
use quire::http::graphql::respond::write_answer;
use quire::App;
use serde_json::json;

/// Ten rows as a `records(limit: 10) { items { id data } }` page reads them.
fn rows() -> Vec<(String, String)> {
    (0..10)
        .map(|i| {
            let data = json!({
                "slug": format!("page-{i}"),
                "title": format!("Page number {i} of the benchmark"),
                "rank": i,
                "body": "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua. Ut enim ad minim veniam, quis nostrud exercitation ullamco laboris nisi ut aliquip ex ea commodo.",
                "tags": ["news", "bench"],
                "published": true
            });
            (format!("{i:08}-0000-4000-8000-000000000000"), data.to_string())
        })
        .collect()
}

/// The answer around the items.
fn answer(items: Vec<GqlValue>) -> async_graphql::Response {
    let mut page = async_graphql::indexmap::IndexMap::new();
    page.insert(Name::new("items"), GqlValue::List(items));
    let mut data = async_graphql::indexmap::IndexMap::new();
    data.insert(Name::new("records"), GqlValue::Object(page));
    async_graphql::Response::new(GqlValue::Object(data))
}

fn item(id: &str, data: GqlValue) -> GqlValue {
    let mut item = async_graphql::indexmap::IndexMap::new();
    item.insert(Name::new("id"), GqlValue::String(id.to_owned()));
    item.insert(Name::new("data"), data);
    GqlValue::Object(item)
}

fn page_json(c: &mut Criterion) {
    let rows = rows();
    let mut group = c.benchmark_group("page JSON (10 rows to answer bytes)");
    group.bench_function("before: parse, convert, serialize", |b| {
        b.iter(|| {
            let items = black_box(&rows)
                .iter()
                .map(|(id, text)| {
                    let value: serde_json::Value = serde_json::from_str(text).unwrap();
                    item(id, GqlValue::from_json(value).unwrap())
                })
                .collect();
            serde_json::to_vec(&answer(items)).unwrap()
        })
    });
    group.bench_function("now: check, copy", |b| {
        b.iter(|| {
            let items = black_box(&rows)
                .iter()
                .map(|(id, text)| {
                    item(
                        id,
                        GqlValue::Binary(checked_text(id, text.clone()).unwrap()),
                    )
                })
                .collect();
            let mut out = Vec::with_capacity(4096);
            write_answer(&answer(items), &mut out).unwrap();
            out
        })
    });
    // The two must write the same JSON.
    let before: serde_json::Value = serde_json::from_slice(
        &serde_json::to_vec(&answer(
            rows.iter()
                .map(|(id, t)| {
                    item(
                        id,
                        GqlValue::from_json(serde_json::from_str(t).unwrap()).unwrap(),
                    )
                })
                .collect(),
        ))
        .unwrap(),
    )
    .unwrap();
    let mut now = Vec::new();
    write_answer(
        &answer(
            rows.iter()
                .map(|(id, t)| item(id, GqlValue::Binary(checked_text(id, t.clone()).unwrap())))
                .collect(),
        ),
        &mut now,
    )
    .unwrap();
    assert_eq!(
        before,
        serde_json::from_slice::<serde_json::Value>(&now).unwrap()
    );
    group.finish();
}

fn model_lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    let (app, catalog, project_id) = rt.block_on(async {
        let app = App::new(Config::for_database(url)).await.unwrap();
        let project = app.keys.project_by_name("default").await.unwrap().unwrap();
        let catalog = Arc::new(Catalog::new(app.read_cache.clone(), true));
        let field = |name: &str, field_type, unique| FieldDef {
            name: name.into(),
            field_type,
            required: false,
            unique,
            reference_model_key: None,
        };
        create_model(
            &app.db.writer,
            &catalog,
            &project.id,
            NewModel {
                key: "page".into(),
                name: "Page".into(),
                fields: vec![
                    field("slug", FieldType::String, true),
                    field("title", FieldType::String, false),
                    field("rank", FieldType::Integer, false),
                ],
            },
            app.clock.now(),
        )
        .await
        .unwrap();
        (app, catalog, project.id)
    });
    let mut group = c.benchmark_group("model lookup");
    group.bench_function("before: database query", |b| {
        b.to_async(&rt).iter(|| async {
            require_model(&app.db.conn, black_box(&project_id), "page")
                .await
                .unwrap()
        })
    });
    group.bench_function("now: catalog", |b| {
        b.to_async(&rt).iter(|| async {
            catalog
                .model(&app.db.conn, black_box(&project_id), "page")
                .await
                .unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, page_json, model_lookup);
criterion_main!(benches);
