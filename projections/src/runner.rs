//! Keeps a projection caught up with the store and lets readers wait for a position.
use crate::BookingsProjection;
use std::sync::Arc;
use std::time::Duration;
use store::StoreError;
use tokio::sync::{watch, Notify};

/// Drives [`BookingsProjection`]: wakes on a nudge from the command side (or every
/// `poll_interval`), applies what is new, and publishes the applied position.
#[derive(Clone)]
pub struct ProjectionRunner {
    projection: BookingsProjection,
    nudge: Arc<Notify>,
    applied: watch::Sender<i64>,
}

const BATCH: i64 = 1000;

impl ProjectionRunner {
    pub fn new(projection: BookingsProjection) -> Self {
        let (applied, _) = watch::channel(0);
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
        loop {
            match self.projection.catch_up(BATCH).await {
                Ok(n) => {
                    if let Ok(cp) = self.projection.checkpoint().await {
                        self.applied.send_replace(cp.position);
                    }
                    if n as i64 == BATCH {
                        continue;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, projection = self.projection.name(), "projection step failed")
                }
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = self.nudge.notified() => {}
                _ = tokio::time::sleep(poll_interval) => {}
            }
        }
    }

    /// Waits until the projection has applied `position`, at most `timeout`.
    /// Returns whether it got there.
    pub async fn wait_for(&self, position: i64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.applied.subscribe();
        loop {
            if self.projection.has_reached(position).await? {
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
                return self.projection.has_reached(position).await;
            }
        }
    }
}
