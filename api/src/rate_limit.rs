//! Per-client request limits on the API (tower_governor): a client is the `sub` of a valid
//! bearer token, otherwise the peer address. Over the limit: 429 problem+json with
//! `Retry-After`.
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::IntoResponse;
use axum::Router;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_governor::{GovernorError, GovernorLayer};

#[derive(Clone)]
pub struct ClientKey {
    state: AppState,
}

impl KeyExtractor for ClientKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        if let Some(token) = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        {
            if let Ok(actor) = self.state.auth.verify(token.trim()) {
                return Ok(format!("user:{}", actor.user_id));
            }
        }
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        Ok(format!("ip:{ip}"))
    }
}

/// Wraps `router` in the API limit, unless it is turned off (0).
pub fn apply(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let per_minute = state.settings.rate_limit_per_minute;
    if per_minute == 0 {
        return router;
    }
    let period =
        Duration::from_micros(60_000_000 / u64::from(per_minute)).max(Duration::from_micros(1));
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(per_minute)
        .key_extractor(ClientKey {
            state: state.clone(),
        })
        .finish()
        .expect("positive period and burst");
    let config = Arc::new(config);
    let limiter = config.limiter().clone();
    // Forget clients that went quiet, so the table does not grow without bound.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            limiter.retain_recent();
        }
    });
    router.layer(GovernorLayer::new(config).error_handler(|e| match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::rate_limited(wait_time.max(1)).into_response()
        }
        other => ApiError::internal(other).into_response(),
    }))
}
