//! Moving keys between deployments: `exportApiKeys` writes each active key's
//! metadata and SHA-256 (never a plaintext), `importApiKeys` reads that file
//! back in one transaction with one of four modes (SPEC §5).
//!
//! Import rules, all checked before anything is written or inside the one
//! transaction: imported scopes ⊆ the importer's, TEST importers bring TEST
//! keys only, the importer's own name or hash is always skipped, and a hash
//! held by another project (active or not) aborts the whole import.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{api_keys, projects};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, TransactionTrait,
};
use serde_json::{json, Value};

use super::audit::{self, AuditAction};
use super::{
    announce_change, key_type_of, list_keys, mark_revoked, masked, mode_of, status_of,
    validate_name, validate_rate_limit, Actor, KeyStatus,
};
use crate::auth::key::{prefix_for, KeyMode, KeyType};
use crate::auth::scopes::ScopeSet;
use crate::db::new_id;
use crate::error::{AppError, AppResult};

/// Version of the export format.
pub const EXPORT_FORMAT_VERSION: u32 = 1;

/// How an import treats names that already exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, async_graphql::Enum)]
#[graphql(name = "ImportMode")]
pub enum ImportMode {
    /// Keys whose name exists are skipped.
    AddNewOnly,
    /// Keys whose name exists replace the existing key.
    OverwriteIfExists,
    /// Every active key the importer may revoke (but itself) is revoked first.
    ReplaceAll,
    /// Any existing name aborts the import (`CONFLICT`), importing nothing.
    ErrorIfExists,
}

impl ImportMode {
    /// The wire name, e.g. `REPLACE_ALL`.
    pub fn as_str(self) -> &'static str {
        match self {
            ImportMode::AddNewOnly => "ADD_NEW_ONLY",
            ImportMode::OverwriteIfExists => "OVERWRITE_IF_EXISTS",
            ImportMode::ReplaceAll => "REPLACE_ALL",
            ImportMode::ErrorIfExists => "ERROR_IF_EXISTS",
        }
    }

    /// Parses a mode case-insensitively, `-` and `_` alike (`replace-all`).
    pub fn parse(s: &str) -> Option<Self> {
        let wanted = s.trim().to_ascii_uppercase().replace('-', "_");
        [
            ImportMode::AddNewOnly,
            ImportMode::OverwriteIfExists,
            ImportMode::ReplaceAll,
            ImportMode::ErrorIfExists,
        ]
        .into_iter()
        .find(|m| m.as_str() == wanted)
    }
}

/// What an import did; each entry is counted once.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, async_graphql::SimpleObject)]
pub struct ImportResult {
    /// New keys.
    pub imported: i64,
    /// Entries that are skipped: the importer itself, names that exist
    /// (`ADD_NEW_ONLY`), keys that expired since the export.
    pub skipped: i64,
    /// Entries that replaced an active key of that name.
    pub overwritten: i64,
    /// Keys `REPLACE_ALL` revoked.
    pub revoked: i64,
}

/// Exports the active keys the actor can see (itself included) and records
/// a `KEYS_EXPORTED` event.
pub async fn export_keys<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AppResult<Value> {
    let rows = list_keys(db, project_id, actor, false).await?;
    let keys: Vec<Value> = rows
        .iter()
        .filter(|k| status_of(k, now) == KeyStatus::Active)
        .map(|k| {
            json!({
                "name": k.name,
                "type": key_type_of(k).as_str().to_uppercase(),
                "mode": mode_of(k).as_str().to_uppercase(),
                "scopes": ScopeSet::from_stored(&k.scopes).names(),
                "rateLimitPerHour": k.rate_limit_per_hour,
                "expiresAt": k.expires_at,
                "createdAt": k.created_at,
                "maskedKey": masked(k),
                "hash": k.key_hash,
            })
        })
        .collect();
    audit::record(
        db,
        project_id,
        AuditAction::KeysExported,
        actor,
        None,
        actor.detail(json!({ "count": keys.len() })),
        now,
    )
    .await?;
    Ok(json!({
        "version": EXPORT_FORMAT_VERSION,
        "exportedAt": now,
        "keys": keys,
    }))
}

