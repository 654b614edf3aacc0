//! The principal: what a valid API key resolves to for one request.

use std::sync::Arc;

use entity::api_keys;

use super::key::{KeyMode, KeyType};
use super::scopes::{Scope, ScopeSet};

/// The authenticated caller: project, key, type, mode and scopes.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: String,
    pub project_id: String,
    pub key_type: KeyType,
    pub mode: KeyMode,
    pub scopes: ScopeSet,
    pub rate_limit_per_hour: i64,
    /// The stored key row as loaded (for `viewer.key`).
    pub key: Arc<api_keys::Model>,
}

impl Principal {
    /// Builds the principal of a stored key.
    pub fn from_row(row: Arc<api_keys::Model>) -> Self {
        Self {
            key_id: row.id.clone(),
            project_id: row.project_id.clone(),
            key_type: row.key_type,
            mode: row.mode,
            scopes: ScopeSet::from_stored(&row.scopes),
            rate_limit_per_hour: row.rate_limit_per_hour,
            key: row,
        }
    }

    /// Whether the key holds `scope`.
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(scope)
    }

    /// Whether this is a public (browser) key.
    pub fn is_public(&self) -> bool {
        self.key_type == KeyType::Public
    }
}
