//! ZhilyeGO's domain: pure decisions, no IO.
//!
//! - [`values`]: value objects that parse rather than validate (`DateRange`, `Kzt`, `Location`).
//! - [`pricing`]: nightly price with weekday and date-range overrides plus cleaning fee.
//! - [`cancellation`]: cancellation-policy tiers (days before check-in → refund share).
//! - [`listing`]: a host's apartment and its calendar (reservations by booking, host blocks).
//!   The calendar is where "no two live stays overlap" is decided.
//! - [`booking`]: one stay, `held → confirmed → checked_in → completed`, or cancelled/expired.
//! - [`payment`]: one charge for a booking and its refunds.
//! - [`user`]: a person's profile.
//! - [`actor`]: who issues a command (user id + role) and through which channel.
//! - [`event`]: every event as one enum, decoded once from the store; [`upcast`]: event
//!   versions and the chain that reads older versions as the current one.
//! - [`notice`]: what the service tells a guest on its own about a booking (the words are the
//!   bots').
//!
//! Every aggregate runs on cqrs-es with `Services = ()`: everything a decision needs
//! (today's date, the current instant, the booking's price) travels in the command.
#![forbid(unsafe_code)]

pub mod actor;
pub mod booking;
pub mod cancellation;
pub mod event;
pub mod listing;
pub mod notice;
pub mod payment;
pub mod pricing;
pub mod upcast;
pub mod user;
pub mod values;

pub use actor::{Actor, Channel, Role};
pub use event::{DecodeError, Event, Metadata};
pub use values::{DateRange, Kzt, Location};

/// Local time zone of every property: Kazakhstan, UTC+5.
pub const KZ_UTC_OFFSET_SECONDS: i32 = 5 * 3600;

/// A stay starts at this hour (local) of its check-in day…
pub const CHECK_IN_HOUR: u32 = 14;
/// …and ends at this hour (local) of its check-out day.
pub const CHECK_OUT_HOUR: u32 = 12;

/// Today's date in Kazakhstan for an instant.
pub fn local_date(now: chrono::DateTime<chrono::Utc>) -> chrono::NaiveDate {
    let offset = chrono::FixedOffset::east_opt(KZ_UTC_OFFSET_SECONDS).expect("valid offset");
    now.with_timezone(&offset).date_naive()
}
