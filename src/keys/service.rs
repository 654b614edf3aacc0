//! [`KeyService`]: the one door to the key store. Each method takes the
//! actor and the input, picks the connection and the clock, runs the rules
//! and the transaction, and after the commit does everything that must
//! follow: the changed keys leave this instance's key cache at once (and
//! every other instance's through Redis and the feed), and the change is
//! announced to the listeners of [`Changes`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::{api_keys, audit_events, markers, projects};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, EntityTrait, PaginatorTrait, TransactionTrait};
use serde_json::Value;

use super::feed;
use super::transfer::{self, ImportMode, ImportResult};
use super::{audit, Actor, KeyRequest, KeyUpdate, NewKey};
use crate::auth::cache::KeyCache;
use crate::auth::key::{ApiKeySecret, KeyMode, KeyType};
use crate::auth::scopes::ScopeSet;
use crate::changes::{Change, Changes};
use crate::clock::Clock;
use crate::db::{self, Database, DEFAULT_PROJECT};
use crate::error::{AppError, AppResult};
use crate::redis_link::Broadcast;
use crate::redis_link::RedisLink;

/// The key lifecycle service of one instance.
pub struct KeyService {
    db: Database,
    clock: Arc<dyn Clock>,
    cache: Arc<KeyCache>,
    broadcast: Option<Arc<Broadcast>>,
    changes: Arc<Changes>,
    /// The budget of keys created without one.
    default_rate_limit: i64,
}

