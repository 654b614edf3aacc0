//! Moving keys between deployments: `exportApiKeys` writes each active key's
//! metadata and SHA-256 (never a plaintext) as an [`ExportFile`];
//! `importApiKeys` reads that file back in one transaction with one of four
//! modes (SPEC §5).
//!
//! An import decides, then does. `import_keys` reads the file, takes the
//! project's lock, loads the keys the file can meet (`Existing`) and hands
//! them to `plan_import`, a pure function holding every rule: imported
//! scopes ⊆ the importer's, TEST importers bring TEST keys only, the
//! importer's own name or hash is always skipped, and a hash held by another
//! project (active or not) aborts the whole import. The `ImportPlan` it
//! returns lists the writes in order and what became of each entry; the
//! transaction applies the writes and reports the plan's counts.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use entity::{api_key_graces, api_keys};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    QueryFilter, TransactionTrait,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::audit::{self, AuditAction};
use super::{
    announce_change, list_keys, mark_revoked, masked, status_of, validate_name,
    validate_rate_limit, Actor, KeyStatus,
};
use crate::auth::key::{prefix_for, KeyMode, KeyType};
use crate::auth::scopes::ScopeSet;
use crate::db::{begin_project_write, new_id};
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

/// The file `exportApiKeys` returns and `importApiKeys` reads back (the
/// import reads only `keys`, and takes that array given bare, too).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportFile {
    /// [`EXPORT_FORMAT_VERSION`].
    pub version: u32,
    #[serde(serialize_with = "crate::clock::serialize_stamp")]
    pub exported_at: DateTime<Utc>,
    /// Every active key the exporter can see, itself included.
    pub keys: Vec<ExportEntry>,
}

/// One key of an [`ExportFile`]: its metadata and SHA-256, never a plaintext.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExportEntry {
    pub name: String,
    /// `PUBLIC` or `SECRET`.
    #[serde(rename = "type")]
    pub key_type: String,
    /// `LIVE` or `TEST`.
    pub mode: String,
    /// Wire names, in wire order.
    pub scopes: Vec<String>,
    pub rate_limit_per_hour: i64,
    #[serde(serialize_with = "crate::clock::serialize_stamp_opt")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "crate::clock::serialize_stamp")]
    pub created_at: DateTime<Utc>,
    /// e.g. `sk_live_abcd…wxyz`.
    pub masked_key: String,
    /// The lower-case hex SHA-256 of the key.
    pub hash: String,
}

impl ExportEntry {
    /// The entry of a stored key.
    pub fn of(key: &api_keys::Model) -> Self {
        Self {
            name: key.name.clone(),
            key_type: key.key_type.as_str().to_uppercase(),
            mode: key.mode.as_str().to_uppercase(),
            scopes: ScopeSet::from_stored(&key.scopes).names(),
            rate_limit_per_hour: key.rate_limit_per_hour,
            expires_at: key.expires_at,
            created_at: key.created_at,
            masked_key: masked(key),
            hash: key.key_hash.clone(),
        }
    }
}

/// Exports the active keys the actor can see (itself included) and records
/// a `KEYS_EXPORTED` event.
pub(crate) async fn export_keys<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AppResult<Value> {
    let rows = list_keys(db, project_id, actor, false).await?;
    let file = ExportFile {
        version: EXPORT_FORMAT_VERSION,
        exported_at: now,
        keys: rows
            .iter()
            .filter(|k| status_of(k, now) == KeyStatus::Active)
            .map(ExportEntry::of)
            .collect(),
    };
    let value = serde_json::to_value(&file)
        .map_err(|e| AppError::internal(format!("cannot serialize the export file: {e}")))?;
    audit::record(
        db,
        project_id,
        AuditAction::KeysExported,
        actor,
        None,
        actor.detail(json!({ "count": file.keys.len() })),
        now,
    )
    .await?;
    Ok(value)
}

/// What `importApiKeys` accepts: an [`ExportFile`] or its `keys` array
/// given bare. Entries stay raw JSON here so that [`parse_entry`] can name
/// `keys[i].field` in its errors.
#[derive(Deserialize)]
#[serde(untagged)]
enum ImportFile {
    // First, so that an array is always a bare list (serde would also read
    // a struct from an array, by position).
    Bare(Vec<Value>),
    Export { keys: Vec<Value> },
}

/// An [`ExportEntry`] as read: every field still untyped JSON, `null` and
/// missing alike `None`, so each check can name its field.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawEntry {
    name: Option<Value>,
    #[serde(rename = "type")]
    key_type: Option<Value>,
    mode: Option<Value>,
    scopes: Option<Value>,
    rate_limit_per_hour: Option<Value>,
    expires_at: Option<Value>,
    created_at: Option<Value>,
    masked_key: Option<Value>,
    hash: Option<Value>,
}

/// One validated entry of an import file.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    const NOT_AN_EXPORT: &str =
        "keys must be the JSON that exportApiKeys returns: an object with a \"keys\" array";
    let (ImportFile::Bare(list) | ImportFile::Export { keys: list }) =
        ImportFile::deserialize(file).map_err(|_| AppError::bad_field("keys", NOT_AN_EXPORT))?;
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

/// `value` as a `T`, if it is one.
fn typed<T: DeserializeOwned>(value: Option<Value>) -> Option<T> {
    value.and_then(|v| serde_json::from_value(v).ok())
}

