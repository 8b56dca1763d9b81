use super::feeds::{FeedConflict, FeedSource};
use super::{ListingDetails, ListingStatus};
use crate::pricing::PriceBreakdown;
use crate::user::Sealed;
use crate::values::DateRange;
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseReason {
    Cancelled,
    Expired,
    /// A later step of the booking flow failed; the reservation is undone.
    Compensated,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ListingEvent {
    ListingCreated {
        listing_id: Uuid,
        host_id: Uuid,
        details: ListingDetails,
        status: ListingStatus,
    },
    ListingUpdated {
        details: ListingDetails,
    },
    ListingStatusChanged {
        status: ListingStatus,
    },
    DatesReserved {
        booking_id: Uuid,
        guest_id: Uuid,
        range: DateRange,
        guests: u32,
        price: PriceBreakdown,
        hold_expires_at: DateTime<Utc>,
    },
    ReservationConfirmed {
        booking_id: Uuid,
    },
    DatesReleased {
        booking_id: Uuid,
        range: DateRange,
        reason: ReleaseReason,
    },
    DatesBlocked {
        block_id: Uuid,
        range: DateRange,
        reason: String,
        /// Set when a calendar feed made the block (absent from the host's own blocks, whose
        /// payload is as it always was).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source: Option<FeedSource>,
    },
    DatesUnblocked {
        block_id: Uuid,
        range: DateRange,
    },
    /// New access instructions and door code, sealed with the service's key: never plaintext.
    AccessUpdated {
        access: Sealed,
    },
    /// The host added another site's iCal calendar of this apartment.
    CalendarFeedAdded {
        feed_id: Uuid,
        url: String,
        name: String,
    },
    /// The feed is gone; its blocks were unblocked just before, in the same command.
    CalendarFeedRemoved {
        feed_id: Uuid,
    },
    /// The feed's events that live stays keep off the calendar, as of this sync (empty: none
    /// any more).
    FeedConflictsChanged {
        feed_id: Uuid,
        conflicts: Vec<FeedConflict>,
    },
    /// An admin's moderation, with the reason the host sees; a `ListingStatusChanged`
    /// follows when the status changes.
    ListingModerated {
        action: super::ModerationAction,
        reason: String,
        by: Uuid,
    },
    /// An admin gave a held booking more time.
    HoldExtended {
        booking_id: Uuid,
        hold_expires_at: DateTime<Utc>,
    },
}

impl DomainEvent for ListingEvent {
    fn event_type(&self) -> String {
        match self {
            ListingEvent::ListingCreated { .. } => "ListingCreated",
            ListingEvent::ListingUpdated { .. } => "ListingUpdated",
            ListingEvent::ListingStatusChanged { .. } => "ListingStatusChanged",
            ListingEvent::DatesReserved { .. } => "DatesReserved",
            ListingEvent::ReservationConfirmed { .. } => "ReservationConfirmed",
            ListingEvent::DatesReleased { .. } => "DatesReleased",
            ListingEvent::DatesBlocked { .. } => "DatesBlocked",
            ListingEvent::DatesUnblocked { .. } => "DatesUnblocked",
            ListingEvent::AccessUpdated { .. } => "AccessUpdated",
            ListingEvent::CalendarFeedAdded { .. } => "CalendarFeedAdded",
            ListingEvent::CalendarFeedRemoved { .. } => "CalendarFeedRemoved",
            ListingEvent::FeedConflictsChanged { .. } => "FeedConflictsChanged",
            ListingEvent::ListingModerated { .. } => "ListingModerated",
            ListingEvent::HoldExtended { .. } => "HoldExtended",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::version_of("Listing", &self.event_type())
    }
}
