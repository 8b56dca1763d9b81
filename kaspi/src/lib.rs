//! Kaspi.kz payments as this service speaks them, without any HTTP server in it (the sandbox
//! that plays Kaspi is the `kaspi-sandbox` crate), so the command side builds without axum.
//!
//! - [`client`]: the QR / remote-payment API client: create a payment link, poll its status,
//!   read what can still be returned, and return money (partially too). At most 10
//!   requests/s, timeouts, retries with backoff (and Kaspi's `Retry-After`); creating a link is idempotent by our
//!   external id.
//! - [`provider`]: [`PaymentProvider`], the narrow trait the command side pays through;
//!   [`KaspiClient`] implements it.
//! - [`biller`]: the biller protocol of `/kaspi/callback/` (`command=check|pay`, `txn_id`,
//!   `account`, `sum`, `txn_date`; result codes 0–5), parsed once into a typed
//!   [`biller::Notification`] and answered with a typed [`biller::Answer`].
//! - [`retry`]: the retry policy of every outbound HTTP call of the service (backoff with
//!   jitter, `Retry-After` honoured), used here, by the sandbox and by the bots' channels.
#![forbid(unsafe_code)]

pub mod biller;
pub mod client;
pub mod provider;
pub mod retry;

pub use client::{
    Failure, KaspiClient, KaspiConfig, KaspiError, PaymentDetails, PaymentLink, PaymentStatus,
};
pub use provider::PaymentProvider;

/// The API path prefix both sides use.
pub const API_PREFIX: &str = "/r2/v01";
