//! Key changes over Redis pub/sub (when `QUIRE_REDIS_URL` is set): the
//! instance that changes a key publishes its id and every subscribed
//! instance drops it from its cache within milliseconds. The database change
//! feed stays the guarantee (it also carries `quire admin` changes and
//! survives a Redis outage); this is the fast path.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::aio::ConnectionManager;
use tokio::sync::OnceCell;

/// The channel key ids are published on.
pub const CHANNEL: &str = "quire:key-changes";
/// How long a publish may take before it is given up (the feed covers it).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause before subscribing again after a failure.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Publishes and receives key changes through Redis.
pub struct Broadcast {
    client: redis::Client,
    conn: OnceCell<ConnectionManager>,
}

impl Broadcast {
    /// A broadcaster on `url`; connects lazily.
    pub fn new(url: &str) -> Result<Self, String> {
        let client =
            redis::Client::open(url).map_err(|e| format!("invalid QUIRE_REDIS_URL: {e}"))?;
        Ok(Self {
            client,
            conn: OnceCell::new(),
        })
    }

    /// Announces that `key_id` changed; never waits (a background task sends).
    pub fn publish(self: &Arc<Self>, key_id: &str) {
        let this = Arc::clone(self);
        let key_id = key_id.to_owned();
        tokio::spawn(async move {
            let sent = tokio::time::timeout(PUBLISH_TIMEOUT, async {
                let conn = this
                    .conn
                    .get_or_try_init(|| ConnectionManager::new(this.client.clone()))
                    .await?;
                let mut conn = conn.clone();
                redis::cmd("PUBLISH")
                    .arg(CHANNEL)
                    .arg(&key_id)
                    .query_async::<i64>(&mut conn)
                    .await
            })
            .await;
            match sent {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot publish a key change to Redis"),
                Err(_) => tracing::debug!("publishing a key change to Redis timed out"),
            }
        });
    }

    /// Calls `on_change` with every key id published by any instance, until
    /// the process ends; resubscribes after failures.
    pub fn spawn_listener(
        self: &Arc<Self>,
        on_change: impl Fn(&str) + Send + Sync + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match this.client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(CHANNEL).await {
                        Ok(()) => {
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                if let Ok(key_id) = msg.get_payload::<String>() {
                                    on_change(&key_id);
                                }
                            }
                            tracing::warn!("Redis key-change subscription ended; resubscribing");
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot subscribe to Redis key changes")
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot reach Redis for key changes"),
                }
                tokio::time::sleep(RESUBSCRIBE_AFTER).await;
            }
        })
    }
}
