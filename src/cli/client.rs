//! Client commands: call a running server over HTTP with `QUIRE_URL` and
//! `QUIRE_API_KEY`.

use clap::Args;
use serde_json::{json, Value};

/// Where the server is and which key to use.
#[derive(Args, Clone)]
pub struct ClientArgs {
    /// Base URL of the server.
    #[arg(long, env = "QUIRE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The API key (read from the environment; avoid passing it as a flag).
    #[arg(long = "api-key", env = "QUIRE_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Sends one GraphQL operation; returns `data`, or the errors as a message.
pub async fn graphql(args: &ClientArgs, query: &str, variables: Value) -> Result<Value, String> {
    let url = format!("{}/graphql", args.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header("x-api-key", &args.api_key)
        .header("accept", "application/graphql-response+json")
        .json(&json!({ "query": query, "variables": variables }))
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .await
        .map_err(|e| format!("unreadable response ({status}): {e}"))?;
    if let Some(errors) = body
        .get("errors")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
    {
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