/// One validated entry of an import file.
#[derive(Clone, Debug)]
struct Entry {
    name: String,
    key_type: KeyType,
    mode: KeyMode,
    scopes: ScopeSet,
    rate_limit_per_hour: i64,
    expires_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    mask_head: String,
    mask_tail: String,
    hash: String,
}

/// Reads the `keys` array (of an export object, or given bare).
fn parse_entries(file: &Value) -> AppResult<Vec<Entry>> {
    let list = match file {
        Value::Object(obj) => obj.get("keys").and_then(Value::as_array),
        Value::Array(list) => Some(list),
        _ => None,
    }
    .ok_or_else(|| {
        AppError::bad_field(
            "keys",
            "keys must be the JSON that exportApiKeys returns: an object with a \"keys\" array",
        )
    })?;
    let mut entries = Vec::with_capacity(list.len());
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    for (i, item) in list.iter().enumerate() {
        let entry = parse_entry(i, item)?;
        if !names.insert(entry.name.clone()) {
            return Err(AppError::bad_field(
                format!("keys[{i}].name"),
                format!("the name \"{}\" appears twice in the file", entry.name),
            ));
        }
        if !hashes.insert(entry.hash.clone()) {
            return Err(AppError::bad_field(
                format!("keys[{i}].hash"),
                "the same hash appears twice in the file",
            ));
        }
        entries.push(entry);
    }
    Ok(entries)
}

