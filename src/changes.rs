//! Committed changes, announced in one place.
//!
//! A service that commits a change describes it as a [`Change`] and hands it
//! to [`Changes::committed`] before its method returns; every registered
//! [`Listener`] sees it, in registration order, and is awaited. Today the
//! read cache listens (it moves the project's content generation); the
//! capabilities to come (events, the search index, webhooks, usage) plug in
//! here as further listeners, or, where they must be written in the same
//! transaction, next to the service's commit.
//!
//! A write whose request is dropped while it commits (the client went away)
//! may or may not have landed: a [`Pending`] armed before the write then
//! announces [`Change::InDoubt`] from a task of its own, and listeners assume
//! the worst.

use std::sync::Arc;

use futures::future::BoxFuture;

/// What a committed write changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// API keys changed (created, updated, rotated, revoked, imported).
    Keys {
        project_id: String,
        key_ids: Vec<String>,
    },
    /// A content model was created, changed or deleted.
    Model {
        project_id: String,
        model_key: String,
        action: Action,
    },
    /// A record was written.
    Record {
        project_id: String,
        model_key: String,
        record_id: String,
        action: RecordAction,
        /// Whether what the published view shows changed.
        published_view: bool,
    },
    /// A file was written (uploaded, changed, published, unpublished or
    /// deleted); no cached read shows files.
    File { project_id: String, file_id: String },
    /// A write in the project whose outcome is unknown.
    InDoubt { project_id: String },
}

/// What happened to a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Created,
    Updated,
    Deleted,
}

/// What happened to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordAction {
    Created,
    Updated,
    Published,
    Unpublished,
    Deleted,
}

impl Change {
    /// The project the change happened in.
    pub fn project_id(&self) -> &str {
        match self {
            Change::Keys { project_id, .. }
            | Change::Model { project_id, .. }
            | Change::Record { project_id, .. }
            | Change::File { project_id, .. }
            | Change::InDoubt { project_id } => project_id,
        }
    }

    /// Whether the change may alter what the published content view shows
    /// (every model change does: it can change how reads are answered).
    pub fn touches_published_view(&self) -> bool {
        match self {
            Change::Keys { .. } | Change::File { .. } => false,
            Change::Model { .. } | Change::InDoubt { .. } => true,
            Change::Record { published_view, .. } => *published_view,
        }
    }
}

/// Something that follows committed changes.
pub trait Listener: Send + Sync {
    /// Called once per committed change, before the write's caller is
    /// answered; should not fail (a listener handles its own trouble).
    fn committed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()>;
}

/// The listeners of one instance.
#[derive(Default)]
pub struct Changes {
    listeners: Vec<Arc<dyn Listener>>,
}

impl Changes {
    /// No listeners yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a listener; listeners are called in the order they were added.
    pub fn listen(&mut self, listener: Arc<dyn Listener>) {
        self.listeners.push(listener);
    }

    /// Tells every listener about a committed change.
    pub async fn committed(&self, change: Change) {
        for listener in &self.listeners {
            listener.committed(&change).await;
        }
    }

    /// Arms a [`Pending`] for a write about to start in `project_id`.
    pub fn arm(self: &Arc<Self>, project_id: &str) -> Pending {
        Pending {
            changes: Some(Arc::clone(self)),
            project_id: project_id.to_owned(),
        }
    }
}

/// A write under way. Finish it with [`Pending::committed`] or
/// [`Pending::nothing`]; dropped unfinished, it announces
/// [`Change::InDoubt`] from a task of its own.
pub struct Pending {
    changes: Option<Arc<Changes>>,
    project_id: String,
}

impl Pending {
    /// Announces the committed change.
    pub async fn committed(mut self, change: Change) {
        if let Some(changes) = self.changes.take() {
            changes.committed(change).await;
        }
    }

    /// The write changed nothing (or failed before committing).
    pub fn nothing(mut self) {
        self.changes = None;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(changes) = self.changes.take() else {
            return;
        };
        let change = Change::InDoubt {
            project_id: std::mem::take(&mut self.project_id),
        };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { changes.committed(change).await });
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl Listener for Recorder {
        fn committed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
            Box::pin(async move {
                self.0
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(change.clone());
            })
        }
    }

    fn seen(r: &Recorder) -> Vec<Change> {
        r.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    #[tokio::test]
    async fn a_dropped_write_is_announced_in_doubt_and_a_finished_one_once() {
        let recorder = Arc::new(Recorder::default());
        let mut changes = Changes::new();
        changes.listen(recorder.clone());
        let changes = Arc::new(changes);

        let change = Change::Keys {
            project_id: "p".into(),
            key_ids: vec!["k".into()],
        };
        changes.arm("p").committed(change.clone()).await;
        changes.arm("p").nothing();
        drop(changes.arm("q"));
        for _ in 0..100 {
            if seen(&recorder).len() == 2 {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(
            seen(&recorder),
            vec![
                change,
                Change::InDoubt {
                    project_id: "q".into()
                }
            ]
        );
    }
}
