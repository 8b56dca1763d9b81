//! `/kaspi/callback/`: Kaspi's biller protocol. `GET` with a query string or a form `POST`:
//! `command=check|pay`, `txn_id`, `account` (the booking's id or short code), `sum`,
//! `txn_date`, parsed once here into [`kaspi::biller::Notification`]. The JSON answer is
//! `{txn_id, result, sum, prv_txn_id, comment}`.
//!
//! Only callers on `KASPI_CALLBACK_ALLOW_IPS` with the configured basic credentials get past
//! the door (403 and 401 otherwise, and nothing changes).
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine;
use kaspi::biller::{Malformed, Notification};
use std::collections::HashMap;
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new().route("/kaspi/callback/", get(by_query).post(by_form))
}

#[tracing::instrument(skip_all)]
async fn by_query(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    handle(&state, peer, &headers, params).await
}

#[tracing::instrument(skip_all)]
async fn by_form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(params): Form<HashMap<String, String>>,
) -> Response {
    handle(&state, peer, &headers, params).await
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

async fn handle(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: HashMap<String, String>,
) -> Response {
    let guard = &state.kaspi.guard;
    let caller =
        crate::client_addr::client_ip(peer.ip(), headers, &state.settings.edge.trusted_proxies);
    if !guard.allows(caller) {
        metrics::counter!("zhilego_kaspi_callbacks_refused_total", "why" => "ip").increment(1);
        tracing::warn!(%caller, peer = %peer.ip(), "Kaspi callback from an address not on the allow-list");
        return ApiError::forbidden("this address may not call the Kaspi callback").into_response();
    }
    let authorized = basic_credentials(headers)
        .is_some_and(|(user, password)| guard.credentials_match(&user, &password));
    if !authorized {
        metrics::counter!("zhilego_kaspi_callbacks_refused_total", "why" => "credentials")
            .increment(1);
        tracing::warn!(peer = %peer.ip(), "Kaspi callback with wrong or missing credentials");
        let mut res = ApiError::unauthorized(
            "unauthorized",
            "valid Kaspi callback credentials are required",
        )
        .into_response();
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"kaspi\""),
        );
        return res;
    }
    let notification = match Notification::parse(&params) {
        Ok(n) => n,
        Err(malformed) => return refuse_malformed(&malformed),
    };
    let command = notification.command.as_str();
    match state.commands.kaspi_notification(notification).await {
        Ok(answer) => {
            metrics::counter!("zhilego_kaspi_callbacks_total",
                "command" => command, "result" => answer.result.to_string())
            .increment(1);
            (StatusCode::OK, Json(answer)).into_response()
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A request that is not a well-formed notification: a biller answer (result 5, Kaspi takes
/// no money) when it names its transaction, else a 422 naming the field.
fn refuse_malformed(malformed: &Malformed) -> Response {
    if let Some(answer) = malformed.answer() {
        tracing::warn!(error = %malformed, "a malformed Kaspi notification; refused");
        metrics::counter!("zhilego_kaspi_callbacks_total",
            "command" => "malformed", "result" => answer.result.to_string())
        .increment(1);
        return (StatusCode::OK, Json(answer)).into_response();
    }
    match malformed {
        Malformed::Missing(field) => ApiError::validation(*field, "is required"),
        _ => ApiError::validation("txn_id", malformed.to_string()),
    }
    .into_response()
}
