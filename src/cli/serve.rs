//! `quire serve` and `quire migrate`.

use std::io::Write;

use tokio::net::TcpListener;

use super::msg;
use crate::app::App;
use crate::config::Config;
use crate::db::Database;

/// Starts the server: migrate, bootstrap, listen, serve until SIGTERM/Ctrl-C.
pub async fn run(config: Config) -> Result<(), String> {
    tracing::info!(config = ?config, "starting quire");
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
    crate::http::serve(listener, app.clone(), shutdown_signal())
        .await
        .map_err(msg)?;
    match app.limiter.persist(&app.db, app.clock.now()).await {
        Ok(n) => tracing::info!(keys = n, "saved rate-limit windows"),
        Err(e) => tracing::warn!(error = %e.cause(), "could not save rate-limit windows"),
    }
    tracing::info!("quire stopped");
    Ok(())
}

/// `quire migrate`: apply migrations and exit.
pub async fn migrate(database_url: &str) -> Result<(), String> {
    let db = Database::connect(database_url).await.map_err(msg)?;
    db.migrate(chrono::Utc::now()).await.map_err(msg)?;
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
