//! [`ContentService`]: the one door to models and records. Each method takes
//! the principal (its project, and for reads the view it may have) and the
//! input, picks the connection and the clock, and after a write commits
//! announces the change to the listeners of [`Changes`] before it returns
//! (the read cache moves the project's generation there). The writes
//! themselves also move the project's content generation in the database,
//! in their own transaction ([`crate::readcache::bump_generation`]), so that
//! every instance learns of a change Redis did not carry.
//!
//! Record writes run through [`Database::write`] (group commit on SQLite);
//! reads take their model from the [`Catalog`], which listens to the same
//! announcements.
//!
//! Every write that can change the published view is armed with a
//! [`crate::changes::Pending`] before it starts:
//! if the request is dropped while the commit is in flight, the change is
//! announced as in doubt anyway, so no cached read outlives a write that
//! landed.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::budget::AnswerBudget;
use super::catalog::Catalog;
use super::models::{self, ModelChange, NewModel};
use super::query::{self, ListRecords, OrderTerm, RecordPage};
use super::records::{self, RecordOut};
use super::schema::{self, ContentModel};
use super::search::{SearchPage, SearchQuery};
use super::View;
use crate::auth::principal::Principal;
use crate::changes::{Action, Change, Changes, RecordAction};
use crate::clock::Clock;
use crate::db::Database;
use crate::error::{AppError, AppResult};
use crate::search::Searcher;

/// What a `records` read asks for.
#[derive(Clone, Debug)]
pub struct RecordsQuery {
    pub model_key: String,
    pub limit: i64,
    pub after: Option<String>,
    /// The draft view (secret TEST keys holding `drafts:read` only).
    pub preview: bool,
    pub filter: Option<Value>,
    pub order: Vec<OrderTerm>,
}

/// The content service of one instance.
pub struct ContentService {
    db: Database,
    clock: Arc<dyn Clock>,
    changes: Arc<Changes>,
    /// The models, held in memory (a listener of `changes`).
    catalog: Arc<Catalog>,
}

impl ContentService {
    /// The service over `db`, announcing changes to `changes`; `catalog`
    /// must listen to them.
    pub fn new(
        db: Database,
        clock: Arc<dyn Clock>,
        changes: Arc<Changes>,
        catalog: Arc<Catalog>,
    ) -> Self {
        Self {
            db,
            clock,
            changes,
            catalog,
        }
    }

    /// One page of a model's records in the view the key may have; their
    /// data is charged to `budget` before it is loaded.
    pub async fn records(
        &self,
        p: &Principal,
        q: RecordsQuery,
        budget: &AnswerBudget,
    ) -> AppResult<RecordPage> {
        let view = View::for_request(p, q.preview)?;
        let model = self
            .catalog
            .model(&self.db.conn, &p.project_id, &q.model_key)
            .await?;
        let req = ListRecords {
            model_key: q.model_key,
            view,
            limit: q.limit,
            after: q.after,
            filter: q.filter,
            order: q.order,
        };
        query::list_records_within(&self.db.conn, &model, req, budget).await
    }

    /// One record, `None` when it does not exist or the view hides it; its
    /// data is charged to `budget` before it is loaded.
    pub async fn record(
        &self,
        p: &Principal,
        id: &str,
        preview: bool,
        budget: &AnswerBudget,
    ) -> AppResult<Option<RecordOut>> {
        let view = View::for_request(p, preview)?;
        query::read_record(&self.db.conn, &p.project_id, id, view, budget).await
    }

    /// One page of search hits in the view the key may have (SPEC §8).
    pub async fn search(
        &self,
        p: &Principal,
        searcher: &Searcher,
        q: SearchQuery,
        budget: &AnswerBudget,
    ) -> AppResult<SearchPage> {
        super::search::search(&self.db.conn, &self.catalog, searcher, p, q, budget).await
    }

    /// The project's models.
    pub async fn models(&self, p: &Principal) -> AppResult<Vec<ContentModel>> {
        schema::list_models(&self.db.conn, &p.project_id).await
    }

