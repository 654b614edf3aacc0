//! Wake-ups for whatever follows events on this instance: the streams of
//! each project and the dispatcher.
//!
//! A commit on this instance wakes them at once (the hub listens to
//! [`crate::changes`]); a commit on another instance is seen by polling the
//! latest event id of the projects that have open streams every [`POLL`]
//! (within a project it grows with every commit) (the dispatcher polls for
//! due webhooks on its own). With Redis, the committing instance also
//! publishes the project on [`CHANNEL`], and every instance wakes its
//! streams and dispatcher within milliseconds: the fast path; the poll stays
//! the guarantee. A wake-up
//! carries no event: the woken reader reads the events after its own cursor
//! from the database, so a slow reader never holds events in memory and a
//! missed wake-up costs at most one poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entity::events;
use futures::future::BoxFuture;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use tokio::sync::{watch, Notify};

use crate::changes::{Change, Listener};
use crate::redis_link::{Broadcast, RedisLink};

/// How often other instances' commits are looked for.
pub const POLL: Duration = Duration::from_millis(250);
/// The Redis channel the projects of committed events are published on.
pub const CHANNEL: &str = "quire:events";
/// Most projects asked about in one poll statement.
const POLL_CHUNK: usize = 200;

struct Watched {
    tx: watch::Sender<u64>,
    /// The latest event id last seen (`None`: not read yet).
    seen: Option<i64>,
    /// Wake-ups that came through Redis.
    through_redis: u64,
}

/// The wake-ups of one instance.
pub struct EventHub {
    db: DatabaseConnection,
    projects: Mutex<HashMap<String, Watched>>,
    /// Something for the dispatcher to look at.
    dispatch: Notify,
    /// Set when the server stops accepting: streams end.
    closing: watch::Sender<bool>,
    /// Commits announced through Redis (none without it).
    broadcast: Option<Arc<Broadcast>>,
}

impl EventHub {
    /// A hub polling `db`, and with `redis`, announcing commits there.
    pub fn new(db: DatabaseConnection, redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            db,
            projects: Mutex::new(HashMap::new()),
            dispatch: Notify::new(),
            closing: watch::channel(false).0,
            broadcast: redis.map(|link| Arc::new(Broadcast::new(link, CHANNEL))),
        }
    }

    /// How many wake-ups of the project's open streams came through Redis.
    pub fn redis_wakeups(&self, project_id: &str) -> u64 {
        let projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        projects.get(project_id).map_or(0, |w| w.through_redis)
    }

    /// Wakes what follows `project_id` on this instance, and announces the
    /// commit to the others through Redis (when configured).
    fn committed_in(&self, project_id: &str) {
        self.wake(project_id);
        self.want_dispatch();
        if let Some(broadcast) = &self.broadcast {
            broadcast.publish(project_id);
        }
    }

    /// A receiver whose value changes whenever the project may have new
    /// events.
    pub fn subscribe(&self, project_id: &str) -> watch::Receiver<u64> {
        let mut projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        projects
            .entry(project_id.to_owned())
            .or_insert_with(|| Watched {
                tx: watch::channel(0).0,
                seen: None,
                through_redis: 0,
            })
            .tx
            .subscribe()
    }

    fn wake(&self, project_id: &str) {
        let projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = projects.get(project_id) {
            w.tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// A receiver that turns `true` when the server shuts down.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every stream (the server stopped accepting): clients reconnect
    /// elsewhere with `Last-Event-ID` instead of holding the shutdown for
    /// the whole grace period.
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves when the dispatcher should look for work before its next tick.
    pub async fn dispatch_wanted(&self) {
        self.dispatch.notified().await;
    }

    /// Wakes the dispatcher (a webhook or delivery became due here).
    pub fn want_dispatch(&self) {
        self.dispatch.notify_one();
    }

    /// Polls the heads of watched projects until the process ends, and
    /// with Redis, follows the other instances' announcements.
    pub fn spawn_poller(self: &Arc<Self>) {
        if let Some(broadcast) = &self.broadcast {
            let hub = Arc::clone(self);
            broadcast.spawn_listener(move |project_id| {
                metrics::counter!("quire_event_redis_wakeups_total").increment(1);
                if let Some(w) = hub
                    .projects
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_mut(project_id)
                {
                    w.through_redis += 1;
                    w.tx.send_modify(|n| *n = n.wrapping_add(1));
                }
                hub.want_dispatch();
            });
        }
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                if let Err(e) = hub.poll().await {
                    tracing::debug!(error = %e, "could not poll event heads");
                }
            }
        });
    }

    async fn poll(&self) -> Result<(), sea_orm::DbErr> {
        let watched: Vec<String> = {
            let mut projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
            projects.retain(|_, w| w.tx.receiver_count() > 0);
            projects.keys().cloned().collect()
        };
        for chunk in watched.chunks(POLL_CHUNK) {
            let heads: Vec<(String, Option<i64>)> = events::Entity::find()
                .select_only()
                .column(events::Column::ProjectId)
                .column_as(events::Column::Id.max(), "max_id")
                .filter(events::Column::ProjectId.is_in(chunk.iter().cloned()))
                .group_by(events::Column::ProjectId)
                .into_tuple()
                .all(&self.db)
                .await?;
            let mut projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
            for (project_id, latest) in heads {
                let latest = latest.unwrap_or(0);
                if let Some(w) = projects.get_mut(&project_id) {
                    if w.seen != Some(latest) {
                        w.seen = Some(latest);
                        w.tx.send_modify(|n| *n = n.wrapping_add(1));
                    }
                }
            }
        }
        Ok(())
    }
}

impl Listener for EventHub {
    fn committed<'a>(&'a self, change: &'a Change) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            match change {
                Change::Keys { .. } => {}
                Change::Model { .. } | Change::Record { .. } | Change::File { .. } => {
                    metrics::counter!("quire_events_written_total").increment(1);
                    self.committed_in(change.project_id());
                }
                Change::InDoubt { .. } => self.committed_in(change.project_id()),
            }
        })
    }
}
