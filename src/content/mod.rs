//! Content (the service layer): models, records, drafts and publishing, the
//! published and draft views, and the queries frontends run.
//!
//! | module | holds |
//! |---|---|
//! | [`fields`] | field types, what each accepts, canonical values |
//! | [`models`] | creating, changing and deleting models |
//! | [`records`] | record writes: validation, unique values, versions, publishing |
//! | [`query`] | the `records` query: `where`, `orderBy`, keyset cursors, counts, in SQL |
//!
//! Every function takes the caller's project id and filters by it, so another
//! project's model or record looks exactly like one that does not exist.

pub mod fields;
pub mod models;
pub mod query;
pub mod records;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbBackend, TransactionTrait};

use crate::auth::key::{KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::Scope;
use crate::error::{AppError, AppResult};

pub use models::ContentModel;

/// Which version of the content a read sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Published records, with their published data: what everyone sees.
    Published,
    /// Every record, with its latest draft data (`preview: true`).
    Draft,
}

impl View {
    /// The view a read asks for, if the key may have it: the draft view only
    /// for secret TEST keys holding `drafts:read`; `FORBIDDEN` naming what is
    /// missing for every other key.
    pub fn for_request(principal: &Principal, preview: bool) -> AppResult<View> {
        if !preview {
            return Ok(View::Published);
        }
        let refuse = |why: &str| {
            Err(AppError::Forbidden(format!(
                "preview needs a secret TEST key (sk_test_) holding \"drafts:read\": {why}"
            )))
        };
        match (principal.key_type, principal.mode) {
            (KeyType::Public, _) => refuse("this is a public key"),
            (_, KeyMode::Live) => refuse("this is a LIVE key, and live keys never see drafts"),
            _ if !principal.has(Scope::DraftsRead) => {
                refuse("this key lacks the scope \"drafts:read\"")
            }
            _ => Ok(View::Draft),
        }
    }
}

/// Where a record stands in the publishing lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordStatus {
    /// Never published, or unpublished.
    Draft,
    /// Published, and the draft equals the published data.
    Published,
    /// Published, with newer draft edits.
    Changed,
}

impl RecordStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordStatus::Draft => "draft",
            RecordStatus::Published => "published",
            RecordStatus::Changed => "changed",
        }
    }

    /// Reads the stored form.
    pub fn parse(s: &str) -> RecordStatus {
        match s {
            "published" => RecordStatus::Published,
            "changed" => RecordStatus::Changed,
            _ => RecordStatus::Draft,
        }
    }
}

/// Begins a transaction that will write. On SQLite it takes the write lock
/// at once (waiting up to the busy timeout): a deferred transaction that
/// read first would fail outright with `SQLITE_BUSY` when another writer
/// committed in between, instead of waiting its turn.
pub(crate) async fn begin_write<C: TransactionTrait>(db: &C) -> AppResult<DatabaseTransaction> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE projects SET name = name WHERE 0")
            .await?;
    }
    Ok(txn)
}
