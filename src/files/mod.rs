//! Files (SPEC §7): uploads streamed to local disk or S3, drafts and
//! publishing, public immutable URLs, signed preview URLs, image variants.
//! A service layer beside content, below it: content calls [`rows`] to
//! check `FILE` fields and to publish the files a record names; files
//! never call content.
//!
//! | module | holds |
//! |---|---|
//! | [`service`] | [`FileService`]: the one door (upload, list, change, publish, delete, URLs, variants) |
//! | [`rows`] | the statements of each file change, with its event, in the caller's transaction |
//! | [`store`] | [`Storage`]: the object store (local directory or S3) and streamed, self-aborting uploads |
//! | [`upload`] | streaming an upload in: hash, size limit, type from the magic number, image header |
//! | [`variant`] | image transform parameters and the transform itself |
//! | [`sign`] | signing and checking preview URLs |

pub mod rows;
pub mod service;
pub mod sign;
pub mod store;
pub mod upload;
pub mod variant;

pub use service::FileService;
pub use store::Storage;

use crate::auth::key::{KeyMode, KeyType};
use crate::auth::principal::Principal;
use crate::auth::scopes::Scope;
use crate::error::{AppError, AppResult};

/// Whether the key may have the view it asks for: the draft view
/// (`preview`) only for secret TEST keys holding `drafts:read` (SPEC §2,
/// the rule `crate::content::View::for_request` applies to records; files
/// sit below content, so they check it here, and a test keeps the two
/// equal).
pub fn check_view(p: &Principal, preview: bool) -> AppResult<()> {
    if !preview {
        return Ok(());
    }
    let why = match (p.key_type, p.mode) {
        (KeyType::Public, _) => "this is a public key",
        (_, KeyMode::Live) => "this is a LIVE key, and live keys never see drafts",
        _ if !p.has(Scope::DraftsRead) => "this key lacks the scope \"drafts:read\"",
        _ => return Ok(()),
    };
    Err(AppError::Forbidden(format!(
        "preview needs a secret TEST key (sk_test_) holding \"drafts:read\": {why}"
    )))
}

/// The file ids a record's data names in the model's `FILE` fields
/// (`fields`: `(name, is_file)`), for publishing them with the record.
pub fn named_ids<'a>(
    file_fields: impl Iterator<Item = &'a str>,
    data: &serde_json::Value,
) -> Vec<String> {
    file_fields
        .filter_map(|name| data.get(name).and_then(serde_json::Value::as_str))
        .map(str::to_owned)
        .collect()
}