fn parse_entry(i: usize, item: &Value) -> AppResult<Entry> {
    let bad = |f: &str, msg: String| {
        AppError::bad_field(format!("keys[{i}].{f}"), format!("keys[{i}]: {msg}"))
    };
    // Anything but an object has no fields, and fails on the first: `name`.
    let raw = match item {
        Value::Object(_) => RawEntry::deserialize(item)
            .map_err(|e| AppError::bad_field(format!("keys[{i}]"), format!("keys[{i}]: {e}")))?,
        _ => RawEntry::default(),
    };
    let text = |f: &str, v: Option<Value>| -> AppResult<String> {
        typed(v).ok_or_else(|| bad(f, format!("\"{f}\" must be a string")))
    };
    let time = |f: &str, v: Option<Value>| -> AppResult<Option<DateTime<Utc>>> {
        if v.is_none() {
            return Ok(None);
        }
        typed::<String>(v)
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| Some(t.with_timezone(&Utc)))
            .ok_or_else(|| bad(f, format!("\"{f}\" must be an RFC 3339 time")))
    };
    let name = text("name", raw.name)?;
    validate_name(&name).map_err(|_| bad("name", "name must be 1–100 characters".into()))?;
    let key_type = KeyType::parse(&text("type", raw.key_type)?)
        .ok_or_else(|| bad("type", "type must be PUBLIC or SECRET".into()))?;
    let mode = KeyMode::parse(&text("mode", raw.mode)?)
        .ok_or_else(|| bad("mode", "mode must be LIVE or TEST".into()))?;
    let scope_names: Vec<String> = typed(raw.scopes)
        .ok_or_else(|| bad("scopes", "\"scopes\" must be an array of strings".into()))?;
    let scopes = ScopeSet::parse_list(&scope_names, key_type, mode)
        .map_err(|e| bad("scopes", e.to_string()))?;
    let rate_limit_per_hour: i64 = typed(raw.rate_limit_per_hour).ok_or_else(|| {
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
    let hash = text("hash", raw.hash)?.to_ascii_lowercase();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad(
            "hash",
            "\"hash\" must be the hex SHA-256 of the key (64 characters)".into(),
        ));
    }
    let masked_key = text("maskedKey", raw.masked_key)?;
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
        expires_at: time("expiresAt", raw.expires_at)?,
        created_at: time("createdAt", raw.created_at)?,
        mask_head: head.to_owned(),
        mask_tail: tail.to_owned(),
        hash,
    })
}

/// The keys an import can meet, read inside its transaction: all the
/// planner knows of the database.
#[derive(Clone, Debug, Default)]
struct Existing {
    /// The project the file is imported into.
    project_id: String,
    /// The project's keys that are not revoked (expired ones included): the
    /// names an entry can meet.
    active: Vec<api_keys::Model>,
    /// Every key of any project, revoked or not, whose current or previous
    /// hash is the hash of an entry.
    holders: Vec<api_keys::Model>,
    /// Older secrets (within a rotation grace) whose hash is an entry's:
    /// (hash, project id of their key).
    retired: Vec<(String, String)>,
}

fn hashes_of(entries: &[Entry]) -> Vec<&str> {
    entries.iter().map(|e| e.hash.as_str()).collect()
}

impl Existing {
    async fn load<C: ConnectionTrait>(
        db: &C,
        project_id: &str,
        entries: &[Entry],
    ) -> AppResult<Self> {
        let hashes: Vec<&str> = entries.iter().map(|e| e.hash.as_str()).collect();
        let holders = api_keys::Entity::find()
            .filter(
                Condition::any()
                    .add(api_keys::Column::KeyHash.is_in(hashes.clone()))
                    .add(api_keys::Column::PreviousKeyHash.is_in(hashes)),
            )
            .all(db)
            .await?;
        let active = api_keys::Entity::find()
            .filter(api_keys::Column::ProjectId.eq(project_id))
            .filter(api_keys::Column::RevokedAt.is_null())
            .all(db)
            .await?;
        let graces = api_key_graces::Entity::find()
            .filter(api_key_graces::Column::KeyHash.is_in(hashes_of(entries)))
            .all(db)
            .await?;
        let mut retired = Vec::with_capacity(graces.len());
        for grace in graces {
            if let Some(key) = api_keys::Entity::find_by_id(grace.key_id).one(db).await? {
                retired.push((grace.key_hash, key.project_id));
            }
        }
        Ok(Self {
            project_id: project_id.to_owned(),
            active,
            holders,
            retired,
        })
    }
}

/// One write of an import. Steps run in order: a name is free for an
/// insert only once the key that held it is revoked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Step {
    /// Revokes an active key: one `REPLACE_ALL` clears away, or the key of
    /// an entry's name that the entry replaces.
    Revoke { id: String, name: String },
    /// Stores an entry as a new key.
    Insert(Entry),
    /// The entry is a key stored here already (the same hash): it takes the
    /// entry's name, budget and expiry. `unrevoke` brings back a key that
    /// this plan's `REPLACE_ALL` revoked.
    Refresh {
        id: String,
        entry: Entry,
        unrevoke: bool,
    },
}

/// What became of each name, for the audit event; each entry of the file
/// is in exactly one of `imported`, `overwritten` and `skipped`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Story {
    imported: Vec<String>,
    overwritten: Vec<String>,
    skipped: Vec<String>,
    /// Keys `REPLACE_ALL` revoked (and did not bring back).
    revoked: Vec<String>,
}

/// An import decided: the writes, in order, and what they mean.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct ImportPlan {
    steps: Vec<Step>,
    story: Story,
}

impl ImportPlan {
    /// The counts: the story's lengths, so nothing is counted twice.
    fn result(&self) -> ImportResult {
        let count = |names: &Vec<String>| i64::try_from(names.len()).unwrap_or(i64::MAX);
        ImportResult {
            imported: count(&self.story.imported),
            skipped: count(&self.story.skipped),
            overwritten: count(&self.story.overwritten),
            revoked: count(&self.story.revoked),
        }
    }

    /// Keys whose cached state the plan makes stale (revoked or refreshed),
    /// each once, in step order.
    fn changed(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.steps
            .iter()
            .filter_map(|step| match step {
                Step::Revoke { id, .. } | Step::Refresh { id, .. } => Some(id),
                Step::Insert(_) => None,
            })
            .filter(|id| seen.insert(*id))
            .cloned()
            .collect()
    }
}

