//! Event and webhook fields (SPEC §9); the rules live in `crate::events`.

use async_graphql::{Context, Enum, InputObject, Object, SimpleObject, ID};
use entity::webhook_deliveries::{self, DeliveryStatus as StoredStatus};
use entity::{events, webhooks};

use super::types::{PageInfo, Stamp};
use super::{app, principal};
use crate::auth::guard::RequireScope;
use crate::auth::scopes::Scope;
use crate::error::AppError;
use crate::events::expand_types;
use crate::events::feed::{self, FeedQuery};
use crate::events::webhooks::{WebhookInput as Input, DEFAULT_DELIVERY_LIMIT};

#[derive(Default)]
pub struct EventsQuery;

#[derive(Default)]
pub struct EventsMutation;

/// One committed change of content.
pub struct Event(events::Model);

#[Object]
impl Event {
    /// Grows in commit order within the project; the `after` cursor, the
    /// stream's `id:` and a webhook's `webhook-id`.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// `record.created`, `record.updated`, `record.published`,
    /// `record.unpublished`, `record.deleted`, `file.*`, `model.created`,
    /// `model.updated`, `model.deleted`.
    #[graphql(name = "type")]
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn model_key(&self) -> Option<&str> {
        self.0.model_key.as_deref()
    }
    async fn record_id(&self) -> Option<ID> {
        self.0.record_id.clone().map(ID)
    }
    async fn file_id(&self) -> Option<ID> {
        self.0.file_id.clone().map(ID)
    }
    /// The record's version after the change.
    async fn version(&self) -> Option<i64> {
        self.0.version
    }
    async fn created_at(&self) -> Stamp {
        Stamp(self.0.created_at)
    }
}

/// A page of events, oldest first.
#[derive(SimpleObject)]
pub struct EventPage {
    pub items: Vec<Event>,
    pub page_info: PageInfo,
}

/// Where a project's events are POSTed.
pub struct Webhook(webhooks::Model);

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[Object]
impl Webhook {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// Event types and wildcards (`record.*`).
    async fn events(&self) -> Vec<String> {
        strings(&self.0.events)
    }
    /// Only events of these models (`null`: any).
    async fn model_keys(&self) -> Option<Vec<String>> {
        self.0.model_keys.as_ref().map(strings)
    }
    /// Whether draft events (those LIVE keys do not see) are delivered too.
    async fn include_drafts(&self) -> bool {
        self.0.include_drafts
    }
    /// `false` after a receiver answered 410, or when turned off.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn created_at(&self) -> Stamp {
        Stamp(self.0.created_at)
    }
}

/// A webhook and its signing secret, shown this once.
#[derive(SimpleObject)]
pub struct CreatedWebhook {
    pub webhook: Webhook,
    /// `whsec_` + base64 of 32 random bytes.
    pub secret: String,
}

/// Where a delivery stands.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    Pending,
    Succeeded,
    Failed,
}

/// One event's delivery to one webhook, with its last attempt.
pub struct WebhookDelivery(webhook_deliveries::Model);

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn event_id(&self) -> ID {
        ID(self.0.event_id.to_string())
    }
    /// Attempts made so far.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    async fn status(&self) -> DeliveryStatus {
        match self.0.status {
            StoredStatus::Pending => DeliveryStatus::Pending,
            StoredStatus::Succeeded => DeliveryStatus::Succeeded,
            StoredStatus::Failed => DeliveryStatus::Failed,
        }
    }
    /// The last attempt's HTTP status, if an answer came.
    async fn response_status(&self) -> Option<i32> {
        self.0.response_status
    }
    /// The first KiB of the last answer's body.
    async fn response_body(&self) -> Option<&str> {
        self.0.response_body.as_deref()
    }
    /// How long the last attempt took, in milliseconds.
    async fn duration_ms(&self) -> Option<i64> {
        self.0.duration_ms
    }
    /// Why the last attempt failed.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    async fn created_at(&self) -> Stamp {
        Stamp(self.0.created_at)
    }
    /// When the next attempt is due (pending deliveries only).
    async fn next_attempt_at(&self) -> Option<Stamp> {
        match self.0.status {
            StoredStatus::Pending => self.0.next_attempt_at.map(Stamp),
            _ => None,
        }
    }
}

/// A page of deliveries, newest event first.
#[derive(SimpleObject)]
pub struct WebhookDeliveryPage {
    pub items: Vec<WebhookDelivery>,
    pub page_info: PageInfo,
}

