//! Keeps a projection caught up with the store and lets readers wait for a position.
use crate::BookingsProjection;
use std::sync::Arc;
use std::time::Duration;
use store::history::{self, Checkpoint};
use store::StoreError;
use tokio::sync::{watch, Notify};

/// Drives [`BookingsProjection`]: wakes on a nudge from the command side (or every
/// `poll_interval`), gives writers a few milliseconds to add to the batch, applies what is new,
/// and publishes the checkpoint it reached.
#[derive(Clone)]
pub struct ProjectionRunner {
    projection: BookingsProjection,
    nudge: Arc<Notify>,
    applied: watch::Sender<Checkpoint>,
}

const BATCH: i64 = 1000;
/// How long a nudge waits for more events before the batch is applied.
const GATHER: Duration = Duration::from_millis(3);

impl ProjectionRunner {
    pub fn new(projection: BookingsProjection) -> Self {
        let (applied, _) = watch::channel(Checkpoint::default());
        ProjectionRunner {
            projection,
            nudge: Arc::new(Notify::new()),
            applied,
        }
    }

    pub fn projection(&self) -> &BookingsProjection {
        &self.projection
    }

    /// Tells the runner that new events were committed.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Runs until `shutdown` resolves.
    pub async fn run(
        &self,
        poll_interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        let mut from = match self.projection.checkpoint().await {
            Ok(cp) => cp,
            Err(e) => {
                tracing::warn!(error = %e, "reading the projection checkpoint failed");
                Checkpoint::default()
            }
        };
        loop {
            match self.projection.catch_up_from(from, BATCH).await {
                Ok((n, reached)) => {
                    from = reached;
                    self.applied.send_replace(reached);
                    if n as i64 == BATCH {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, projection = self.projection.name(), "projection step failed");
                    // Start again from what the store says.
                    if let Ok(cp) = self.projection.checkpoint().await {
                        from = cp;
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.nudge.notified() => tokio::time::sleep(GATHER).await,
                _ = tokio::time::sleep(poll_interval) => {}
            }
        }
    }

    /// Waits until the projection has applied `position`, at most `timeout`.
    /// Returns whether it got there.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.applied.subscribe();
        let target = loop {
            match history::checkpoint_of(self.projection.db(), position).await? {
                Some(target) => break target,
                // Not (yet) an event: reached once the store has moved past it.
                None => {
                    if self.projection.checkpoint().await?.position >= position {
                        return Ok(true);
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(false);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        loop {
            if *rx.borrow_and_update() >= target {
                return Ok(true);
            }
            // Another process may be the one applying: ask the store too.
            if self.projection.checkpoint().await? >= target {
                return Ok(true);
            }
            self.nudge();
            let step = tokio::time::sleep_until(
                deadline.min(tokio::time::Instant::now() + Duration::from_millis(50)),
            );
            tokio::select! {
                _ = rx.changed() => {}
                _ = step => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(self.projection.checkpoint().await? >= target);
            }
        }
    }
}
