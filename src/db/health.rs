//! Whether the database answers, and the deadline every request's database
//! work runs under.
//!
//! A database that refuses connections or stops answering must cost a
//! request at most the deadline once, not every request its pool's acquire
//! timeout: work that waits longer than [`SUSPECT_AFTER`] starts a probe (one
//! at a time), and while the probe finds the database unreachable every
//! guarded call is refused at once (503 with `Retry-After`). The probe keeps
//! trying every [`PROBE_INTERVAL`] and lifts the refusal as soon as the
//! database answers, so service resumes within about a second of its return.
//!
//! The probe opens a connection of its own (PostgreSQL) rather than borrowing
//! one from the pool: pooled connections can be stuck behind a frozen peer,
//! and a fresh connect tells "refused" apart from "slow" at once.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::Connection;
use tokio::sync::Notify;

use crate::error::AppError;

/// How long guarded work may wait before the database is suspected and probed.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(1);
/// How long one probe waits for a fresh connection and a ping: room for a
/// TLS handshake and authentication over a slow link (a probe that times
/// out marks the database unreachable).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long `/readyz` waits for the database.
pub const READY_TIMEOUT: Duration = Duration::from_millis(900);
/// Pause between probes while the database is unreachable.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// The reachability of one database, shared by every clone of it.
pub struct Health {
    /// Whether the last probe failed: guarded work is refused at once.
    down: AtomicBool,
    /// Whether a probe task is running (at most one).
    probing: AtomicBool,
    /// Wakes guarded work when the database is found unreachable.
    went_down: Notify,
    /// How a probe reaches the database.
    target: ProbeTarget,
    /// How long a statement may take; guarded work gets one second more.
    statement_timeout: Duration,
}

/// What a probe connects to: always a fresh connection, never the pool,
/// whose connections may all be busy with slow statements (busy is not
/// unreachable).
pub enum ProbeTarget {
    /// PostgreSQL with these options.
    Postgres(Box<PgConnectOptions>),
    /// The SQLite file with these options.
    Sqlite(Box<SqliteConnectOptions>),
}

