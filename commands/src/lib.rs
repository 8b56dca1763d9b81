//! The command side: wires the domain's aggregates to the event store and runs the flows
//! between them.
//!
//! - [`executor`]: load → decide → append for one aggregate, with a per-aggregate lock inside
//!   the process and bounded retries when another process wrote first.
//! - [`metadata`]: what every event records about the command that caused it.
//! - [`service`]: [`Commands`], the entry point the API and bots call: listings, blocks,
//!   bookings (reserve nights → hold booking, compensated on failure), cancellation, profiles.
//! - [`admin`]: what admins do (roles, blocking, API keys, moderation, hold extension) and
//!   the phone number's blind index.
//! - [`holds`]: the cap on a guest's unpaid holds, counted on the bookings read model.
//! - [`personal`]: personal data sealed per user in events, and its erasure (crypto-shredding).
//! - [`payments`]: paying through a [`kaspi::PaymentProvider`]: payment links, Kaspi's biller
//!   notifications, refunds, reconciliation, and `settle`, the process manager step between a
//!   payment and its booking (one module each under `payments/`).
//! - [`access`]: the host's door code, sealed, and the guest's pass for a stay.
//! - [`stays`]: check-in and completion of stays.
//! - [`sweeper`]: the background task that expires holds, finishes or undoes releases and
//!   moves stays to checked-in and completed.
//! - [`keeper`]: the background task that settles payments a crash interrupted and reconciles
//!   pending payments with Kaspi.
//! - [`calendar_feeds`]: other sites' iCal calendars of a listing, fetched safely, parsed and
//!   applied as blocks through the Listing; the background sync, once per interval across
//!   instances.
//! - [`notifier`]: the background task that tells guests in their chat what happened to their
//!   bookings, through [`NoticeChannels`] (the bots' senders implement it).
//!
//! The public methods of [`Commands`] run in a span named after them, with the ids they act on
//! as fields. Their errors are recorded at debug level: most are refusals (an ordinary answer),
//! and an operational failure is logged loudly where it is handled (the API's error mapping,
//! the background loops).
#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod calendar_feeds;
pub mod executor;
pub mod holds;
pub mod keeper;
pub mod metadata;
pub mod notifier;
pub mod payments;
pub mod personal;
pub mod service;
pub mod stays;
pub mod sweeper;

pub use access::{access_window, stay_door_code, Access, AccessError, AccessPass, OutsideWindow};
pub use admin::{api_key_hash, IssuedKey, API_KEY_PREFIX};
pub use calendar_feeds::{CalendarSync, FeedSyncConfig, FeedView};
pub use executor::{CommandError, Executed, StoreFailure};
pub use holds::HoldCap;
pub use keeper::{KeeperFindings, PaymentKeeper, ReconciliationReport};
pub use metadata::{CommandMeta, InputSource};
pub use notifier::{NoticeChannels, Notifier};
pub use payments::{account_code, admin_refund_id, payment_id_for, Reconciled};
pub use personal::{MasterKey, PersonalData};
pub use service::{BookRequest, Commands, CommandsConfig, FlowError, Profile};
pub use sweeper::ReservationSweeper;
