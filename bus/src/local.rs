//! The in-process bus of a service without NATS (embedded mode): the same relay step (committed
//! events in commit-safe order) feeds a broadcast channel that the projection builders follow.
//! Nothing is kept: a builder that starts, or falls behind the channel, reads the store.
use crate::Link;
use std::sync::Arc;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::{Database, StoreError};
use tokio::sync::broadcast;

/// Batches of linked events, shared by every subscriber.
pub type Batch = Arc<Vec<Link>>;

#[derive(Clone)]
pub struct LocalBus {
    sender: broadcast::Sender<Batch>,
}

impl Default for LocalBus {
    fn default() -> Self {
        LocalBus::new(1024)
    }
}

impl LocalBus {
    /// A bus that keeps at most `capacity` batches for a slow subscriber.
    pub fn new(capacity: usize) -> Self {
        let (sender, _) = broadcast::channel(capacity);
        LocalBus { sender }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Batch> {
        self.sender.subscribe()
    }
}

/// Publishes the store to a [`LocalBus`]; its checkpoint lives in memory and starts at the
/// store's head (earlier events are the builders' to read from the store).
pub struct LocalRelay {
    db: Database,
    bus: LocalBus,
    at: Checkpoint,
    batch: i64,
}

impl LocalRelay {
    pub async fn new(db: Database, bus: LocalBus) -> Result<LocalRelay, StoreError> {
        let at = history::head(&db).await?;
        Ok(LocalRelay {
            db,
            bus,
            at,
            batch: 1000,
        })
    }

    /// Publishes one batch; returns how many events it published.
    pub async fn relay_once(&mut self) -> Result<usize, StoreError> {
        let events = history::events_after(&self.db, self.at, self.batch).await?;
        let Some(last) = events.last().map(|e| e.checkpoint()) else {
            return Ok(0);
        };
        let n = events.len();
        let links = crate::chain(self.at, events);
        // No subscriber is not an error: builders read the store when they start.
        let _ = self.bus.sender.send(Arc::new(links));
        self.at = last;
        metrics::counter!("zhilego_relay_published_total").increment(n as u64);
        metrics::gauge!("zhilego_relay_position").set(last.position as f64);
        Ok(n)
    }

    /// Relays until `shutdown` resolves: after every nudge and every `poll`.
    pub async fn run(
        mut self,
        nudge: &tokio::sync::Notify,
        poll: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            match self.relay_once().await {
                Ok(n) if n as i64 == self.batch => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "local relay step failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = nudge.notified() => tokio::time::sleep(crate::relay::GATHER).await,
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}
