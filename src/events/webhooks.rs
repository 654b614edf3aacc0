//! [`WebhookService`]: the one door to webhooks and their deliveries.
//! Every method takes the principal and works in its project only; another
//! project's webhook looks exactly like one that does not exist.

use std::sync::Arc;

use chrono::Duration;
use entity::webhook_deliveries::{self, DeliveryStatus};
use entity::{events, webhooks};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde_json::{json, Value};

use super::{expand_types, feed, sign, ssrf, EventType};
use crate::auth::key::KeyMode;
use crate::auth::principal::Principal;
use crate::clock::Clock;
use crate::db::{begin_write, new_id, Database};
use crate::error::{AppError, AppResult};

/// Most webhooks in a project.
pub const MAX_WEBHOOKS: u64 = 50;
/// Longest webhook URL.
pub const MAX_URL_CHARS: usize = 2048;
/// Most model keys in a webhook's filter.
pub const MAX_MODEL_KEYS: usize = 50;
/// How long the secret before a rotation keeps signing.
pub const ROTATION_OVERLAP_HOURS: i64 = 24;
/// Default and largest page of `webhookDeliveries`.
pub const DEFAULT_DELIVERY_LIMIT: i64 = 50;

/// What `createWebhook` and `updateWebhook` take.
#[derive(Clone, Debug)]
pub struct WebhookInput {
    pub url: String,
    pub events: Vec<String>,
    pub model_keys: Option<Vec<String>>,
    pub include_drafts: bool,
    pub enabled: bool,
}

/// Which events a webhook gets: its types, models and view.
#[derive(Clone, Debug)]
pub struct Filter {
    pub types: Vec<EventType>,
    pub model_keys: Option<Vec<String>>,
    pub include_drafts: bool,
}

impl Filter {
    /// The filter stored in a webhook row; an unreadable one matches nothing.
    pub fn of(hook: &webhooks::Model) -> Self {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Filter {
            types: expand_types(&strings(&hook.events)).unwrap_or_default(),
            model_keys: hook.model_keys.as_ref().map(strings),
            include_drafts: hook.include_drafts,
        }
    }

    /// Whether the webhook gets this event.
    pub fn matches(&self, e: &events::Model) -> bool {
        (e.live || self.include_drafts)
            && self.types.iter().any(|t| t.as_str() == e.event_type)
            && match &self.model_keys {
                None => true,
                Some(keys) => e.model_key.as_ref().is_some_and(|k| keys.contains(k)),
            }
    }
}

/// Webhook management for one instance.
pub struct WebhookService {
    db: Database,
    clock: Arc<dyn Clock>,
    allow_private: bool,
}

fn not_found(id: &str) -> AppError {
    AppError::NotFound(format!("no webhook with id \"{id}\""))
}

impl WebhookService {
    /// The service over `db`; `allow_private` is `QUIRE_WEBHOOK_ALLOW_PRIVATE`.
    pub fn new(db: Database, clock: Arc<dyn Clock>, allow_private: bool) -> Self {
        Self {
            db,
            clock,
            allow_private,
        }
    }

    async fn check(&self, p: &Principal, input: &WebhookInput) -> AppResult<()> {
        if input.url.chars().count() > MAX_URL_CHARS {
            return Err(AppError::bad_field(
                "url",
                format!("url must be at most {MAX_URL_CHARS} characters"),
            ));
        }
        ssrf::check_url(&input.url, self.allow_private)
            .await
            .map_err(|m| AppError::bad_field("url", m))?;
        if input.events.is_empty() {
            return Err(AppError::bad_field(
                "events",
                "events must name at least one event type (or a wildcard such as record.*)",
            ));
        }
        expand_types(&input.events).map_err(|m| AppError::bad_field("events", m))?;
        if let Some(keys) = &input.model_keys {
            if keys.len() > MAX_MODEL_KEYS {
                return Err(AppError::bad_field(
                    "modelKeys",
                    format!("at most {MAX_MODEL_KEYS} model keys"),
                ));
            }
            if keys.iter().any(|k| k.is_empty() || k.chars().count() > 64) {
                return Err(AppError::bad_field(
                    "modelKeys",
                    "model keys are 1–64 characters",
                ));
            }
        }
        if input.include_drafts && p.mode == KeyMode::Live {
            return Err(AppError::bad_field(
                "includeDrafts",
                "includeDrafts can be set by TEST keys only: live keys never see drafts",
            ));
        }
        Ok(())
    }

    /// The project's webhooks, oldest first.
    pub async fn list(&self, p: &Principal) -> AppResult<Vec<webhooks::Model>> {
        Ok(webhooks::Entity::find()
            .filter(webhooks::Column::ProjectId.eq(&p.project_id))
            .order_by_asc(webhooks::Column::CreatedAt)
            .order_by_asc(webhooks::Column::Id)
            .all(&self.db.conn)
            .await?)
    }

    async fn find(&self, p: &Principal, id: &str) -> AppResult<webhooks::Model> {
        webhooks::Entity::find_by_id(id.to_owned())
            .filter(webhooks::Column::ProjectId.eq(&p.project_id))
            .one(&self.db.conn)
            .await?
            .ok_or_else(|| not_found(id))
    }

