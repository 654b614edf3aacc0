//! Client commands: call a running server over HTTP with `QUIRE_URL` and
//! `QUIRE_API_KEY`.

use clap::Args;
use serde_json::{json, Value};

/// Default `--timeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 30;

/// Where the server is and which key to use.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Base URL of the server, with or without a trailing `/graphql`
    /// (`http://` is assumed when no scheme is given).
    #[arg(long, env = "QUIRE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The API key; set QUIRE_API_KEY rather than passing it as a flag
    /// (flags show up in `ps` and shell history).
    #[arg(long = "api-key", env = "QUIRE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Give up on a server that has not answered after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_TIMEOUT_SECONDS)]
    pub timeout: u64,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

impl ClientArgs {
    /// The `/graphql` endpoint of `--url`, whichever way it was written.
    pub fn endpoint(&self) -> String {
        endpoint(&self.url)
    }
}

/// `http://host:port/graphql` from `host:port`, `http://host:port/`,
/// `http://host:port/graphql` or `https://…/graphql/`.
pub fn endpoint(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let url = url.strip_suffix("/graphql").unwrap_or(url);
    if url.contains("://") {
        format!("{url}/graphql")
    } else {
        format!("http://{url}/graphql")
    }
}

/// Why a request got no answer, in words: the innermost cause (such as
/// "Connection refused") rather than reqwest's "error sending request".
pub fn network_failure(url: &str, timeout: u64, e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return format!("{url} did not answer within {timeout} s (--timeout)");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    let what = if e.is_connect() {
        "cannot connect to"
    } else if e.is_builder() {
        "invalid URL"
    } else {
        "cannot reach"
    };
    format!("{what} {url}: {cause}")
}

/// Sends one GraphQL operation; returns `data`, or the errors as a message.
pub async fn graphql(args: &ClientArgs, query: &str, variables: Value) -> Result<Value, String> {
    let Some(api_key) = args.api_key.as_deref().filter(|k| !k.trim().is_empty()) else {
        return Err("no API key: set QUIRE_API_KEY (or pass --api-key)".into());
    };
    let url = args.endpoint();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(args.timeout.max(1)))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let response = client
        .post(&url)
        .header("x-api-key", api_key.trim())
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| network_failure(&url, args.timeout, &e))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| network_failure(&url, args.timeout, &e))?;
    let body: Value = serde_json::from_slice(&bytes).map_err(|_| {
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        format!("{url} answered {status} with something that is not a GraphQL response: {start}")
    })?;
    let errors = match &body {
        // A whole batch refused is an array of error objects; one
        // operation's answer is an object.
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.get("errors").and_then(Value::as_array))
            .flatten()
            .collect::<Vec<_>>(),
        _ => body
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .collect(),
    };
    if !errors.is_empty() {
        let lines: Vec<String> = errors
            .iter()
            .map(|e| {
                let message = e.get("message").and_then(Value::as_str).unwrap_or("error");
                match e.pointer("/extensions/code").and_then(Value::as_str) {
                    Some(code) => format!("{code}: {message}"),
                    None => message.to_owned(),
                }
            })
            .collect();
        return Err(lines.join("\n"));
    }
    if !status.is_success() {
        return Err(format!("{url} answered {status}"));
    }
    Ok(body.get("data").cloned().unwrap_or(Value::Null))
}