/// Decides an import without touching the database: every rule of SPEC §5,
/// checked in this order, the first broken one failing the whole import.
///
/// 1. Ceilings (`FORBIDDEN`): an entry with a scope the actor lacks, or a
///    LIVE entry brought by a TEST key. Entries naming the actor are exempt.
/// 2. Hashes (`CONFLICT`): one held by another project, active or not; one
///    that a key of this project rotated away.
/// 3. `REPLACE_ALL` revokes every active key the actor may manage, except
///    itself, in name order; `ERROR_IF_EXISTS` refuses any name that exists.
/// 4. Each entry, in file order: the actor itself and entries expired at
///    `now` are skipped. An existing name is skipped (`ADD_NEW_ONLY`), or
///    must be a key the actor may manage (`FORBIDDEN`); the same secret is
///    refreshed in place, another one revokes it and takes its place. An
///    entry whose hash a key of this project holds is that key brought back
///    when this `REPLACE_ALL` revoked it, and `CONFLICT` otherwise. Type,
///    mode and scopes of a key never change (`CONFLICT`).
fn plan_import(
    entries: &[Entry],
    existing: &Existing,
    mode: ImportMode,
    actor: &Actor,
    now: DateTime<Utc>,
) -> AppResult<ImportPlan> {
    let me: Option<&api_keys::Model> = match actor {
        Actor::Key(p) => Some(p.key.as_ref()),
        Actor::Admin => None,
    };
    let is_me = |e: &Entry| {
        me.is_some_and(|k| {
            k.name == e.name
                || k.key_hash == e.hash
                || k.previous_key_hash.as_deref() == Some(e.hash.as_str())
        })
    };

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

    if let Some(foreign) = existing
        .holders
        .iter()
        .find(|k| k.project_id != existing.project_id)
    {
        let entry = entries
            .iter()
            .find(|e| {
                e.hash == foreign.key_hash
                    || foreign.previous_key_hash.as_deref() == Some(e.hash.as_str())
            })
            .map_or("?", |e| e.name.as_str());
        return Err(AppError::Conflict(format!(
            "the key \"{entry}\" is held by another project; nothing was imported"
        )));
    }
    if let Some((hash, project)) = existing.retired.first() {
        let entry = entries
            .iter()
            .find(|e| &e.hash == hash)
            .map_or("?", |e| e.name.as_str());
        return Err(AppError::Conflict(if *project == existing.project_id {
            format!("the key \"{entry}\" was rotated away in this project; nothing was imported")
        } else {
            format!("the key \"{entry}\" is held by another project; nothing was imported")
        }));
    }
    // This project's holders by current hash (a previous hash never comes back).
    let mut by_hash: HashMap<&str, &api_keys::Model> = HashMap::new();
    for k in &existing.holders {
        if let Some(prev) = &k.previous_key_hash {
            if entries.iter().any(|e| &e.hash == prev) {
                return Err(AppError::Conflict(
                    "a key in the file was rotated away in this project; nothing was imported"
                        .into(),
                ));
            }
        }
        by_hash.insert(&k.key_hash, k);
    }
    let mut by_name: HashMap<&str, &api_keys::Model> = existing
        .active
        .iter()
        .map(|k| (k.name.as_str(), k))
        .collect();

    let mut plan = ImportPlan::default();
    // Revoked by this plan's REPLACE_ALL: an entry with its hash brings it back.
    let mut revoked_now: HashSet<&str> = HashSet::new();

    if mode == ImportMode::ReplaceAll {
        let mut doomed: Vec<&api_keys::Model> = by_name
            .values()
            .copied()
            .filter(|k| me.is_none_or(|m| m.id != k.id) && actor.may_manage(k))
            .collect();
        doomed.sort_by(|a, b| a.name.cmp(&b.name));
        for k in doomed {
            plan.steps.push(Step::Revoke {
                id: k.id.clone(),
                name: k.name.clone(),
            });
            plan.story.revoked.push(k.name.clone());
            revoked_now.insert(&k.id);
            by_name.remove(k.name.as_str());
        }
    }
    if mode == ImportMode::ErrorIfExists {
        if let Some(e) = entries
            .iter()
            .find(|e| !is_me(e) && by_name.contains_key(e.name.as_str()))
        {
            return Err(AppError::Conflict(format!(
                "an active key named \"{}\" already exists; nothing was imported",
                e.name
            )));
        }
    }

    for e in entries {
        if is_me(e) || e.expires_at.is_some_and(|t| t <= now) {
            plan.story.skipped.push(e.name.clone());
            continue;
        }
        let mut replacing = false;
        if let Some(&current) = by_name.get(e.name.as_str()) {
            if mode == ImportMode::AddNewOnly {
                plan.story.skipped.push(e.name.clone());
                continue;
            }
            // OVERWRITE_IF_EXISTS, or REPLACE_ALL meeting a key it could not revoke.
            if !actor.may_manage(current) {
                return Err(AppError::Forbidden(format!(
                    "the existing key \"{}\" holds scopes or a mode this key cannot manage; nothing was imported",
                    e.name
                )));
            }
            if current.key_hash == e.hash {
                // The same key: refresh what may change, in place.
                same_key(e, current)?;
                plan.steps.push(Step::Refresh {
                    id: current.id.clone(),
                    entry: e.clone(),
                    unrevoke: false,
                });
                plan.story.overwritten.push(e.name.clone());
                continue;
            }
            plan.steps.push(Step::Revoke {
                id: current.id.clone(),
                name: current.name.clone(),
            });
            by_name.remove(e.name.as_str());
            replacing = true;
        }
        match by_hash.get(e.hash.as_str()) {
            Some(holder) if revoked_now.contains(holder.id.as_str()) => {
                // REPLACE_ALL revokes this very key above: bring it back.
                same_key(e, holder)?;
                plan.steps.push(Step::Refresh {
                    id: holder.id.clone(),
                    entry: e.clone(),
                    unrevoke: true,
                });
                plan.story.revoked.retain(|n| *n != holder.name);
                plan.story.overwritten.push(e.name.clone());
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
        plan.steps.push(Step::Insert(e.clone()));
        if replacing {
            plan.story.overwritten.push(e.name.clone());
        } else {
            plan.story.imported.push(e.name.clone());
        }
    }
    Ok(plan)
}

/// Type, mode and scopes never change: an entry naming an existing secret
/// must describe the same key.
fn same_key(e: &Entry, k: &api_keys::Model) -> AppResult<()> {
    if k.key_type != e.key_type || k.mode != e.mode || ScopeSet::from_stored(&k.scopes) != e.scopes
    {
        return Err(AppError::Conflict(format!(
            "the key \"{}\" exists here with another type, mode or scopes, which never change; nothing was imported",
            e.name
        )));
    }
    Ok(())
}

/// Imports an export file into `project_id`, all or nothing: reads it,
/// plans against the project's keys, and applies the plan in one
/// transaction. Returns the counts and the ids of keys whose cached state
/// must be dropped.
pub(crate) async fn import_keys<C: ConnectionTrait + TransactionTrait>(
    db: &C,
    project_id: &str,
    actor: &Actor,
    file: &Value,
    mode: ImportMode,
    now: DateTime<Utc>,
) -> AppResult<(ImportResult, Vec<String>)> {
    let entries = parse_entries(file)?;
    // Imports of one project serialize, from before their first read.
    let txn = begin_project_write(db, project_id).await?;
    let existing = Existing::load(&txn, project_id, &entries).await?;
    let plan = plan_import(&entries, &existing, mode, actor, now)?;

    for step in &plan.steps {
        match step {
            Step::Revoke { id, name } => {
                // Only a request that does not take the project's lock (a
                // plain revocation, on PostgreSQL) can get here first; the
                // plan no longer matches the project, so nothing is written.
                if !mark_revoked(&txn, id, now).await? {
                    return Err(AppError::Conflict(format!(
                        "the key \"{name}\" was revoked while the import ran; nothing was imported"
                    )));
                }
            }
            Step::Insert(e) => insert(&txn, project_id, e, now).await?,
            Step::Refresh {
                id,
                entry,
                unrevoke,
            } => refresh(&txn, id, entry, now, *unrevoke).await?,
        }
    }
    let result = plan.result();
    let changed = plan.changed();
    for id in &changed {
        announce_change(&txn, id, now).await?;
    }
    let story = &plan.story;
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
#[expect(clippy::unwrap_used, reason = "tests fail loudly")]
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

    // The planner, without a database: keys are rows built by hand, and
    // `existing` selects from them what `Existing::load` would.

    use std::sync::Arc;

    use chrono::Duration;

    use crate::auth::principal::Principal;

    const SK_LIVE: (KeyType, KeyMode) = (KeyType::Secret, KeyMode::Live);
    const SK_TEST: (KeyType, KeyMode) = (KeyType::Secret, KeyMode::Test);
    const PK_LIVE: (KeyType, KeyMode) = (KeyType::Public, KeyMode::Live);
    const PK_TEST: (KeyType, KeyMode) = (KeyType::Public, KeyMode::Test);
    /// What the importer `me()` holds.
    const IMPORTER: &str = "apikeys:import,apikeys:read,records:read";

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn hash(digit: char) -> String {
        digit.to_string().repeat(64)
    }

    /// A stored, active key of project `p`.
    fn row(
        id: &str,
        name: &str,
        (key_type, mode): (KeyType, KeyMode),
        scopes: &str,
        digit: char,
    ) -> api_keys::Model {
        let then = now() - Duration::days(30);
        api_keys::Model {
            id: id.into(),
            project_id: "p".into(),
            name: name.into(),
            key_type,
            mode,
            key_hash: hash(digit),
            mask_head: format!("{}abcd", prefix_for(key_type, mode)),
            mask_tail: "wxyz".into(),
            scopes: scopes.into(),
            rate_limit_per_hour: 1000,
            previous_key_hash: None,
            previous_expires_at: None,
            created_at: then,
            updated_at: then,
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
        }
    }

    /// An entry of the file.
    fn entry(name: &str, (key_type, mode): (KeyType, KeyMode), scopes: &str, digit: char) -> Entry {
        Entry {
            name: name.into(),
            key_type,
            mode,
            scopes: ScopeSet::from_stored(scopes),
            rate_limit_per_hour: 500,
            expires_at: None,
            created_at: None,
            mask_head: format!("{}abcd", prefix_for(key_type, mode)),
            mask_tail: "wxyz".into(),
            hash: hash(digit),
        }
    }

    /// The importer: an `sk_live_` key of project `p`, hash `a…`.
    fn me() -> api_keys::Model {
        row("me", "importer", SK_LIVE, IMPORTER, 'a')
    }

    fn as_actor(key: &api_keys::Model) -> Actor {
        Actor::Key(Arc::new(Principal::from_row(Arc::new(key.clone()))))
    }

    /// What `Existing::load` reads from a database holding `keys`.
    fn existing(keys: &[api_keys::Model], entries: &[Entry]) -> Existing {
        let holds = |k: &api_keys::Model| {
            entries
                .iter()
                .any(|e| k.key_hash == e.hash || k.previous_key_hash.as_ref() == Some(&e.hash))
        };
        Existing {
            project_id: "p".into(),
            active: keys
                .iter()
                .filter(|k| k.project_id == "p" && k.revoked_at.is_none())
                .cloned()
                .collect(),
            holders: keys.iter().filter(|k| holds(k)).cloned().collect(),
            retired: Vec::new(),
        }
    }

    fn plan(
        keys: &[api_keys::Model],
        entries: &[Entry],
        mode: ImportMode,
        actor: &Actor,
    ) -> AppResult<ImportPlan> {
        plan_import(entries, &existing(keys, entries), mode, actor, now())
    }

    fn counts(imported: i64, overwritten: i64, skipped: i64, revoked: i64) -> ImportResult {
        ImportResult {
            imported,
            skipped,
            overwritten,
            revoked,
        }
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| (*n).to_owned()).collect()
    }

    fn revoke(key: &api_keys::Model) -> Step {
        Step::Revoke {
            id: key.id.clone(),
            name: key.name.clone(),
        }
    }

    /// The error's code and message.
    fn refusal(result: AppResult<ImportPlan>) -> (&'static str, String) {
        match result {
            Err(AppError::Forbidden(m)) => ("FORBIDDEN", m),
            Err(AppError::Conflict(m)) => ("CONFLICT", m),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    const MODES: [ImportMode; 4] = [
        ImportMode::AddNewOnly,
        ImportMode::OverwriteIfExists,
        ImportMode::ReplaceAll,
        ImportMode::ErrorIfExists,
    ];

    #[test]
    fn add_new_only_skips_names_that_exist() {
        let keep = row("k1", "keep", SK_TEST, "records:read", '1');
        let keys = [me(), keep.clone()];
        let newer_keep = entry("keep", SK_TEST, "records:read", '2');
        let fresh = entry("fresh", PK_LIVE, "records:read", '3');
        let p = plan(
            &keys,
            &[newer_keep, fresh.clone()],
            ImportMode::AddNewOnly,
            &as_actor(&me()),
        )
        .unwrap();
        assert_eq!(p.steps, vec![Step::Insert(fresh)]);
        assert_eq!(p.story.imported, names(&["fresh"]));
        assert_eq!(p.story.skipped, names(&["keep"]));
        assert_eq!(p.result(), counts(1, 0, 1, 0));
        assert!(p.changed().is_empty());
    }

    #[test]
    fn error_if_exists_refuses_any_name_that_exists() {
        let keys = [me(), row("k1", "keep", SK_TEST, "records:read", '1')];
        let actor = as_actor(&me());
        let fresh = entry("fresh", PK_LIVE, "records:read", '3');
        let keep = entry("keep", SK_TEST, "records:read", '2');
        let (code, message) = refusal(plan(
            &keys,
            &[fresh.clone(), keep],
            ImportMode::ErrorIfExists,
            &actor,
        ));
        assert_eq!(code, "CONFLICT");
        assert!(message.contains("\"keep\" already exists"), "{message}");
        // The importer's own name is skipped, not a conflict.
        let myself = entry("importer", SK_LIVE, "records:read", '4');
        let p = plan(
            &keys,
            &[fresh.clone(), myself],
            ImportMode::ErrorIfExists,
            &actor,
        )
        .unwrap();
        assert_eq!(p.steps, vec![Step::Insert(fresh)]);
        assert_eq!(p.result(), counts(1, 0, 1, 0));
    }

    #[test]
    fn overwrite_if_exists_revokes_the_key_of_that_name_and_inserts_the_entry() {
        let keep = row("k1", "keep", SK_TEST, "records:read", '1');
        let keys = [me(), keep.clone()];
        let new_keep = entry("keep", SK_TEST, "records:read", '2');
        let newer = entry("newer", SK_TEST, "records:read", '3');
        let p = plan(
            &keys,
            &[new_keep.clone(), newer.clone()],
            ImportMode::OverwriteIfExists,
            &as_actor(&me()),
        )
        .unwrap();
        assert_eq!(
            p.steps,
            vec![revoke(&keep), Step::Insert(new_keep), Step::Insert(newer)]
        );
        assert_eq!(p.story.overwritten, names(&["keep"]));
        assert_eq!(p.story.imported, names(&["newer"]));
        assert!(
            p.story.revoked.is_empty(),
            "an overwrite is not a revocation"
        );
        assert_eq!(p.result(), counts(1, 1, 0, 0));
        assert_eq!(p.changed(), names(&["k1"]));
    }

    #[test]
    fn the_same_secret_is_refreshed_in_place_and_never_changes_kind() {
        let keep = row("k1", "keep", SK_TEST, "records:read", '1');
        let keys = [me(), keep.clone()];
        let actor = as_actor(&me());
        let same = entry("keep", SK_TEST, "records:read", '1');
        for mode in [ImportMode::OverwriteIfExists, ImportMode::ReplaceAll] {
            let p = plan(&keys, std::slice::from_ref(&same), mode, &actor).unwrap();
            let refresh = Step::Refresh {
                id: "k1".into(),
                entry: same.clone(),
                unrevoke: mode == ImportMode::ReplaceAll,
            };
            let steps = if mode == ImportMode::ReplaceAll {
                vec![revoke(&keep), refresh]
            } else {
                vec![refresh]
            };
            assert_eq!(p.steps, steps, "{mode:?}");
            assert_eq!(p.result(), counts(0, 1, 0, 0), "{mode:?}");
            assert_eq!(p.changed(), names(&["k1"]), "{mode:?}");
        }
        for other in [
            entry("keep", SK_TEST, "", '1'),
            entry("keep", SK_LIVE, "records:read", '1'),
            entry("keep", PK_TEST, "records:read", '1'),
        ] {
            for mode in [ImportMode::OverwriteIfExists, ImportMode::ReplaceAll] {
                let (code, message) =
                    refusal(plan(&keys, std::slice::from_ref(&other), mode, &actor));
                assert_eq!(code, "CONFLICT", "{mode:?}");
                assert!(
                    message.contains("another type, mode or scopes"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn replace_all_revokes_what_the_importer_may_manage_but_itself() {
        let b = row("kb", "b-web", PK_LIVE, "records:read", '1');
        let a = row("ka", "a-ops", SK_TEST, "records:read", '2');
        let strong = row("ks", "strong", SK_LIVE, "records:read,records:write", '3');
        let mut gone = row("kg", "gone", SK_TEST, "records:read", '4');
        gone.revoked_at = Some(now() - Duration::days(1));
        let keys = [me(), b.clone(), a.clone(), strong, gone];
        let alpha = entry("alpha", PK_TEST, "records:read", '5');
        let p = plan(
            &keys,
            std::slice::from_ref(&alpha),
            ImportMode::ReplaceAll,
            &as_actor(&me()),
        )
        .unwrap();
        assert_eq!(
            p.steps,
            vec![revoke(&a), revoke(&b), Step::Insert(alpha)],
            "in name order; neither the importer nor a stronger key"
        );
        assert_eq!(p.story.revoked, names(&["a-ops", "b-web"]));
        assert_eq!(p.result(), counts(1, 0, 0, 2));
        assert_eq!(p.changed(), names(&["ka", "kb"]));

        // An entry named like a key the importer may not revoke.
        let (code, message) = refusal(plan(
            &keys,
            &[entry("strong", SK_LIVE, "records:read", '6')],
            ImportMode::ReplaceAll,
            &as_actor(&me()),
        ));
        assert_eq!(code, "FORBIDDEN");
        assert!(message.contains("\"strong\" holds scopes"), "{message}");
    }

    #[test]
    fn replace_all_brings_back_a_key_whose_hash_is_in_the_file() {
        let web = row("kw", "web", PK_LIVE, "records:read", '1');
        let ops = row("ko", "ops", SK_LIVE, "records:read", '2');
        let keys = [me(), web.clone(), ops.clone()];
        // Same secret, new name: the key comes back renamed.
        let renamed = entry("site", PK_LIVE, "records:read", '1');
        let p = plan(
            &keys,
            std::slice::from_ref(&renamed),
            ImportMode::ReplaceAll,
            &as_actor(&me()),
        )
        .unwrap();
        assert_eq!(
            p.steps,
            vec![
                revoke(&ops),
                revoke(&web),
                Step::Refresh {
                    id: "kw".into(),
                    entry: renamed,
                    unrevoke: true,
                },
            ]
        );
        assert_eq!(p.story.revoked, names(&["ops"]), "web came back");
        assert_eq!(p.story.overwritten, names(&["site"]));
        assert_eq!(p.result(), counts(0, 1, 0, 1));
        assert_eq!(p.changed(), names(&["ko", "kw"]), "each key once");

        let (code, _) = refusal(plan(
            &keys,
            &[entry("web", PK_LIVE, "", '1')],
            ImportMode::ReplaceAll,
            &as_actor(&me()),
        ));
        assert_eq!(code, "CONFLICT", "it must be the same kind of key");
    }

    #[test]
    fn ceilings_refuse_scopes_and_modes_the_importer_lacks() {
        let keys = [me()];
        let live_importer = as_actor(&me());
        let fine = entry("fine", SK_TEST, "records:read", '1');
        let broad = entry("broad", SK_TEST, "records:read,records:write", '2');
        for mode in MODES {
            let (code, message) = refusal(plan(
                &keys,
                &[fine.clone(), broad.clone()],
                mode,
                &live_importer,
            ));
            assert_eq!(code, "FORBIDDEN", "{mode:?}");
            assert!(
                message.starts_with("keys[1] (\"broad\"): ") && message.contains("records:write"),
                "{message}"
            );
        }

        let test_me = row("me", "importer", SK_TEST, IMPORTER, 'a');
        let test_importer = as_actor(&test_me);
        let live = entry("live", PK_LIVE, "records:read", '3');
        let (code, message) = refusal(plan(
            std::slice::from_ref(&test_me),
            &[fine.clone(), live.clone()],
            ImportMode::AddNewOnly,
            &test_importer,
        ));
        assert_eq!(code, "FORBIDDEN");
        assert_eq!(
            message,
            "keys[1] (\"live\"): a TEST key can import TEST keys only"
        );

        // The ceilings come first: before a hash another project holds.
        let mut foreign = row("kf", "theirs", SK_TEST, "records:read", '2');
        foreign.project_id = "q".into();
        let (code, _) = refusal(plan(
            &[me(), foreign],
            &[fine.clone(), broad.clone()],
            ImportMode::AddNewOnly,
            &live_importer,
        ));
        assert_eq!(code, "FORBIDDEN");

        // An entry naming the importer is skipped, not measured.
        let my_twin = entry("importer", SK_LIVE, "records:read,records:write", '4');
        let p = plan(&keys, &[my_twin], ImportMode::AddNewOnly, &live_importer).unwrap();
        assert_eq!(p.result(), counts(0, 0, 1, 0));

        // `quire admin` has no ceiling.
        let p = plan(
            &keys,
            &[broad.clone(), live.clone()],
            ImportMode::AddNewOnly,
            &Actor::Admin,
        )
        .unwrap();
        assert_eq!(p.steps, vec![Step::Insert(broad), Step::Insert(live)]);
        assert_eq!(p.result(), counts(2, 0, 0, 0));
    }

    #[test]
    fn the_importer_is_skipped_by_name_or_hash_in_every_mode() {
        let keys = [me()];
        let same_name = entry("importer", SK_LIVE, "records:read", '1');
        let same_hash = entry("my-twin", SK_LIVE, "records:read", 'a');
        for mode in MODES {
            let p = plan(
                &keys,
                &[same_name.clone(), same_hash.clone()],
                mode,
                &as_actor(&me()),
            )
            .unwrap();
            assert!(p.steps.is_empty(), "{mode:?}: {:?}", p.steps);
            assert_eq!(p.story.skipped, names(&["importer", "my-twin"]), "{mode:?}");
            assert_eq!(p.result(), counts(0, 0, 2, 0), "{mode:?}");
        }
    }

    #[test]
    fn the_importers_previous_hash_is_refused_as_rotated_away() {
        // `is_me` matches the previous hash too, but the importer's own row
        // holds that hash as `previous_key_hash`, and a rotated-away hash
        // aborts the import first (kept as it was before the planner).
        let mut rotated = me();
        rotated.previous_key_hash = Some(hash('9'));
        let (code, message) = refusal(plan(
            &[rotated.clone()],
            &[entry("old-me", SK_LIVE, "records:read", '9')],
            ImportMode::AddNewOnly,
            &as_actor(&rotated),
        ));
        assert_eq!(code, "CONFLICT");
        assert!(message.contains("rotated away"), "{message}");
    }

    #[test]
    fn a_hash_still_within_an_older_grace_aborts_the_import() {
        let entries = [entry("old", SK_TEST, "records:read", '8')];
        for (project, words) in [("p", "rotated away"), ("other", "another project")] {
            let mut existing = existing(&[me()], &entries);
            existing.retired = vec![(hash('8'), project.to_owned())];
            let (code, message) = refusal(plan_import(
                &entries,
                &existing,
                ImportMode::AddNewOnly,
                &as_actor(&me()),
                now(),
            ));
            assert_eq!(code, "CONFLICT");
            assert!(message.contains(words), "{message}");
        }
    }

    #[test]
    fn entries_expired_at_now_are_skipped() {
        let keys = [me()];
        let mut expired = entry("expired", SK_TEST, "records:read", '1');
        expired.expires_at = Some(now());
        let mut later = entry("later", SK_TEST, "records:read", '2');
        later.expires_at = Some(now() + Duration::seconds(1));
        let p = plan(
            &keys,
            &[expired, later.clone()],
            ImportMode::AddNewOnly,
            &as_actor(&me()),
        )
        .unwrap();
        assert_eq!(p.steps, vec![Step::Insert(later)]);
        assert_eq!(p.story.skipped, names(&["expired"]));
        assert_eq!(p.result(), counts(1, 0, 1, 0));

        // ERROR_IF_EXISTS looks at names before expiry (kept as it was).
        let mut stale = entry("keep", SK_TEST, "records:read", '3');
        stale.expires_at = Some(now() - Duration::days(1));
        let (code, _) = refusal(plan(
            &[me(), row("k1", "keep", SK_TEST, "records:read", '4')],
            &[stale],
            ImportMode::ErrorIfExists,
            &as_actor(&me()),
        ));
        assert_eq!(code, "CONFLICT");
    }

    #[test]
    fn a_hash_another_project_holds_aborts_the_import() {
        let fine = entry("fine", SK_TEST, "records:read", '1');
        let stolen = entry("stolen", SK_TEST, "records:read", '7');
        let mut theirs = row("kf", "theirs", SK_TEST, "records:read", '7');
        theirs.project_id = "q".into();
        let mut revoked = theirs.clone();
        revoked.revoked_at = Some(now() - Duration::days(1));
        let mut rotated = row("kr", "theirs", SK_TEST, "records:read", '8');
        rotated.project_id = "q".into();
        rotated.previous_key_hash = Some(hash('7'));
        for holder in [theirs, revoked, rotated] {
            for mode in MODES {
                let (code, message) = refusal(plan(
                    &[me(), holder.clone()],
                    &[fine.clone(), stolen.clone()],
                    mode,
                    &as_actor(&me()),
                ));
                assert_eq!(code, "CONFLICT", "{mode:?}");
                assert_eq!(
                    message,
                    "the key \"stolen\" is held by another project; nothing was imported"
                );
            }
        }
    }

    #[test]
    fn a_hash_held_here_by_another_or_a_revoked_key_conflicts() {
        let mut dead = row("kd", "dead", SK_TEST, "records:read", '8');
        dead.revoked_at = Some(now() - Duration::days(1));
        let other = row("ko", "other", SK_TEST, "records:read", '6');
        let mut rotated = row("kr", "rotated", SK_TEST, "records:read", '5');
        rotated.previous_key_hash = Some(hash('4'));
        let keys = [me(), dead, other, rotated];
        let actor = as_actor(&me());
        for (e, why) in [
            (
                entry("zombie", SK_TEST, "records:read", '8'),
                "was revoked in this project and cannot come back",
            ),
            (
                entry("copy", SK_TEST, "records:read", '6'),
                "is already held by another key of this project",
            ),
            (
                entry("ghost", SK_TEST, "records:read", '4'),
                "was rotated away in this project",
            ),
        ] {
            for mode in [ImportMode::AddNewOnly, ImportMode::OverwriteIfExists] {
                let (code, message) = refusal(plan(&keys, std::slice::from_ref(&e), mode, &actor));
                assert_eq!(code, "CONFLICT", "{mode:?}");
                assert!(message.contains(why), "{message}");
            }
        }
    }

    #[test]
    fn each_entry_is_counted_once() {
        let web = row("kw", "web", PK_LIVE, "records:read", '1');
        let ops = row("ko", "ops", SK_TEST, "records:read", '2');
        let strong = row("ks", "strong", SK_LIVE, "records:write", '3');
        let keys = [me(), web, ops, strong];
        let mut expired = entry("expired", SK_TEST, "records:read", '4');
        expired.expires_at = Some(now() - Duration::seconds(1));
        let entries = [
            entry("importer", SK_LIVE, IMPORTER, 'a'),
            expired,
            entry("web", PK_LIVE, "records:read", '1'),
            entry("ops", SK_TEST, "records:read", '5'),
            entry("new", PK_TEST, "records:read", '6'),
        ];
        let p = plan(&keys, &entries, ImportMode::ReplaceAll, &as_actor(&me())).unwrap();
        assert_eq!(p.story.skipped, names(&["importer", "expired"]));
        assert_eq!(p.story.overwritten, names(&["web"]));
        assert_eq!(p.story.imported, names(&["ops", "new"]));
        assert_eq!(
            p.story.revoked,
            names(&["ops"]),
            "the old ops; web came back"
        );
        let r = p.result();
        assert_eq!(r, counts(2, 1, 2, 1));
        assert_eq!(r.imported + r.overwritten + r.skipped, entries.len() as i64);
        assert_eq!(p.changed(), names(&["ko", "kw"]));
    }

    /// Each entry is the JSON SPEC §5 names, instants written as every
    /// quire timestamp is (UTC, milliseconds, `Z`), and reads back.
    #[test]
    fn export_entries_serialize_with_millisecond_stamps_and_read_back() {
        let mut key = row("k1", "ops", SK_TEST, "schemas:read,records:read", '1');
        key.key_hash = "0123456789abcdef".repeat(4);
        key.expires_at = Some(now() + Duration::days(3));
        let then = key.created_at;
        let written = serde_json::to_value(ExportEntry::of(&key)).unwrap();
        assert_eq!(
            written,
            json!({
                "name": key.name,
                "type": key.key_type.as_str().to_uppercase(),
                "mode": key.mode.as_str().to_uppercase(),
                "scopes": ScopeSet::from_stored(&key.scopes).names(),
                "rateLimitPerHour": key.rate_limit_per_hour,
                "expiresAt": "2026-06-04T12:00:00.000Z",
                "createdAt": "2026-05-02T12:00:00.000Z",
                "maskedKey": masked(&key),
                "hash": key.key_hash,
            })
        );
        assert_eq!(written["type"], "SECRET");
        assert_eq!(written["scopes"], json!(["records:read", "schemas:read"]));
        key.expires_at = None;
        assert_eq!(
            serde_json::to_value(ExportEntry::of(&key)).unwrap()["expiresAt"],
            Value::Null
        );

        let file = ExportFile {
            version: EXPORT_FORMAT_VERSION,
            exported_at: now(),
            keys: vec![ExportEntry::of(&key)],
        };
        let file = serde_json::to_value(file).unwrap();
        assert_eq!(file["version"], 1);
        assert_eq!(file["exportedAt"], "2026-06-01T12:00:00.000Z");
        let read = parse_entries(&file).unwrap();
        assert_eq!(
            read,
            vec![Entry {
                name: "ops".into(),
                key_type: KeyType::Secret,
                mode: KeyMode::Test,
                scopes: ScopeSet::from_stored("records:read,schemas:read"),
                rate_limit_per_hour: 1000,
                expires_at: None,
                created_at: Some(then),
                mask_head: "sk_test_abcd".into(),
                mask_tail: "wxyz".into(),
                hash: "0123456789abcdef".repeat(4),
            }]
        );
    }

    fn field_of(err: AppError) -> (Option<String>, String) {
        match err {
            AppError::BadUserInput { field, message } => (field, message),
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_entry_and_the_field() {
        let good = |name: &str, digit: char| {
            json!({
                "name": name, "type": "SECRET", "mode": "TEST", "scopes": ["records:read"],
                "rateLimitPerHour": 10, "maskedKey": "sk_test_abcd…wxyz",
                "hash": digit.to_string().repeat(64),
                "expiresAt": null, "createdAt": "2026-01-01T00:00:00Z",
            })
        };
        for (field, value) in [
            ("name", json!(7)),
            ("name", json!(" ")),
            ("type", json!(null)),
            ("type", json!("ROOT")),
            ("mode", json!("PROD")),
            ("scopes", json!("records:read")),
            ("scopes", json!(["records:read", 3])),
            ("scopes", json!(["nope"])),
            ("rateLimitPerHour", json!("10")),
            ("rateLimitPerHour", json!(10.0)),
            ("rateLimitPerHour", json!(10_000_001)),
            ("hash", json!("z".repeat(64))),
            ("maskedKey", json!("sk_test_abcd...wxyz")),
            ("expiresAt", json!("2026-01-01 00:00:00")),
            ("createdAt", json!(1_767_225_600)),
        ] {
            let mut bad = good("c", '3');
            bad[field] = value.clone();
            let file = json!({ "keys": [good("a", '1'), good("b", '2'), bad] });
            let (named, message) = field_of(parse_entries(&file).unwrap_err());
            assert_eq!(
                named.as_deref(),
                Some(&*format!("keys[2].{field}")),
                "{value}"
            );
            assert!(message.starts_with("keys[2]: "), "{message}");
        }
        // A missing field, or an entry that is no object, fails on its name.
        let mut nameless = good("c", '3');
        nameless.as_object_mut().unwrap().remove("name");
        for item in [nameless, json!("c"), json!(["c", "SECRET"])] {
            let (named, _) = field_of(parse_entries(&json!([good("a", '1'), item])).unwrap_err());
            assert_eq!(named.as_deref(), Some("keys[1].name"));
        }
        // Upper-case hex is read lower-case; twins are refused.
        let mut upper = good("c", 'A');
        upper["maskedKey"] = json!("sk_test_ABCD…WXYZ");
        assert_eq!(parse_entries(&json!([upper])).unwrap()[0].hash, hash('a'));
        let (named, _) =
            field_of(parse_entries(&json!([good("a", '1'), good("a", '2')])).unwrap_err());
        assert_eq!(named.as_deref(), Some("keys[1].name"));
        let (named, _) =
            field_of(parse_entries(&json!([good("a", '1'), good("b", '1')])).unwrap_err());
        assert_eq!(named.as_deref(), Some("keys[1].hash"));
    }

    #[test]
    fn the_file_is_an_export_or_its_bare_array() {
        let one = json!({
            "name": "a", "type": "PUBLIC", "mode": "LIVE", "scopes": [],
            "rateLimitPerHour": 1, "maskedKey": "pk_live_abcd…wxyz", "hash": hash('1'),
        });
        assert_eq!(parse_entries(&json!([one])).unwrap().len(), 1);
        assert_eq!(
            parse_entries(&json!({ "version": "any", "keys": [one] }))
                .unwrap()
                .len(),
            1
        );
        assert!(parse_entries(&json!({ "keys": [] })).unwrap().is_empty());
        for bad in [
            json!({ "nope": [] }),
            json!({ "keys": null }),
            json!({ "keys": {} }),
            json!("keys"),
            json!(null),
        ] {
            let (named, _) = field_of(parse_entries(&bad).unwrap_err());
            assert_eq!(named.as_deref(), Some("keys"), "{bad}");
        }
        // An array is a list of entries, never an export read by position.
        let (named, _) = field_of(parse_entries(&json!([[]])).unwrap_err());
        assert_eq!(named.as_deref(), Some("keys[0].name"));
    }
}
