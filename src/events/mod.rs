//! Events and webhooks (SPEC §9): every committed content change is one
//! event in an outbox, written in the change's own transaction; keys with
//! `notifications:read` follow it as a feed or a stream; webhooks get it
//! POSTed, signed, retried, logged.
//!
//! | module | holds |
//! |---|---|
//! | [`outbox`] | [`append`] (called by the content writes just before they commit) and pruning |
//! | [`feed`] | reading a project's events after a cursor, as a key may see them |
//! | [`hub`] | the per-instance wake-ups: local commits at once, other instances' through Redis when configured and by polling the project heads |
//! | [`webhooks`] | [`WebhookService`]: webhook management, deliveries, redelivery |
//! | [`dispatch`] | the dispatcher every instance runs: claims due webhooks, delivers in event order, retries |
//! | [`sign`] | the Standard Webhooks signature |
//! | [`ssrf`] | refusing loopback, private, link-local and unspecified targets |
//!
//! **Order.** A project's event ids grow in the order their transactions
//! commit, on both databases, so a reader that has seen id `n` never misses
//! a later commit by asking for ids above `n`. On PostgreSQL, [`append`]
//! first updates the project's `event_heads` row and only then inserts the
//! event (taking its id from the table's sequence): the row lock is held
//! until the commit, so the project's writers pass the append one at a time, each
//! taking its id after the previous one committed (a sequence alone would
//! hand out ids in the order transactions *reach* the insert, not the order
//! they commit). The lock is taken last in the transaction, just before the
//! commit, so writers wait for each other only over that short tail.
//! SQLite has one writer at a time, so ids follow commits there anyway
//! (`AUTOINCREMENT`: never reused after pruning).

pub mod dispatch;
pub mod feed;
pub mod hub;
pub mod outbox;
pub mod sign;
pub mod ssrf;
pub mod webhooks;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::records::{self, RecordStatus};
use serde_json::{json, Value};

use crate::clock::Clock;
use crate::config::Config;
use crate::db::Database;
use crate::redis_link::RedisLink;

pub use hub::EventHub;
pub use outbox::{append, model_changed, record_changed, record_deleted};
pub use webhooks::WebhookService;

/// How long events and deliveries are kept.
pub const RETENTION_DAYS: i64 = 30;

/// What happened; the wire names are SPEC §9's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    RecordCreated,
    RecordUpdated,
    RecordPublished,
    RecordUnpublished,
    RecordDeleted,
    FileCreated,
    FileUpdated,
    FilePublished,
    FileUnpublished,
    FileDeleted,
    ModelCreated,
    ModelUpdated,
    ModelDeleted,
}

impl EventType {
    /// Every type, in SPEC order.
    pub const ALL: [EventType; 13] = [
        EventType::RecordCreated,
        EventType::RecordUpdated,
        EventType::RecordPublished,
        EventType::RecordUnpublished,
        EventType::RecordDeleted,
        EventType::FileCreated,
        EventType::FileUpdated,
        EventType::FilePublished,
        EventType::FileUnpublished,
        EventType::FileDeleted,
        EventType::ModelCreated,
        EventType::ModelUpdated,
        EventType::ModelDeleted,
    ];