/// `quire whoami`.
pub async fn whoami(args: &ClientArgs) -> Result<(), String> {
    let data = graphql(
        args,
        "{ viewer { key { id name type mode scopes maskedKey rateLimitPerHour } project { id name } } }",
        json!({}),
    )
    .await?;
    let viewer = &data["viewer"];
    if args.json {
        println!("{viewer}");
    } else {
        let key = &viewer["key"];
        println!(
            "{} ({}) {} {} key \"{}\" in project \"{}\"\nscopes: {}",
            key["maskedKey"].as_str().unwrap_or(""),
            key["id"].as_str().unwrap_or(""),
            key["mode"].as_str().unwrap_or(""),
            key["type"].as_str().unwrap_or(""),
            key["name"].as_str().unwrap_or(""),
            viewer["project"]["name"].as_str().unwrap_or(""),
            key["scopes"]
                .as_array()
                .map(|s| s
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
        );
    }
    Ok(())
}

const KEY_FIELDS: &str =
    "id name type mode scopes maskedKey rateLimitPerHour status createdAt lastUsedAt expiresAt revokedAt";

/// `quire api-keys …`: key management over HTTP.
#[derive(clap::Subcommand)]
pub enum ApiKeysCommand {
    /// List the keys this key can see.
    List {
        #[command(flatten)]
        client: ClientArgs,
        /// Include revoked keys.
        #[arg(long)]
        include_revoked: bool,
    },
    /// Create a key from a CreateApiKeyInput JSON object (or @FILE); prints
    /// the secret once.
    Create {
        #[command(flatten)]
        client: ClientArgs,
        /// The key to create, a CreateApiKeyInput as JSON (or @FILE holding it), e.g.
        /// '{"name":"website","type":"public","mode":"live","scopes":["records:read"]}'.
        #[arg(long, value_name = "JSON")]
        data: String,
    },
    /// Replace a key's secret; prints the new secret once.
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
        /// The key's id (as `quire api-keys list` shows it).
        id: String,
        /// Seconds the old secret keeps working (at most 7 days).
        #[arg(long, default_value_t = 0)]
        grace: i64,
    },
    /// Revoke a key at once.
    Revoke {
        #[command(flatten)]
        client: ClientArgs,
        /// The key's id (as `quire api-keys list` shows it).
        id: String,
    },
    /// Print the export file (metadata and SHA-256 of each key, no secret).
    Export {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Import an export file.
    Import {
        #[command(flatten)]
        client: ClientArgs,
        /// A file written by `quire api-keys export` (or `exportApiKeys`).
        file: std::path::PathBuf,
        /// ADD_NEW_ONLY, OVERWRITE_IF_EXISTS, REPLACE_ALL or ERROR_IF_EXISTS
        /// (any case, `-` or `_`).
        #[arg(long)]
        mode: String,
    },
}

/// Runs one `quire api-keys` command.
pub async fn api_keys(command: ApiKeysCommand) -> Result<(), String> {
    match command {
        ApiKeysCommand::List {
            client,
            include_revoked,
        } => {
            let data = graphql(
                &client,
                &format!("query($r: Boolean) {{ apiKeys(includeRevoked: $r) {{ {KEY_FIELDS} }} }}"),
                json!({ "r": include_revoked }),
            )
            .await?;
            let keys = &data["apiKeys"];
            if client.json {
                println!("{keys}");
            } else {
                for k in keys.as_array().into_iter().flatten() {
                    println!(
                        "{}\t{}\t{}\t{} {}\t{}\t{}",
                        text(&k["id"]),
                        text(&k["name"]),
                        text(&k["maskedKey"]),
                        text(&k["type"]),
                        text(&k["mode"]),
                        text(&k["status"]),
                        join(&k["scopes"]),
                    );
                }
            }
        }
        ApiKeysCommand::Create { client, data } => {
            let raw = match data.strip_prefix('@') {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?
                }
                None => data,
            };
            let mut input: Value =
                serde_json::from_str(&raw).map_err(|e| format!("--data is not JSON: {e}"))?;
            if !input.is_object() {
                return Err("--data must be a JSON object (CreateApiKeyInput)".into());
            }
            for field in ["type", "mode"] {
                if let Some(v) = input.get(field).and_then(Value::as_str) {
                    input[field] = json!(v.to_ascii_uppercase());
                }
            }
            let data = graphql(
                &client,
                &format!("mutation($i: CreateApiKeyInput!) {{ createApiKey(input: $i) {{ key apiKey {{ {KEY_FIELDS} }} }} }}"),
                json!({ "i": input }),
            )
            .await?;
            print_secret(&client, &data["createApiKey"], "created");
        }
        ApiKeysCommand::Rotate { client, id, grace } => {
            let data = graphql(
                &client,
                &format!("mutation($id: ID!, $g: Int) {{ rotateApiKey(id: $id, gracePeriodSeconds: $g) {{ key apiKey {{ {KEY_FIELDS} }} }} }}"),
                json!({ "id": id, "g": grace }),
            )
            .await?;
            print_secret(&client, &data["rotateApiKey"], "rotated");
        }
        ApiKeysCommand::Revoke { client, id } => {
            let data = graphql(
                &client,
                &format!("mutation($id: ID!) {{ revokeApiKey(id: $id) {{ {KEY_FIELDS} }} }}"),
                json!({ "id": id }),
            )
            .await?;
            let k = &data["revokeApiKey"];
            if client.json {
                println!("{k}");
            } else {
                println!(
                    "revoked {} ({}, {})",
                    text(&k["name"]),
                    text(&k["id"]),
                    text(&k["maskedKey"])
                );
            }
        }
        ApiKeysCommand::Export { client } => {
            let data = graphql(&client, "{ exportApiKeys }", json!({})).await?;
            let file = &data["exportApiKeys"];
            if client.json {
                println!("{file}");
            } else {
                println!(
                    "{}",
                    serde_json::to_string_pretty(file).unwrap_or_else(|_| file.to_string())
                );
            }
        }
        ApiKeysCommand::Import { client, file, mode } => {
            let mode = crate::keys::transfer::ImportMode::parse(&mode).ok_or_else(|| {
                format!("--mode {mode}: expected add-new-only, overwrite-if-exists, replace-all or error-if-exists")
            })?;
            let raw = std::fs::read_to_string(&file)
                .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
            let keys: Value = serde_json::from_str(&raw)
                .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
            let data = graphql(
                &client,
                "mutation($i: ImportApiKeysInput!) { importApiKeys(input: $i) { imported overwritten skipped revoked } }",
                json!({ "i": { "keys": keys, "mode": mode.as_str() } }),
            )
            .await?;
            let r = &data["importApiKeys"];
            if client.json {
                println!("{r}");
            } else {
                println!(
                    "imported {}, overwritten {}, skipped {}, revoked {}",
                    r["imported"], r["overwritten"], r["skipped"], r["revoked"]
                );
            }
        }
    }
    Ok(())
}

