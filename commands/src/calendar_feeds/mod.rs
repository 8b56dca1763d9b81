//! Calendar feeds: other sites' iCal calendars of a listing, imported as blocks.
//!
//! - [`fetch`]: the HTTP GET, safe for URLs strangers type in (addresses checked after DNS,
//!   timeouts, size cap, bounded redirects, conditional requests).
//! - [`parse`]: the feed's text → each event's nights in the listing's local dates.
//! - [`status`]: each feed's sync state (claim, last result, error, validators), a table.
//! - [`worker`]: the background sync, every feed once per interval across instances.
//!
//! [`CalendarSync`] is the flow: add and remove a feed (events on the Listing), sync one
//! (fetch → parse → `SyncCalendarFeed` on the Listing, which decides the blocks and records
//! conflicts with live stays → status), and the feeds' views. The host hears of a conflict
//! through the notifier (`FeedConflictsChanged` → `Notice::FeedConflict`).
pub mod fetch;
pub mod parse;
pub mod status;
pub mod worker;

use crate::metadata::CommandMeta;
use crate::service::{listing_err, store_err, Commands, FlowError, Written};
use chrono::{DateTime, Utc};
use domain::listing::{FeedConflict, Listing, ListingCommand, ListingError};
use domain::{local_date, Actor};
use fetch::{FeedFetcher, FetchLimits, Fetched};
use status::{FeedStatus, FeedStatusRow, SyncResult};
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// Why a feed could not be synced; each has a stable `code`, shown on the feed's status.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FeedError {
    #[error("the URL is refused: {0}")]
    UrlRefused(String),
    #[error("the feed's address is refused: {0}")]
    AddressRefused(String),
    #[error("the feed did not answer in time")]
    Timeout,
    #[error("the feed is larger than {0} bytes")]
    TooLarge(usize),
    #[error("the feed redirects too often: {0}")]
    TooManyRedirects(String),
    #[error("the feed answered HTTP {0}")]
    HttpStatus(u16),
    #[error("the feed could not be reached: {0}")]
    Unreachable(String),
    #[error("the answer is not an iCalendar feed: {0}")]
    NotCalendar(String),
    #[error("the feed has invalid dates: {0}")]
    InvalidDates(String),
    #[error("the feed has more than {0} events")]
    TooManyEvents(usize),
    #[error("the calendar did not take the feed: {0}")]
    Refused(String),
}

impl FeedError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            FeedError::UrlRefused(_) => "url_refused",
            FeedError::AddressRefused(_) => "address_refused",
            FeedError::Timeout => "timeout",
            FeedError::TooLarge(_) => "too_large",
            FeedError::TooManyRedirects(_) => "too_many_redirects",
            FeedError::HttpStatus(_) => "http_status",
            FeedError::Unreachable(_) => "unreachable",
            FeedError::NotCalendar(_) => "not_calendar",
            FeedError::InvalidDates(_) => "invalid_dates",
            FeedError::TooManyEvents(_) => "too_many_events",
            FeedError::Refused(_) => "calendar_refused",
        }
    }
}

/// How feeds are synced.
#[derive(Clone, Debug)]
pub struct FeedSyncConfig {
    /// Each feed is synced once per this (`ZHILEGO_ICAL_SYNC_INTERVAL`, default 15 min).
    pub interval: Duration,
    /// Feeds fetched at once by one instance.
    pub concurrency: usize,
    pub fetch: FetchLimits,
}

impl Default for FeedSyncConfig {
    fn default() -> Self {
        FeedSyncConfig {
            interval: Duration::from_secs(15 * 60),
            concurrency: 32,
            fetch: FetchLimits::default(),
        }
    }
}

/// A feed as its host sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedView {
    pub feed_id: Uuid,
    pub listing_id: Uuid,
    pub url: String,
    pub name: String,
    /// The last sync that read the feed (applied, or answered 304).
    pub last_synced_at: Option<DateTime<Utc>>,
    /// `pending` (never synced), `ok`, `not_modified` or `error`.
    pub last_result: String,
    /// Nights the feed's blocks close now.
    pub blocked_nights: u32,
    pub conflicts: Vec<FeedConflict>,
    /// The last sync's error: (code, detail).
    pub error: Option<(String, String)>,
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The feeds' flows: add, remove, sync, views.
pub struct CalendarSync {
    pub(crate) commands: Arc<Commands>,
    pub(crate) status: FeedStatus,
    pub(crate) fetcher: FeedFetcher,
    pub(crate) config: FeedSyncConfig,
}

