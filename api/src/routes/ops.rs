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

/// The store, the read database (the replica queries go to) and, when configured, the bus
/// answer.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let store = state.db.ping().await;
    let read_db = state.reads.query_db().ping().await;
    let bus = state
        .nats
        .as_ref()
        .map(|c| c.connection_state() == async_nats::connection::State::Connected);
    let ready = store.is_ok() && read_db.is_ok() && bus != Some(false);
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "mode": if state.settings.is_production() { "production" } else { "embedded" },
        "checks": {
            "store": if store.is_ok() { "ok" } else { "unreachable" },
            "read_db": if read_db.is_ok() { "ok" } else { "unreachable" },
            "bus": match bus {
                None => "not_configured",
                Some(true) => "ok",
                Some(false) => "unreachable",
            },
        }
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