impl Health {
    /// Health of a database whose statements may take `statement_timeout`.
    pub fn new(target: ProbeTarget, statement_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            down: AtomicBool::new(false),
            probing: AtomicBool::new(false),
            went_down: Notify::new(),
            target,
            statement_timeout,
        })
    }

    /// Exports `quire_db_up` and `quire_db_unreachable_total` from the start
    /// (once the metrics recorder is installed), not only once they move.
    pub fn export_metrics(&self) {
        metrics::gauge!("quire_db_up").set(if self.is_down() { 0.0 } else { 1.0 });
        metrics::counter!("quire_db_unreachable_total").increment(0);
    }

    /// Whether the database is known to be unreachable right now.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    /// The longest guarded work may take: the statement timeout plus one
    /// second, for the round trips around the statement.
    pub fn deadline(&self) -> Duration {
        self.statement_timeout + Duration::from_secs(1)
    }

    /// Runs `work` (which uses the database) unless the database is known to
    /// be unreachable; gives up with `SERVICE_UNAVAILABLE` at the deadline,
    /// or at once when a probe started meanwhile finds the database gone.
    pub async fn guard<F: Future>(self: &Arc<Self>, work: F) -> Result<F::Output, AppError> {
        if self.is_down() {
            return Err(AppError::unreachable());
        }
        self.bound(work).await
    }

    /// Like [`Health::guard`] for work that may not need the database (a
    /// cache that will probably answer): tried even while it is down.
    pub async fn bound<F: Future>(self: &Arc<Self>, work: F) -> Result<F::Output, AppError> {
        let went_down = self.went_down.notified();
        tokio::pin!(work, went_down);
        let suspect = tokio::time::sleep(SUSPECT_AFTER);
        tokio::pin!(suspect);
        let deadline = tokio::time::sleep(self.deadline());
        tokio::pin!(deadline);
        let mut suspected = false;
        loop {
            tokio::select! {
                out = &mut work => return Ok(out),
                () = &mut suspect, if !suspected => {
                    suspected = true;
                    self.suspect();
                }
                () = &mut went_down => return Err(AppError::unreachable()),
                () = &mut deadline => {
                    self.suspect();
                    return Err(AppError::unavailable(format!(
                        "the database did not answer within {} s",
                        self.deadline().as_secs()
                    )));
                }
            }
        }
    }

    /// Something looked wrong: start a probe unless one is running.
    pub fn suspect(self: &Arc<Self>) {
        if self.probing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match this.probe().await {
                    Ok(()) => {
                        if this.down.swap(false, Ordering::AcqRel) {
                            metrics::gauge!("quire_db_up").set(1.0);
                            tracing::info!("the database answers again");
                        }
                        break;
                    }
                    Err(cause) => {
                        if !this.down.swap(true, Ordering::AcqRel) {
                            metrics::gauge!("quire_db_up").set(0.0);
                            metrics::counter!("quire_db_unreachable_total").increment(1);
                            tracing::warn!(%cause, "the database is unreachable: requests get 503 until it answers");
                        }
                        this.went_down.notify_waiters();
                    }
                }
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
            this.probing.store(false, Ordering::Release);
        });
    }

    /// One bounded attempt to reach the database.
    pub async fn probe(&self) -> Result<(), String> {
        let attempt = async {
            match &self.target {
                ProbeTarget::Postgres(opts) => {
                    let mut conn = match sqlx::PgConnection::connect_with(opts).await {
                        Ok(conn) => conn,
                        // The server answered (too many clients, say): it is reachable.
                        Err(sqlx::Error::Database(_)) => return Ok(()),
                        Err(e) => return Err(e.to_string()),
                    };
                    let pinged = conn.ping().await.map_err(|e| e.to_string());
                    let _ = conn.close().await;
                    pinged
                }
                ProbeTarget::Sqlite(opts) => {
                    let mut conn = sqlx::SqliteConnection::connect_with(opts)
                        .await
                        .map_err(|e| e.to_string())?;
                    let pinged = conn.ping().await.map_err(|e| e.to_string());
                    let _ = conn.close().await;
                    pinged
                }
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", PROBE_TIMEOUT.as_millis())),
        }
    }
}

#[cfg(test)]
#[expect(clippy::unwrap_used, reason = "tests")]
mod tests {
    use std::str::FromStr;
    use std::time::Instant;

    use super::*;

    /// Health of a PostgreSQL server that refuses connections (nothing
    /// listens on the port).
    fn refused() -> Arc<Health> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let opts =
            PgConnectOptions::from_str(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap();
        Health::new(
            ProbeTarget::Postgres(Box::new(opts)),
            Duration::from_secs(5),
        )
    }

    #[tokio::test]
    async fn work_that_hangs_on_a_dead_database_is_abandoned_once_a_probe_finds_it_gone() {
        let health = refused();
        let started = Instant::now();
        let out = health.guard(std::future::pending::<()>()).await;
        let waited = started.elapsed();
        assert_eq!(
            out.unwrap_err().code(),
            crate::error::Code::ServiceUnavailable
        );
        assert!(health.is_down());
        // Suspected after a second, refused when the probe failed: well
        // before the deadline (6 s).
        assert!(waited < health.deadline(), "waited {waited:?}");

        // While down, guarded work is refused without being started.
        let started = Instant::now();
        let out = health.guard(async { 42 }).await;
        assert!(out.is_err());
        assert!(started.elapsed() < Duration::from_millis(100));
        // Work that may not need the database is still tried.
        assert_eq!(health.bound(async { 42 }).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn work_that_finishes_is_not_disturbed_and_nothing_is_probed() {
        let health = refused();
        assert_eq!(health.guard(async { 7 }).await.unwrap(), 7);
        assert!(!health.is_down());
        assert!(!health.probing.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn the_probe_answers_within_its_timeout() {
        let health = refused();
        let started = Instant::now();
        assert!(health.probe().await.is_err());
        assert!(started.elapsed() <= PROBE_TIMEOUT + Duration::from_millis(200));
    }
}
