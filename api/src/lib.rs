//! ZhilyeGO's edge: the `zhilego` binary's library.
//!
//! - [`settings`]: typed configuration from the environment (and an optional file);
//!   [`config_check`]: `zhilego config check`, the effective settings with secrets redacted.
//! - [`app`]: `Application::build` / `run_until_stopped`, the embedded/production switch.
//! - [`files`]: the data dir and its files, private (0700/0600) from creation.
//! - [`server`]: the HTTP/1.1 accept loop with its timeouts and connection cap.
//! - [`routes`]: `/api/v1` per shared/API.md (listings, blocks, bookings, users), the OpenAPI
//!   document and docs UI, `/healthz`, `/readyz`, and `/metrics` (on its own listener).
//! - [`auth`]: the caller of a request and its role; [`tokens`]: JWTs and secret comparison; [`error`]: problem+json; [`extract`]: extractors
//!   whose rejections name the bad field; [`idempotency`]: `Idempotency-Key` replay;
//!   [`rate_limit`]: per-client limits; [`access`]: blocked accounts, admins' roles and API
//!   keys, in memory; [`cors`]: the origins browsers may call the API from.
//! - [`telemetry`]: logs, the access log's setup, OpenTelemetry traces, Sentry reports,
//!   metrics.
//! - [`bots`]: the Telegram and WhatsApp bots: the runtime around the `bots` conversation, each
//!   channel's adapter with its webhook, and the channels the notifications worker sends on.
//! - [`audit`]: the audit settings, the checkpoint signing key, the notary (the `audit` crate
//!   does the work).
//! - [`reports`]: the daily analytics report, made once across instances, and its schedule.
//! - [`cli`]: `serve`, `migrate`, `token`, `notary`, `audit verify / export / verify-export`,
//!   `report daily`, `analytics export`, `config check`.
#![forbid(unsafe_code)]

pub mod access;
pub mod app;
pub mod audit;
pub mod auth;
pub mod bots;
pub mod cli;
pub mod client_addr;
pub mod config_check;
pub mod cors;
pub mod error;
pub mod export;
pub mod extract;
pub mod files;
pub mod ical_settings;
pub mod idempotency;
pub mod payments;
pub mod rate_limit;
pub mod reads;
pub mod reports;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
pub mod telemetry;
pub mod tokens;

pub use app::Application;
pub use settings::Settings;
