//! `keyUsage` (SPEC §10); the counting and the visibility rules live in
//! `crate::usage`.

use async_graphql::{Context, Enum, Object, SimpleObject, ID};

use super::types::Stamp;
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::usage::{Bucket, Granularity};

#[derive(Default)]
pub struct UsageQuery;

/// The size of a usage bucket.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum UsageGranularity {
    /// One hour (kept 90 days).
    Hour,
    /// One UTC day (kept 400 days).
    Day,
}

/// One key's requests in one bucket.
#[derive(SimpleObject)]
pub struct UsageBucket {
    /// The bucket's first instant (UTC).
    pub start: Stamp,
    pub key_id: ID,
    pub key_name: String,
    pub masked_key: String,
    /// Every request made with the key (a batch of N counts N).
    pub requests: i64,
    /// The 429s among them.
    pub rate_limited: i64,
    /// The other answers that carried an error (a 4xx, or a 200 whose body
    /// has `errors`).
    pub errors: i64,
}

impl From<Bucket> for UsageBucket {
    fn from(b: Bucket) -> Self {
        Self {
            start: Stamp(b.start),
            key_id: ID(b.key_id),
            key_name: b.key_name,
            masked_key: b.masked_key,
            requests: b.requests,
            rate_limited: b.rate_limited,
            errors: b.errors,
        }
    }
}

#[Object]
impl UsageQuery {
    /// Requests per key and bucket in `[from, to)`, oldest first; buckets
    /// without requests are left out. A public key sees its own usage; a
    /// secret key the keys it may see (TEST keys: TEST keys only), revoked
    /// and expired ones included. At most 90 days at `HOUR`, 400 at `DAY`.
    #[graphql(guard = "RequireScope(Scope::AnalyticsRead)")]
    async fn key_usage(
        &self,
        ctx: &Context<'_>,
        from: Stamp,
        to: Stamp,
        #[graphql(default_with = "UsageGranularity::Day")] granularity: UsageGranularity,
        key_ids: Option<Vec<ID>>,
    ) -> async_graphql::Result<Vec<UsageBucket>> {
        let app = app(ctx)?;
        let p = principal(ctx)?;
        let granularity = match granularity {
            UsageGranularity::Hour => Granularity::Hour,
            UsageGranularity::Day => Granularity::Day,
        };
        let key_ids = key_ids.map(|ids| ids.into_iter().map(|id| id.0).collect());
        let buckets = app
            .usage
            .buckets(p, from.0, to.0, granularity, key_ids)
            .await?;
        Ok(buckets.into_iter().map(UsageBucket::from).collect())
    }
}
