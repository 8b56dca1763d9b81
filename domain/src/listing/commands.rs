use super::{ListingDetails, ListingStatus};
use crate::actor::Actor;
use crate::cancellation::CancellationPolicy;
use crate::pricing::{RangePrice, WeekdayPrice};
use crate::user::Sealed;
use crate::values::{DateRange, Kzt, Location};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum ListingCommand {
    CreateListing {
        listing_id: Uuid,
        host_id: Uuid,
        details: ListingDetails,
        status: ListingStatus,
    },
    UpdateListing {
        actor: Actor,
        changes: ListingChanges,
    },
    /// Take the nights of `range` for `booking_id`, held until `hold_expires_at`.
    ReserveDates {
        booking_id: Uuid,
        guest_id: Uuid,
        range: DateRange,
        guests: u32,
        today: NaiveDate,
        hold_expires_at: DateTime<Utc>,
    },
    /// The booking was paid: its nights stay taken past the hold.
    ConfirmReservation {
        booking_id: Uuid,
    },
    /// A payment arrived after the booking's hold ran out: take the nights again, confirmed,
    /// if they are still free.
    ReserveConfirmed {
        booking_id: Uuid,
        guest_id: Uuid,
        range: DateRange,
        guests: u32,
        today: NaiveDate,
        now: DateTime<Utc>,
    },
    /// The host sets how guests get in; sealed before it reaches the aggregate.
    SetAccess {
        actor: Actor,
        access: Sealed,
    },
    /// Give the booking's nights back (cancelled, expired, or a failed booking step undone).
    ReleaseDates {
        booking_id: Uuid,
        reason: super::ReleaseReason,
    },
    BlockDates {
        actor: Actor,
        block_id: Uuid,
        range: DateRange,
        reason: String,
        today: NaiveDate,
    },
    UnblockDates {
        actor: Actor,
        block_id: Uuid,
    },
    AddCalendarFeed {
        actor: Actor,
        feed_id: Uuid,
        url: String,
        name: String,
    },
    /// Removes the feed and every block it made.
    RemoveCalendarFeed {
        actor: Actor,
        feed_id: Uuid,
    },
    /// Makes the feed's blocks what the feed says now (see `Listing::feed_sync`).
    SyncCalendarFeed {
        actor: Actor,
        feed_id: Uuid,
        bookings: Vec<super::FeedBooking>,
        today: NaiveDate,
    },
    /// An admin pauses, archives or restores the listing (checked as admin before).
    Moderate {
        action: super::ModerationAction,
        reason: String,
        by: Uuid,
    },
    /// An admin gives a held booking more time to pay.
    ExtendHold {
        booking_id: Uuid,
        until: DateTime<Utc>,
        now: DateTime<Utc>,
    },
}

/// A partial update of a listing; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ListingChanges {
    pub title: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub location: Option<Location>,
    pub rooms: Option<u32>,
    pub max_guests: Option<u32>,
    pub nightly_price_kzt: Option<Kzt>,
    pub cleaning_fee_kzt: Option<Kzt>,
    pub weekday_prices: Option<Vec<WeekdayPrice>>,
    pub range_prices: Option<Vec<RangePrice>>,
    pub min_nights: Option<u32>,
    pub max_nights: Option<u32>,
    pub cancellation_policy: Option<CancellationPolicy>,
    pub photos: Option<Vec<String>>,
    pub amenities: Option<Vec<String>>,
    pub status: Option<ListingStatus>,
}

impl ListingChanges {
    /// The details after applying these changes.
    pub fn apply_to(&self, details: &ListingDetails) -> ListingDetails {
        let mut d = details.clone();
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = &self.$field { d.$field = v.clone(); } )* };
        }
        set!(
            title,
            city,
            address,
            rooms,
            max_guests,
            min_nights,
            max_nights,
            cancellation_policy,
            photos,
            amenities
        );
        if let Some(l) = self.location {
            d.location = Some(l);
        }
        if let Some(p) = self.nightly_price_kzt {
            d.pricing.nightly_price_kzt = p;
        }
        if let Some(p) = self.cleaning_fee_kzt {
            d.pricing.cleaning_fee_kzt = p;
        }
        if let Some(w) = &self.weekday_prices {
            d.pricing.weekday_prices = w.clone();
        }
        if let Some(r) = &self.range_prices {
            d.pricing.range_prices = r.clone();
        }
        d
    }
}
