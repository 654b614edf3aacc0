//! `quire admin`: operator commands straight on the database, for the first
//! keys and for killing a leaked key in an emergency. Audit events written
//! here carry `"source": "admin"` and no actor.

use clap::{Args, Subcommand};
use entity::{api_keys, projects};
use sea_orm::{EntityTrait, QueryOrder};
use serde_json::{json, Value};

use std::sync::Arc;

use super::msg;
use crate::auth::cache::KeyCache;
use crate::auth::key::{KeyMode, KeyType};
use crate::auth::scopes::ScopeSet;
use crate::changes::Changes;
use crate::clock::{stamp, SystemClock};
use crate::db::{self, new_id, Database};
use crate::error::AppError;
use crate::keys::transfer::ImportMode;
use crate::keys::{self, Actor, KeyRequest, KeyService};

fn cause(e: &AppError) -> String {
    e.cause()
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Manage projects.
    Projects {
        #[command(subcommand)]
        command: ProjectsCommand,
    },
    /// Manage API keys of any project.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Maintain the search index.
    Search {
        #[command(subcommand)]
        command: SearchCommand,
    },
}

#[derive(Subcommand)]
pub enum SearchCommand {
    /// Rebuild the search index from the records, one transaction per
    /// project (every project, or the one named).
    Reindex {
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum ProjectsCommand {
    /// Create a project.
    Create {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it once.
    Create(CreateKeyArgs),
    /// List a project's keys (masked).
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once (every running instance within 2 s).
    Revoke {
        /// The key's id (as `quire admin keys list` shows it).
        id: String,
    },
    /// Print every active key of a project (metadata and SHA-256, never a
    /// secret), whatever its scopes and mode, to move them to another
    /// deployment with `quire admin keys import`.
    Export {
        #[arg(long)]
        project: String,
    },
    /// Import an export file into a project, all or nothing (no scope
    /// ceiling: the operator may move any key).
    Import {
        /// A file written by `quire admin keys export` or `exportApiKeys`.
        file: std::path::PathBuf,
        #[arg(long)]
        project: String,
        /// ADD_NEW_ONLY, OVERWRITE_IF_EXISTS, REPLACE_ALL or ERROR_IF_EXISTS
        /// (any case, `-` or `_`).
        #[arg(long)]
        mode: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct CreateKeyArgs {
    #[arg(long)]
    project: String,
    #[arg(long)]
    name: String,
    /// public or secret
    #[arg(long = "type")]
    key_type: String,
    /// live or test
    #[arg(long)]
    mode: String,
    /// Comma-separated scopes, or * for every scope the key may hold.
    #[arg(long)]
    scopes: String,
    /// Hourly request budget.
    #[arg(
        long = "rate-limit",
        env = "QUIRE_DEFAULT_RATE_LIMIT_PER_HOUR",
        default_value_t = crate::config::DEFAULT_RATE_LIMIT_PER_HOUR.into()
    )]
    rate_limit: i64,
    #[arg(long)]
    json: bool,
}

/// Runs one admin command.
pub async fn run(database_url: &str, command: AdminCommand) -> Result<(), String> {
    let db = Database::connect(database_url).await.map_err(msg)?;
    let now = chrono::Utc::now();
    db.migrate(now).await.map_err(msg)?;
    // The same door the server uses; other instances learn of changes
    // through the key change feed.
    let service = KeyService::new(
        db.clone(),
        Arc::new(SystemClock),
        Arc::new(KeyCache::new()),
        None,
        Arc::new(Changes::new()),
        crate::config::DEFAULT_RATE_LIMIT_PER_HOUR,
    )
    .map_err(msg)?;
    match command {
        AdminCommand::Projects { command } => match command {
            ProjectsCommand::Create { name, json } => {
                let name = name.trim().to_owned();
                if name.is_empty() || name.chars().count() > 100 {
                    return Err("a project name must be 1–100 characters".into());
                }
                if db::project_by_name(&db.conn, &name)
                    .await
                    .map_err(|e| cause(&e))?
                    .is_some()
                {
                    return Err(format!("a project named \"{name}\" already exists"));
                }
                let model = projects::ActiveModel {
                    id: sea_orm::ActiveValue::Set(new_id()),
                    name: sea_orm::ActiveValue::Set(name),
                    created_at: sea_orm::ActiveValue::Set(now),
                };
                let project = projects::Entity::insert(model)
                    .exec_with_returning(&db.conn)
                    .await
                    .map_err(msg)?;
                print_one(json, project_json(&project), || {
                    format!("created project {} ({})", project.name, project.id)
                });
            }
            ProjectsCommand::List { json } => {
                let all = projects::Entity::find()
                    .order_by_asc(projects::Column::CreatedAt)
                    .all(&db.conn)
                    .await
                    .map_err(msg)?;
                if json {
                    println!("{}", Value::Array(all.iter().map(project_json).collect()));
                } else {
                    for p in all {
                        println!("{}\t{}", p.id, p.name);
                    }
                }
            }
        },
        AdminCommand::Keys { command } => match command {
            KeysCommand::Create(args) => create_key(&service, args, now).await?,
            KeysCommand::List { project, json } => {
                let project = find_project(&service, &project).await?;
                let all = service
                    .list(&Actor::Admin, &project.id, true)
                    .await
                    .map_err(|e| cause(&e))?;
                if json {
                    println!(
                        "{}",
                        Value::Array(all.iter().map(|k| key_json(k, now)).collect())
                    );
                } else {
                    for k in all {
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{:?}",
                            k.id,
                            k.name,
                            keys::masked(&k),
                            k.key_type.as_str(),
                            k.mode.as_str(),
                            keys::status_of(&k, now)
                        );
                    }
                }
            }
            KeysCommand::Revoke { id } => {
                let key = service
                    .revoke(&Actor::Admin, None, &id)
                    .await
                    .map_err(|e| cause(&e))?;
                println!("revoked {} ({})", key.id, keys::masked(&key));
            }
            KeysCommand::Export { project } => {
                let project = find_project(&service, &project).await?;
                let file = service
                    .export(&Actor::Admin, &project.id)
                    .await
                    .map_err(|e| cause(&e))?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&file).unwrap_or_else(|_| file.to_string())
                );
            }
            KeysCommand::Import {
                file,
                project,
                mode,
                json,
            } => {
                let mode = ImportMode::parse(&mode).ok_or_else(|| {
                    format!("--mode {mode}: expected add-new-only, overwrite-if-exists, replace-all or error-if-exists")
                })?;
                let project = find_project(&service, &project).await?;
                let raw = std::fs::read_to_string(&file)
                    .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
                let keys: Value = serde_json::from_str(&raw)
                    .map_err(|e| format!("{} is not JSON: {e}", file.display()))?;
                let r = service
                    .import(&Actor::Admin, &project.id, &keys, mode)
                    .await
                    .map_err(|e| cause(&e))?;
                print_one(
                    json,
                    json!({ "imported": r.imported, "overwritten": r.overwritten,
                            "skipped": r.skipped, "revoked": r.revoked }),
                    || {
                        format!(
                            "imported {}, overwritten {}, skipped {}, revoked {} (project {})",
                            r.imported, r.overwritten, r.skipped, r.revoked, project.name
                        )
                    },
                );
            }
        },
        AdminCommand::Search {
            command: SearchCommand::Reindex { project, json },
        } => search_reindex(&db, project, json).await?,
    }
    Ok(())
}

