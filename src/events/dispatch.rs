//! The dispatcher: every instance runs one. It claims a webhook with due
//! work (a lease in the row, taken with `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL so instances never wait for each other; SQLite has one writer),
//! turns the webhook's new events into delivery rows, and delivers them one
//! at a time in event order: a failing delivery holds the ones after it
//! until it succeeds or fails for good. A lease outlives an attempt's 15 s
//! timeout; an instance that dies mid-delivery leaves its lease to expire,
//! and another instance delivers again (at least once).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::webhook_deliveries::{self, DeliveryStatus};
use entity::{events, webhooks};
use reqwest::header::CONTENT_TYPE;
use reqwest::redirect::Policy;
use reqwest::Url;
use sea_orm::sea_query::{Expr, LockBehavior, LockType, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use tokio::sync::Semaphore;

use super::webhooks::Filter;
use super::{outbox, sign, ssrf, webhook_payload, EventHub};
use crate::clock::Clock;
use crate::config::Config;
use crate::db::{begin_write, new_id, Database};

/// How long an attempt may take (SPEC §9).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a claim holds a webhook without being renewed: longer than an
/// attempt, short enough that a dead instance's work moves on soon.
const LEASE_SECONDS: i64 = 30;
/// How often each instance looks for due work without being woken.
const TICK: Duration = Duration::from_millis(250);
/// The shortest time between two looks: a burst of commits costs one look
/// (a query) per this much time, not one per commit.
const COALESCE: Duration = Duration::from_millis(50);
/// Webhooks one instance works on at once.
const CONCURRENCY: usize = 8;
/// Attempts under one claim before the webhook is let go (others get a turn).
const ATTEMPTS_PER_CLAIM: usize = 200;
/// Events turned into deliveries per statement.
const FAN_OUT_BATCH: u64 = 500;
/// How much of an answer's body a delivery keeps.
pub const BODY_KEPT_BYTES: usize = 1024;
/// How often the oldest pending delivery's age is measured.
const GAUGE_EVERY: Duration = Duration::from_secs(5);
/// How often old events and deliveries are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the dispatcher is configured with.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Delay before each retry; after the last, a delivery fails for good.
    pub schedule: Vec<Duration>,
    /// `QUIRE_WEBHOOK_ALLOW_PRIVATE`.
    pub allow_private: bool,
}

impl Settings {
    /// From `QUIRE_WEBHOOK_RETRY_SECONDS` and `QUIRE_WEBHOOK_ALLOW_PRIVATE`.
    pub fn from_config(config: &Config) -> Self {
        Self {
            schedule: config
                .webhook_retry_seconds
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            allow_private: config.webhook_allow_private,
        }
    }
}

/// How an attempt went.
struct Attempt {
    status: Option<u16>,
    body: Option<String>,
    error: Option<String>,
    took: Duration,
}

/// One instance's dispatcher.
pub struct Dispatcher {
    db: Database,
    clock: Arc<dyn Clock>,
    hub: Arc<EventHub>,
    client: reqwest::Client,
    settings: Settings,
    /// This instance, as written in the leases it holds.
    instance: String,
    slots: Arc<Semaphore>,
}

