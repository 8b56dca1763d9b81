//! What the service tells a guest on its own about one of their bookings (and a host about
//! a calendar feed's conflict with a stay). The notifications
//! worker (`commands::notifier`) decides which notice an event calls for; the bots put it into
//! words (`bots::texts::notice`) and send it to the guest's chat. It lives here, in the pure
//! core, so that both sides share one type without the command side depending on the bots.
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Notice {
    /// A booking made outside the bot is held: here is the payment link.
    Held {
        title: String,
        check_in: NaiveDate,
        check_out: NaiveDate,
        total_kzt: i64,
        payment_url: String,
    },
    /// Paid: the stay is confirmed.
    Confirmed {
        title: String,
        check_in: NaiveDate,
        check_out: NaiveDate,
    },
    /// On the check-in day: how to get in.
    Access {
        title: String,
        address: String,
        instructions: String,
        door_code: String,
        check_in: NaiveDate,
    },
    /// On the departure day.
    CheckoutReminder { title: String, check_out: NaiveDate },
    /// After the stay: a request for a rating (the bots offer one button per star).
    ReviewRequest { booking_id: Uuid, title: String },
    /// The booking was cancelled (by anyone) and this much comes back.
    Cancelled { title: String, refund_kzt: i64 },
    /// To the host: another site's calendar (`feed`) has a booking on nights one of our
    /// stays holds, so it could not be blocked here; the stay is untouched.
    FeedConflict {
        title: String,
        feed: String,
        check_in: NaiveDate,
        check_out: NaiveDate,
    },
}

impl Notice {
    /// The kind of notice, as it names the notice's claim (`<kind>:<booking id>`).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Held { .. } => "held",
            Notice::Confirmed { .. } => "confirmed",
            Notice::Access { .. } => "access",
            Notice::CheckoutReminder { .. } => "checkout",
            Notice::ReviewRequest { .. } => "review",
            Notice::Cancelled { .. } => "cancelled",
            Notice::FeedConflict { .. } => "feed_conflict",
        }
    }
}
