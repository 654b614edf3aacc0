//! Tests clean up after themselves: a test's database is gone when the test
//! ends, whether it passed or panicked — the PostgreSQL database is dropped
//! (with the server's connections still open), the SQLite file's directory
//! removed.

use serde_json::json;

use crate::both_dbs;
use crate::support::db::admin_pool;
use crate::support::{Backend, TestApp};

/// Where a test's database lived: a PostgreSQL database name, or the
/// directory of the SQLite file.
#[derive(Debug)]
enum Trace {
    Postgres(String),
    Sqlite(std::path::PathBuf),
}

async fn still_there(trace: &Trace) -> bool {
    match trace {
        Trace::Sqlite(dir) => dir.exists(),
        Trace::Postgres(name) => {
            let url = std::env::var("QUIRE_TEST_DATABASE_URL").expect("set for PostgreSQL");
            let admin = admin_pool(&url).await.expect("connect");
            let (count,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM pg_database WHERE datname = $1")
                    .bind(name)
                    .fetch_one(&admin)
                    .await
                    .expect("query pg_database");
            admin.close().await;
            count > 0
        }
    }
}

/// A test body that uses its server, says where its database is, then
/// fails; `None` when the backend is not configured.
async fn run_a_failing_test(backend: Backend) -> Option<Trace> {
    let (tell, told) = tokio::sync::oneshot::channel();
    let test = tokio::spawn(async move {
        let Some(app) = TestApp::try_spawn(backend).await else {
            return;
        };
        let root = app.root_key().await;
        assert_eq!(
            app.gql(&root, "{ __typename }", json!({})).await.status,
            200
        );
        let db = app.database();
        let trace = match db.pg_name() {
            Some(name) => Trace::Postgres(name.to_owned()),
            None => Trace::Sqlite(db.dir().to_owned()),
        };
        assert!(
            still_there(&trace).await,
            "{trace:?} exists while the test runs"
        );
        let _ = tell.send(trace);
        panic!("failing on purpose: what does a failed test leave behind?");
    });
    let outcome = test.await;
    let trace = told.await.ok()?;
    assert!(outcome.unwrap_err().is_panic());
    Some(trace)
}

both_dbs!(
    a_failing_test_leaves_no_database,
    |backend: Backend| async move {
        let Some(trace) = run_a_failing_test(backend).await else {
            return;
        };
        assert!(!still_there(&trace).await, "{trace:?} outlived its test");
    }
);

both_dbs!(
    a_passing_test_leaves_no_database,
    |backend: Backend| async move {
        let Some(app) = TestApp::try_spawn(backend).await else {
            return;
        };
        let sibling = app.sibling(|_| {}).await;
        let db = app.database();
        let trace = match db.pg_name() {
            Some(name) => Trace::Postgres(name.to_owned()),
            None => Trace::Sqlite(db.dir().to_owned()),
        };
        drop(app);
        assert!(still_there(&trace).await, "a sibling still uses it");
        drop(sibling);
        assert!(!still_there(&trace).await, "{trace:?} outlived its test");
    }
);
