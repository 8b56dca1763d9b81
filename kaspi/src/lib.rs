//! Kaspi.kz payments: a client for Kaspi's QR / remote-payment API and a sandbox that plays
//! Kaspi over real HTTP, so development, demos and tests run the production client code.
//!
//! - [`client`]: create a payment link, poll its status, read what can still be returned, and
//!   return money (partially too). At most 10 requests/s, timeouts, retries with backoff;
//!   creating a link is idempotent by our external id.
//! - [`sandbox`]: the same HTTP shapes, a payment page with a Pay button at the payment link,
//!   and the biller-protocol callback (`command=pay&txn_id=…&account=…&sum=…&txn_date=…`)
//!   sent to us when the guest pays. It can be told to fail, to be slow, or to drop callbacks.
#![forbid(unsafe_code)]

pub mod client;
pub mod sandbox;

pub use client::{
    KaspiClient, KaspiConfig, KaspiError, PaymentDetails, PaymentLink, PaymentStatus,
};
pub use sandbox::{Faults, Sandbox};

/// The API path prefix both sides use.
pub const API_PREFIX: &str = "/r2/v01";
