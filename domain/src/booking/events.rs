use crate::actor::{Channel, Role};
use crate::cancellation::CancellationPolicy;
use crate::pricing::StayPrice;
use crate::values::{DateRange, Kzt};
use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BookingEvent {
    BookingHeld {
        booking_id: Uuid,
        listing_id: Uuid,
        host_id: Uuid,
        guest_id: Uuid,
        range: DateRange,
        guests: u32,
        channel: Channel,
        /// Each night with its price (version 2; version 1 had the prices without dates).
        price: StayPrice,
        cancellation_policy: CancellationPolicy,
        hold_expires_at: DateTime<Utc>,
    },
    BookingConfirmed {
        payment_id: Uuid,
        paid_kzt: Kzt,
        /// Paid after the hold ran out, while the nights were still free.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        late: bool,
    },
    BookingCancelled {
        by_user: Uuid,
        by_role: Role,
        reason: String,
        /// What the guest gets back; executed by the payment flow.
        refund_kzt: Kzt,
    },
    BookingExpired {},
    BookingCheckedIn {},
    BookingCompleted {},
    /// An admin (`by`) extended the hold, with a reason.
    BookingHoldExtended {
        hold_expires_at: DateTime<Utc>,
        reason: String,
        by: Uuid,
    },
    /// The guest's rating (1–5) and words about a completed stay.
    BookingReviewed {
        listing_id: Uuid,
        rating: u8,
        text: String,
    },
}

impl DomainEvent for BookingEvent {
    fn event_type(&self) -> String {
        match self {
            BookingEvent::BookingHeld { .. } => "BookingHeld",
            BookingEvent::BookingConfirmed { .. } => "BookingConfirmed",
            BookingEvent::BookingCancelled { .. } => "BookingCancelled",
            BookingEvent::BookingExpired { .. } => "BookingExpired",
            BookingEvent::BookingCheckedIn { .. } => "BookingCheckedIn",
            BookingEvent::BookingCompleted { .. } => "BookingCompleted",
            BookingEvent::BookingReviewed { .. } => "BookingReviewed",
            BookingEvent::BookingHoldExtended { .. } => "BookingHoldExtended",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::version_of("Booking", &self.event_type())
    }
}
