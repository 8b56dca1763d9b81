//! Calendar feeds: other sites' iCal calendars of the same apartment (Airbnb, Booking.com),
//! imported as blocks. The feed list is part of the listing (added and removed by events, so
//! auditors replay it); each synced `VEVENT` becomes a block that remembers its feed and UID
//! ([`FeedSource`]), so a later sync can move it or take it away. Deciding a sync is pure:
//! [`Listing::feed_sync`] turns what the feed says now into the events that make the
//! calendar agree, without touching live stays.
use super::aggregate::{Block, Listing};
use super::{horizon_end, ListingEvent};
use crate::values::DateRange;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

/// The most feeds one listing may have.
pub const MAX_FEEDS_PER_LISTING: usize = 10;

/// One feed of a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarFeed {
    pub url: String,
    pub name: String,
}

/// Where a block came from when a feed made it: the feed and the event's UID there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedSource {
    pub feed_id: Uuid,
    pub uid: String,
}

/// One event of a feed, as nights of the listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedBooking {
    pub uid: String,
    pub range: DateRange,
}

/// A feed event that could not be placed because one of our live stays holds its nights.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedConflict {
    pub uid: String,
    pub range: DateRange,
    /// The stay that holds (some of) the nights.
    pub booking_id: Uuid,
}

/// What one sync did to the calendar, besides its events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedSyncOutcome {
    pub added: usize,
    pub moved: usize,
    pub removed: usize,
    /// Feed events whose nights another block already closes (the nights stay closed).
    pub covered: usize,
    pub conflicts: Vec<FeedConflict>,
}

impl FeedConflict {
    /// The claim key of the host's notice about it (one notice per conflict, ever).
    pub fn key(&self, feed_id: Uuid) -> String {
        format!(
            "feed_conflict:{feed_id}:{}:{}:{}",
            self.uid, self.range, self.booking_id
        )
    }
}

/// Checks a feed's name and URL as a host gives them.
pub fn validate_feed(url: &str, name: &str) -> Result<(), super::FieldProblem> {
    let problem = |field, message| super::FieldProblem { field, message };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("https://") || lower.starts_with("http://")) {
        return Err(problem("url", "must be an http:// or https:// URL"));
    }
    if url.len() > 2000 || url.chars().any(char::is_whitespace) {
        return Err(problem(
            "url",
            "must be at most 2000 characters, without spaces",
        ));
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(problem("name", "must be 1 to 100 characters"));
    }
    Ok(())
}

/// The id of the block a feed's event makes on these nights.
pub fn feed_block_id(feed_id: Uuid, uid: &str, range: &DateRange) -> Uuid {
    Uuid::new_v5(&feed_id, format!("{uid}\n{range}").as_bytes())
}

impl Listing {
    /// The blocks a feed made, by the event's UID.
    pub fn feed_blocks(&self, feed_id: Uuid) -> BTreeMap<&str, (Uuid, &Block)> {
        self.blocks
            .iter()
            .filter_map(|(id, b)| match &b.source {
                Some(s) if s.feed_id == feed_id => Some((s.uid.as_str(), (*id, b))),
                _ => None,
            })
            .collect()
    }

    /// Nights the feed's blocks close.
    pub fn feed_blocked_nights(&self, feed_id: Uuid) -> u32 {
        self.feed_blocks(feed_id)
            .values()
            .map(|(_, b)| b.range.nights())
            .sum()
    }

    /// The live stay sharing a night with `range`, if any.
    fn stay_on(&self, range: &DateRange) -> Option<Uuid> {
        self.reservations
            .iter()
            .find(|(_, r)| r.range.overlaps(range))
            .map(|(id, _)| *id)
    }

    /// The events that make the calendar say what the feed says: its blocks whose event is
    /// gone or changed are taken away first, then every new or changed event is placed where
    /// its nights are free. Nights of a live stay are never touched: such an event is a
    /// conflict. Events that ended before `today` are left out; ends past the booking horizon
    /// are cut there. A new block's id is named by the feed, the UID and the nights
    /// ([`feed_block_id`]), so the same sync decided twice writes the same events.
    pub fn feed_sync(
        &self,
        feed_id: Uuid,
        bookings: &[FeedBooking],
        today: NaiveDate,
    ) -> (Vec<ListingEvent>, FeedSyncOutcome) {
        let horizon = horizon_end(today);
        let wanted: BTreeMap<&str, DateRange> = bookings
            .iter()
            .filter(|b| b.range.check_out() > today && b.range.check_in() < horizon)
            .filter_map(|b| {
                let end = b.range.check_out().min(horizon);
                DateRange::parse(b.range.check_in(), end)
                    .ok()
                    .map(|r| (b.uid.as_str(), r))
            })
            .collect();
        let mut plan = self.clone();
        let mut events = Vec::new();
        let mut outcome = FeedSyncOutcome::default();
        let mut step = |plan: &mut Listing, e: ListingEvent| {
            cqrs_es::Aggregate::apply(plan, e.clone());
            events.push(e);
        };
        let reason = self
            .feeds
            .get(&feed_id)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        let existing: Vec<(String, Uuid, DateRange)> = self
            .feed_blocks(feed_id)
            .into_iter()
            .map(|(uid, (id, b))| (uid.to_string(), id, b.range))
            .collect();
        for (uid, block_id, range) in &existing {
            match wanted.get(uid.as_str()) {
                Some(r) if r == range => {}
                other => {
                    if other.is_some() {
                        outcome.moved += 1;
                    } else {
                        outcome.removed += 1;
                    }
                    step(
                        &mut plan,
                        ListingEvent::DatesUnblocked {
                            block_id: *block_id,
                            range: *range,
                        },
                    );
                }
            }
        }
        for (uid, range) in &wanted {
            let unchanged = existing
                .iter()
                .any(|(u, _, r)| u.as_str() == *uid && r == range);
            if unchanged {
                continue;
            }
            if let Some(booking_id) = plan.stay_on(range) {
                outcome.conflicts.push(FeedConflict {
                    uid: uid.to_string(),
                    range: *range,
                    booking_id,
                });
                continue;
            }
            if !plan.is_free(range) {
                outcome.covered += 1;
                continue;
            }
            if !existing.iter().any(|(u, _, _)| u.as_str() == *uid) {
                outcome.added += 1;
            }
            step(
                &mut plan,
                ListingEvent::DatesBlocked {
                    block_id: feed_block_id(feed_id, uid, range),
                    range: *range,
                    reason: reason.clone(),
                    source: Some(FeedSource {
                        feed_id,
                        uid: uid.to_string(),
                    }),
                },
            );
        }
        let recorded = self
            .feed_conflicts
            .get(&feed_id)
            .cloned()
            .unwrap_or_default();
        if recorded != outcome.conflicts {
            events.push(ListingEvent::FeedConflictsChanged {
                feed_id,
                conflicts: outcome.conflicts.clone(),
            });
        }
        (events, outcome)
    }
}
