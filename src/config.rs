//! One typed configuration for `quire serve`, from flags and `QUIRE_*`
//! environment variables. Each default is written once, below, and used by
//! both the command line and [`Config::for_database`]. URLs are
//! [`SecretUrl`]s, whose `Debug` and `Display` hide the password.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Deref;
use std::str::FromStr;

use clap::Args;

/// The default embedded database: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://quire.db?mode=rwc";
/// Default `QUIRE_LISTEN`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default `QUIRE_MAX_BODY_BYTES`.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Default `QUIRE_MAX_BATCH`.
pub const DEFAULT_MAX_BATCH: usize = 10;
/// Default `QUIRE_MAX_DEPTH`.
pub const DEFAULT_MAX_DEPTH: usize = 15;
/// Default `QUIRE_MAX_COMPLEXITY`.
pub const DEFAULT_MAX_COMPLEXITY: usize = 500;
/// Default `QUIRE_MAX_ALIASES`.
pub const DEFAULT_MAX_ALIASES: usize = 50;
/// Default `QUIRE_DEFAULT_RATE_LIMIT_PER_HOUR`.
pub const DEFAULT_RATE_LIMIT_PER_HOUR: u32 = 10_000;
/// Default `QUIRE_READ_CACHE_MB`.
pub const DEFAULT_READ_CACHE_MB: u64 = 32;
/// Default `QUIRE_DB_TIMEOUT_SECONDS`: the longest a database statement may take.
pub const DEFAULT_DB_TIMEOUT_SECONDS: u64 = 5;
/// Default `QUIRE_SHUTDOWN_GRACE_SECONDS`.
pub const DEFAULT_SHUTDOWN_GRACE_SECONDS: u64 = 10;
/// Default `QUIRE_USAGE_FLUSH_SECONDS`.
pub const DEFAULT_USAGE_FLUSH_SECONDS: u64 = 10;
/// Default `QUIRE_RATE_LIMIT_SAVE_SECONDS`.
pub const DEFAULT_RATE_LIMIT_SAVE_SECONDS: u64 = 60;
/// Default `QUIRE_MAX_QUERY_BYTES`: far above any real query, far below
/// what a parser should be asked to build a tree for.
pub const DEFAULT_MAX_QUERY_BYTES: usize = 100 * 1024;
/// Default `QUIRE_WEBHOOK_RETRY_SECONDS`: 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 14 h, 20 h and 24 h (SPEC §9).
pub const DEFAULT_WEBHOOK_RETRY_SECONDS: [u64; 9] =
    [5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400];
/// Default `QUIRE_MAX_RESPONSE_BYTES`.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// A URL that may carry a password: shown redacted by `Debug` and
/// `Display`; [`SecretUrl::expose`] gives the real one to the client that
/// connects.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// The URL as given, password included.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl From<&str> for SecretUrl {
    fn from(url: &str) -> Self {
        Self(url.to_owned())
    }
}

impl FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", redact_url(&self.0))
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

