//! Usage buckets in the database: the additive upsert a flush writes, the
//! pruning of expired buckets and the `keyUsage` query.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use entity::kinds::KeyMode;
use entity::{api_keys, key_usage_daily, key_usage_hourly};
use sea_orm::sea_query::{Alias, Expr, OnConflict, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, StatementBuilder,
};

use super::tally::{Counts, Row};
use crate::auth::key::masked_key;
use crate::db::Database;
use crate::error::{AppError, AppResult};

/// Rows per `INSERT` (five values each, far below SQLite's variable limit).
const CHUNK: usize = 1_000;
/// Most ids `keyUsage(keyIds:)` takes.
pub const MAX_KEY_IDS: usize = 1_000;
/// Hourly buckets are kept this long.
const HOURLY_RETENTION_DAYS: i64 = 90;
/// Daily buckets are kept this long.
const DAILY_RETENTION_DAYS: i64 = 400;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Bucket size of `keyUsage`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
}

impl Granularity {
    fn seconds(self) -> i64 {
        match self {
            Granularity::Hour => HOUR,
            Granularity::Day => DAY,
        }
    }
}

/// Which keys' buckets a caller may read.
#[derive(Clone, Debug)]
pub enum Visible {
    /// A public key: itself only.
    Only(String),
    /// A TEST key: the project's TEST keys.
    Mode(KeyMode),
    /// A LIVE secret key: every key of the project.
    All,
}

/// One key's counts in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub start: DateTime<Utc>,
    pub key_id: String,
    pub key_name: String,
    pub masked_key: String,
    pub requests: i64,
    pub rate_limited: i64,
    pub errors: i64,
}

/// Adds a flush's rows to the hourly and the daily buckets, in one
/// transaction, each with `requests = requests + excluded.requests`.
pub async fn add(db: &Database, rows: Vec<Row>) -> AppResult<()> {
    let days = by_day(&rows);
    db.write(Box::new(move |txn| {
        Box::pin(async move {
            for chunk in rows.chunks(CHUNK) {
                let models = chunk.iter().map(|r| key_usage_hourly::ActiveModel {
                    key_id: Set(r.key_id.clone()),
                    start: Set(r.hour),
                    requests: Set(as_i64(r.counts.requests)),
                    rate_limited: Set(as_i64(r.counts.rate_limited)),
                    errors: Set(as_i64(r.counts.errors)),
                });
                key_usage_hourly::Entity::insert_many(models)
                    .on_conflict(additive(key_usage_hourly::Entity))
                    .exec_without_returning(txn)
                    .await?;
            }
            for chunk in days.chunks(CHUNK) {
                let models = chunk.iter().map(|r| key_usage_daily::ActiveModel {
                    key_id: Set(r.key_id.clone()),
                    start: Set(r.hour),
                    requests: Set(as_i64(r.counts.requests)),
                    rate_limited: Set(as_i64(r.counts.rate_limited)),
                    errors: Set(as_i64(r.counts.errors)),
                });
                key_usage_daily::Entity::insert_many(models)
                    .on_conflict(additive(key_usage_daily::Entity))
                    .exec_without_returning(txn)
                    .await?;
            }
            Ok(())
        })
    }))
    .await
}

/// `ON CONFLICT (key_id, start) DO UPDATE` adding the new counts to the
/// stored ones (both tables have the same columns).
fn additive<E: EntityTrait>(table: E) -> OnConflict {
    let mut on = OnConflict::columns([Alias::new("key_id"), Alias::new("start")]);
    for col in ["requests", "rate_limited", "errors"] {
        on.value(
            Alias::new(col),
            Expr::col((table, Alias::new(col)))
                .add(Expr::col((Alias::new("excluded"), Alias::new(col)))),
        );
    }
    on
}

