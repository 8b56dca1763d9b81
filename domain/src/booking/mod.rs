//! One stay: `held → confirmed → checked_in → completed`, or `cancelled` / `expired`.
mod aggregate;
mod commands;
mod events;
#[cfg(test)]
mod tests;

pub use aggregate::{Booking, BookingError, BookingStatus};
pub use commands::BookingCommand;
pub use events::BookingEvent;