impl CalendarSync {
    pub fn new(
        commands: Arc<Commands>,
        config: FeedSyncConfig,
    ) -> Result<CalendarSync, reqwest::Error> {
        Ok(CalendarSync {
            status: FeedStatus::new(commands.db.clone()),
            fetcher: FeedFetcher::new(config.fetch.clone())?,
            commands,
            config,
        })
    }

    pub fn config(&self) -> &FeedSyncConfig {
        &self.config
    }

    /// The listing, if `actor` manages it.
    async fn managed(&self, listing_id: Uuid, actor: &Actor) -> Result<Listing, FlowError> {
        let listing = self
            .commands
            .listing(listing_id)
            .await?
            .ok_or(FlowError::Listing(ListingError::NotFound))?;
        if !listing.may_manage(actor) {
            return Err(FlowError::Listing(ListingError::Forbidden));
        }
        Ok(listing)
    }

    fn view(listing: &Listing, feed_id: Uuid, row: Option<&FeedStatusRow>) -> Option<FeedView> {
        let feed = listing.feeds.get(&feed_id)?;
        Some(FeedView {
            feed_id,
            listing_id: listing.id.unwrap_or_default(),
            url: feed.url.clone(),
            name: feed.name.clone(),
            last_synced_at: row.and_then(FeedStatusRow::last_synced_at),
            last_result: row.map_or("pending".to_string(), |r| r.last_result.clone()),
            blocked_nights: listing.feed_blocked_nights(feed_id),
            conflicts: listing
                .feed_conflicts
                .get(&feed_id)
                .cloned()
                .unwrap_or_default(),
            error: row.and_then(|r| {
                Some((
                    r.error_code.clone()?,
                    r.error_detail.clone().unwrap_or_default(),
                ))
            }),
        })
    }

    /// The listing's feeds (its host, admin).
    #[tracing::instrument(skip_all, fields(%listing_id, user_id = %actor.user_id), err(level = "debug"))]
    pub async fn feeds(&self, listing_id: Uuid, actor: &Actor) -> Result<Vec<FeedView>, FlowError> {
        let listing = self.managed(listing_id, actor).await?;
        let rows = self
            .status
            .of_listing(listing_id)
            .await
            .map_err(store_err)?;
        Ok(listing
            .feeds
            .keys()
            .filter_map(|id| Self::view(&listing, *id, rows.iter().find(|r| r.feed_id == *id)))
            .collect())
    }

