//! What every handler shares.
use crate::reads::ReadModels;
use crate::settings::Settings;
use crate::tokens::JwtKeys;
use commands::Commands;
use metrics_exporter_prometheus::PrometheusHandle;
use std::ops::Deref;
use std::sync::Arc;
use store::Database;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Database,
    pub commands: Arc<Commands>,
    /// The read models and their database; queries wait on them for `min_position`.
    pub reads: Arc<ReadModels>,
    pub auth: JwtKeys,
    /// Blocked accounts, roles given by admins and API keys, in memory.
    pub access: Arc<crate::access::Access>,
    pub metrics: PrometheusHandle,
    /// The bus connection in production mode with `NATS_URL`.
    pub nats: Option<async_nats::Client>,
    /// Wakes the relay after every successful command.
    pub relay_nudge: Arc<tokio::sync::Notify>,
    /// Kaspi's client (live or the sandbox) and the callback's guard.
    pub kaspi: Arc<crate::payments::Kaspi>,
    /// Settles payments and reconciles them with Kaspi (also on an admin's request).
    pub keeper: Arc<commands::PaymentKeeper>,
    /// The bots' conversations.
    pub chats: Arc<crate::bots::Chats>,
    /// The Telegram bot, when `TELEGRAM_BOT_TOKEN` is set.
    pub telegram: Option<Arc<crate::bots::telegram::Telegram>>,
    /// The WhatsApp bot, when Twilio is configured.
    pub whatsapp: Option<Arc<crate::bots::whatsapp::WhatsApp>>,
    /// Wakes the notifications worker after every successful command.
    pub notifier_nudge: Arc<tokio::sync::Notify>,
    /// Calendar feeds: add, remove, sync (also the background sync).
    pub calendar: Arc<commands::CalendarSync>,
    /// The public key audit checkpoints are signed with.
    pub audit_key: audit::note::NoteVerifier,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}
