//! Read models: deterministic folds of the event store into tables of the read database, each
//! with its own checkpoint that moves in the same transaction as its rows, so every event is
//! applied exactly once in effect.
//!
//! - [`event`]: the read side's one decoding step (stored event → the domain's `Event`,
//!   upcast on load) and what happens to an event that does not decode.
//! - [`projector`]: the [`Projection`] trait and [`Projector`], which applies linked events in
//!   commit-safe order (filling gaps from the store), swaps rebuilt tables in atomically,
//!   waits for a position (read-your-writes) and reports lag.
//! - [`rebuild`]: replays the store into fresh tables for one projection or several at once
//!   (one scan, each event decoded once, a fold thread per projection).
//! - [`rows`] and [`table`]: the in-memory working set a batch folds into, and tables described
//!   once for both backends.
//! - [`feed`]: what drives a builder — a durable JetStream consumer or the in-process bus.
//! - The projections: [`bookings`] (per guest and host, live reservations), [`availability`]
//!   (offers and taken spans: calendars, [`ical`]), [`listings`] (the catalogue),
//!   [`analytics`] (figures as known at any instant, from fact rows with the interval each was
//!   true) and [`users`] (the directory admins search, with roles, blocks and API keys).
//! - [`search_index`]: the availability and catalogue read models held in memory, which the
//!   searches run on.
#![forbid(unsafe_code)]

pub mod analytics;
pub mod availability;
pub mod bookings;
pub mod event;
pub mod feed;
pub mod ical;
pub mod listings;
pub mod projector;
pub mod rebuild;
pub mod rows;
pub mod search_index;
pub mod table;
pub mod users;

pub use analytics::AnalyticsProjection;
pub use availability::{AvailabilityProjection, CalendarDay, Offer, OfferRow, SpanRow, StayQuery};
pub use bookings::{
    BookingFilter, BookingRow, BookingsProjection, DuePayment, DueReservation, DueStay,
    PaymentNeed, PaymentRow,
};
pub use event::{Decoded, Undecodable};
pub use listings::{CatalogueQuery, CatalogueRow, ListingsProjection};
pub use projector::{Applied, CheckpointRow, Projection, Projector, Status};
pub use search_index::SearchIndex;
pub use users::{UserQuery, UserRow, UsersProjection};
