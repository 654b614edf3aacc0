//! The models of each project, held in memory: a model changes rarely and
//! every read of records needs one, so reads look it up here instead of
//! asking the database each time.
//!
//! Exactness:
//!
//! - A model change on this instance moves the project's *epoch* when it
//!   is announced ([`Catalog`] listens to [`crate::changes`]), before the
//!   mutation answers. A load that began before the move carries the old
//!   epoch and is never used (the same holds for a write in doubt).
//! - A model change on another instance moves the project's content
//!   generation in the database ([`crate::readcache::bump_generation`]); a
//!   model is used only while the generation it was loaded at is the
//!   highest this instance has seen (the read cache polls it every 250 ms
//!   and reads it per cached request on PostgreSQL, so it is seen there at
//!   once).
//! - Writes never use that copy on PostgreSQL: they lock the model row in
//!   their transaction. On SQLite, whose writes all go one at a time through
//!   the one writer connection, writes use a second copy that only code
//!   holding the writer touches: loaded inside write transactions, dropped
//!   by every model change inside its own transaction, before it commits.
//!
//! Only models that exist are held (a lookup of an unknown key asks the
//! database every time), so no request can grow this beyond the models
//! projects have.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use futures::future::BoxFuture;
use sea_orm::ConnectionTrait;

use super::schema::{self, ContentModel};
use crate::changes::{Change, Listener};
use crate::error::AppResult;
use crate::readcache::ReadCache;

/// One project's models as this instance knows them.
#[derive(Default)]
struct Project {
    /// Moved by every local model change (and write in doubt).
    epoch: u64,
    /// Key → (content generation loaded at, epoch loaded at, the model).
    models: HashMap<String, (i64, u64, Arc<ContentModel>)>,
}

/// The models of every project, for reads, and the writer's own copy.
pub struct Catalog {
    projects: RwLock<HashMap<String, Project>>,
    /// The SQLite writer's copy (see the module documentation); `None` when
    /// writes must lock the model row instead.
    written: Option<Mutex<Written>>,
    /// Knows the highest content generation seen per project.
    generations: Arc<ReadCache>,
}

/// The writer's copy: (project id, key) and (project id, model id) → model.
#[derive(Default)]
struct Written {
    by_key: HashMap<(String, String), Arc<ContentModel>>,
    by_id: HashMap<(String, String), Arc<ContentModel>>,
}

impl Written {
    fn keep(&mut self, project_id: &str, model: &Arc<ContentModel>) {
        let project = project_id.to_owned();
        self.by_key
            .insert((project.clone(), model.row.key.clone()), Arc::clone(model));
        self.by_id
            .insert((project, model.row.id.clone()), Arc::clone(model));
    }
}

impl Catalog {
    /// A catalog following `generations`; `exclusive_writer` when every
    /// write of the database goes through one connection (SQLite), so that
    /// writes may use a copy of their own.
    pub fn new(generations: Arc<ReadCache>, exclusive_writer: bool) -> Self {
        Self {
            projects: RwLock::default(),
            written: exclusive_writer.then(Mutex::default),
            generations,
        }
    }

    /// The project's model with this key, or `NOT_FOUND`, for a read.
    pub async fn model<C: ConnectionTrait>(
        &self,
        db: &C,
        project_id: &str,
        key: &str,
    ) -> AppResult<Arc<ContentModel>> {
        let generation = self.generations.content_generation(project_id);
        let epoch = {
            let projects = self.projects.read().unwrap_or_else(|p| p.into_inner());
            let project = projects.get(project_id);
            if let Some((g, e, model)) = project.and_then(|p| p.models.get(key)) {
                if *g == generation && Some(*e) == project.map(|p| p.epoch) {
                    return Ok(Arc::clone(model));
                }
            }
            project.map_or(0, |p| p.epoch)
        };
        let model = Arc::new(schema::require_model(db, project_id, key).await?);
        let mut projects = self.projects.write().unwrap_or_else(|p| p.into_inner());
        let project = projects.entry(project_id.to_owned()).or_default();
        // A change announced while this load ran: the model read may be the
        // old one, so it is not kept.
        if project.epoch == epoch && self.generations.content_generation(project_id) == generation {
            project
                .models
                .insert(key.to_owned(), (generation, epoch, Arc::clone(&model)));
        }
        Ok(model)
    }

    /// The writer's copy of the model with this key, if it holds one; only
    /// for code holding the writer (a write transaction on SQLite).
    pub fn written(&self, project_id: &str, key: &str) -> Option<Arc<ContentModel>> {
        let written = self.written.as_ref()?;
        let written = written.lock().unwrap_or_else(|p| p.into_inner());
        written
            .by_key
            .get(&(project_id.to_owned(), key.to_owned()))
            .cloned()
    }

    /// The model a write of records validates against, read in its
    /// transaction `txn`: from the writer's copy on SQLite, else read with
    /// a shared lock on its row until the transaction ends.
    pub async fn for_write<C: ConnectionTrait>(
        &self,
        txn: &C,
        project_id: &str,
        key: &str,
    ) -> AppResult<Arc<ContentModel>> {
        if let Some(model) = self.written(project_id, key) {
            return Ok(model);
        }
        let model = Arc::new(schema::lock_model(txn, project_id, key, false).await?);
        self.keep_written(project_id, &model);
        Ok(model)
    }

    /// Like [`Catalog::for_write`], by the model's id (a record's model).
    pub async fn for_write_by_id<C: ConnectionTrait>(
        &self,
        txn: &C,
        project_id: &str,
        model_id: &str,
    ) -> AppResult<Arc<ContentModel>> {
        if let Some(written) = &self.written {
            let written = written.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(model) = written
                .by_id
                .get(&(project_id.to_owned(), model_id.to_owned()))
            {
                return Ok(Arc::clone(model));
            }
        }
        let model = Arc::new(schema::lock_model_by_id(txn, project_id, model_id).await?);
        self.keep_written(project_id, &model);
        Ok(model)
    }

    fn keep_written(&self, project_id: &str, model: &Arc<ContentModel>) {
        if let Some(written) = &self.written {
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keep(project_id, model);
        }
    }

    /// Drops the writer's copy of the project's models: called by every
    /// model change inside its transaction, before it commits.
    pub fn forget_written(&self, project_id: &str) {
        if let Some(written) = &self.written {
            let mut written = written.lock().unwrap_or_else(|p| p.into_inner());
            written
                .by_key
                .retain(|(project, _), _| project != project_id);
            written
                .by_id
                .retain(|(project, _), _| project != project_id);
        }
    }

    /// Moves the project's epoch: no model loaded before is used again.
    fn forget(&self, project_id: &str) {
        let mut projects = self.projects.write().unwrap_or_else(|p| p.into_inner());
        let project = projects.entry(project_id.to_owned()).or_default();
        project.epoch += 1;
        project.models.clear();
    }
}

/// A model change (or a write in doubt, which may have been one) moves the
/// project's epoch before the write's caller is answered.
impl Listener for Catalog {
    fn committed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Change::Model { project_id, .. } | Change::InDoubt { project_id } = change {
                self.forget(project_id);
                self.forget_written(project_id);
            }
        })
    }
}
