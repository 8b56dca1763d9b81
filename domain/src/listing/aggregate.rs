use super::feeds::{CalendarFeed, FeedConflict, FeedSource, MAX_FEEDS_PER_LISTING};
use super::{
    FieldProblem, ListingCommand, ListingDetails, ListingEvent, ListingStatus,
    BOOKING_HORIZON_DAYS, MAX_STAY_NIGHTS,
};
use crate::actor::{Actor, Role};
use crate::user::Sealed;
use crate::values::DateRange;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    Held,
    Confirmed,
}

impl ReservationState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationState::Held => "held",
            ReservationState::Confirmed => "confirmed",
        }
    }

    pub fn parse(s: &str) -> Option<ReservationState> {
        [ReservationState::Held, ReservationState::Confirmed]
            .into_iter()
            .find(|state| state.as_str() == s)
    }
}

/// Nights taken by one live booking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    pub guest_id: Uuid,
    pub range: DateRange,
    pub state: ReservationState,
    pub hold_expires_at: DateTime<Utc>,
}

/// Nights the host closed, or a calendar feed did (`source`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub range: DateRange,
    pub reason: String,
    /// The feed and its event's UID, for a block a feed made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<FeedSource>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Listing {
    pub id: Option<Uuid>,
    pub host_id: Uuid,
    pub details: ListingDetails,
    pub status: ListingStatus,
    /// Live reservations by booking id; released ones are removed.
    pub reservations: BTreeMap<Uuid, Reservation>,
    /// Host blocks by block id.
    pub blocks: BTreeMap<Uuid, Block>,
    /// How guests get in, sealed (see `AccessUpdated`).
    #[serde(default)]
    pub access: Option<Sealed>,
    /// Other sites' calendars of this apartment, by feed id.
    #[serde(default)]
    pub feeds: BTreeMap<Uuid, CalendarFeed>,
    /// Each feed's events that our live stays keep off the calendar, as last synced.
    #[serde(default)]
    pub feed_conflicts: BTreeMap<Uuid, Vec<FeedConflict>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListingError {
    #[error("listing not found")]
    NotFound,
    #[error("listing already exists")]
    AlreadyExists,
    #[error("only the listing's host or an admin may do this")]
    Forbidden,
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: &'static str,
    },
    #[error("the listing is not taking bookings")]
    NotBookable,
    #[error("some of these nights are already taken")]
    DatesUnavailable,
    #[error("the listing takes at most {max} guests")]
    TooManyGuests { max: u32 },
    #[error("the listing needs a stay of at least {min} nights")]
    BelowMinNights { min: u32 },
    #[error("the listing allows a stay of at most {max} nights")]
    AboveMaxNights { max: u32 },
    #[error("check_in is in the past")]
    PastCheckIn,
    #[error("check_in is too far ahead (at most {BOOKING_HORIZON_DAYS} days)")]
    BeyondHorizon,
    #[error("no such reservation")]
    UnknownReservation,
    #[error("no such block")]
    UnknownBlock,
    #[error("no such calendar feed")]
    UnknownFeed,
    #[error("this listing already has a calendar feed with this URL")]
    FeedExists,
    #[error("a block made by a calendar feed goes when it is removed on the feed's site (or the feed is removed here)")]
    FeedBlock,
}

impl From<FieldProblem> for ListingError {
    fn from(p: FieldProblem) -> Self {
        ListingError::Invalid {
            field: p.field,
            message: p.message,
        }
    }
}

impl Listing {
    fn exists(&self) -> Result<(), ListingError> {
        self.id.map(|_| ()).ok_or(ListingError::NotFound)
    }

    /// Hosts manage only their own listings; admins manage all.
    pub fn may_manage(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Admin | Role::System => true,
            Role::Host => actor.user_id == self.host_id,
            _ => false,
        }
    }

    /// The door code is the host's alone (API.md: host): an admin moderates listings but
    /// does not set another host's access, so nobody but the host can change who gets in.
    pub fn may_set_access(&self, actor: &Actor) -> bool {
        matches!(actor.role, Role::Host | Role::Admin) && actor.user_id == self.host_id
    }

    fn authorize(&self, actor: &Actor) -> Result<(), ListingError> {
        self.exists()?;
        if self.may_manage(actor) {
            Ok(())
        } else {
            Err(ListingError::Forbidden)
        }
    }

    /// True when no live reservation or block shares a night with `range`.
    pub fn is_free(&self, range: &DateRange) -> bool {
        !self.reservations.values().any(|r| r.range.overlaps(range))
            && !self.blocks.values().any(|b| b.range.overlaps(range))
    }

    fn check_stay(
        &self,
        range: &DateRange,
        guests: u32,
        today: chrono::NaiveDate,
    ) -> Result<(), ListingError> {
        if self.status != ListingStatus::Active {
            return Err(ListingError::NotBookable);
        }
        if range.check_in() < today {
            return Err(ListingError::PastCheckIn);
        }
        if (range.check_in() - today).num_days() > BOOKING_HORIZON_DAYS {
            return Err(ListingError::BeyondHorizon);
        }
        if guests == 0 {
            return Err(ListingError::Invalid {
                field: "guests",
                message: "must be at least 1",
            });
        }
        if guests > self.details.max_guests {
            return Err(ListingError::TooManyGuests {
                max: self.details.max_guests,
            });
        }
        if range.nights() < self.details.min_nights {
            return Err(ListingError::BelowMinNights {
                min: self.details.min_nights,
            });
        }
        let max = self.details.max_nights.min(MAX_STAY_NIGHTS);
        if range.nights() > max {
            return Err(ListingError::AboveMaxNights { max });
        }
        Ok(())
    }
}