    /// Creates a webhook; it gets the events committed from now on. Returns
    /// it with its secret (shown this once).
    pub async fn create(
        &self,
        p: &Principal,
        input: WebhookInput,
    ) -> AppResult<(webhooks::Model, String)> {
        self.check(p, &input).await?;
        let now = self.clock.now();
        let txn = begin_write(&self.db.writer).await?;
        let count = webhooks::Entity::find()
            .filter(webhooks::Column::ProjectId.eq(&p.project_id))
            .count(&txn)
            .await?;
        if count >= MAX_WEBHOOKS {
            return Err(AppError::bad_input(format!(
                "a project has at most {MAX_WEBHOOKS} webhooks"
            )));
        }
        let cursor = feed::latest_id(&txn, &p.project_id).await?;
        let secret = sign::new_secret();
        let row = webhooks::ActiveModel {
            id: Set(new_id()),
            project_id: Set(p.project_id.clone()),
            url: Set(input.url),
            events: Set(json!(input.events)),
            model_keys: Set(input.model_keys.map(|k| json!(k))),
            include_drafts: Set(input.include_drafts),
            enabled: Set(input.enabled),
            secret: Set(secret.clone()),
            previous_secret: Set(None),
            previous_secret_until: Set(None),
            cursor: Set(cursor),
            due_at: Set(None),
            lease_owner: Set(None),
            lease_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        txn.commit().await?;
        Ok((row, secret))
    }

    /// Replaces a webhook's settings. Enabling a disabled webhook starts it
    /// at the events committed from now on.
    pub async fn update(
        &self,
        p: &Principal,
        id: &str,
        input: WebhookInput,
    ) -> AppResult<webhooks::Model> {
        self.check(p, &input).await?;
        let current = self.find(p, id).await?;
        let mut row: webhooks::ActiveModel = current.clone().into();
        if input.enabled && !current.enabled {
            row.cursor = Set(feed::latest_id(&self.db.conn, &p.project_id).await?);
        }
        row.url = Set(input.url);
        row.events = Set(json!(input.events));
        row.model_keys = Set(input.model_keys.map(|k| json!(k)));
        row.include_drafts = Set(input.include_drafts);
        row.enabled = Set(input.enabled);
        row.updated_at = Set(self.clock.now());
        Ok(row.update(&self.db.writer).await?)
    }

    /// Deletes a webhook and its deliveries.
    pub async fn delete(&self, p: &Principal, id: &str) -> AppResult<()> {
        let hook = self.find(p, id).await?;
        let txn = begin_write(&self.db.writer).await?;
        webhook_deliveries::Entity::delete_many()
            .filter(webhook_deliveries::Column::WebhookId.eq(&hook.id))
            .exec(&txn)
            .await?;
        webhooks::Entity::delete_by_id(hook.id).exec(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    /// A new secret; the old one keeps signing (a second signature) for
    /// [`ROTATION_OVERLAP_HOURS`].
    pub async fn rotate(&self, p: &Principal, id: &str) -> AppResult<(webhooks::Model, String)> {
        let current = self.find(p, id).await?;
        let now = self.clock.now();
        let secret = sign::new_secret();
        let mut row: webhooks::ActiveModel = current.clone().into();
        row.previous_secret = Set(Some(current.secret));
        row.previous_secret_until = Set(Some(now + Duration::hours(ROTATION_OVERLAP_HOURS)));
        row.secret = Set(secret.clone());
        row.updated_at = Set(now);
        Ok((row.update(&self.db.writer).await?, secret))
    }

    /// A page of a webhook's deliveries, newest event first; `after` is the
    /// previous page's end cursor.
    pub async fn deliveries(
        &self,
        p: &Principal,
        webhook_id: &str,
        limit: i64,
        after: Option<&str>,
    ) -> AppResult<(Vec<webhook_deliveries::Model>, bool)> {
        let limit = feed::check_limit(limit)?;
        let hook = self.find(p, webhook_id).await?;
        let mut q = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::WebhookId.eq(&hook.id));
        if let Some(after) = after {
            q = q.filter(webhook_deliveries::Column::EventId.lt(feed::parse_cursor(after)?));
        }
        let mut rows = q
            .order_by_desc(webhook_deliveries::Column::EventId)
            .limit(limit + 1)
            .all(&self.db.conn)
            .await?;
        let more = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        Ok((rows, more))
    }

    /// Sends a delivery again: it becomes pending, due now, with a fresh
    /// retry schedule (and waits behind earlier pending events as any).
    pub async fn redeliver(
        &self,
        p: &Principal,
        delivery_id: &str,
    ) -> AppResult<webhook_deliveries::Model> {
        let missing =
            || AppError::NotFound(format!("no webhook delivery with id \"{delivery_id}\""));
        let delivery = webhook_deliveries::Entity::find_by_id(delivery_id.to_owned())
            .filter(webhook_deliveries::Column::ProjectId.eq(&p.project_id))
            .one(&self.db.conn)
            .await?
            .ok_or_else(missing)?;
        let now = self.clock.now();
        let txn = begin_write(&self.db.writer).await?;
        let mut row: webhook_deliveries::ActiveModel = delivery.into();
        row.status = Set(DeliveryStatus::Pending);
        row.round_attempts = Set(0);
        row.next_attempt_at = Set(Some(now));
        row.updated_at = Set(now);
        let row = row.update(&txn).await?;
        webhooks::Entity::update_many()
            .col_expr(webhooks::Column::DueAt, Expr::value(now))
            .filter(webhooks::Column::Id.eq(&row.webhook_id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(row)
    }
}
