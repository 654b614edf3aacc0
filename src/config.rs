//! One typed configuration for `quire serve`, from flags and `QUIRE_*`
//! environment variables. Secrets in URLs are redacted in `Debug`.

use std::fmt;
use std::net::SocketAddr;

use clap::Args;

/// The default embedded database: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://quire.db?mode=rwc";

/// Where the database lives; shared by `serve`, `migrate` and `admin`.
#[derive(Args, Clone)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://…` (embedded) or `postgres://…`.
    #[arg(long = "database-url", env = "QUIRE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: String,
}

/// Log line format.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `quire serve` needs.
#[derive(Args, Clone)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "QUIRE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis URL; when set, rate limits and cache invalidation are shared.
    #[arg(long, env = "QUIRE_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Comma-separated origins allowed to call `/graphql` from a browser (default: any).
    #[arg(long, env = "QUIRE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// `text` or `json` log lines.
    #[arg(long, env = "QUIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "QUIRE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Most operations in one batch; 0 refuses batches.
    #[arg(long, env = "QUIRE_MAX_BATCH", default_value_t = 10)]
    pub max_batch: usize,
    /// Deepest accepted query, counted as async-graphql counts it.
    #[arg(long, env = "QUIRE_MAX_DEPTH", default_value_t = 15)]
    pub max_depth: usize,
    /// Highest accepted query complexity (each field counts 1).
    #[arg(long, env = "QUIRE_MAX_COMPLEXITY", default_value_t = 500)]
    pub max_complexity: usize,
    /// Most aliased fields in one document.
    #[arg(long, env = "QUIRE_MAX_ALIASES", default_value_t = 50)]
    pub max_aliases: usize,
    /// Allow schema introspection with public keys too.
    #[arg(long, env = "QUIRE_PUBLIC_INTROSPECTION", default_value_t = false)]
    pub public_introspection: bool,
    /// Hourly request budget of keys created without one.
    #[arg(
        long,
        env = "QUIRE_DEFAULT_RATE_LIMIT_PER_HOUR",
        default_value_t = 10_000
    )]
    pub default_rate_limit_per_hour: u32,
    /// Memory for cached published-view responses, in MiB; 0 turns the read
    /// cache off (it is also off on PostgreSQL without Redis).
    #[arg(long, env = "QUIRE_READ_CACHE_MB", default_value_t = 32)]
    pub read_cache_mb: u64,
}

impl Config {
    /// The defaults, as `quire serve` with no flags and no environment sees them.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: DatabaseArgs {
                database_url: database_url.into(),
            },
            redis_url: None,
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            max_body_bytes: 1024 * 1024,
            max_batch: 10,
            max_depth: 15,
            max_complexity: 500,
            max_aliases: 50,
            public_introspection: false,
            default_rate_limit_per_hour: 10_000,
            read_cache_mb: 32,
        }
    }
}

/// Hides the password of a URL such as `postgres://user:secret@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("database_url", &redact_url(&self.database.database_url))
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("cors_origins", &self.cors_origins)
            .field("log_format", &self.log_format)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("max_batch", &self.max_batch)
            .field("max_depth", &self.max_depth)
            .field("max_complexity", &self.max_complexity)
            .field("max_aliases", &self.max_aliases)
            .field("public_introspection", &self.public_introspection)
            .field(
                "default_rate_limit_per_hour",
                &self.default_rate_limit_per_hour,
            )
            .field("read_cache_mb", &self.read_cache_mb)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("sqlite://quire.db?mode=rwc"),
            "sqlite://quire.db?mode=rwc"
        );
        let mut c = Config::for_database("postgres://u:hunter2@h/db");
        c.redis_url = Some("redis://:hunter3@h".into());
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
