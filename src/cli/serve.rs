//! `quire serve` and `quire migrate`.
//!
//! Shutdown (SPEC §1): SIGTERM or Ctrl-C stops accepting, saves the
//! rate-limit windows at once (an orchestrator's SIGKILL may follow), lets
//! in-flight requests finish until `QUIRE_SHUTDOWN_GRACE_SECONDS` after the
//! signal, closes what is left, saves the windows again (the requests that
//! finished meanwhile) and exits 0. Without Redis the windows are also saved
//! every `QUIRE_RATE_LIMIT_SAVE_SECONDS`, so a `kill -9` loses at most that
//! much counting. The usage counts are flushed last (a `kill -9` loses at
//! most `QUIRE_USAGE_FLUSH_SECONDS` of them).

use std::io::Write;
use std::time::Duration;

use tokio::net::TcpListener;

use super::msg;
use crate::app::{App, AppState};
use crate::config::Config;
use crate::db::Database;
use crate::http::server;

/// How long the save after the drain may take: the grace period is spent,
/// and an orchestrator's SIGKILL may be near.
const FINAL_SAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Starts the server: migrate, bootstrap, listen, serve until SIGTERM/Ctrl-C.
pub async fn run(config: Config) -> Result<(), String> {
    tracing::info!(config = ?config, "starting quire");
    let fd_limit = server::raise_fd_limit();
    let limits = server::Limits::from_config(&config);
    tracing::info!(
        fd_limit,
        max_connections = limits.max_connections,
        "connection limits"
    );
    let app = App::new(config).await.map_err(msg)?;
    let bootstrap = app
        .keys
        .bootstrap()
        .await
        .map_err(|e| format!("bootstrap failed: {}", e.cause()))?;
    if let Some(secret) = bootstrap {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Created the API key \"bootstrap\" (secret, test mode, every scope) in project \"default\".\n\
             Store it now: it is shown this once and will not be shown again.\n{}",
            secret.expose()
        );
        let _ = out.flush();
    }
    let listener = TcpListener::bind(app.config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", app.config.listen))?;
    let addr = listener.local_addr().map_err(msg)?;
    tracing::info!(%addr, database = %app.config.database.database_url, "quire is listening");
    app.spawn_change_watcher();
    let saver = spawn_window_saver(&app);
    let router = crate::http::build_router(app.clone());
    let draining = server::accept_until(listener, router, limits, shutdown_signal()).await;
    app.events.hub.close_streams();
    let grace = Duration::from_secs(app.config.shutdown_grace_seconds);
    let deadline = tokio::time::Instant::now() + grace;
    tracing::info!(
        open_connections = draining.open(),
        grace_seconds = grace.as_secs(),
        "stopped accepting; finishing in-flight requests"
    );
    if let Some(saver) = saver {
        saver.abort();
    }
    // First, before waiting on any client: what an orchestrator's SIGKILL
    // must not lose.
    let _ = tokio::time::timeout_at(deadline, save_windows(&app)).await;
    let cut = draining.finish(deadline).await;
    if cut > 0 {
        tracing::warn!(
            connections = cut,
            "closed connections whose requests did not finish within the grace period"
        );
    }
    let _ = tokio::time::timeout(FINAL_SAVE_TIMEOUT, save_windows(&app)).await;
    // After the drain: the requests that finished meanwhile count too.
    let _ = tokio::time::timeout(FINAL_SAVE_TIMEOUT, flush_usage(&app)).await;
    tracing::info!("quire stopped");
    Ok(())
}

/// Writes the usage counts not yet flushed, saying how it went.
async fn flush_usage(app: &AppState) {
    match app.usage.flush().await {
        Ok(n) => tracing::info!(buckets = n, "flushed usage counts"),
        Err(e) => tracing::warn!(error = %e.cause(), "could not flush usage counts; they are lost"),
    }
}

/// Saves the local rate-limit windows, saying how it went.
async fn save_windows(app: &AppState) {
    if app.limiter.is_shared() {
        return;
    }
    match app.limiter.persist(&app.db, app.clock.now()).await {
        Ok(n) => tracing::info!(keys = n, "saved rate-limit windows"),
        Err(e) => tracing::warn!(error = %e.cause(), "could not save rate-limit windows"),
    }
}

/// Without Redis, saves the windows every `QUIRE_RATE_LIMIT_SAVE_SECONDS`
/// in a task of its own (never on a request's path).
fn spawn_window_saver(app: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    let every = app.config.rate_limit_save_seconds;
    if app.limiter.is_shared() || every == 0 {
        return None;
    }
    let app = app.clone();
    Some(tokio::spawn(async move {
        let every = Duration::from_secs(every);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = app.limiter.persist(&app.db, app.clock.now()).await {
                tracing::warn!(error = %e.cause(), "could not save rate-limit windows");
            }
        }
    }))
}

/// `quire migrate`: apply migrations and exit.
pub async fn migrate(database_url: &str) -> Result<(), String> {
    let db = Database::connect(database_url).await.map_err(msg)?;
    db.migrate(chrono::Utc::now()).await.map_err(msg)?;
    crate::search::reindex::run_pending(&db)
        .await
        .map_err(|e| e.cause())?;
    println!("migrations applied");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
