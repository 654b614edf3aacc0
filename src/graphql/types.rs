//! GraphQL objects and enums shared by several domains.

use async_graphql::{
    Enum, InputValueError, InputValueResult, Object, Scalar, ScalarType, SimpleObject, Value, ID,
};
use chrono::{DateTime, Utc};
use entity::api_keys;

use crate::auth::key;
use crate::keys;

/// An instant, written as every timestamp quire writes: RFC 3339 in UTC
/// with milliseconds and `Z` (`2026-11-28T16:05:09.123Z`). Any RFC 3339
/// instant is accepted as input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp(pub DateTime<Utc>);

/// An instant in RFC 3339, UTC, with milliseconds and `Z` (`2026-11-28T16:05:09.123Z`);
/// any RFC 3339 instant is accepted as input.
#[Scalar(name = "DateTime")]
impl ScalarType for Stamp {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => DateTime::parse_from_rfc3339(text)
                .map(|t| Stamp(t.with_timezone(&Utc)))
                .map_err(|_| {
                    InputValueError::custom(format!(
                        "\"{text}\" is not an RFC 3339 instant (such as 2026-11-28T16:05:09.123Z)"
                    ))
                }),
            _ => Err(InputValueError::expected_type(value)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(crate::clock::stamp(self.0))
    }
}

impl From<DateTime<Utc>> for Stamp {
    fn from(t: DateTime<Utc>) -> Self {
        Stamp(t)
    }
}

/// `PUBLIC` or `SECRET`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "KeyType")]
pub enum GqlKeyType {
    Public,
    Secret,
}

/// `LIVE` or `TEST`.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "KeyMode")]
pub enum GqlKeyMode {
    Live,
    Test,
}

/// Lifecycle state of a key.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(name = "KeyStatus")]
pub enum GqlKeyStatus {
    Active,
    Revoked,
    Expired,
}

impl From<GqlKeyType> for key::KeyType {
    fn from(t: GqlKeyType) -> Self {
        match t {
            GqlKeyType::Public => key::KeyType::Public,
            GqlKeyType::Secret => key::KeyType::Secret,
        }
    }
}

impl From<GqlKeyMode> for key::KeyMode {
    fn from(m: GqlKeyMode) -> Self {
        match m {
            GqlKeyMode::Live => key::KeyMode::Live,
            GqlKeyMode::Test => key::KeyMode::Test,
        }
    }
}

/// An API key as listings show it: never the secret, only `maskedKey`.
pub struct ApiKey {
    row: api_keys::Model,
    now: DateTime<Utc>,
}

impl ApiKey {
    /// Wraps a stored key; `now` decides `status`.
    pub fn new(row: api_keys::Model, now: DateTime<Utc>) -> Self {
        Self { row, now }
    }
}

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    #[graphql(name = "type")]
    async fn key_type(&self) -> GqlKeyType {
        match self.row.key_type {
            key::KeyType::Public => GqlKeyType::Public,
            key::KeyType::Secret => GqlKeyType::Secret,
        }
    }
    async fn mode(&self) -> GqlKeyMode {
        match self.row.mode {
            key::KeyMode::Live => GqlKeyMode::Live,
            key::KeyMode::Test => GqlKeyMode::Test,
        }
    }
    async fn scopes(&self) -> Vec<String> {
        crate::auth::scopes::ScopeSet::from_stored(&self.row.scopes).names()
    }
    async fn masked_key(&self) -> String {
        keys::masked(&self.row)
    }
    async fn rate_limit_per_hour(&self) -> i64 {
        self.row.rate_limit_per_hour
    }
    async fn status(&self) -> GqlKeyStatus {
        match keys::status_of(&self.row, self.now) {
            keys::KeyStatus::Active => GqlKeyStatus::Active,
            keys::KeyStatus::Revoked => GqlKeyStatus::Revoked,
            keys::KeyStatus::Expired => GqlKeyStatus::Expired,
        }
    }
    async fn created_at(&self) -> Stamp {
        self.row.created_at.into()
    }
    async fn last_used_at(&self) -> Option<Stamp> {
        self.row.last_used_at.map(Stamp)
    }
    async fn expires_at(&self) -> Option<Stamp> {
        self.row.expires_at.map(Stamp)
    }
    async fn revoked_at(&self) -> Option<Stamp> {
        self.row.revoked_at.map(Stamp)
    }
}

/// A project: the tenant that owns keys and content.
pub struct Project(pub entity::projects::Model);

#[Object]
impl Project {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
}

/// Where a page of a list ends and whether another follows (cursors are opaque).
#[derive(SimpleObject, Clone, Debug, Default)]
pub struct PageInfo {
    /// Whether a page follows this one.
    pub has_next_page: bool,
    /// Pass as `after` to get the next page; `null` on an empty page.
    pub end_cursor: Option<String>,
}
