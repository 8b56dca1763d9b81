//! Per-request context: the correlation id, always minted here and carried into every event's
//! metadata and log line. A client's own `X-Correlation-Id` (or `X-Request-Id`) is kept apart
//! as `client_correlation_id` (at most 64 of `A-Z a-z 0-9 . _ : -`; anything else is
//! ignored): it is echoed back in `X-Correlation-Id`, and ours is in
//! `X-Server-Correlation-Id` (and in `X-Correlation-Id` when the client sent none).
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

/// The correlation id the client sent, once it passed [`client_correlation`].
#[derive(Clone, Debug)]
pub struct ClientCorrelationId(pub String);

pub const CORRELATION_HEADER: &str = "x-correlation-id";
pub const SERVER_CORRELATION_HEADER: &str = "x-server-correlation-id";
const CLIENT_CORRELATION_MAX: usize = 64;

/// A client's correlation id, if it is one we are willing to store and echo.
pub fn client_correlation(value: &str) -> Option<String> {
    let ok = !value.is_empty()
        && value.len() <= CLIENT_CORRELATION_MAX
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    ok.then(|| value.to_string())
}

pub async fn correlation(mut req: Request, next: Next) -> Response {
    let id = Uuid::now_v7();
    let client = [CORRELATION_HEADER, "x-request-id"]
        .iter()
        .find_map(|h| client_correlation(req.headers().get(*h)?.to_str().ok()?));
    req.extensions_mut().insert(CorrelationId(id));
    if let Some(client) = &client {
        req.extensions_mut()
            .insert(ClientCorrelationId(client.clone()));
    }
    let span = tracing::info_span!("request", correlation_id = %id,
        client_correlation_id = client.as_deref().unwrap_or(""),
        method = %req.method(), path = %req.uri().path());
    let mut res = next.run(req).instrument(span).await;
    let ours = HeaderValue::from_str(&id.to_string()).expect("a UUID is a header value");
    let echoed = client
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| ours.clone());
    res.headers_mut().insert(CORRELATION_HEADER, echoed);
    res.headers_mut().insert(SERVER_CORRELATION_HEADER, ours);
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
        let client = parts
            .extensions
            .get::<ClientCorrelationId>()
            .map(|c| c.0.clone());
        // The request's id for the audit trail: the client's own when it sent one.
        let request_id = client.clone().unwrap_or_else(|| correlation.to_string());
        Ok(Meta(
            CommandMeta::new(principal.0, channel_of(parts), correlation)
                .with_client_correlation(client)
                .with_input(commands::InputSource::ApiRequest, request_id),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::client_correlation;

    #[test]
    fn client_correlation_ids_are_bounded_tokens() {
        assert_eq!(
            client_correlation("req-42:a.b_c").as_deref(),
            Some("req-42:a.b_c")
        );
        assert_eq!(client_correlation(""), None);
        assert_eq!(client_correlation("has space"), None);
        assert_eq!(client_correlation("<script>"), None);
        assert_eq!(client_correlation(&"a".repeat(65)), None);
        assert!(client_correlation(&"a".repeat(64)).is_some());
    }
}
