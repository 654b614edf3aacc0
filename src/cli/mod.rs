//! The command line: `serve` (the default), `migrate`, `admin` (directly on
//! the database) and the client commands (over HTTP).

mod admin;
mod client;
mod files;
mod schedules;
mod serve;
mod usage;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::config::{Config, DatabaseArgs, LogFormat};

/// quire: a headless content API.
#[derive(Parser)]
#[command(name = "quire", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(Box<Config>),
    /// Apply pending migrations and exit.
    Migrate(DatabaseArgs),
    /// Operator commands, directly on the database.
    Admin {
        #[command(flatten)]
        db: DatabaseArgs,
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Who the key in QUIRE_API_KEY is.
    Whoami(client::ClientArgs),
    /// Manage API keys over HTTP with the key in QUIRE_API_KEY.
    ApiKeys {
        #[command(subcommand)]
        command: client::ApiKeysCommand,
    },
    /// Content records, over HTTP.
    Records {
        #[command(subcommand)]
        command: schedules::RecordsCommand,
    },
    /// Files: upload and list, over HTTP.
    Files {
        #[command(subcommand)]
        command: files::FilesCommand,
    },
}

/// Runs the command line and turns failures into a message on stderr and a
/// non-zero exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        // `quire` alone is `quire serve`, configured from the environment.
        #[derive(Parser)]
        struct ServeOnly {
            #[command(flatten)]
            config: Config,
        }
        Command::Serve(Box::new(ServeOnly::parse_from(["quire"]).config))
    });
    let format = match &command {
        Command::Serve(c) => c.log_format,
        _ => match std::env::var("QUIRE_LOG_FORMAT").as_deref() {
            Ok("json") => LogFormat::Json,
            _ => LogFormat::Text,
        },
    };
    let default_level = if matches!(command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    init_logging(format, default_level);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Serve(config) => serve::run(*config).await,
            Command::Migrate(db) => serve::migrate(&db.database_url).await,
            Command::Admin { db, command } => admin::run(&db.database_url, command).await,
            Command::Whoami(args) => client::whoami(&args).await,
            Command::ApiKeys { command } => client::api_keys(command).await,
            Command::Records { command } => schedules::records(command).await,
            Command::Files { command } => files::run(command).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr, stamped like every timestamp quire writes (RFC
/// 3339, UTC, milliseconds, `Z`), coloured only on a terminal and never
/// under `NO_COLOR`.
fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{default_level},sqlx=warn,sea_orm=warn")));
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(Millis)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The log timer: `2026-11-28T16:05:09.123Z`.
struct Millis;

impl tracing_subscriber::fmt::time::FormatTime for Millis {
    fn format_time(&self, w: &mut tracing_subscriber::fmt::format::Writer<'_>) -> std::fmt::Result {
        write!(
            w,
            "{}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        )
    }
}

/// Turns any displayable error into the CLI's error message.
fn msg(e: impl std::fmt::Display) -> String {
    e.to_string()
}