impl Listing {
    /// The reservation of `range` for a booking, if the stay is allowed and the nights free.
    fn reserve(
        &self,
        booking_id: Uuid,
        guest_id: Uuid,
        range: crate::values::DateRange,
        guests: u32,
        today: chrono::NaiveDate,
        hold_expires_at: DateTime<Utc>,
    ) -> Result<ListingEvent, ListingError> {
        self.check_stay(&range, guests, today)?;
        if !self.is_free(&range) {
            return Err(ListingError::DatesUnavailable);
        }
        Ok(ListingEvent::DatesReserved {
            booking_id,
            guest_id,
            range,
            guests,
            price: self.details.pricing.quote(&range),
            hold_expires_at,
        })
    }
}

impl Aggregate for Listing {
    const TYPE: &'static str = "Listing";
    type Command = ListingCommand;
    type Event = ListingEvent;
    type Error = ListingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ListingCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ListingError> {
        match command {
            ListingCommand::CreateListing {
                listing_id,
                host_id,
                details,
                status,
            } => {
                if self.id.is_some() {
                    return Err(ListingError::AlreadyExists);
                }
                details.validate()?;
                sink.write(
                    ListingEvent::ListingCreated {
                        listing_id,
                        host_id,
                        details,
                        status,
                    },
                    self,
                )
                .await;
            }
            ListingCommand::UpdateListing { actor, changes } => {
                self.authorize(&actor)?;
                let details = changes.apply_to(&self.details);
                details.validate()?;
                if details != self.details {
                    sink.write(ListingEvent::ListingUpdated { details }, self)
                        .await;
                }
                if let Some(status) = changes.status {
                    if status != self.status {
                        sink.write(ListingEvent::ListingStatusChanged { status }, self)
                            .await;
                    }
                }
            }
            ListingCommand::ReserveDates {
                booking_id,
                guest_id,
                range,
                guests,
                today,
                hold_expires_at,
            } => {
                self.exists()?;
                if let Some(existing) = self.reservations.get(&booking_id) {
                    // A retried step of the same booking: already done.
                    return if existing.range == range {
                        Ok(())
                    } else {
                        Err(ListingError::DatesUnavailable)
                    };
                }
                let reserved =
                    self.reserve(booking_id, guest_id, range, guests, today, hold_expires_at)?;
                sink.write(reserved, self).await;
            }
            ListingCommand::ConfirmReservation { booking_id } => {
                self.exists()?;
                let r = self
                    .reservations
                    .get(&booking_id)
                    .ok_or(ListingError::UnknownReservation)?;
                if r.state == ReservationState::Held {
                    sink.write(ListingEvent::ReservationConfirmed { booking_id }, self)
                        .await;
                }
            }
            ListingCommand::ReserveConfirmed {
                booking_id,
                guest_id,
                range,
                guests,
                today,
                now,
            } => {
                self.exists()?;
                if let Some(existing) = self.reservations.get(&booking_id) {
                    if existing.range != range {
                        return Err(ListingError::DatesUnavailable);
                    }
                    if existing.state == ReservationState::Held {
                        sink.write(ListingEvent::ReservationConfirmed { booking_id }, self)
                            .await;
                    }
                    return Ok(());
                }
                let reserved = self.reserve(booking_id, guest_id, range, guests, today, now)?;
                sink.write(reserved, self).await;
                sink.write(ListingEvent::ReservationConfirmed { booking_id }, self)
                    .await;
            }
            ListingCommand::SetAccess { actor, access } => {
                self.exists()?;
                if !self.may_set_access(&actor) {
                    return Err(ListingError::Forbidden);
                }
                sink.write(ListingEvent::AccessUpdated { access }, self)
                    .await;
            }
            ListingCommand::ReleaseDates { booking_id, reason } => {
                self.exists()?;
                // Releasing twice is a no-op so that process steps may be retried.
                if let Some(r) = self.reservations.get(&booking_id) {
                    let range = r.range;
                    sink.write(
                        ListingEvent::DatesReleased {
                            booking_id,
                            range,
                            reason,
                        },
                        self,
                    )
                    .await;
                }
            }
            ListingCommand::BlockDates {
                actor,
                block_id,
                range,
                reason,
                today,
            } => {
                self.authorize(&actor)?;
                if let Some(existing) = self.blocks.get(&block_id) {
                    // The same block retried is already done; another range under its id is not.
                    return if existing.range == range {
                        Ok(())
                    } else {
                        Err(ListingError::DatesUnavailable)
                    };
                }
                if range.check_out() <= today {
                    return Err(ListingError::PastCheckIn);
                }
                if range.check_out() > super::horizon_end(today) {
                    return Err(ListingError::Invalid {
                        field: "to",
                        message: "must be within the booking horizon (730 days ahead, plus the longest stay)",
                    });
                }
                if reason.chars().count() > 500 {
                    return Err(ListingError::Invalid {
                        field: "reason",
                        message: "must be at most 500 characters",
                    });
                }
                if !self.is_free(&range) {
                    return Err(ListingError::DatesUnavailable);
                }
                sink.write(
                    ListingEvent::DatesBlocked {
                        block_id,
                        range,
                        reason,
                        source: None,
                    },
                    self,
                )
                .await;
            }
            ListingCommand::AddCalendarFeed {
                actor,
                feed_id,
                url,
                name,
            } => {
                self.authorize(&actor)?;
                super::feeds::validate_feed(&url, &name)?;
                let name = name.trim().to_string();
                if let Some(existing) = self.feeds.get(&feed_id) {
                    // The same feed retried is already added.
                    return if existing.url == url {
                        Ok(())
                    } else {
                        Err(ListingError::FeedExists)
                    };
                }
                if self.feeds.values().any(|f| f.url == url) {
                    return Err(ListingError::FeedExists);
                }
                if self.feeds.len() >= MAX_FEEDS_PER_LISTING {
                    return Err(ListingError::Invalid {
                        field: "url",
                        message: "a listing has at most 10 calendar feeds",
                    });
                }
                sink.write(ListingEvent::CalendarFeedAdded { feed_id, url, name }, self)
                    .await;
            }
            ListingCommand::RemoveCalendarFeed { actor, feed_id } => {
                self.authorize(&actor)?;
                if !self.feeds.contains_key(&feed_id) {
                    return Err(ListingError::UnknownFeed);
                }
                let blocks: Vec<(Uuid, DateRange)> = self
                    .feed_blocks(feed_id)
                    .values()
                    .map(|(id, b)| (*id, b.range))
                    .collect();
                for (block_id, range) in blocks {
                    sink.write(ListingEvent::DatesUnblocked { block_id, range }, self)
                        .await;
                }
                sink.write(ListingEvent::CalendarFeedRemoved { feed_id }, self)
                    .await;
            }
            ListingCommand::SyncCalendarFeed {
                actor,
                feed_id,
                bookings,
                today,
            } => {
                self.authorize(&actor)?;
                if !self.feeds.contains_key(&feed_id) {
                    return Err(ListingError::UnknownFeed);
                }
                let (events, _) = self.feed_sync(feed_id, &bookings, today);
                for e in events {
                    sink.write(e, self).await;
                }
            }
            ListingCommand::UnblockDates { actor, block_id } => {
                self.authorize(&actor)?;
                let block = self
                    .blocks
                    .get(&block_id)
                    .ok_or(ListingError::UnknownBlock)?;
                if block.source.is_some() {
                    return Err(ListingError::FeedBlock);
                }
                let range = block.range;
                sink.write(ListingEvent::DatesUnblocked { block_id, range }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: ListingEvent) {
        match event {
            ListingEvent::ListingCreated {
                listing_id,
                host_id,
                details,
                status,
            } => {
                self.id = Some(listing_id);
                self.host_id = host_id;
                self.details = details;
                self.status = status;
            }
            ListingEvent::ListingUpdated { details } => self.details = details,
            ListingEvent::ListingStatusChanged { status } => self.status = status,
            ListingEvent::DatesReserved {
                booking_id,
                guest_id,
                range,
                hold_expires_at,
                ..
            } => {
                self.reservations.insert(
                    booking_id,
                    Reservation {
                        guest_id,
                        range,
                        state: ReservationState::Held,
                        hold_expires_at,
                    },
                );
            }
            ListingEvent::ReservationConfirmed { booking_id } => {
                if let Some(r) = self.reservations.get_mut(&booking_id) {
                    r.state = ReservationState::Confirmed;
                }
            }
            ListingEvent::DatesReleased { booking_id, .. } => {
                self.reservations.remove(&booking_id);
            }
            ListingEvent::DatesBlocked {
                block_id,
                range,
                reason,
                source,
            } => {
                self.blocks.insert(
                    block_id,
                    Block {
                        range,
                        reason,
                        source,
                    },
                );
            }
            ListingEvent::DatesUnblocked { block_id, .. } => {
                self.blocks.remove(&block_id);
            }
            ListingEvent::AccessUpdated { access } => self.access = Some(access),
            ListingEvent::CalendarFeedAdded { feed_id, url, name } => {
                self.feeds.insert(feed_id, CalendarFeed { url, name });
            }
            ListingEvent::CalendarFeedRemoved { feed_id } => {
                self.feeds.remove(&feed_id);
                self.feed_conflicts.remove(&feed_id);
            }
            ListingEvent::FeedConflictsChanged { feed_id, conflicts } => {
                if conflicts.is_empty() {
                    self.feed_conflicts.remove(&feed_id);
                } else {
                    self.feed_conflicts.insert(feed_id, conflicts);
                }
            }
        }
    }
}
