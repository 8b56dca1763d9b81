//! What every handler shares.
use crate::auth::JwtKeys;
use crate::settings::Settings;
use commands::Commands;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::ProjectionRunner;
use std::ops::Deref;
use std::sync::Arc;
use store::Database;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub db: Database,
    pub commands: Arc<Commands>,
    /// Keeps the bookings read model current; readers wait on it for `min_position`.
    pub bookings_view: ProjectionRunner,
    pub auth: JwtKeys,
    pub metrics: PrometheusHandle,
    /// The bus connection in production mode with `NATS_URL`.
    pub nats: Option<async_nats::Client>,
    /// Wakes the relay after every successful command.
    pub relay_nudge: Arc<tokio::sync::Notify>,
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
