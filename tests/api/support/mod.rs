//! What every test file shares; feature files import from here only, never
//! from each other.
//!
//! | module | holds |
//! |---|---|
//! | [`app`] | [`TestApp`]: a real quire on a loopback port, a fresh database, a manual clock |
//! | [`db`] | [`FreshDb`]: an empty SQLite file or PostgreSQL database, dropped on `Drop` |
//! | [`keys`] | [`KeyBuilder`] (`app.new_key()…`), [`TestKey`], [`Tenant`] (a project and its keys), `app.works(key)` |
//! | [`ops`] | the operations tests repeat: documents, typed replies, typed methods |
//! | [`reply`] | [`Reply`]: status, headers, body, error code and field |
//! | [`server`] | [`Server`]: `quire serve` as a child process |
//! | [`moto`] | a local S3-protocol server (`moto_server`) for the S3 file store |
//! | [`redis`] | the shared test Redis and a private `redis-server` |
//!
//! [`both_dbs!`](crate::both_dbs) runs a test on SQLite and, when
//! `QUIRE_TEST_DATABASE_URL` is set, on PostgreSQL.

pub mod app;
pub mod db;
pub mod keys;
pub mod moto;
pub mod ops;
pub mod redis;
pub mod reply;
pub mod server;

pub use app::{ClockExt, Holder, TestApp};
pub use db::{Backend, FreshDb};
pub use keys::{KeyBuilder, Tenant, TestKey};
pub use redis::{dead_redis_url, redis_url, OwnRedis};
pub use reply::Reply;
pub use server::{free_port, Server};

/// Runs a test body once per database: SQLite always, PostgreSQL when
/// `QUIRE_TEST_DATABASE_URL` is set (saying "skipped" otherwise). The
/// closure's parameter says what the test needs:
///
/// - `both_dbs!(name, |app: TestApp| async move { … })`: a running server;
/// - `both_dbs!(name, |db: FreshDb| async move { … })`: an empty database
///   and no server (service-level tests, `quire` child processes);
/// - `both_dbs!(name, |backend: Backend| async move { … })`: the backend
///   only, for a test that starts what it needs itself (and returns early
///   when `TestApp::try_spawn_with` or `FreshDb::create` says `None`).
///
/// The parameter's type is looked up where the macro is called (the calling
/// file imports it). Whatever the body holds is dropped when it ends or
/// panics, and the PostgreSQL database with it.
#[macro_export]
macro_rules! both_dbs {
    ($name:ident, |$app:ident : TestApp| $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let app = $crate::support::TestApp::spawn($crate::support::Backend::Sqlite).await;
                (|$app: TestApp| $body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(app) =
                    $crate::support::TestApp::try_spawn($crate::support::Backend::Postgres).await
                else {
                    return;
                };
                (|$app: TestApp| $body)(app).await;
            }
        }
    };
    ($name:ident, |$db:ident : FreshDb| $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = $crate::support::FreshDb::create($crate::support::Backend::Sqlite)
                    .await
                    .expect("SQLite is always available");
                (|$db: FreshDb| $body)(db).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let Some(db) =
                    $crate::support::FreshDb::create($crate::support::Backend::Postgres).await
                else {
                    return;
                };
                (|$db: FreshDb| $body)(db).await;
            }
        }
    };
    ($name:ident, |$backend:ident : Backend| $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                (|$backend: Backend| $body)($crate::support::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                (|$backend: Backend| $body)($crate::support::Backend::Postgres).await;
            }
        }
    };
}