/// Where the database lives; shared by `serve`, `migrate` and `admin`.
#[derive(Args, Clone, Debug)]
pub struct DatabaseArgs {
    /// Database URL: `sqlite://…` (embedded) or `postgres://…`.
    #[arg(long = "database-url", env = "QUIRE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true)]
    pub database_url: SecretUrl,
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
#[derive(Args, Clone, Debug)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "QUIRE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Redis URL; when set, rate limits and cache invalidation are shared.
    #[arg(long, env = "QUIRE_REDIS_URL")]
    pub redis_url: Option<SecretUrl>,
    /// Comma-separated origins allowed to call `/graphql` from a browser (default: any).
    #[arg(long, env = "QUIRE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// `text` or `json` log lines.
    #[arg(long, env = "QUIRE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Largest accepted request body, in bytes.
    #[arg(long, env = "QUIRE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,
    /// Most operations in one batch; 0 refuses batches.
    #[arg(long, env = "QUIRE_MAX_BATCH", default_value_t = DEFAULT_MAX_BATCH)]
    pub max_batch: usize,
    /// Deepest accepted query, counted as async-graphql counts it.
    #[arg(long, env = "QUIRE_MAX_DEPTH", default_value_t = DEFAULT_MAX_DEPTH)]
    pub max_depth: usize,
    /// Highest accepted query complexity (each field counts 1).
    #[arg(long, env = "QUIRE_MAX_COMPLEXITY", default_value_t = DEFAULT_MAX_COMPLEXITY)]
    pub max_complexity: usize,
    /// Most aliased fields in one document.
    #[arg(long, env = "QUIRE_MAX_ALIASES", default_value_t = DEFAULT_MAX_ALIASES)]
    pub max_aliases: usize,
    /// Allow schema introspection with public keys too.
    #[arg(long, env = "QUIRE_PUBLIC_INTROSPECTION", default_value_t = false)]
    pub public_introspection: bool,
    /// Hourly request budget of keys created without one.
    #[arg(
        long,
        env = "QUIRE_DEFAULT_RATE_LIMIT_PER_HOUR",
        default_value_t = DEFAULT_RATE_LIMIT_PER_HOUR
    )]
    pub default_rate_limit_per_hour: u32,
    /// Memory for cached published-view responses, in MiB; 0 turns the read
    /// cache off (it is also off on PostgreSQL without Redis).
    #[arg(long, env = "QUIRE_READ_CACHE_MB", default_value_t = DEFAULT_READ_CACHE_MB)]
    pub read_cache_mb: u64,
    /// Longest a database statement may take, in seconds; longer is
    /// abandoned with 503.
    #[arg(long, env = "QUIRE_DB_TIMEOUT_SECONDS", default_value_t = DEFAULT_DB_TIMEOUT_SECONDS)]
    pub db_timeout_seconds: u64,
    /// Most connections open at once (default: from the file-descriptor
    /// limit, less room for the database, Redis and files).
    #[arg(long, env = "QUIRE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// After SIGTERM, how long in-flight requests may take before what is
    /// left is closed.
    #[arg(long, env = "QUIRE_SHUTDOWN_GRACE_SECONDS", default_value_t = DEFAULT_SHUTDOWN_GRACE_SECONDS)]
    pub shutdown_grace_seconds: u64,
    /// Without Redis, how often the rate-limit windows are saved to the
    /// database (so a `kill -9` loses at most this much counting); 0 saves
    /// them only at shutdown.
    #[arg(long, env = "QUIRE_RATE_LIMIT_SAVE_SECONDS", default_value_t = DEFAULT_RATE_LIMIT_SAVE_SECONDS)]
    pub rate_limit_save_seconds: u64,
    /// Longest accepted query text, in bytes; a longer one is refused
    /// before it is parsed.
    #[arg(long, env = "QUIRE_MAX_QUERY_BYTES", default_value_t = DEFAULT_MAX_QUERY_BYTES)]
    pub max_query_bytes: usize,
    /// Largest answer, in bytes; a larger one is refused with
    /// `RESPONSE_TOO_LARGE` (ask for fewer records or fewer fields).
    #[arg(long, env = "QUIRE_MAX_RESPONSE_BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES)]
    pub max_response_bytes: usize,
    /// Delays before each webhook retry, in seconds, comma-separated; after
    /// the last, a delivery fails for good.
    #[arg(long, env = "QUIRE_WEBHOOK_RETRY_SECONDS", value_delimiter = ',', default_values_t = DEFAULT_WEBHOOK_RETRY_SECONDS)]
    pub webhook_retry_seconds: Vec<u64>,
    /// Let webhooks reach loopback, private and link-local addresses (for
    /// development and tests).
    #[arg(long, env = "QUIRE_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// How often each instance writes the usage counts it gathered
    /// (`keyUsage`), in seconds; a `kill -9` loses at most this much.
    #[arg(long, env = "QUIRE_USAGE_FLUSH_SECONDS", default_value_t = DEFAULT_USAGE_FLUSH_SECONDS)]
    pub usage_flush_seconds: u64,
    /// Count requests per key for `keyUsage` (on by default).
    #[arg(long, env = "QUIRE_USAGE", default_value_t = true, action = clap::ArgAction::Set)]
    pub usage: bool,
    #[command(flatten)]
    pub files: FilesConfig,
}

