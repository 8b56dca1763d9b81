//! Test doubles for the bots, shared by the HTTP tests (`tests/api`) and the benchmarks
//! (`zhilego-bench bots`), so both drive the service the same way:
//!
//! - [`outbox`]: what a fake API was sent, per chat, with the instant each call arrived;
//! - [`telegram`]: a fake Telegram Bot API ([`FakeTelegram`]) and reading its calls
//!   (text, inline keyboard);
//! - [`twilio`]: a fake Twilio Messages API ([`FakeTwilio`]);
//! - [`sign`]: Twilio's `X-Twilio-Signature` and the Telegram Login Widget hash, written here
//!   from the providers' documentation and not from the service's verifiers, so a bug in
//!   either side is caught by the other;
//! - [`feeds`]: other sites' iCal feeds (Airbnb- and Booking.com-shaped), with their failure
//!   modes, served on loopback ([`FakeFeeds`]);
//! - [`guests`]: a guest's side of the wire: Telegram updates posted to the webhook, signed
//!   Twilio webhooks, WhatsApp's numbered menus.
//!
//! Dev-only: never a dependency of a production crate.
#![forbid(unsafe_code)]

pub mod feeds;
pub mod guests;
pub mod outbox;
pub mod sign;
pub mod telegram;
pub mod twilio;

pub use feeds::FakeFeeds;
pub use outbox::{Call, Message, Outbox};
pub use telegram::FakeTelegram;
pub use twilio::FakeTwilio;

use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// The server task of a fake, shared by its clones (the router's state is one of them).
#[derive(Clone, Default)]
struct Served(Arc<Mutex<Option<JoinHandle<()>>>>);

impl Served {
    /// Serves `app` on `listener` until [`Served::stop`] or the end of the process.
    fn start(&self, listener: tokio::net::TcpListener, app: axum::Router) {
        let task = tokio::spawn(async move {
            // A failed accept loop ends the fake; the waiting test or bench then reports it.
            let _ = axum::serve(listener, app).await;
        });
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }

    fn stop(&self) {
        if let Some(task) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}