    /// The wire name (`record.published`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::RecordCreated => "record.created",
            EventType::RecordUpdated => "record.updated",
            EventType::RecordPublished => "record.published",
            EventType::RecordUnpublished => "record.unpublished",
            EventType::RecordDeleted => "record.deleted",
            EventType::FileCreated => "file.created",
            EventType::FileUpdated => "file.updated",
            EventType::FilePublished => "file.published",
            EventType::FileUnpublished => "file.unpublished",
            EventType::FileDeleted => "file.deleted",
            EventType::ModelCreated => "model.created",
            EventType::ModelUpdated => "model.updated",
            EventType::ModelDeleted => "model.deleted",
        }
    }

    /// The type of a wire name.
    pub fn parse(name: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// Most entries in a type filter (the feed's `types`, a webhook's `events`).
pub const MAX_TYPE_PATTERNS: usize = 50;

/// The types a filter names: exact types and `record.*`-style wildcards
/// (`*` is every type). An unknown entry is an error naming it.
pub fn expand_types(patterns: &[String]) -> Result<Vec<EventType>, String> {
    if patterns.len() > MAX_TYPE_PATTERNS {
        return Err(format!("at most {MAX_TYPE_PATTERNS} event types"));
    }
    let mut out = Vec::new();
    for pattern in patterns {
        let matched: Vec<EventType> = if pattern == "*" {
            EventType::ALL.to_vec()
        } else if let Some(prefix) = pattern.strip_suffix(".*") {
            EventType::ALL
                .into_iter()
                .filter(|t| t.as_str().split_once('.').map(|(p, _)| p) == Some(prefix))
                .collect()
        } else {
            EventType::parse(pattern).into_iter().collect()
        };
        if matched.is_empty() {
            return Err(format!(
                "unknown event type \"{pattern}\" (known: {}, and wildcards such as record.*)",
                EventType::ALL.map(EventType::as_str).join(", ")
            ));
        }
        for t in matched {
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    Ok(out)
}

/// An event about to be written by [`append`].
#[derive(Clone, Debug)]
pub struct NewEvent<'a> {
    pub project_id: &'a str,
    pub event_type: EventType,
    pub model_key: Option<&'a str>,
    pub record_id: Option<&'a str>,
    pub file_id: Option<&'a str>,
    pub version: Option<i64>,
    /// Whether the change altered the published view (SPEC §9: what LIVE
    /// keys see).
    pub live: bool,
    pub at: DateTime<Utc>,
}

impl<'a> NewEvent<'a> {
    fn record(
        event_type: EventType,
        row: &'a records::Model,
        model_key: &'a str,
        live: bool,
        at: DateTime<Utc>,
    ) -> Self {
        NewEvent {
            project_id: &row.project_id,
            event_type,
            model_key: Some(model_key),
            record_id: Some(&row.id),
            file_id: None,
            version: Some(row.version),
            live,
            at,
        }
    }

    /// `record.created` (a draft: not in the published view).
    pub fn record_created(row: &'a records::Model, model_key: &'a str, at: DateTime<Utc>) -> Self {
        Self::record(EventType::RecordCreated, row, model_key, false, at)
    }

    /// The event of a record saved from `before` to `after`: published when
    /// it is now published (publishing), unpublished when it left the
    /// published view, updated otherwise (a draft edit, which LIVE keys do
    /// not see).
    pub fn record_changed(
        before: &records::Model,
        after: &'a records::Model,
        model_key: &'a str,
        at: DateTime<Utc>,
    ) -> Self {
        let (event_type, live) = if after.status == RecordStatus::Published {
            (EventType::RecordPublished, true)
        } else if before.published_at.is_some() && after.published_at.is_none() {
            (EventType::RecordUnpublished, true)
        } else {
            (EventType::RecordUpdated, false)
        };
        Self::record(event_type, after, model_key, live, at)
    }

    /// `record.deleted`, in the published view when the record was published.
    pub fn record_deleted(row: &'a records::Model, model_key: &'a str, at: DateTime<Utc>) -> Self {
        let live = row.published_at.is_some();
        Self::record(EventType::RecordDeleted, row, model_key, live, at)
    }

    /// A `model.*` event (every one is in the published view).
    pub fn model(
        project_id: &'a str,
        event_type: EventType,
        model_key: &'a str,
        at: DateTime<Utc>,
    ) -> Self {
        NewEvent {
            project_id,
            event_type,
            model_key: Some(model_key),
            record_id: None,
            file_id: None,
            version: None,
            live: true,
            at,
        }
    }
}

/// An event as the feed and the stream show it (the `Event` fields).
pub fn event_json(e: &entity::events::Model) -> Value {
    json!({
        "id": e.id.to_string(),
        "type": e.event_type,
        "modelKey": e.model_key,
        "recordId": e.record_id,
        "fileId": e.file_id,
        "version": e.version,
        "createdAt": crate::clock::stamp(e.created_at),
    })
}

/// An event as a webhook receives it: `{"id","type","createdAt","data"}`.
pub fn webhook_payload(e: &entity::events::Model) -> Value {
    json!({
        "id": e.id.to_string(),
        "type": e.event_type,
        "createdAt": crate::clock::stamp(e.created_at),
        "data": {
            "modelKey": e.model_key,
            "recordId": e.record_id,
            "fileId": e.file_id,
            "version": e.version,
        },
    })
}

/// The events side of an instance: the wake-up hub, the webhook service
/// and the dispatcher.
pub struct Events {
    /// Wakes streams and the dispatcher; listens to committed changes.
    pub hub: Arc<EventHub>,
    /// Webhook management.
    pub webhooks: WebhookService,
    dispatcher: Arc<dispatch::Dispatcher>,
}

impl Events {
    /// Assembles the parts from the configuration.
    pub fn new(
        config: &Config,
        db: Database,
        clock: Arc<dyn Clock>,
        redis: Option<Arc<RedisLink>>,
    ) -> Result<Self, String> {
        export_metrics();
        let hub = Arc::new(EventHub::new(db.conn.clone(), redis));
        let webhooks = WebhookService::new(db.clone(), clock.clone(), config.webhook_allow_private);
        let dispatcher = Arc::new(dispatch::Dispatcher::new(
            db,
            clock,
            hub.clone(),
            dispatch::Settings::from_config(config),
        )?);
        Ok(Self {
            hub,
            webhooks,
            dispatcher,
        })
    }

    /// Starts the hub's poll, the dispatcher and the pruning of old rows.
    pub fn spawn(&self) {
        self.hub.spawn_poller();
        self.dispatcher.clone().spawn();
    }
}

/// Exports the events' figures at 0 from the start.
fn export_metrics() {
    metrics::counter!("quire_events_written_total").increment(0);
    metrics::counter!("quire_event_redis_wakeups_total").increment(0);
    for outcome in ["succeeded", "retrying", "failed"] {
        metrics::counter!("quire_webhook_deliveries_total", "outcome" => outcome).increment(0);
    }
    metrics::gauge!("quire_event_streams_open").increment(0.0);
    metrics::gauge!("quire_webhook_oldest_pending_delivery_seconds").increment(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_expand_and_unknown_types_are_named() {
        let record = expand_types(&["record.*".into()]);
        assert_eq!(record.map(|v| v.len()), Ok(5));
        let all = expand_types(&["*".into(), "model.created".into()]);
        assert_eq!(all.map(|v| v.len()), Ok(13));
        let bad = expand_types(&["record.moved".into()]);
        assert!(bad.is_err_and(|e| e.contains("record.moved")));
        assert!(expand_types(&["nope.*".into()]).is_err());
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
    }
}
