//! Scale benchmark (ignored: not a timed test). With 200,000 published
//! records in one model it prints the time of page 1 and page 5,000 of a
//! cursor walk, a unique-field equality and a count, and the query plans.
//!
//! ```sh
//! cargo test --test api content_bench -- --ignored --nocapture
//! QUIRE_TEST_DATABASE_URL=postgres://… cargo test --test api content_bench -- --ignored --nocapture
//! ```

use std::time::{Duration, Instant};

use chrono::Duration as ChronoDuration;
use quire::content::fields::{FieldDef, FieldType};
use quire::content::models::{create_model, NewModel};
use quire::content::query::{explain, list_records, ListRecords, OrderTerm};
use quire::content::View;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::support::{Backend, ClockExt, TestApp};

const RECORDS: usize = 200_000;
const PAGE: i64 = 40;
const BATCH: usize = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn sqlite() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    bench(&app, "SQLite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn postgres() {
    let Some(app) = TestApp::try_spawn(Backend::Postgres).await else {
        return;
    };
    bench(&app, "PostgreSQL").await;
}

fn field(name: &str, field_type: FieldType, unique: bool) -> FieldDef {
    FieldDef {
        name: name.into(),
        field_type,
        required: false,
        unique,
        reference_model_key: None,
    }
}

async fn bench(app: &TestApp, label: &str) {
    let db = &app.state.db.conn;
    let backend = db.get_database_backend();
    let project = quire::db::project_by_name(db, "default")
        .await
        .unwrap()
        .unwrap();
    let now = app.clock.now_utc();
    // A catalog of its own: this writes beside the running service.
    let catalog = quire::content::catalog::Catalog::new(app.state.read_cache.clone(), false);
    let model = create_model(
        db,
        &catalog,
        &project.id,
        NewModel {
            key: "page".into(),
            name: "Page".into(),
            fields: vec![
                field("title", FieldType::String, false),
                field("slug", FieldType::String, true),
                field("rank", FieldType::Integer, false),
            ],
        },
        now,
    )
    .await
    .unwrap();

    // Bulk load, as a migration from another CMS would: many rows per statement.
    let started = Instant::now();
    let placeholder = |n: usize| match backend {
        sea_orm::DbBackend::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    };
    for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(BATCH) {
        let mut sql = String::from(
            "INSERT INTO records (id, project_id, model_id, draft_data, published_data, status, \
             version, created_at, updated_at, published_at) VALUES ",
        );
        let mut unique_sql = String::from(
            "INSERT INTO record_unique_values (model_id, field, value_text, record_id) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::new();
        let mut unique_values: Vec<sea_orm::Value> = Vec::new();
        for (row, i) in chunk.iter().enumerate() {
            let id = format!("{i:08}-0000-4000-8000-000000000000");
            let at = now + ChronoDuration::milliseconds(*i as i64);
            let data = json!({ "title": format!("Page {i}"), "slug": format!("slug-{i}"), "rank": i % 100 });
            let row_values: Vec<sea_orm::Value> = vec![
                id.clone().into(),
                project.id.clone().into(),
                model.row.id.clone().into(),
                data.clone().into(),
                data.into(),
                "published".into(),
                1i64.into(),
                at.into(),
                at.into(),
                at.into(),
            ];
            let marks: Vec<String> = (0..row_values.len())
                .map(|k| placeholder(values.len() + k + 1))
                .collect();
            sql.push_str(&format!(
                "{}({})",
                if row == 0 { "" } else { ", " },
                marks.join(", ")
            ));
            values.extend(row_values);
            let u: Vec<sea_orm::Value> = vec![
                model.row.id.clone().into(),
                "slug".into(),
                format!("slug-{i}").into(),
                id.into(),
            ];
            let marks: Vec<String> = (0..u.len())
                .map(|k| placeholder(unique_values.len() + k + 1))
                .collect();
            unique_sql.push_str(&format!(
                "{}({})",
                if row == 0 { "" } else { ", " },
                marks.join(", ")
            ));
            unique_values.extend(u);
        }
        db.execute(Statement::from_sql_and_values(backend, sql, values))
            .await
            .unwrap();
        db.execute(Statement::from_sql_and_values(
            backend,
            unique_sql,
            unique_values,
        ))
        .await
        .unwrap();
    }
    db.execute_unprepared("ANALYZE").await.unwrap();
    println!(
        "[{label}] loaded {RECORDS} records in {:.1?}",
        started.elapsed()
    );

    let req = |after: Option<String>, filter: Option<serde_json::Value>| ListRecords {
        model_key: "page".into(),
        view: View::Published,
        limit: PAGE,
        after,
        filter,
        order: vec![OrderTerm {
            field: "createdAt".into(),
            descending: false,
        }],
    };

    // Walk to page 5,000.
    let walk = Instant::now();
    let mut after = None;
    let mut page_before_last = None;
    for page in 1..=RECORDS as i64 / PAGE {
        if page == RECORDS as i64 / PAGE {
            page_before_last = after.clone();
        }
        let result = list_records(db, &project.id, req(after.clone(), None))
            .await
            .unwrap();
        assert_eq!(result.items.len() as i64, PAGE);
        after = result.end_cursor;
    }
    let pages = RECORDS as i64 / PAGE;
    println!(
        "[{label}] walked {pages} pages of {PAGE} in {:.1?}",
        walk.elapsed()
    );

    let page1 = median(|| list_records(db, &project.id, req(None, None))).await;
    let last = median(|| list_records(db, &project.id, req(page_before_last.clone(), None))).await;
    println!(
        "[{label}] page 1: {page1:.2?}, page {pages}: {last:.2?} (ratio {:.2})",
        last.as_secs_f64() / page1.as_secs_f64()
    );
    let slug = Some(json!({ "slug": "slug-123456" }));
    let found = list_records(db, &project.id, req(None, slug.clone()))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    let by_slug = median(|| list_records(db, &project.id, req(None, slug.clone()))).await;
    println!("[{label}] where slug = \"slug-123456\": {by_slug:.2?}");
    let count_started = Instant::now();
    let n = found.count.run().await.unwrap();
    println!(
        "[{label}] totalCount (where slug) = {n} in {:.2?}",
        count_started.elapsed()
    );
    let all = list_records(db, &project.id, req(None, None))
        .await
        .unwrap();
    let count_started = Instant::now();
    let n = all.count.run().await.unwrap();
    println!(
        "[{label}] totalCount (all) = {n} in {:.2?}",
        count_started.elapsed()
    );

    println!("[{label}] plan, where slug = \"slug-123456\":");
    for line in explain(db, &project.id, &req(None, slug)).await.unwrap() {
        println!("    {line}");
    }
    println!("[{label}] plan, page {pages}:");
    for line in explain(db, &project.id, &req(page_before_last, None))
        .await
        .unwrap()
    {
        println!("    {line}");
    }
}

/// Median time of 15 runs.
async fn median<F, Fut, T, E>(mut f: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Debug,
{
    let mut times = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        f().await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    times[times.len() / 2]
}
