//! Liveness and readiness on the API listener; metrics on their own listener
//! (`ZHILEGO_METRICS_ADDR`), optionally behind a bearer token (`ZHILEGO_METRICS_TOKEN`), as
//! they show revenue and traffic that are nobody else's business.
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The metrics listener's routes: `/metrics` only.
pub fn metrics_routes() -> Router<AppState> {
    Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("route") })
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

async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> axum::response::Response {
    if let Some(token) = &state.settings.edge.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| crate::tokens::same_secret(g, token.expose())) {
            let mut res = ApiError::unauthorized("unauthorized", "the metrics token is required")
                .into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer realm=\"metrics\""),
            );
            return res;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
