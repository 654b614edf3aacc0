//! `quire records schedule` and `quire records versions` (SPEC §11), over
//! HTTP like the other client commands.

use chrono::{DateTime, Utc};
use clap::{ArgGroup, Args};
use serde_json::{json, Value};

use super::client::{self, graphql, ClientArgs};

/// `quire records …`: `list` (in [`client`]), `schedule`, `versions`.
#[derive(clap::Subcommand)]
pub enum RecordsCommand {
    #[command(flatten)]
    List(client::RecordsCommand),
    /// Publishes or unpublishes a record at a set time.
    Schedule(ScheduleArgs),
    /// Lists a record's kept versions, newest first.
    Versions(VersionsArgs),
}

/// Runs a `quire records` command.
pub async fn records(command: RecordsCommand) -> Result<(), String> {
    match command {
        RecordsCommand::List(list) => client::records(list).await,
        RecordsCommand::Schedule(args) => schedule(args).await,
        RecordsCommand::Versions(args) => versions(args).await,
    }
}

/// `quire records schedule ID --publish-at RFC3339 | --unpublish-at RFC3339`.
#[derive(Args)]
#[command(group(ArgGroup::new("when").required(true).args(["publish_at", "unpublish_at"])))]
pub struct ScheduleArgs {
    /// The record's id.
    pub id: String,
    /// Publish the record at this instant (RFC 3339, e.g. 2026-12-01T09:00:00Z).
    #[arg(long, value_name = "RFC3339")]
    pub publish_at: Option<String>,
    /// Unpublish the record at this instant (RFC 3339).
    #[arg(long, value_name = "RFC3339")]
    pub unpublish_at: Option<String>,
    /// Fail the schedule if the record is not at this version when it runs.
    #[arg(long, value_name = "VERSION")]
    pub expected_version: Option<i64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// `quire records versions ID [--preview] [--json]`.
#[derive(Args)]
pub struct VersionsArgs {
    /// The record's id.
    pub id: String,
    /// Draft versions too (secret TEST keys holding drafts:read only).
    #[arg(long)]
    pub preview: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

const SCHEDULE: &str = "mutation($id: ID!, $a: ScheduleAction!, $at: DateTime!, $e: Int) {
  scheduleRecord(id: $id, action: $a, at: $at, expectedVersion: $e) {
    id recordId action at status error createdAt doneAt
  }
}";

const VERSIONS: &str = "query($id: ID!, $p: Boolean, $a: String) {
  recordVersions(id: $id, preview: $p, limit: 100, after: $a) {
    items { version published createdAt data }
    pageInfo { hasNextPage endCursor }
  }
}";

/// Schedules a publish or unpublish; prints the schedule.
pub async fn schedule(args: ScheduleArgs) -> Result<(), String> {
    let (action, at) = match (&args.publish_at, &args.unpublish_at) {
        (Some(at), None) => ("PUBLISH", at),
        (None, Some(at)) => ("UNPUBLISH", at),
        _ => return Err("give exactly one of --publish-at and --unpublish-at".into()),
    };
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(at)
        .map_err(|_| format!("\"{at}\" is not an RFC 3339 instant (such as 2026-12-01T09:00:00Z)"))?
        .with_timezone(&Utc);
    let data = graphql(
        &args.client,
        SCHEDULE,
        json!({ "id": args.id, "a": action, "at": crate::clock::stamp(at), "e": args.expected_version }),
    )
    .await?;
    let s = &data["scheduleRecord"];
    if args.client.json {
        println!("{s}");
    } else {
        println!(
            "{}  {} record {} at {}  {}",
            text(&s["id"]),
            text(&s["action"]),
            text(&s["recordId"]),
            text(&s["at"]),
            text(&s["status"]),
        );
    }
    Ok(())
}

/// Lists a record's versions, newest first, every page.
pub async fn versions(args: VersionsArgs) -> Result<(), String> {
    let mut items = Vec::new();
    let mut after = Value::Null;
    loop {
        let data = graphql(
            &args.client,
            VERSIONS,
            json!({ "id": args.id, "p": args.preview, "a": after }),
        )
        .await?;
        let page = &data["recordVersions"];
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        if page["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            break;
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
    if args.client.json {
        println!("{}", Value::Array(items));
        return Ok(());
    }
    for v in &items {
        let kind = if v["published"].as_bool() == Some(true) {
            "published"
        } else {
            "draft"
        };
        println!(
            "v{:<4}  {:<9}  {}  {}",
            v["version"],
            kind,
            text(&v["createdAt"]),
            v["data"]
        );
    }
    eprintln!("{} version(s) of record {}", items.len(), args.id);
    Ok(())
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}