/// The hourly rows summed per key and UTC day (`hour` is the day's start).
fn by_day(rows: &[Row]) -> Vec<Row> {
    let mut days: HashMap<(&str, i64), Counts> = HashMap::new();
    for r in rows {
        let c = days
            .entry((&r.key_id, r.hour - r.hour.rem_euclid(DAY)))
            .or_default();
        c.requests += r.counts.requests;
        c.rate_limited += r.counts.rate_limited;
        c.errors += r.counts.errors;
    }
    days.into_iter()
        .map(|((key_id, day), counts)| Row {
            key_id: key_id.to_owned(),
            hour: day,
            counts,
        })
        .collect()
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Deletes hourly buckets older than 90 days and daily ones older than 400;
/// idempotent, so any instance may run it at any time.
pub async fn prune<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> AppResult<u64> {
    let now = now.timestamp();
    let hourly = key_usage_hourly::Entity::delete_many()
        .filter(key_usage_hourly::Column::Start.lt(now - HOURLY_RETENTION_DAYS * DAY))
        .exec(db)
        .await?;
    let daily = key_usage_daily::Entity::delete_many()
        .filter(key_usage_daily::Column::Start.lt(now - DAILY_RETENTION_DAYS * DAY))
        .exec(db)
        .await?;
    Ok(hourly.rows_affected + daily.rows_affected)
}

/// The non-empty buckets that overlap `[from, to)` of the keys `visible`
/// lets the caller see, oldest first, then by key creation.
pub async fn buckets<C: ConnectionTrait>(
    db: &C,
    project_id: &str,
    visible: Visible,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
    key_ids: Option<Vec<String>>,
) -> AppResult<Vec<Bucket>> {
    let size = granularity.seconds();
    let first = from.timestamp() - from.timestamp().rem_euclid(size);
    let u = Alias::new("u");
    let table = match granularity {
        Granularity::Hour => Alias::new("key_usage_hourly"),
        Granularity::Day => Alias::new("key_usage_daily"),
    };
    let col = |name: &str| Expr::col((u.clone(), Alias::new(name)));
    let mut q = Query::select();
    q.from_as(table, u.clone())
        .columns([
            (u.clone(), Alias::new("key_id")),
            (u.clone(), Alias::new("start")),
            (u.clone(), Alias::new("requests")),
            (u.clone(), Alias::new("rate_limited")),
            (u.clone(), Alias::new("errors")),
        ])
        .columns([
            (api_keys::Entity, api_keys::Column::Name),
            (api_keys::Entity, api_keys::Column::MaskHead),
            (api_keys::Entity, api_keys::Column::MaskTail),
        ])
        .inner_join(
            api_keys::Entity,
            Expr::col((api_keys::Entity, api_keys::Column::Id))
                .equals((u.clone(), Alias::new("key_id"))),
        )
        .and_where(Expr::col((api_keys::Entity, api_keys::Column::ProjectId)).eq(project_id))
        .and_where(col("start").gte(first))
        .and_where(col("start").lt(to.timestamp()))
        .and_where(col("requests").gt(0))
        .order_by((u.clone(), Alias::new("start")), Order::Asc)
        .order_by((api_keys::Entity, api_keys::Column::CreatedAt), Order::Asc)
        .order_by((u.clone(), Alias::new("key_id")), Order::Asc);
    match visible {
        Visible::Only(id) => {
            q.and_where(Expr::col((api_keys::Entity, api_keys::Column::Id)).eq(id));
        }
        Visible::Mode(mode) => {
            q.and_where(Expr::col((api_keys::Entity, api_keys::Column::Mode)).eq(mode));
        }
        Visible::All => {}
    }
    if let Some(ids) = key_ids {
        q.and_where(Expr::col((api_keys::Entity, api_keys::Column::Id)).is_in(ids));
    }
    let stmt = StatementBuilder::build(&q, &db.get_database_backend());
    let rows = db.query_all(stmt).await?;
    rows.iter()
        .map(|row| {
            let start: i64 = row.try_get("", "start")?;
            let head: String = row.try_get("", "mask_head")?;
            let tail: String = row.try_get("", "mask_tail")?;
            Ok(Bucket {
                start: DateTime::from_timestamp(start, 0)
                    .ok_or_else(|| AppError::internal(format!("bad usage bucket start {start}")))?,
                key_id: row.try_get("", "key_id")?,
                key_name: row.try_get("", "name")?,
                masked_key: masked_key(&head, &tail),
                requests: row.try_get("", "requests")?,
                rate_limited: row.try_get("", "rate_limited")?,
                errors: row.try_get("", "errors")?,
            })
        })
        .collect()
}
