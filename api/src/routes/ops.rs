//! Liveness, readiness and metrics.
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// The store (and with it the read models, which share the database for now) answers.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.db.ping().await;
    let body = json!({
        "status": if store.is_ok() { "ready" } else { "not_ready" },
        "mode": if state.settings.is_production() { "production" } else { "embedded" },
        "checks": {
            "store": if store.is_ok() { "ok".to_string() } else { "unreachable".to_string() },
            "read_db": if store.is_ok() { "ok" } else { "unreachable" },
        }
    });
    let code = if store.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    if let Ok(cp) = state.bookings_view.projection().checkpoint().await {
        metrics::gauge!("zhilego_projection_position", "projection" => "bookings")
            .set(cp.position as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
