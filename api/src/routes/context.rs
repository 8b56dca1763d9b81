//! Per-request context: the correlation id (from `X-Correlation-Id` / `X-Request-Id`, or new),
//! echoed in the response and carried into every event's metadata and log line.
use crate::auth::Principal;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use commands::CommandMeta;
use domain::Channel;
use tracing::Instrument;
use uuid::Uuid;

#[derive(Clone, Copy, Debug)]
pub struct CorrelationId(pub Uuid);

pub const CORRELATION_HEADER: &str = "x-correlation-id";

pub async fn correlation(mut req: Request, next: Next) -> Response {
    let id = [CORRELATION_HEADER, "x-request-id"]
        .iter()
        .find_map(|h| req.headers().get(*h)?.to_str().ok()?.parse::<Uuid>().ok())
        .unwrap_or_else(Uuid::now_v7);
    req.extensions_mut().insert(CorrelationId(id));
    let span = tracing::info_span!("request", correlation_id = %id, method = %req.method(), path = %req.uri().path());
    let mut res = next.run(req).instrument(span).await;
    if let Ok(v) = HeaderValue::from_str(&id.to_string()) {
        res.headers_mut().insert(CORRELATION_HEADER, v);
    }
    res
}

/// The channel a client says it is (`X-Channel: web|mobile|api`), `api` by default.
pub fn channel_of(parts: &Parts) -> Channel {
    parts
        .headers
        .get("x-channel")
        .and_then(|v| v.to_str().ok())
        .and_then(Channel::parse)
        .filter(|c| matches!(c, Channel::Web | Channel::Mobile | Channel::Api))
        .unwrap_or(Channel::Api)
}

/// The command metadata for this request.
pub struct Meta(pub CommandMeta);

impl<S: Send + Sync> FromRequestParts<S> for Meta
where
    Principal: FromRequestParts<S, Rejection = crate::error::ApiError>,
{
    type Rejection = crate::error::ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        let correlation = parts
            .extensions
            .get::<CorrelationId>()
            .map(|c| c.0)
            .unwrap_or_else(Uuid::now_v7);
        Ok(Meta(CommandMeta::new(
            principal.0,
            channel_of(parts),
            correlation,
        )))
    }
}