    /// Adds a feed to the listing and syncs it once right away; the feed is added even when
    /// that first sync fails (its status says why).
    #[tracing::instrument(skip_all, fields(%listing_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn add(
        &self,
        listing_id: Uuid,
        url: String,
        name: String,
        meta: &CommandMeta,
    ) -> Result<Written<FeedView>, FlowError> {
        let feed_id = Uuid::now_v7();
        let cmd = ListingCommand::AddCalendarFeed {
            actor: meta.actor,
            feed_id,
            url: url.trim().to_string(),
            name,
        };
        let added = self
            .commands
            .on_listing(listing_id, cmd, meta, |l| {
                l.feeds
                    .get(&feed_id)
                    .map(|f| f.url.clone())
                    .unwrap_or_default()
            })
            .await?;
        self.status
            .track(feed_id, listing_id, &added.value, now_ms())
            .await
            .map_err(store_err)?;
        let synced = self.sync(listing_id, feed_id, &meta.follow_up()).await?;
        Ok(Written {
            position: synced.position.max(added.position),
            value: synced.value,
        })
    }

    /// Removes the feed and every block it made.
    #[tracing::instrument(skip_all, fields(%listing_id, %feed_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn remove(
        &self,
        listing_id: Uuid,
        feed_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<()>, FlowError> {
        let cmd = ListingCommand::RemoveCalendarFeed {
            actor: meta.actor,
            feed_id,
        };
        let written = self
            .commands
            .on_listing(listing_id, cmd, meta, |_| ())
            .await?;
        self.status.forget(feed_id).await.map_err(store_err)?;
        Ok(written)
    }

    /// Syncs one feed now (asked for by hand, or on adding it).
    #[tracing::instrument(skip_all, fields(%listing_id, %feed_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn sync(
        &self,
        listing_id: Uuid,
        feed_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<FeedView>, FlowError> {
        let listing = self.managed(listing_id, &meta.actor).await?;
        let Some(feed) = listing.feeds.get(&feed_id) else {
            return Err(FlowError::Listing(ListingError::UnknownFeed));
        };
        if self.status.get(feed_id).await.map_err(store_err)?.is_none() {
            // Added by a process that stopped before it wrote the row.
            self.status
                .track(feed_id, listing_id, &feed.url, now_ms())
                .await
                .map_err(store_err)?;
        }
        self.status
            .take(feed_id, now_ms())
            .await
            .map_err(store_err)?;
        self.sync_taken(listing, feed_id, meta).await
    }

    /// Syncs a feed this instance has taken: fetch, parse, apply, record.
    pub(crate) async fn sync_taken(
        &self,
        before: Listing,
        feed_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<FeedView>, FlowError> {
        let started = Instant::now();
        let listing_id = before.id.unwrap_or_default();
        let url = before
            .feeds
            .get(&feed_id)
            .map(|f| f.url.clone())
            .unwrap_or_default();
        let row = self.status.get(feed_id).await.map_err(store_err)?;
        let last = row
            .as_ref()
            .map(FeedStatusRow::validators)
            .unwrap_or_default();
        let (result, after, position) = match self.fetcher.fetch(&url, &last).await {
            Ok(Fetched::NotModified) => (SyncResult::NotModified, before, 0),
            Ok(Fetched::Body { text, validators }) => {
                match parse::parse_feed(&text, parse::LISTING_ZONE) {
                    Err(e) => (failed(&e), before, 0),
                    Ok(bookings) => {
                        let cmd = ListingCommand::SyncCalendarFeed {
                            actor: meta.actor,
                            feed_id,
                            bookings,
                            today: local_date(Utc::now()),
                        };
                        match self.commands.listings.execute(listing_id, cmd, meta).await {
                            Ok(done) => {
                                let w = self
                                    .commands
                                    .written(&self.commands.listings, listing_id, &done, ())
                                    .await?;
                                let after = (*done.aggregate).clone();
                                count_new_conflicts(&before, &after, feed_id);
                                (SyncResult::Applied(validators), after, w.position)
                            }
                            Err(crate::executor::CommandError::Rejected(e)) => {
                                (failed(&FeedError::Refused(e.to_string())), before, 0)
                            }
                            Err(e) => return Err(listing_err(e)),
                        }
                    }
                }
            }
            Err(e) => (failed(&e), before, 0),
        };
        let now = now_ms();
        self.status
            .record(feed_id, now, &result)
            .await
            .map_err(store_err)?;
        let outcome = match &result {
            SyncResult::Applied(_) => "ok",
            SyncResult::NotModified => "not_modified",
            SyncResult::Failed { code, detail } => {
                metrics::counter!("zhilego_ical_sync_failures_total", "code" => *code).increment(1);
                tracing::info!(%listing_id, %feed_id, code, detail, "a calendar feed did not sync");
                "error"
            }
        };
        metrics::counter!("zhilego_ical_feeds_synced_total", "result" => outcome).increment(1);
        metrics::histogram!("zhilego_ical_sync_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        let row = self.status.get(feed_id).await.map_err(store_err)?;
        let view = Self::view(&after, feed_id, row.as_ref())
            .ok_or(FlowError::Listing(ListingError::UnknownFeed))?;
        Ok(Written {
            value: view,
            position,
        })
    }
}

fn failed(e: &FeedError) -> SyncResult {
    SyncResult::Failed {
        code: e.code(),
        detail: e.to_string(),
    }
}

fn count_new_conflicts(before: &Listing, after: &Listing, feed_id: Uuid) {
    let old = before
        .feed_conflicts
        .get(&feed_id)
        .cloned()
        .unwrap_or_default();
    let new = after
        .feed_conflicts
        .get(&feed_id)
        .map(|c| c.iter().filter(|c| !old.contains(c)).count())
        .unwrap_or(0);
    if new > 0 {
        metrics::counter!("zhilego_ical_conflicts_total").increment(new as u64);
    }
}
