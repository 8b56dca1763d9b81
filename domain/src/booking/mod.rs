//! One stay: `held → confirmed → checked_in → completed`, or `cancelled` / `expired`.
mod aggregate;
mod commands;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Booking, BookingError, BookingStatus};
pub use commands::BookingCommand;
pub use events::BookingEvent;

/// The stars a guest may give a completed stay.
pub const RATINGS: std::ops::RangeInclusive<u8> = 1..=5;