fn parse_entry(i: usize, item: &Value) -> AppResult<Entry> {
    let field = |f: &str| format!("keys[{i}].{f}");
    let bad = |f: &str, msg: String| AppError::bad_field(field(f), format!("keys[{i}]: {msg}"));
    let text = |f: &str| -> AppResult<&str> {
        item.get(f)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(f, format!("\"{f}\" must be a string")))
    };
    let time = |f: &str| -> AppResult<Option<DateTime<Utc>>> {
        match item.get(f) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.with_timezone(&Utc)))
                .map_err(|_| bad(f, format!("\"{f}\" must be an RFC 3339 time"))),
            Some(_) => Err(bad(f, format!("\"{f}\" must be an RFC 3339 time"))),
        }
    };
    let name = text("name")?.to_owned();
    validate_name(&name).map_err(|_| bad("name", "name must be 1–100 characters".into()))?;
    let key_type = KeyType::parse(&text("type")?.to_ascii_lowercase())
        .ok_or_else(|| bad("type", "type must be PUBLIC or SECRET".into()))?;
    let mode = KeyMode::parse(&text("mode")?.to_ascii_lowercase())
        .ok_or_else(|| bad("mode", "mode must be LIVE or TEST".into()))?;
    let scope_names: Vec<&str> = item
        .get("scopes")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("scopes", "\"scopes\" must be an array of strings".into()))?
        .iter()
        .map(|s| {
            s.as_str()
                .ok_or_else(|| bad("scopes", "\"scopes\" must be an array of strings".into()))
        })
        .collect::<AppResult<_>>()?;
    let scopes = ScopeSet::parse_list(&scope_names, key_type, mode)
        .map_err(|e| bad("scopes", e.to_string()))?;
    let rate_limit_per_hour = item
        .get("rateLimitPerHour")
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            bad(
                "rateLimitPerHour",
                "\"rateLimitPerHour\" must be an integer".into(),
            )
        })?;
    validate_rate_limit(rate_limit_per_hour).map_err(|_| {
        bad(
            "rateLimitPerHour",
            "rateLimitPerHour must be 1–10000000".into(),
        )
    })?;
    let hash = text("hash")?.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            "hash",
            "\"hash\" must be the hex SHA-256 of the key (64 characters)".into(),
        ));
    }
    let masked_key = text("maskedKey")?;
    let prefix = prefix_for(key_type, mode);
    let (head, tail) = masked_key
        .split_once('…')
        .filter(|(h, t)| {
            h.starts_with(prefix)
                && h.chars().count() == prefix.len() + 4
                && t.chars().count() == 4
                && h.chars()
                    .chain(t.chars())
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
        .ok_or_else(|| {
            bad(
                "maskedKey",
                format!("\"maskedKey\" must look like {prefix}abcd…wxyz"),
            )
        })?;
    Ok(Entry {
        name,
        key_type,
        mode,
        scopes,
        rate_limit_per_hour,
        expires_at: time("expiresAt")?,
        created_at: time("createdAt")?,
        mask_head: head.to_owned(),
        mask_tail: tail.to_owned(),
        hash,
    })
}

/// What happened to one entry, for the audit event.
#[derive(Default)]
struct Story {
    imported: Vec<String>,
    overwritten: Vec<String>,
    skipped: Vec<String>,
    revoked: Vec<String>,
}

/// Imports an export file into `project_id`, all or nothing. Returns the
/// counts and the ids of keys whose cached state must be dropped.
pub async fn import_keys<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    file: &Value,
    mode: ImportMode,
    now: DateTime<Utc>,
) -> AppResult<(ImportResult, Vec<String>)> {
    let entries = parse_entries(file)?;
    let me = match actor {
        Actor::Key(p) => Some(p.key.clone()),
        Actor::Admin => None,
    };
    let is_me = |e: &Entry| {
        me.as_ref().is_some_and(|k| {
            k.name == e.name
                || k.key_hash == e.hash
                || k.previous_key_hash.as_deref() == Some(&e.hash)
        })
    };
    // The rules that need no database: checked for every entry first.
    for (i, e) in entries.iter().enumerate() {
        if is_me(e) {
            continue;
        }
        if !actor.sees_mode(e.mode) {
            return Err(AppError::Forbidden(format!(
                "keys[{i}] (\"{}\"): a TEST key can import TEST keys only",
                e.name
            )));
        }
        actor.check_grant(e.scopes).map_err(|err| match err {
            AppError::Forbidden(m) => {
                AppError::Forbidden(format!("keys[{i}] (\"{}\"): {m}", e.name))
            }
            other => other,
        })?;
    }

    let txn = db.begin().await?;
    // Serialize imports of one project: a no-op write takes the project's
    // row lock on PostgreSQL and the write lock on SQLite before any read.
    projects::Entity::update_many()
        .col_expr(
            projects::Column::Name,
            Expr::col(projects::Column::Name).into(),
        )
        .filter(projects::Column::Id.eq(project_id))
        .exec(&txn)
        .await?;

    let hashes: Vec<&str> = entries.iter().map(|e| e.hash.as_str()).collect();
    let holders = api_keys::Entity::find()
        .filter(
            Condition::any()
                .add(api_keys::Column::KeyHash.is_in(hashes.clone()))
                .add(api_keys::Column::PreviousKeyHash.is_in(hashes)),
        )
        .all(&txn)
        .await?;
    if let Some(foreign) = holders.iter().find(|k| k.project_id != project_id) {
        let entry = entries
            .iter()
            .find(|e| {
                e.hash == foreign.key_hash || foreign.previous_key_hash.as_ref() == Some(&e.hash)
            })
            .map_or("?", |e| e.name.as_str());
        return Err(AppError::Conflict(format!(
            "the key \"{entry}\" is held by another project; nothing was imported"
        )));
    }
    // Same-project holders by current hash (a previous hash is never reused).
    let mut by_hash: HashMap<String, api_keys::Model> = HashMap::new();
    for k in holders {
        if let Some(prev) = &k.previous_key_hash {
            if entries.iter().any(|e| &e.hash == prev) {
                return Err(AppError::Conflict(
                    "a key in the file was rotated away in this project; nothing was imported"
                        .into(),
                ));
            }
        }
        by_hash.insert(k.key_hash.clone(), k);
    }
    let mut by_name: HashMap<String, api_keys::Model> = api_keys::Entity::find()
        .filter(api_keys::Column::ProjectId.eq(project_id))
        .filter(api_keys::Column::RevokedAt.is_null())
        .all(&txn)
        .await?
        .into_iter()
        .map(|k| (k.name.clone(), k))
        .collect();

    let mut result = ImportResult::default();
    let mut story = Story::default();
    let mut changed = Vec::new();
    // Revoked by this import: may be brought back by an entry with its hash.
    let mut revoked_now: HashSet<String> = HashSet::new();

    if mode == ImportMode::ReplaceAll {
        let mut names: Vec<String> = by_name.keys().cloned().collect();
        names.sort();
        for name in names {
            let Some(k) = by_name.get(&name) else {
                continue;
            };
            let own = me.as_ref().is_some_and(|m| m.id == k.id);
            if own || !actor.may_manage(k) {
                continue;
            }
            if mark_revoked(&txn, &k.id, now).await? {
                result.revoked += 1;
                story.revoked.push(k.name.clone());
                changed.push(k.id.clone());
                revoked_now.insert(k.id.clone());
            }
            by_name.remove(&name);
        }
    }
    if mode == ImportMode::ErrorIfExists {
        if let Some(e) = entries
            .iter()
            .find(|e| !is_me(e) && by_name.contains_key(&e.name))
        {
            return Err(AppError::Conflict(format!(
                "an active key named \"{}\" already exists; nothing was imported",
                e.name
            )));
        }
    }

    for e in &entries {
        if is_me(e) || e.expires_at.is_some_and(|t| t <= now) {
            result.skipped += 1;
            story.skipped.push(e.name.clone());
            continue;
        }
        let mut replacing = false;
        if let Some(existing) = by_name.get(&e.name).cloned() {
            if mode == ImportMode::AddNewOnly {
                result.skipped += 1;
                story.skipped.push(e.name.clone());
                continue;
            }
            // OVERWRITE_IF_EXISTS, or REPLACE_ALL meeting a key it could not revoke.
            if !actor.may_manage(&existing) {
                return Err(AppError::Forbidden(format!(
                    "the existing key \"{}\" holds scopes or a mode this key cannot manage; nothing was imported",
                    e.name
                )));
            }
            if existing.key_hash == e.hash {
                // The same key: refresh what may change, in place.
                same_key(e, &existing)?;
                refresh(&txn, &existing.id, e, now, false).await?;
                changed.push(existing.id.clone());
                result.overwritten += 1;
                story.overwritten.push(e.name.clone());
                continue;
            }
            mark_revoked(&txn, &existing.id, now).await?;
            changed.push(existing.id.clone());
            by_name.remove(&e.name);
            replacing = true;
        }
        match by_hash.get(&e.hash) {
            Some(holder) if revoked_now.contains(&holder.id) => {
                // REPLACE_ALL revoked this very key a moment ago: bring it back.
                same_key(e, holder)?;
                refresh(&txn, &holder.id, e, now, true).await?;
                result.revoked -= 1;
                story.revoked.retain(|n| *n != holder.name);
                result.overwritten += 1;
                story.overwritten.push(e.name.clone());
                continue;
            }
            Some(holder) => {
                let why = if holder.revoked_at.is_some() {
                    "was revoked in this project and cannot come back"
                } else {
                    "is already held by another key of this project"
                };
                return Err(AppError::Conflict(format!(
                    "the key \"{}\" {why}; nothing was imported",
                    e.name
                )));
            }
            None => {}
        }
        insert(&txn, project_id, e, now).await?;
        if replacing {
            result.overwritten += 1;
            story.overwritten.push(e.name.clone());
        } else {
            result.imported += 1;
            story.imported.push(e.name.clone());
        }
    }

    for id in &changed {
        announce_change(&txn, id, now).await?;
    }
    audit::record(
        &txn,
        project_id,
        AuditAction::KeysImported,
        actor,
        None,
        actor.detail(json!({
            "mode": mode.as_str(),
            "imported": result.imported,
            "overwritten": result.overwritten,
            "skipped": result.skipped,
            "revoked": result.revoked,
            "names": {
                "imported": story.imported,
                "overwritten": story.overwritten,
                "skipped": story.skipped,
                "revoked": story.revoked,
            },
        })),
        now,
    )
    .await?;
    txn.commit().await?;
    Ok((result, changed))
}

