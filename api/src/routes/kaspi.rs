//! `/kaspi/callback/`: Kaspi's biller protocol. `GET` with a query string or a form `POST`:
//! `command=check|pay`, `txn_id`, `account` (the booking's id or short code), `sum`,
//! `txn_date`. The JSON answer is `{txn_id, result, sum, prv_txn_id, comment}`.
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
use commands::Notification;
use std::collections::HashMap;
use std::net::SocketAddr;

pub fn routes() -> Router<AppState> {
    Router::new().route("/kaspi/callback/", get(by_query).post(by_form))
}

async fn by_query(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    handle(&state, peer, &headers, params).await
}

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
    if !guard.allows(peer.ip()) {
        metrics::counter!("zhilego_kaspi_callbacks_refused_total", "why" => "ip").increment(1);
        tracing::warn!(peer = %peer.ip(), "Kaspi callback from an address not on the allow-list");
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
    let field = |name: &'static str| {
        params
            .get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::validation(name, "is required"))
    };
    let notification = match (|| {
        Ok::<_, ApiError>(Notification {
            command: field("command")?,
            txn_id: field("txn_id")?,
            account: field("account")?,
            sum: field("sum")?,
            txn_date: params.get("txn_date").cloned().unwrap_or_default(),
        })
    })() {
        Ok(n) => n,
        Err(e) => return e.into_response(),
    };
    if notification.txn_id.len() > 64 || notification.account.len() > 64 {
        return ApiError::validation("txn_id", "txn_id and account are at most 64 characters")
            .into_response();
    }
    let command = notification.command.clone();
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
