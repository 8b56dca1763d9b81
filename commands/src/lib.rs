//! The command side: wires the domain's aggregates to the event store and runs the flows
//! between them.
//!
//! - [`executor`]: load → decide → append for one aggregate, with a per-aggregate lock inside
//!   the process and bounded retries when another process wrote first.
//! - [`metadata`]: what every event records about the command that caused it.
//! - [`service`]: [`Commands`], the entry point the API and bots call: listings, blocks,
//!   bookings (reserve nights → hold booking, compensated on failure), cancellation, profiles.
//! - [`personal`]: personal data sealed per user in events, and its erasure (crypto-shredding).
//! - [`sweeper`]: the background task that expires holds and finishes or undoes releases.
#![forbid(unsafe_code)]

pub mod executor;
pub mod metadata;
pub mod personal;
pub mod service;
pub mod sweeper;

pub use executor::{CommandError, Executed};
pub use metadata::CommandMeta;
pub use personal::{MasterKey, PersonalData};
pub use service::{BookRequest, Commands, CommandsConfig, FlowError, Profile};
pub use sweeper::ReservationSweeper;