/// Type, mode and scopes never change: an entry naming an existing secret
/// must describe the same key.
fn same_key(e: &Entry, k: &api_keys::Model) -> AppResult<()> {
    if key_type_of(k) != e.key_type
        || mode_of(k) != e.mode
        || ScopeSet::from_stored(&k.scopes) != e.scopes
    {
        return Err(AppError::Conflict(format!(
            "the key \"{}\" exists here with another type, mode or scopes, which never change; nothing was imported",
            e.name
        )));
    }
    Ok(())
}

async fn refresh<C: ConnectionTrait>(
    db: &C,
    id: &str,
    e: &Entry,
    now: DateTime<Utc>,
    unrevoke: bool,
) -> AppResult<()> {
    let mut q = api_keys::Entity::update_many()
        .col_expr(api_keys::Column::Name, Expr::value(e.name.clone()))
        .col_expr(
            api_keys::Column::RateLimitPerHour,
            Expr::value(e.rate_limit_per_hour),
        )
        .col_expr(api_keys::Column::ExpiresAt, Expr::value(e.expires_at))
        .col_expr(api_keys::Column::UpdatedAt, Expr::value(now))
        .filter(api_keys::Column::Id.eq(id));
    if unrevoke {
        q = q.col_expr(
            api_keys::Column::RevokedAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    }
    q.exec(db).await?;
    Ok(())
}

async fn insert<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    e: &Entry,
    now: DateTime<Utc>,
) -> AppResult<()> {
    api_keys::ActiveModel {
        id: Set(new_id()),
        project_id: Set(project_id.to_owned()),
        name: Set(e.name.clone()),
        key_type: Set(e.key_type),
        mode: Set(e.mode),
        key_hash: Set(e.hash.clone()),
        mask_head: Set(e.mask_head.clone()),
        mask_tail: Set(e.mask_tail.clone()),
        scopes: Set(e.scopes.to_stored()),
        rate_limit_per_hour: Set(e.rate_limit_per_hour),
        previous_key_hash: Set(None),
        previous_expires_at: Set(None),
        created_at: Set(e.created_at.unwrap_or(now)),
        updated_at: Set(now),
        last_used_at: Set(None),
        expires_at: Set(e.expires_at),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_loosely() {
        assert_eq!(
            ImportMode::parse("replace-all"),
            Some(ImportMode::ReplaceAll)
        );
        assert_eq!(
            ImportMode::parse("Add_New_Only"),
            Some(ImportMode::AddNewOnly)
        );
        assert_eq!(
            ImportMode::parse("overwrite-if_exists"),
            Some(ImportMode::OverwriteIfExists)
        );
        assert_eq!(
            ImportMode::parse("ERROR_IF_EXISTS"),
            Some(ImportMode::ErrorIfExists)
        );
        assert_eq!(ImportMode::parse("merge"), None);
    }

    #[test]
    fn entries_are_validated() {
        let good = json!({
            "name": "a", "type": "SECRET", "mode": "TEST", "scopes": ["records:read"],
            "rateLimitPerHour": 10, "maskedKey": "sk_test_abcd…wxyz",
            "hash": "00".repeat(32),
        });
        assert!(parse_entry(0, &good).is_ok());
        for (field, value) in [
            ("name", json!("")),
            ("type", json!("ROOT")),
            ("scopes", json!(["drafts:read", "nope"])),
            ("rateLimitPerHour", json!(0)),
            ("hash", json!("abc")),
            ("maskedKey", json!("pk_test_abcd…wxyz")),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(parse_entry(0, &bad).is_err(), "{field}");
        }
        let mut public_draft = good.clone();
        public_draft["type"] = json!("PUBLIC");
        public_draft["maskedKey"] = json!("pk_test_abcd…wxyz");
        public_draft["scopes"] = json!(["drafts:read"]);
        assert!(parse_entry(0, &public_draft).is_err());
    }
}
