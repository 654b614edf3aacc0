//! `quire files upload PATH [--publish] [--json]` and `quire files list
//! [--preview] [--json]`: files over HTTP with the key in `QUIRE_API_KEY`.
//! An upload streams the file from disk (`POST /files?filename=…`).

use clap::Subcommand;
use serde_json::{json, Value};

use super::client::{graphql, network_failure, ClientArgs};

/// Files, over HTTP.
#[derive(Subcommand)]
pub enum FilesCommand {
    /// Uploads a file (a draft, unless --publish) and prints it.
    Upload {
        /// The file to upload; its name becomes the URL's last segment.
        path: std::path::PathBuf,
        /// Publish it at once (needs files:write, as the upload does).
        #[arg(long)]
        publish: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lists every file (the published view unless --preview), newest first.
    List {
        /// The draft view (secret TEST keys holding drafts:read only).
        #[arg(long)]
        preview: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
}

const FILE_FIELDS: &str =
    "id filename contentType size sha256 width height alt status url createdAt publishedAt";

/// Runs a `quire files` command.
pub async fn run(command: FilesCommand) -> Result<(), String> {
    match command {
        FilesCommand::Upload {
            path,
            publish,
            client,
        } => upload(&path, publish, &client).await,
        FilesCommand::List { preview, client } => list(preview, &client).await,
    }
}

/// `http://host:port` of `--url`.
fn base(url: &str) -> String {
    let endpoint = super::client::endpoint(url);
    endpoint
        .strip_suffix("/graphql")
        .unwrap_or(&endpoint)
        .to_owned()
}

async fn upload(path: &std::path::Path, publish: bool, client: &ClientArgs) -> Result<(), String> {
    let Some(api_key) = client.api_key.as_deref().filter(|k| !k.trim().is_empty()) else {
        return Err("no API key: set QUIRE_API_KEY (or pass --api-key)".into());
    };
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no usable file name", path.display()))?
        .to_owned();
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let length = file
        .metadata()
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let url = format!("{}/files", base(&client.url));
    let http = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(client.timeout.max(1)))
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {e}"))?;
    let response = http
        .post(&url)
        .query(&[("filename", name.as_str())])
        .header("x-api-key", api_key.trim())
        .header("content-length", length)
        .body(body)
        .send()
        .await
        .map_err(|e| network_failure(&url, client.timeout, &e))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("{url} answered {status} with something that is not JSON: {e}"))?;
    if !status.is_success() {
        let message = answer
            .pointer("/errors/0/message")
            .and_then(Value::as_str)
            .unwrap_or("error");
        let code = answer
            .pointer("/errors/0/extensions/code")
            .and_then(Value::as_str)
            .unwrap_or("ERROR");
        return Err(format!("{code}: {message} ({status})"));
    }
    let mut file = answer["file"].clone();
    if publish {
        let id = file["id"].as_str().unwrap_or_default().to_owned();
        let data = graphql(
            client,
            &format!("mutation($id: ID!) {{ publishFile(id: $id) {{ {FILE_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await?;
        file = data["publishFile"].clone();
    }
    if client.json {
        println!("{file}");
    } else {
        print_file(&file);
    }
    Ok(())
}

async fn list(preview: bool, client: &ClientArgs) -> Result<(), String> {
    let query = format!(
        "query($a: String, $p: Boolean) {{ files(limit: 100, after: $a, preview: $p) {{
            items {{ {FILE_FIELDS} }} pageInfo {{ hasNextPage endCursor }} }} }}"
    );
    let mut items = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = graphql(client, &query, json!({ "a": after, "p": preview })).await?;
        let page = &data["files"];
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
        print_file(item);
    }
    Ok(())
}

fn print_file(f: &Value) {
    let s = |k: &str| f[k].as_str().unwrap_or("-").to_owned();
    println!(
        "{}  {:<9}  {:>10}  {:<24}  {}  {}",
        s("id"),
        s("status"),
        f["size"].as_i64().unwrap_or(0),
        s("contentType"),
        s("filename"),
        f["url"].as_str().unwrap_or("")
    );
}