/// A webhook's settings.
#[derive(InputObject)]
pub struct WebhookInput {
    /// `http://` or `https://`; must reach a public address.
    pub url: String,
    /// Event types and wildcards such as `record.*` (`*`: every type).
    pub events: Vec<String>,
    /// Only events of these models (omitted or `null`: any).
    pub model_keys: Option<Vec<String>>,
    /// Deliver draft events too (TEST keys only).
    #[graphql(default = false)]
    pub include_drafts: bool,
    #[graphql(default = true)]
    pub enabled: bool,
}

impl From<WebhookInput> for Input {
    fn from(i: WebhookInput) -> Self {
        Input {
            url: i.url,
            events: i.events,
            model_keys: i.model_keys,
            include_drafts: i.include_drafts,
            enabled: i.enabled,
        }
    }
}

#[Object]
impl EventsQuery {
    /// The project's events, oldest first, after the cursor `after`; LIVE
    /// keys see only the events that changed the published view.
    #[graphql(guard = "RequireScope(Scope::NotificationsRead)")]
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        #[graphql(default_with = "Some(feed::DEFAULT_LIMIT)")] limit: Option<i64>,
        types: Option<Vec<String>>,
    ) -> async_graphql::Result<EventPage> {
        let p = principal(ctx)?;
        let limit = feed::check_limit(limit.unwrap_or(feed::DEFAULT_LIMIT))?;
        let after = after.as_deref().map(feed::parse_cursor).transpose()?;
        let types = types
            .map(|t| expand_types(&t).map_err(|m| AppError::bad_field("types", m)))
            .transpose()?;
        let q = FeedQuery {
            after,
            limit: limit + 1,
            types,
            live_only: feed::live_only(p),
        };
        let mut rows = feed::read(&app(ctx)?.db.conn, &p.project_id, &q)
            .await
            .map_err(AppError::from)?;
        let has_next_page = rows.len() as u64 > limit;
        rows.truncate(limit as usize);
        let end_cursor = rows.last().map(|e| e.id.to_string());
        Ok(EventPage {
            items: rows.into_iter().map(Event).collect(),
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }

    /// The project's webhooks.
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn webhooks(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Webhook>> {
        let p = principal(ctx)?;
        let rows = app(ctx)?.events.webhooks.list(p).await?;
        Ok(rows.into_iter().map(Webhook).collect())
    }

    /// A webhook's deliveries, newest event first.
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        #[graphql(default_with = "Some(DEFAULT_DELIVERY_LIMIT)")] limit: Option<i64>,
        after: Option<String>,
    ) -> async_graphql::Result<WebhookDeliveryPage> {
        let p = principal(ctx)?;
        let (rows, has_next_page) = app(ctx)?
            .events
            .webhooks
            .deliveries(
                p,
                &webhook_id,
                limit.unwrap_or(DEFAULT_DELIVERY_LIMIT),
                after.as_deref(),
            )
            .await?;
        let end_cursor = rows.last().map(|d| d.event_id.to_string());
        Ok(WebhookDeliveryPage {
            items: rows.into_iter().map(WebhookDelivery).collect(),
            page_info: PageInfo {
                has_next_page,
                end_cursor,
            },
        })
    }
}

#[Object]
impl EventsMutation {
    /// Creates a webhook; its secret is shown this once.
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: WebhookInput,
    ) -> async_graphql::Result<CreatedWebhook> {
        let p = principal(ctx)?;
        let (row, secret) = app(ctx)?.events.webhooks.create(p, input.into()).await?;
        Ok(CreatedWebhook {
            webhook: Webhook(row),
            secret,
        })
    }

    /// Replaces a webhook's settings (not its secret).
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn update_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: WebhookInput,
    ) -> async_graphql::Result<Webhook> {
        let p = principal(ctx)?;
        let row = app(ctx)?
            .events
            .webhooks
            .update(p, &id, input.into())
            .await?;
        Ok(Webhook(row))
    }

    /// Deletes a webhook and its deliveries.
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn delete_webhook(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let p = principal(ctx)?;
        app(ctx)?.events.webhooks.delete(p, &id).await?;
        Ok(true)
    }

    /// A new secret, shown this once; deliveries carry a signature with the
    /// old one too for 24 hours.
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<CreatedWebhook> {
        let p = principal(ctx)?;
        let (row, secret) = app(ctx)?.events.webhooks.rotate(p, &id).await?;
        Ok(CreatedWebhook {
            webhook: Webhook(row),
            secret,
        })
    }

    /// Sends a delivery again (pending, due now, a fresh retry schedule).
    #[graphql(guard = "RequireScope(Scope::ExtensionsManage)")]
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        delivery_id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let p = principal(ctx)?;
        let row = app(ctx)?.events.webhooks.redeliver(p, &delivery_id).await?;
        Ok(WebhookDelivery(row))
    }
}
