//! Per-request context: the correlation id, always minted here and carried into every event's
//! metadata and log line. A client's own `X-Correlation-Id` (or `X-Request-Id`) is kept apart
//! as `client_correlation_id` (at most 64 of `A-Z a-z 0-9 . _ : -`; anything else is
//! ignored): it is echoed back in `X-Correlation-Id`, and ours is in
//! `X-Server-Correlation-Id` (and in `X-Correlation-Id` when the client sent none).
//!
//! The access log: one line per request when it is answered (target `zhilego::access`:
//! method, route, status, latency; the span adds the correlation ids and the caller's user
//! id). A 5xx answer is logged at `error` with its correlation id, so it is also reported
//! (`crate::telemetry`, Sentry).
use crate::auth::Principal;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use commands::CommandMeta;
use domain::Channel;
use std::time::Duration;
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

tokio::task_local! {
    /// The correlation id of the request this task is answering, for reports made where the
    /// request is not at hand (the panic hook, the access log's error line).
    static CURRENT: Uuid;
}

/// The correlation id of the request being answered on this task, if any.
pub fn current_correlation() -> Option<Uuid> {
    CURRENT.try_with(|id| *id).ok()
}

/// Mints the request's correlation id (outside the access log's span, which reads it) and
/// puts both ids on the answer.
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
    let mut res = CURRENT.scope(id, next.run(req)).await;
    let ours = HeaderValue::from_str(&id.to_string()).expect("a UUID is a header value");
    let echoed = client
        .as_deref()
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| ours.clone());
    res.headers_mut().insert(CORRELATION_HEADER, echoed);
    res.headers_mut().insert(SERVER_CORRELATION_HEADER, ours);
    res
}

/// The request's span, opened by the access log (`tower_http::trace::TraceLayer`): every
/// log line of the request carries its correlation ids; `route` is filled from the matched
/// pattern and `user_id` once the caller is known ([`record_user`]). It is the trace's
/// server span too, continuing a `traceparent` the client sent.
pub fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    let id = req
        .extensions()
        .get::<CorrelationId>()
        .map(|c| c.0.to_string())
        .unwrap_or_default();
    let client = req
        .extensions()
        .get::<ClientCorrelationId>()
        .map(|c| c.0.as_str())
        .unwrap_or("");
    // The layers run after routing, so the matched pattern is known: the trace's span name.
    let name = match req.extensions().get::<axum::extract::MatchedPath>() {
        Some(route) => format!("{} {}", req.method(), route.as_str()),
        None => req.method().to_string(),
    };
    let span = tracing::info_span!("request", correlation_id = %id,
        client_correlation_id = client, method = %req.method(), path = %req.uri().path(),
        route = tracing::field::Empty, user_id = tracing::field::Empty,
        otel.name = name.as_str(), otel.kind = "server");
    if let Some(traceparent) = req
        .headers()
        .get(store::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
    {
        store::trace::continue_from(&span, traceparent);
    }
    span
}

/// The access log's line for an answer, in the request's span: 5xx at `error` with the
/// correlation id as a field (the error report has no span), a panic's 500 at `warn` (its
/// report is the panic's own), the rest at `info`.
pub fn log_answer<B>(res: &Response<B>, latency: Duration, span: &tracing::Span) {
    let route = res
        .extensions()
        .get::<super::RouteLabel>()
        .map(|r| r.0.as_str())
        .unwrap_or("unmatched");
    span.record("route", route);
    let status = res.status().as_u16();
    let latency_ms = latency.as_secs_f64() * 1000.0;
    if res.extensions().get::<super::Panicked>().is_some() {
        // The panic hook has logged and reported it already.
        tracing::warn!(target: "zhilego::access", route, status, latency_ms, "answered a panic");
    } else if res.status().is_server_error() {
        let correlation_id = current_correlation()
            .map(|c| c.to_string())
            .unwrap_or_default();
        tracing::error!(target: "zhilego::access", route, status, latency_ms,
            correlation_id = %correlation_id, "answered with a server error");
    } else {
        tracing::info!(target: "zhilego::access", route, status, latency_ms, "answered");
    }
}

/// Records the authenticated caller on the request's span (the access log's `user_id`).
pub fn record_user(user: Uuid) {
    tracing::Span::current().record("user_id", tracing::field::display(user));
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
