//! Enumerations stored as text columns. Each maps itself to and from its
//! stored name (sea-orm `DeriveActiveEnum`): an unreadable value is an error
//! when the row is loaded, never a silent default.

use sea_orm::entity::prelude::*;

/// Who may see a key: browser code (`Public`) or back-office code (`Secret`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum KeyType {
    #[sea_orm(string_value = "public")]
    Public,
    #[sea_orm(string_value = "secret")]
    Secret,
}

/// `Live` keys see published content only; `Test` keys may preview drafts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum KeyMode {
    #[sea_orm(string_value = "live")]
    Live,
    #[sea_orm(string_value = "test")]
    Test,
}

/// Where a record stands in the publishing lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum RecordStatus {
    /// Never published, or unpublished.
    #[sea_orm(string_value = "draft")]
    Draft,
    /// Published, and the draft equals the published data.
    #[sea_orm(string_value = "published")]
    Published,
    /// Published, with newer draft edits.
    #[sea_orm(string_value = "changed")]
    Changed,
}

impl KeyType {
    /// The stored name, also used on the command line (`public`, `secret`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Public => "public",
            KeyType::Secret => "secret",
        }
    }

    /// Parses `public`/`secret` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "public" => Some(KeyType::Public),
            "secret" => Some(KeyType::Secret),
            _ => None,
        }
    }
}

impl KeyMode {
    /// The stored name, also used on the command line (`live`, `test`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyMode::Live => "live",
            KeyMode::Test => "test",
        }
    }

    /// Parses `live`/`test` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "live" => Some(KeyMode::Live),
            "test" => Some(KeyMode::Test),
            _ => None,
        }
    }
}