fn print_secret(client: &ClientArgs, created: &Value, verb: &str) {
    if client.json {
        println!("{created}");
        return;
    }
    let k = &created["apiKey"];
    println!(
        "{verb} key \"{}\" ({}).\nStore it now; it will not be shown again:\n{}",
        text(&k["name"]),
        text(&k["id"]),
        text(&created["key"])
    );
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn join(v: &Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

/// `quire records …`.
#[derive(clap::Subcommand)]
pub enum RecordsCommand {
    /// Lists every record of a model (the published view unless --preview),
    /// following cursors page by page.
    List {
        /// The model's key.
        model_key: String,
        /// The draft view (secret TEST keys holding drafts:read only).
        #[arg(long)]
        preview: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const RECORDS_PAGE: &str = "query($m: String!, $a: String, $p: Boolean) {
  records(modelKey: $m, limit: 100, after: $a, preview: $p) {
    items { id modelKey status version createdAt updatedAt publishedAt data }
    pageInfo { hasNextPage endCursor }
  }
}";

/// `quire records list MODEL_KEY [--preview] [--json]`.
pub async fn records(command: RecordsCommand) -> Result<(), String> {
    let RecordsCommand::List {
        model_key,
        preview,
        client,
    } = command;
    let mut items = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = graphql(
            &client,
            RECORDS_PAGE,
            json!({ "m": model_key, "a": after, "p": preview }),
        )
        .await?;
        let page = &data["records"];
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        if page["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    if client.json {
        println!("{}", Value::Array(items));
        return Ok(());
    }
    for item in &items {
        println!(
            "{}  {:<9}  v{:<3}  {}  {}",
            item["id"].as_str().unwrap_or(""),
            item["status"].as_str().unwrap_or(""),
            item["version"],
            item["updatedAt"].as_str().unwrap_or(""),
            item["data"],
        );
    }
    eprintln!("{} record(s) of \"{model_key}\"", items.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::endpoint;

    #[test]
    fn the_url_may_be_written_with_or_without_graphql_and_scheme() {
        for url in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/graphql",
            "http://127.0.0.1:8080/graphql/",
            "127.0.0.1:8080",
            " 127.0.0.1:8080/graphql ",
        ] {
            assert_eq!(endpoint(url), "http://127.0.0.1:8080/graphql", "{url}");
        }
        assert_eq!(
            endpoint("https://cms.example.com/api/graphql"),
            "https://cms.example.com/api/graphql"
        );
    }
}
