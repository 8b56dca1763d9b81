//! Per-client request limits (tower_governor). On the API a client is an API key, or the
//! `sub` of a valid bearer token, otherwise the peer address; on the webhooks and the Kaspi callback a source
//! is the peer address (the callers are Telegram's, Twilio's and Kaspi's servers, which carry
//! no token of ours). Behind a trusted gateway the address is the client's from
//! `X-Forwarded-For` (`client_addr`). Over the limit: 429 problem+json with `Retry-After`.
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
        if let Some(key) = crate::access::presented_key(req.headers()) {
            if let Ok(k) = self.state.access.key(key) {
                return Ok(format!("key:{}", k.key_id));
            }
        }
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
        Ok(peer_key(req, &self.state.settings.edge.trusted_proxies))
    }
}

/// A webhook source: the caller's address.
#[derive(Clone)]
pub struct SourceKey {
    trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl KeyExtractor for SourceKey {
    type Key = String;

    fn extract<T>(&self, req: &Request<T>) -> Result<String, GovernorError> {
        Ok(peer_key(req, &self.trusted_proxies))
    }
}

fn peer_key<T>(req: &Request<T>, trusted_proxies: &[ipnet::IpNet]) -> String {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| {
            crate::client_addr::client_ip(c.0.ip(), req.headers(), trusted_proxies).to_string()
        })
        .unwrap_or_else(|| "unknown".to_string());
    format!("ip:{ip}")
}

/// Wraps `router` in the API limit, unless it is turned off (0).
pub fn apply(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    let key = ClientKey {
        state: state.clone(),
    };
    limit(router, state.settings.rate_limit_per_minute, 60, key)
}

/// Wraps the webhooks and the Kaspi callback in the per-source limit
/// (`ZHILEGO_WEBHOOK_RATE_LIMIT` per second), unless it is turned off (0).
pub fn apply_webhooks(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    limit(
        router,
        state.settings.webhook_rate_limit_per_second,
        1,
        SourceKey {
            trusted_proxies: state.settings.edge.trusted_proxies.clone().into(),
        },
    )
}

/// `per_window` requests every `window_seconds` per key, refilled evenly, with a burst of the
/// whole window's allowance.
fn limit<K>(
    router: Router<AppState>,
    per_window: u32,
    window_seconds: u64,
    key: K,
) -> Router<AppState>
where
    K: KeyExtractor + Send + Sync + 'static,
    K::Key: Send + Sync + 'static,
{
    if per_window == 0 {
        return router;
    }
    let period = Duration::from_micros(window_seconds * 1_000_000 / u64::from(per_window))
        .max(Duration::from_micros(1));
    let config = GovernorConfigBuilder::default()
        .period(period)
        .burst_size(per_window)
        .key_extractor(key)
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
