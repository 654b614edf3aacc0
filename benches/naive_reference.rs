//! The load harness's naive reference: the same reads and one write that
//! quire serves, written the way a typical async-graphql + axum + sea-orm
//! service is (no auth, no limits, no cache, whole rows loaded through the
//! entities, `serde_json::Value` all the way), so the harness can report
//! quire's cost as a ratio to it measured in the same run
//! (`tests/perf/harness.py`).
//!
//! `naive_reference --serve 127.0.0.1:PORT --database URL` serves
//! `POST /graphql` over a database quire created and seeded (SQLite in WAL
//! mode or PostgreSQL); it reads only, except `createRecord`. Run with no
//! arguments (as `cargo bench` does), it says what it is and exits.

use std::net::SocketAddr;
use std::process::ExitCode;

use async_graphql::{Context, EmptySubscription, Json, Object, Result, Schema, SimpleObject, ID};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use entity::{models, projects, records};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Database, DatabaseConnection, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde_json::Value;

type NaiveSchema = Schema<Query, Mutation, EmptySubscription>;

/// What the server reads from: the connection pool and the project whose
/// models the queries name (quire's `default`).
struct Db {
    conn: DatabaseConnection,
    project_id: String,
}

#[derive(SimpleObject)]
struct Record {
    id: ID,
    data: Json<Value>,
}

#[derive(SimpleObject)]
struct RecordPage {
    items: Vec<Record>,
}

async fn model_by_key(db: &Db, key: &str) -> Result<models::Model> {
    models::Entity::find()
        .filter(models::Column::ProjectId.eq(db.project_id.as_str()))
        .filter(models::Column::Key.eq(key))
        .one(&db.conn)
        .await?
        .ok_or_else(|| format!("no model \"{key}\"").into())
}

fn published(row: records::Model) -> Record {
    Record {
        id: ID(row.id),
        data: Json(row.published_data.unwrap_or(Value::Null)),
    }
}

struct Query;

#[Object]
impl Query {
    /// A page of a model's published records, oldest first.
    async fn records(
        &self,
        ctx: &Context<'_>,
        model_key: String,
        #[graphql(default = 20)] limit: u64,
    ) -> Result<RecordPage> {
        let db = ctx.data::<Db>()?;
        let model = model_by_key(db, &model_key).await?;
        let rows = records::Entity::find()
            .filter(records::Column::ModelId.eq(model.id))
            .filter(records::Column::PublishedAt.is_not_null())
            .order_by_asc(records::Column::CreatedAt)
            .limit(limit)
            .all(&db.conn)
            .await?;
        Ok(RecordPage {
            items: rows.into_iter().map(published).collect(),
        })
    }

    /// One published record.
    async fn record(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Record>> {
        let db = ctx.data::<Db>()?;
        let row = records::Entity::find_by_id(id.0)
            .filter(records::Column::PublishedAt.is_not_null())
            .one(&db.conn)
            .await?;
        Ok(row.map(published))
    }
}

struct Mutation;

#[Object]
impl Mutation {
    /// Adds a draft record to a model.
    async fn create_record(
        &self,
        ctx: &Context<'_>,
        model_key: String,
        data: Json<Value>,
    ) -> Result<Record> {
        let db = ctx.data::<Db>()?;
        let model = model_by_key(db, &model_key).await?;
        let now = chrono::Utc::now();
        let row = records::ActiveModel {
            id: Set(uuid::Uuid::new_v4().to_string()),
            project_id: Set(db.project_id.clone()),
            model_id: Set(model.id),
            draft_data: Set(data.0),
            published_data: Set(None),
            status: Set(records::RecordStatus::Draft),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            published_at: Set(None),
        }
        .insert(&db.conn)
        .await?;
        Ok(Record {
            id: ID(row.id),
            data: Json(row.draft_data),
        })
    }
}

/// Answers a GraphQL request. Unlike async-graphql-axum, an answer with
/// errors has status 500, so that wrk's non-2xx count shows failures (a
/// `database is locked`, say) instead of counting them as served.
async fn graphql(
    State(schema): State<NaiveSchema>,
    axum::Json(req): axum::Json<async_graphql::Request>,
) -> (StatusCode, axum::Json<async_graphql::Response>) {
    let resp = schema.execute(req).await;
    let status = if resp.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    (status, axum::Json(resp))
}

async fn serve(addr: SocketAddr, url: &str) -> std::result::Result<(), String> {
    let conn = Database::connect(url).await.map_err(|e| e.to_string())?;
    let project = projects::Entity::find()
        .filter(projects::Column::Name.eq("default"))
        .one(&conn)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the database has no \"default\" project: let quire create it first")?;
    let schema = Schema::build(Query, Mutation, EmptySubscription)
        .data(Db {
            conn,
            project_id: project.id,
        })
        .finish();
    let app = Router::new()
        .route("/graphql", post(graphql))
        .with_state(schema);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("bind {addr}: {e}"))?;
    println!("naive reference listening on {addr}");
    axum::serve(listener, app).await.map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let (addr, url) = match (flag("--serve"), flag("--database")) {
        (Some(addr), Some(url)) => (addr, url),
        (None, None) => {
            // `cargo bench` runs every bench target (with `--bench`):
            // nothing to measure here on its own.
            println!(
                "naive_reference: a server for the load harness (tests/perf/run.sh); \
                 run it with --serve 127.0.0.1:PORT --database URL"
            );
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("naive_reference: --serve ADDR and --database URL go together");
            return ExitCode::from(2);
        }
    };
    let addr: SocketAddr = match addr.parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("naive_reference: --serve {addr}: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("naive_reference: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(addr, &url)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("naive_reference: {e}");
            ExitCode::FAILURE
        }
    }
}
