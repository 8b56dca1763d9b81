//! The background sync: every feed once per interval, however many instances run it. Each
//! pass lists the feeds nobody took within the interval and takes each with one
//! compare-and-set on its status row (`FeedStatus::claim`); only the instance whose update
//! matched syncs it, so two instances never sync a feed twice in one interval, and a feed an
//! instance took and then crashed on is due again one interval later. At most
//! `concurrency` feeds are fetched at once per instance.
use super::CalendarSync;
use crate::metadata::CommandMeta;
use futures::StreamExt;
use std::time::Duration;

/// Feeds listed per query of a pass.
const BATCH: i64 = 1_000;

impl CalendarSync {
    /// One pass: syncs every feed that is due and this instance takes. Gives how many.
    pub async fn pass(&self) -> Result<usize, store::StoreError> {
        let interval = i64::try_from(self.config.interval.as_millis()).unwrap_or(i64::MAX);
        let mut synced = 0;
        loop {
            let now = super::now_ms();
            let cutoff = now.saturating_sub(interval);
            let due = self.status.due(cutoff, BATCH).await?;
            if due.is_empty() {
                return Ok(synced);
            }
            let listed = due.len();
            let done: Vec<bool> = futures::stream::iter(due)
                .map(|row| async move {
                    match self.status.claim(row.feed_id, cutoff, super::now_ms()).await {
                        Ok(true) => {}
                        Ok(false) => return false,
                        Err(e) => {
                            tracing::warn!(feed_id = %row.feed_id, error = %e, "a calendar feed could not be claimed");
                            return false;
                        }
                    }
                    self.sync_claimed(row.listing_id, row.feed_id).await
                })
                .buffer_unordered(self.config.concurrency.max(1))
                .collect()
                .await;
            synced += done.iter().filter(|d| **d).count();
            if (listed as i64) < BATCH {
                return Ok(synced);
            }
        }
    }

    /// Syncs a feed the worker took; a feed whose listing no longer has it is forgotten.
    async fn sync_claimed(&self, listing_id: uuid::Uuid, feed_id: uuid::Uuid) -> bool {
        let meta = CommandMeta::system();
        let listing = match self.commands.listing(listing_id).await {
            Ok(Some(l)) => l,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(%listing_id, %feed_id, error = %e, "the listing of a calendar feed did not load");
                return false;
            }
        };
        if !listing.feeds.contains_key(&feed_id) {
            if let Err(e) = self.status.forget(feed_id).await {
                tracing::warn!(%feed_id, error = %e, "a removed feed's status stays");
            }
            return false;
        }
        match self.sync_taken(listing, feed_id, &meta).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(%listing_id, %feed_id, error = %e, "a calendar feed sync failed");
                false
            }
        }
    }

    /// Passes every tick (a tenth of the interval, between 100 ms and 30 s) until `stop`.
    pub async fn run(&self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let tick =
            (self.config.interval / 10).clamp(Duration::from_millis(100), Duration::from_secs(30));
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "a calendar sync pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}