impl Dispatcher {
    /// A dispatcher with its HTTP client: 15 s per attempt, no redirects,
    /// no proxy, the guarded resolver.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        hub: Arc<EventHub>,
        settings: Settings,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .redirect(Policy::none())
            .no_proxy()
            .user_agent(concat!("quire-webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(ssrf::GuardedResolver {
                allow_private: settings.allow_private,
            }))
            .build()
            .map_err(|e| format!("cannot build the webhook client: {e}"))?;
        Ok(Self {
            db,
            clock,
            hub,
            client,
            settings,
            instance: new_id(),
            slots: Arc::new(Semaphore::new(CONCURRENCY)),
        })
    }

    /// Runs until the process ends: due work on every tick or wake-up, the
    /// pending-age gauge, pruning.
    pub fn spawn(self: Arc<Self>) {
        tokio::spawn(async move {
            let mut gauged = Instant::now();
            let mut pruned: Option<Instant> = None;
            loop {
                tokio::select! {
                    () = self.hub.dispatch_wanted() => {}
                    () = tokio::time::sleep(TICK) => {}
                }
                let looked = Instant::now();
                self.run_due().await;
                if gauged.elapsed() >= GAUGE_EVERY {
                    gauged = Instant::now();
                    self.measure_pending().await;
                }
                if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                    pruned = Some(Instant::now());
                    match outbox::prune(&self.db.writer, self.clock.now()).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(rows = n, "pruned old events and deliveries"),
                        Err(e) => tracing::warn!(error = %e, "could not prune old events"),
                    }
                }
                tokio::time::sleep(COALESCE.saturating_sub(looked.elapsed())).await;
            }
        });
    }

    /// Claims due webhooks while a slot is free, each worked on in a task.
    async fn run_due(self: &Arc<Self>) {
        loop {
            let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() else {
                return;
            };
            match self.claim().await {
                Ok(Some(id)) => {
                    let me = Arc::clone(self);
                    tokio::spawn(async move {
                        me.work(&id).await;
                        drop(permit);
                    });
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(error = %e, "could not claim a webhook");
                    return;
                }
            }
        }
    }

    /// The id of one enabled, unleased webhook with due work: a pending
    /// delivery due now, or events after its cursor.
    async fn due<C: ConnectionTrait>(
        &self,
        db: &C,
        now: DateTime<Utc>,
        lock: bool,
    ) -> Result<Option<String>, DbErr> {
        use webhooks::Column as W;
        let new_events = Query::select()
            .expr(Expr::val(1))
            .from(events::Entity)
            .and_where(
                Expr::col((events::Entity, events::Column::ProjectId))
                    .equals((webhooks::Entity, W::ProjectId)),
            )
            .and_where(
                Expr::col((events::Entity, events::Column::Id))
                    .gt(Expr::col((webhooks::Entity, W::Cursor))),
            )
            .to_owned();
        let mut q = webhooks::Entity::find()
            .select_only()
            .column(W::Id)
            .filter(W::Enabled.eq(true))
            .filter(
                Condition::any()
                    .add(W::LeaseUntil.is_null())
                    .add(W::LeaseUntil.lt(now)),
            )
            .filter(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(W::DueAt.is_not_null())
                            .add(W::DueAt.lte(now)),
                    )
                    .add(Expr::exists(new_events)),
            )
            .order_by_asc(W::UpdatedAt)
            .limit(1);
        if lock {
            q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        q.into_tuple::<String>().one(db).await
    }

    /// Takes the lease of one webhook with due work, if there is one. An
    /// idle instance only reads.
    async fn claim(&self) -> Result<Option<String>, DbErr> {
        let now = self.clock.now();
        if self.due(&self.db.conn, now, false).await?.is_none() {
            return Ok(None);
        }
        let txn = begin_write(&self.db.writer)
            .await
            .map_err(|e| DbErr::Custom(e.cause()))?;
        let Some(id) = self.due(&txn, now, true).await? else {
            txn.commit().await?;
            return Ok(None);
        };
        webhooks::Entity::update_many()
            .col_expr(
                webhooks::Column::LeaseOwner,
                Expr::value(self.instance.clone()),
            )
            .col_expr(webhooks::Column::LeaseUntil, Expr::value(lease_end(now)))
            .filter(webhooks::Column::Id.eq(&id))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(Some(id))
    }

    /// Delivers a claimed webhook's due deliveries in event order, then lets
    /// it go.
    async fn work(&self, id: &str) {
        if let Err(e) = self.deliver_due(id).await {
            tracing::warn!(webhook = id, error = %e, "webhook dispatch stopped");
        }
        if let Err(e) = self.release(id).await {
            tracing::warn!(webhook = id, error = %e, "could not release a webhook lease");
        }
    }

    async fn deliver_due(&self, id: &str) -> Result<(), DbErr> {
        for _ in 0..ATTEMPTS_PER_CLAIM {
            let Some(hook) = webhooks::Entity::find_by_id(id.to_owned())
                .one(&self.db.conn)
                .await?
            else {
                return Ok(());
            };
            if !hook.enabled || hook.lease_owner.as_deref() != Some(self.instance.as_str()) {
                return Ok(());
            }
            let more_events = self.fan_out(&hook).await?;
            let head = webhook_deliveries::Entity::find()
                .filter(webhook_deliveries::Column::WebhookId.eq(id))
                .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending))
                .order_by_asc(webhook_deliveries::Column::EventId)
                .one(&self.db.conn)
                .await?;
            let now = self.clock.now();
            match head {
                None if more_events => continue,
                None => return Ok(()),
                Some(d) if d.next_attempt_at.is_some_and(|at| at > now) => return Ok(()),
                Some(d) => self.attempt(&hook, d).await?,
            }
        }
        Ok(())
    }

    /// Turns the events after the webhook's cursor into pending deliveries
    /// (those its filter takes) and moves the cursor; whether more events
    /// may follow.
    async fn fan_out(&self, hook: &webhooks::Model) -> Result<bool, DbErr> {
        let batch = events::Entity::find()
            .filter(events::Column::ProjectId.eq(&hook.project_id))
            .filter(events::Column::Id.gt(hook.cursor))
            .order_by_asc(events::Column::Id)
            .limit(FAN_OUT_BATCH)
            .all(&self.db.conn)
            .await?;
        let Some(last) = batch.last().map(|e| e.id) else {
            return Ok(false);
        };
        let filter = Filter::of(hook);
        let now = self.clock.now();
        let rows: Vec<webhook_deliveries::ActiveModel> = batch
            .iter()
            .filter(|e| filter.matches(e))
            .map(|e| webhook_deliveries::ActiveModel {
                id: Set(new_id()),
                webhook_id: Set(hook.id.clone()),
                project_id: Set(hook.project_id.clone()),
                event_id: Set(e.id),
                attempt: Set(0),
                round_attempts: Set(0),
                status: Set(DeliveryStatus::Pending),
                next_attempt_at: Set(Some(now)),
                response_status: Set(None),
                response_body: Set(None),
                duration_ms: Set(None),
                error: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            })
            .collect();
        let txn = begin_write(&self.db.writer)
            .await
            .map_err(|e| DbErr::Custom(e.cause()))?;
        if !rows.is_empty() {
            webhook_deliveries::Entity::insert_many(rows)
                .on_conflict(
                    OnConflict::columns([
                        webhook_deliveries::Column::WebhookId,
                        webhook_deliveries::Column::EventId,
                    ])
                    .do_nothing()
                    .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        webhooks::Entity::update_many()
            .col_expr(webhooks::Column::Cursor, Expr::value(last))
            .filter(webhooks::Column::Id.eq(&hook.id))
            .filter(webhooks::Column::LeaseOwner.eq(&self.instance))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(batch.len() as u64 == FAN_OUT_BATCH)
    }

    /// One attempt of one delivery, and its record.
    async fn attempt(
        &self,
        hook: &webhooks::Model,
        d: webhook_deliveries::Model,
    ) -> Result<(), DbErr> {
        let event = events::Entity::find_by_id(d.event_id)
            .one(&self.db.conn)
            .await?;
        let now = self.clock.now();
        let outcome = match &event {
            None => Attempt {
                status: None,
                body: None,
                error: Some("the event is no longer kept".into()),
                took: Duration::ZERO,
            },
            Some(event) => self.post(hook, event, now).await,
        };
        let succeeded = outcome.status.is_some_and(|s| (200..300).contains(&s));
        let gone = outcome.status == Some(410);
        let round = d.round_attempts + 1;
        let retry = (!succeeded && !gone && event.is_some())
            .then(|| self.settings.schedule.get((round - 1) as usize))
            .flatten();
        let (status, next_attempt_at, label) = match (succeeded, retry) {
            (true, _) => (DeliveryStatus::Succeeded, None, "succeeded"),
            (false, Some(delay)) => (
                DeliveryStatus::Pending,
                Some(now + chrono::Duration::from_std(*delay).unwrap_or_default()),
                "retrying",
            ),
            (false, None) => (DeliveryStatus::Failed, None, "failed"),
        };
        metrics::counter!("quire_webhook_deliveries_total", "outcome" => label).increment(1);
        metrics::histogram!("quire_webhook_attempt_duration_seconds")
            .record(outcome.took.as_secs_f64());
        if let (true, Some(event)) = (succeeded, &event) {
            let latency = (now - event.created_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("quire_webhook_delivery_latency_seconds").record(latency);
        }
        let txn = begin_write(&self.db.writer)
            .await
            .map_err(|e| DbErr::Custom(e.cause()))?;
        let done = self.clock.now();
        let row = webhook_deliveries::ActiveModel {
            id: sea_orm::ActiveValue::Unchanged(d.id.clone()),
            attempt: Set(d.attempt + 1),
            round_attempts: Set(round),
            status: Set(status),
            next_attempt_at: Set(next_attempt_at),
            response_status: Set(outcome.status.map(i32::from)),
            response_body: Set(outcome.body),
            duration_ms: Set(Some(outcome.took.as_millis() as i64)),
            error: Set(outcome.error),
            updated_at: Set(done),
            ..Default::default()
        };
        webhook_deliveries::Entity::update(row).exec(&txn).await?;
        // The lease is renewed with the record: one commit per attempt.
        webhooks::Entity::update_many()
            .col_expr(webhooks::Column::LeaseUntil, Expr::value(lease_end(done)))
            .filter(webhooks::Column::Id.eq(&hook.id))
            .filter(webhooks::Column::LeaseOwner.eq(&self.instance))
            .exec(&txn)
            .await?;
        if gone {
            webhooks::Entity::update_many()
                .col_expr(webhooks::Column::Enabled, Expr::value(false))
                .col_expr(webhooks::Column::UpdatedAt, Expr::value(done))
                .filter(webhooks::Column::Id.eq(&hook.id))
                .exec(&txn)
                .await?;
            tracing::warn!(webhook = %hook.id, "the receiver answered 410 Gone: webhook disabled");
        }
        txn.commit().await?;
        Ok(())
    }

    /// POSTs the event, signed; never follows a redirect.
    async fn post(
        &self,
        hook: &webhooks::Model,
        event: &events::Model,
        now: DateTime<Utc>,
    ) -> Attempt {
        let failed = |error: String| Attempt {
            status: None,
            body: None,
            error: Some(error),
            took: Duration::ZERO,
        };
        let url = match Url::parse(&hook.url) {
            Ok(url) => url,
            Err(e) => return failed(format!("the URL does not parse: {e}")),
        };
        if !self.settings.allow_private {
            if let Some(ip) = ssrf::literal_forbidden(&url) {
                return failed(format!("{ip} is an address webhooks may not reach"));
            }
        }
        let body = match serde_json::to_vec(&webhook_payload(event)) {
            Ok(body) => body,
            Err(e) => return failed(format!("cannot encode the event: {e}")),
        };
        let msg_id = event.id.to_string();
        let timestamp = now.timestamp();
        let mut secrets = vec![hook.secret.as_str()];
        if let (Some(previous), Some(until)) = (&hook.previous_secret, hook.previous_secret_until) {
            if until > now {
                secrets.push(previous);
            }
        }
        let signature = sign::header(&secrets, &msg_id, timestamp, &body);
        let started = Instant::now();
        let sent = self
            .client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &msg_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(e) => {
                let mut a = failed(crate::error::chain(&e).to_string());
                a.took = started.elapsed();
                return a;
            }
        };
        let status = response.status().as_u16();
        let mut kept = Vec::new();
        let mut error = None;
        while kept.len() < BODY_KEPT_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    kept.extend_from_slice(&chunk[..chunk.len().min(BODY_KEPT_BYTES - kept.len())])
                }
                Ok(None) => break,
                Err(e) => {
                    error = Some(crate::error::chain(&e).to_string());
                    break;
                }
            }
        }
        if error.is_none() && !(200..300).contains(&status) {
            error = Some(format!("the receiver answered {status}"));
        }
        Attempt {
            status: Some(status),
            body: Some(String::from_utf8_lossy(&kept).into_owned()),
            error,
            took: started.elapsed(),
        }
    }

    /// Lets the webhook go, recording when its first pending delivery is due.
    async fn release(&self, id: &str) -> Result<(), DbErr> {
        let backend = self.db.writer.get_database_backend();
        let p = |n: usize| match backend {
            sea_orm::DbBackend::Postgres => format!("${n}"),
            _ => "?".to_owned(),
        };
        let sql = format!(
            "UPDATE webhooks SET lease_owner = NULL, lease_until = NULL, due_at = \
             (SELECT d.next_attempt_at FROM webhook_deliveries d WHERE d.webhook_id = {} \
              AND d.status = 'pending' ORDER BY d.event_id LIMIT 1) \
             WHERE id = {} AND lease_owner = {}",
            p(1),
            p(2),
            p(3)
        );
        self.db
            .writer
            .execute(Statement::from_sql_and_values(
                backend,
                sql,
                [id.into(), id.into(), self.instance.clone().into()],
            ))
            .await?;
        Ok(())
    }

    /// Sets the age of the oldest pending delivery (0 with none).
    async fn measure_pending(&self) {
        let oldest = webhook_deliveries::Entity::find()
            .filter(webhook_deliveries::Column::Status.eq(DeliveryStatus::Pending))
            .order_by_asc(webhook_deliveries::Column::CreatedAt)
            .one(&self.db.conn)
            .await;
        let age = match oldest {
            Ok(Some(d)) => {
                (self.clock.now() - d.created_at).num_milliseconds().max(0) as f64 / 1000.0
            }
            Ok(None) => 0.0,
            Err(_) => return,
        };
        metrics::gauge!("quire_webhook_oldest_pending_delivery_seconds").set(age);
    }
}

fn lease_end(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::seconds(LEASE_SECONDS)
}
