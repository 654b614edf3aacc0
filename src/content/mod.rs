//! Content (the service layer): models, records, drafts and publishing, the
//! published and draft views, and the queries frontends run.
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | [`ContentService`], the one door: picks the connection and the clock, checks the view, commits, then announces the change |
//! | [`fields`] | field types, what each accepts, canonical values |
//! | [`schema`] | a model with its fields parsed, and loading one |
//! | [`catalog`] | the models held in memory, exact across changes and instances |
//! | [`models`] | creating, changing and deleting models |
//! | [`records`] | record writes: validation, versions, publishing; one record in a view |
//! | [`unique`] | the unique side table |
//! | [`sql`] | the SQL builder and typed JSON field expressions |
//! | [`budget`] | the answer budget: record data charged before it is loaded, few large answers at once |
//! | [`versions`] | kept record versions: every publish, the latest 50 drafts; restoring one into the draft |
//! | [`search`] | the `search` read: view, `modelKeys`, hits from `crate::search`, records and highlights |
//! | [`query`] | the `records` query: `where`, `orderBy`, keyset cursors, counts, in SQL |
//!
//! Every function takes the caller's project id and filters by it, so another
//! project's model or record looks exactly like one that does not exist.

pub mod budget;
pub mod catalog;
pub mod fields;
pub mod models;
pub mod query;
pub mod records;
pub mod schema;
pub mod search;
pub mod service;
pub mod sql;
pub mod unique;
pub mod versions;

use crate::auth::key::{KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::Scope;
use crate::error::{AppError, AppResult};

pub use schema::ContentModel;
pub use service::ContentService;

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

pub use entity::records::RecordStatus;
