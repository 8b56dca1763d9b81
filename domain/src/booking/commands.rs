use crate::actor::{Actor, Channel};
use crate::cancellation::CancellationPolicy;
use crate::pricing::PriceBreakdown;
use crate::values::{DateRange, Kzt};
use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

#[derive(Debug, Clone)]
pub enum BookingCommand {
    /// Open the booking once its nights are reserved on the listing.
    HoldBooking {
        booking_id: Uuid,
        listing_id: Uuid,
        host_id: Uuid,
        guest_id: Uuid,
        range: DateRange,
        guests: u32,
        channel: Channel,
        price: PriceBreakdown,
        cancellation_policy: CancellationPolicy,
        hold_expires_at: DateTime<Utc>,
    },
    ConfirmBooking {
        payment_id: Uuid,
        paid_kzt: Kzt,
    },
    CancelBooking {
        actor: Actor,
        reason: String,
        today: NaiveDate,
    },
    /// The hold ran out without payment.
    ExpireHold {
        now: DateTime<Utc>,
    },
    CheckIn {
        today: NaiveDate,
    },
    Complete {
        today: NaiveDate,
    },
    /// An admin gives a held booking more time to pay (the listing's reservation first).
    ExtendHold {
        until: DateTime<Utc>,
        reason: String,
        by: Uuid,
    },
    /// The guest rates a completed stay, once.
    Review {
        actor: Actor,
        rating: u8,
        text: String,
    },
}