    /// One model by key.
    pub async fn model(&self, p: &Principal, key: &str) -> AppResult<Option<ContentModel>> {
        match self.catalog.model(&self.db.conn, &p.project_id, key).await {
            Ok(model) => Ok(Some(ContentModel::clone(&model))),
            Err(AppError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a model.
    pub async fn create_model(&self, p: &Principal, new: NewModel) -> AppResult<ContentModel> {
        let write = models::create_model(
            &self.db.writer,
            &self.catalog,
            &p.project_id,
            new,
            self.clock.now(),
        );
        self.announced(p, write, |m| model_change(p, m.key(), Action::Created))
            .await
    }

    /// Renames a model or changes its fields.
    pub async fn update_model(
        &self,
        p: &Principal,
        key: &str,
        change: ModelChange,
    ) -> AppResult<ContentModel> {
        let write = models::update_model(
            &self.db.writer,
            &self.catalog,
            &p.project_id,
            key,
            change,
            self.clock.now(),
        );
        self.announced(p, write, |m| model_change(p, m.key(), Action::Updated))
            .await
    }

    /// Deletes a model without records that no model references.
    pub async fn delete_model(&self, p: &Principal, key: &str) -> AppResult<()> {
        let write = models::delete_model(
            &self.db.writer,
            &self.catalog,
            &p.project_id,
            key,
            self.clock.now(),
        );
        self.announced(p, write, |()| model_change(p, key, Action::Deleted))
            .await
    }

    /// Creates a draft record. A new draft is not in the published view, so
    /// a create cut off mid-commit needs no announcement in doubt.
    pub async fn create_record(
        &self,
        p: &Principal,
        model_key: &str,
        data: Value,
    ) -> AppResult<RecordOut> {
        let (catalog, project, model_key, now) = self.owned(p, model_key);
        let record = self
            .db
            .write(Box::new(move |txn| {
                Box::pin(async move {
                    records::create_record(txn, &catalog, &project, &model_key, data, now).await
                })
            }))
            .await?;
        self.changes
            .committed(record_change(p, &record, RecordAction::Created))
            .await;
        Ok(record)
    }

    /// Replaces a record's draft data.
    pub async fn update_record(
        &self,
        p: &Principal,
        id: &str,
        data: Value,
        expected_version: Option<i64>,
    ) -> AppResult<RecordOut> {
        let (catalog, project, id, now) = self.owned(p, id);
        let write = self.db.write(Box::new(move |txn| {
            Box::pin(async move {
                records::update_record(txn, &catalog, &project, &id, data, expected_version, now)
                    .await
            })
        }));
        self.announced(p, write, |r| record_change(p, r, RecordAction::Updated))
            .await
    }

    /// Publishes a record's draft.
    pub async fn publish_record(&self, p: &Principal, id: &str) -> AppResult<RecordOut> {
        let (catalog, project, id, now) = self.owned(p, id);
        let write = self.db.write(Box::new(move |txn| {
            Box::pin(
                async move { records::publish_record(txn, &catalog, &project, &id, now).await },
            )
        }));
        self.announced(p, write, |r| record_change(p, r, RecordAction::Published))
            .await
    }

    /// Takes a record out of the published view.
    pub async fn unpublish_record(&self, p: &Principal, id: &str) -> AppResult<RecordOut> {
        let (catalog, project, id, now) = self.owned(p, id);
        let write = self.db.write(Box::new(move |txn| {
            Box::pin(
                async move { records::unpublish_record(txn, &catalog, &project, &id, now).await },
            )
        }));
        self.announced(p, write, |r| record_change(p, r, RecordAction::Unpublished))
            .await
    }

    /// Deletes a record from every view.
    pub async fn delete_record(&self, p: &Principal, id: &str) -> AppResult<()> {
        let (catalog, project, id, now) = self.owned(p, id);
        let write = self.db.write(Box::new(move |txn| {
            Box::pin(async move { records::delete_record(txn, &catalog, &project, &id, now).await })
        }));
        self.announced(p, write, |r| record_change(p, r, RecordAction::Deleted))
            .await
            .map(drop)
    }

    /// What a queued record write owns: the catalog, the project id, the
    /// write's subject (a model key or a record id) and the time.
    fn owned(&self, p: &Principal, subject: &str) -> (Arc<Catalog>, String, String, DateTime<Utc>) {
        (
            Arc::clone(&self.catalog),
            p.project_id.clone(),
            subject.to_owned(),
            self.clock.now(),
        )
    }

    /// Runs a write armed with a [`crate::changes::Pending`]: the change it
    /// made is announced before this returns. A write refused by a rule
    /// wrote nothing; one that failed otherwise (the commit itself may have
    /// landed) or was cut off mid-commit is announced in doubt.
    async fn announced<T>(
        &self,
        p: &Principal,
        write: impl Future<Output = AppResult<T>>,
        change: impl FnOnce(&T) -> Change,
    ) -> AppResult<T> {
        let pending = self.changes.arm(&p.project_id);
        match write.await {
            Ok(written) => {
                pending.committed(change(&written)).await;
                Ok(written)
            }
            Err(e) => {
                if e.is_refusal() {
                    pending.nothing();
                }
                Err(e)
            }
        }
    }
}

fn model_change(p: &Principal, model_key: &str, action: Action) -> Change {
    Change::Model {
        project_id: p.project_id.clone(),
        model_key: model_key.to_owned(),
        action,
    }
}

/// A record change, and whether the published view shows it: a new draft
/// is not in it; an update of a record that was never published is not
/// either (the view shows a published record's version, status and
/// `updatedAt`, so any other update is).
fn record_change(p: &Principal, record: &RecordOut, action: RecordAction) -> Change {
    let published_view = match action {
        RecordAction::Created => false,
        RecordAction::Updated => record.row.published_at.is_some(),
        RecordAction::Published | RecordAction::Unpublished | RecordAction::Deleted => true,
    };
    Change::Record {
        project_id: p.project_id.clone(),
        model_key: record.model_key.clone(),
        record_id: record.row.id.clone(),
        action,
        published_view,
    }
}