/// `quire admin search reindex`.
async fn search_reindex(db: &Database, project: Option<String>, json: bool) -> Result<(), String> {
    let projects = match project {
        Some(name) => vec![db::project_by_name(&db.conn, &name)
            .await
            .map_err(|e| cause(&e))?
            .ok_or_else(|| format!("no project named \"{name}\""))?],
        None => projects::Entity::find()
            .order_by_asc(projects::Column::CreatedAt)
            .all(&db.conn)
            .await
            .map_err(msg)?,
    };
    let mut done = Vec::new();
    for project in projects {
        let txn = db::begin_write(&db.writer).await.map_err(|e| cause(&e))?;
        let count = crate::search::reindex::reindex_project(&txn, &project.id)
            .await
            .map_err(|e| cause(&e))?;
        txn.commit().await.map_err(msg)?;
        if !json {
            println!("reindexed {count} records of project {}", project.name);
        }
        done.push(json!({ "project": project.name, "records": count }));
    }
    if json {
        println!("{}", Value::Array(done));
    }
    Ok(())
}

async fn find_project(service: &KeyService, name: &str) -> Result<projects::Model, String> {
    service
        .project_by_name(name)
        .await
        .map_err(|e| cause(&e))?
        .ok_or_else(|| format!("no project named \"{name}\""))
}

async fn create_key(
    service: &KeyService,
    args: CreateKeyArgs,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), String> {
    let project = find_project(service, &args.project).await?;
    let key_type = KeyType::parse(&args.key_type).ok_or("--type must be public or secret")?;
    let mode = KeyMode::parse(&args.mode).ok_or("--mode must be live or test")?;
    let scopes = args
        .scopes
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let request = KeyRequest {
        name: args.name,
        key_type,
        mode,
        scopes,
        rate_limit_per_hour: Some(args.rate_limit),
        expires_at: None,
    };
    let (secret, row) = service
        .create_requested(&Actor::Admin, &project.id, request)
        .await
        .map_err(|e| cause(&e))?;
    if args.json {
        println!(
            "{}",
            json!({ "key": secret.expose(), "apiKey": key_json(&row, now) })
        );
    } else {
        println!(
            "created key {} ({}) in project {}.\nStore it now; it will not be shown again:\n{}",
            row.name,
            row.id,
            project.name,
            secret.expose()
        );
    }
    Ok(())
}

fn print_one(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json {
        println!("{value}");
    } else {
        println!("{}", text());
    }
}

fn project_json(p: &projects::Model) -> Value {
    json!({ "id": p.id, "name": p.name, "createdAt": stamp(p.created_at) })
}

/// A key as the GraphQL `ApiKey` type shows it.
pub fn key_json(k: &api_keys::Model, now: chrono::DateTime<chrono::Utc>) -> Value {
    json!({
        "id": k.id,
        "name": k.name,
        "type": k.key_type.as_str().to_uppercase(),
        "mode": k.mode.as_str().to_uppercase(),
        "scopes": ScopeSet::from_stored(&k.scopes).names(),
        "maskedKey": keys::masked(k),
        "rateLimitPerHour": k.rate_limit_per_hour,
        "status": format!("{:?}", keys::status_of(k, now)).to_uppercase(),
        "createdAt": stamp(k.created_at),
        "lastUsedAt": k.last_used_at.map(stamp),
        "expiresAt": k.expires_at.map(stamp),
        "revokedAt": k.revoked_at.map(stamp),
    })
}