impl Config {
    /// The defaults, as `quire serve` with no flags and no environment sees them.
    pub fn for_database(database_url: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: DatabaseArgs {
                database_url: SecretUrl(database_url.into()),
            },
            redis_url: None,
            cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
            max_depth: DEFAULT_MAX_DEPTH,
            max_complexity: DEFAULT_MAX_COMPLEXITY,
            max_aliases: DEFAULT_MAX_ALIASES,
            public_introspection: false,
            default_rate_limit_per_hour: DEFAULT_RATE_LIMIT_PER_HOUR,
            read_cache_mb: DEFAULT_READ_CACHE_MB,
            db_timeout_seconds: DEFAULT_DB_TIMEOUT_SECONDS,
            max_connections: None,
            shutdown_grace_seconds: DEFAULT_SHUTDOWN_GRACE_SECONDS,
            rate_limit_save_seconds: DEFAULT_RATE_LIMIT_SAVE_SECONDS,
            max_query_bytes: DEFAULT_MAX_QUERY_BYTES,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            webhook_retry_seconds: DEFAULT_WEBHOOK_RETRY_SECONDS.to_vec(),
            webhook_allow_private: false,
            usage_flush_seconds: DEFAULT_USAGE_FLUSH_SECONDS,
            usage: true,
            files: FilesConfig::default(),
        }
    }
}

/// Default `QUIRE_FILES_DIR`.
pub const DEFAULT_FILES_DIR: &str = "./quire-files";
/// Default `QUIRE_MAX_FILE_BYTES` (50 MiB).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 50 * 1024 * 1024;
/// Default `QUIRE_IMAGE_TRANSFORM_SECONDS`.
pub const DEFAULT_IMAGE_TRANSFORM_SECONDS: u64 = 10;
/// Default `QUIRE_MAX_IMAGE_TRANSFORMS`: image transforms at once.
pub const DEFAULT_MAX_IMAGE_TRANSFORMS: usize = 2;

/// A secret given in the environment: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Files (SPEC §7): where their bytes live, how large they may be, how
/// their URLs are made and signed.
#[derive(Args, Clone, Debug)]
pub struct FilesConfig {
    /// Directory holding uploaded files (when `QUIRE_FILES_URL` is not set).
    #[arg(long = "files-dir", env = "QUIRE_FILES_DIR", default_value = DEFAULT_FILES_DIR)]
    pub files_dir: String,
    /// `s3://BUCKET/PREFIX`: files in S3-compatible object storage, shared by
    /// every instance (credentials and endpoint from the `AWS_*` variables).
    #[arg(long = "files-url", env = "QUIRE_FILES_URL")]
    pub files_url: Option<SecretUrl>,
    /// Largest accepted file, in bytes.
    #[arg(long = "max-file-bytes", env = "QUIRE_MAX_FILE_BYTES", default_value_t = DEFAULT_MAX_FILE_BYTES)]
    pub max_file_bytes: u64,
    /// Image transforms running at once; more wait their turn.
    #[arg(long = "max-image-transforms", env = "QUIRE_MAX_IMAGE_TRANSFORMS", default_value_t = DEFAULT_MAX_IMAGE_TRANSFORMS)]
    pub max_image_transforms: usize,
    /// Longest an image transform may take, waiting for its turn included,
    /// in seconds; longer is abandoned with 503.
    #[arg(long = "image-transform-seconds", env = "QUIRE_IMAGE_TRANSFORM_SECONDS", default_value_t = DEFAULT_IMAGE_TRANSFORM_SECONDS)]
    pub image_transform_seconds: u64,
    /// The key that signs preview URLs, shared by every instance; without
    /// it one is generated once and kept in the database.
    #[arg(
        long = "signing-secret",
        env = "QUIRE_SIGNING_SECRET",
        hide_env_values = true
    )]
    pub signing_secret: Option<Secret>,
    /// The public base URL of file links (`https://cdn.example.com`);
    /// without it, the request's `Host`.
    #[arg(long = "public-url", env = "QUIRE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            files_dir: DEFAULT_FILES_DIR.to_owned(),
            files_url: None,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            max_image_transforms: DEFAULT_MAX_IMAGE_TRANSFORMS,
            image_transform_seconds: DEFAULT_IMAGE_TRANSFORM_SECONDS,
            signing_secret: None,
            public_url: None,
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
        assert_eq!(
            c.listen.to_string(),
            DEFAULT_LISTEN,
            "the listen default is written once"
        );
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("hunter3"),
            "{shown}"
        );
    }
}
