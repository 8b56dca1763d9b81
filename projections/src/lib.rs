//! Read models: deterministic folds of the event store, each with its own checkpoint that moves
//! in the same transaction as its rows, so an event is applied exactly once in effect.
//!
//! - [`bookings`]: bookings per guest and per host (`GET /bookings`), and the live
//!   reservations the reservation sweeper works from.
//! - [`runner`]: the loop that feeds a projection from the store and answers "has it reached
//!   position P yet?" for read-your-writes.
#![forbid(unsafe_code)]

pub mod bookings;
pub mod runner;

pub use bookings::{BookingFilter, BookingRow, BookingsProjection, DueReservation};
pub use runner::ProjectionRunner;