impl KeyService {
    /// The service over `db`, keeping `cache` exact; `redis` (the
    /// instance's shared link) adds the Redis fast path for key changes; keys asked for without a budget get
    /// `default_rate_limit` requests an hour.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        cache: Arc<KeyCache>,
        redis: Option<Arc<RedisLink>>,
        changes: Arc<Changes>,
        default_rate_limit: u32,
    ) -> Result<Self, String> {
        let broadcast = redis.map(|link| Arc::new(Broadcast::new(link, feed::CHANNEL)));
        Ok(Self {
            db,
            clock,
            cache,
            broadcast,
            changes,
            default_rate_limit: default_rate_limit.into(),
        })
    }

    /// Creates the key a caller asks for (scope names checked, the budget
    /// defaulted); see [`KeyService::create`].
    pub async fn create_requested(
        &self,
        actor: &Actor,
        project_id: &str,
        request: KeyRequest,
    ) -> AppResult<(ApiKeySecret, api_keys::Model)> {
        let new = request.into_new_key(self.default_rate_limit)?;
        self.create(actor, project_id, new).await
    }

    /// Creates a key in `project_id`; the returned secret is the only copy
    /// of the plaintext there will ever be.
    pub async fn create(
        &self,
        actor: &Actor,
        project_id: &str,
        new: NewKey,
    ) -> AppResult<(ApiKeySecret, api_keys::Model)> {
        let created =
            super::create_key(&self.db.writer, project_id, new, actor, self.clock.now()).await?;
        // The new hash may have been looked up (and remembered as unknown).
        self.cache.forget_unknown();
        self.announce(project_id, vec![created.1.id.clone()]).await;
        Ok(created)
    }

    /// The project's keys the actor may see, oldest first.
    pub async fn list(
        &self,
        actor: &Actor,
        project_id: &str,
        include_revoked: bool,
    ) -> AppResult<Vec<api_keys::Model>> {
        super::list_keys(&self.db.conn, project_id, actor, include_revoked).await
    }

    /// One key, if the actor may see it.
    pub async fn get(
        &self,
        actor: &Actor,
        project_id: &str,
        id: &str,
    ) -> AppResult<Option<api_keys::Model>> {
        super::get_key(&self.db.conn, project_id, actor, id).await
    }

    /// Renames a key or changes its budget (from its next request).
    pub async fn update(
        &self,
        actor: &Actor,
        project_id: &str,
        id: &str,
        update: KeyUpdate,
    ) -> AppResult<api_keys::Model> {
        let row = super::update_key(
            &self.db.writer,
            project_id,
            actor,
            id,
            update,
            self.clock.now(),
        )
        .await?;
        self.changed(&row.project_id, vec![row.id.clone()]).await;
        Ok(row)
    }

    /// Replaces a key's secret; the old one works for `grace_seconds`.
    pub async fn rotate(
        &self,
        actor: &Actor,
        project_id: &str,
        id: &str,
        grace_seconds: i64,
    ) -> AppResult<(ApiKeySecret, api_keys::Model)> {
        let (secret, row) = super::rotate_key(
            &self.db.writer,
            project_id,
            actor,
            id,
            grace_seconds,
            self.clock.now(),
        )
        .await?;
        self.changed(&row.project_id, vec![row.id.clone()]).await;
        Ok((secret, row))
    }

    /// Revokes a key at once. `project_id` is `None` only for `quire
    /// admin`, which names keys by id alone.
    pub async fn revoke(
        &self,
        actor: &Actor,
        project_id: Option<&str>,
        id: &str,
    ) -> AppResult<api_keys::Model> {
        let row =
            super::revoke_key(&self.db.writer, project_id, actor, id, self.clock.now()).await?;
        self.changed(&row.project_id, vec![row.id.clone()]).await;
        Ok(row)
    }

    /// One page of the audit log the actor may see, newest first.
    pub async fn audit_events(
        &self,
        actor: &Actor,
        project_id: &str,
        limit: u64,
        after: Option<i64>,
    ) -> AppResult<(Vec<audit_events::Model>, bool)> {
        audit::list(&self.db.conn, project_id, actor, limit, after).await
    }

    /// The active keys the actor can see, as an import file.
    pub async fn export(&self, actor: &Actor, project_id: &str) -> AppResult<Value> {
        transfer::export_keys(&self.db.writer, project_id, actor, self.clock.now()).await
    }

    /// Imports an export file, all or nothing.
    pub async fn import(
        &self,
        actor: &Actor,
        project_id: &str,
        file: &Value,
        mode: ImportMode,
    ) -> AppResult<ImportResult> {
        let (result, changed) = transfer::import_keys(
            &self.db.writer,
            project_id,
            actor,
            file,
            mode,
            self.clock.now(),
        )
        .await?;
        self.cache.forget_unknown();
        self.changed(project_id, changed).await;
        Ok(result)
    }

    /// The project a key belongs to.
    pub async fn project(&self, id: &str) -> AppResult<projects::Model> {
        db::project_by_id(&self.db.conn, id)
            .await?
            .ok_or_else(|| AppError::internal(format!("project {id} is missing")))
    }

    /// The project called `name`, if any.
    pub async fn project_by_name(&self, name: &str) -> AppResult<Option<projects::Model>> {
        db::project_by_name(&self.db.conn, name).await
    }

    /// First start: when the database holds no API key at all, creates the
    /// `bootstrap` secret test key with every scope in the default project
    /// and returns it (once: a marker row makes sure no other start,
    /// concurrent or later, does).
    pub async fn bootstrap(&self) -> AppResult<Option<ApiKeySecret>> {
        let now = self.clock.now();
        let conn = &self.db.conn;
        self.db
            .with_setup_lock(|| async {
                if api_keys::Entity::find().count(conn).await? > 0 {
                    return Ok(None);
                }
                let txn = conn.begin().await?;
                if !claim_marker(&txn, "bootstrap", now).await? {
                    return Ok(None);
                }
                let project = db::project_by_name(&txn, DEFAULT_PROJECT)
                    .await?
                    .ok_or_else(|| AppError::internal("the default project is missing"))?;
                let new = NewKey {
                    name: "bootstrap".into(),
                    key_type: KeyType::Secret,
                    mode: KeyMode::Test,
                    scopes: ScopeSet::all(),
                    rate_limit_per_hour: self.default_rate_limit,
                    expires_at: None,
                };
                let (secret, _) =
                    super::insert_key(&txn, &project.id, new, &Actor::Admin, now).await?;
                txn.commit().await?;
                Ok(Some(secret))
            })
            .await
    }

    /// Follows key changes made by other instances (and `quire admin`): the
    /// feed poller and, with Redis, the subscription. Runs until the
    /// process ends.
    pub fn spawn_watchers(&self) {
        feed::spawn_poller(self.db.conn.clone(), Arc::clone(&self.cache));
        self.spawn_broadcast_listener();
    }

    /// With Redis: follows the key changes other instances publish (the
    /// fast path only; [`KeyService::spawn_watchers`] also polls the feed).
    pub fn spawn_broadcast_listener(&self) -> Option<tokio::task::JoinHandle<()>> {
        let cache = Arc::clone(&self.cache);
        self.broadcast
            .as_ref()
            .map(|b| b.spawn_listener(move |key_id| cache.forget(key_id)))
    }

    /// After a commit that changed existing keys: they leave this
    /// instance's cache at once, every other instance's within
    /// milliseconds (Redis) or one feed poll; then the change is announced.
    async fn changed(&self, project_id: &str, key_ids: Vec<String>) {
        for id in &key_ids {
            self.cache.forget(id);
            if let Some(broadcast) = &self.broadcast {
                broadcast.publish(id);
            }
        }
        self.announce(project_id, key_ids).await;
    }

    async fn announce(&self, project_id: &str, key_ids: Vec<String>) {
        if key_ids.is_empty() {
            return;
        }
        self.changes
            .committed(Change::Keys {
                project_id: project_id.to_owned(),
                key_ids,
            })
            .await;
    }
}

/// Inserts the marker `name` unless it exists; whether this call did.
async fn claim_marker<C: sea_orm::ConnectionTrait>(
    db: &C,
    name: &str,
    now: DateTime<Utc>,
) -> AppResult<bool> {
    let claimed = markers::Entity::insert(markers::ActiveModel {
        name: Set(name.into()),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(markers::Column::Name)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    Ok(claimed > 0)
}
