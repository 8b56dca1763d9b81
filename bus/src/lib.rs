//! The event bus: the relay that publishes the event store to NATS JetStream.
//!
//! - [`relay`]: reads committed events in commit-safe `(transaction, position)` order and
//!   publishes each to `<prefix>.<aggregate_type>.<aggregate_id>` with `Nats-Msg-Id` = the
//!   event's id, advancing its checkpoint only after JetStream acknowledged the whole batch.
#![forbid(unsafe_code)]

pub mod relay;

pub use relay::{Relay, RelayConfig, RelayError};
