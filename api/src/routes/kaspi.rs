//! `/kaspi/callback/`: Kaspi's biller protocol. `GET` with a query string or a form `POST`:
//! `command=check|pay`, `txn_id`, `account` (the booking's id or short code), `sum`,
//! `txn_date`, parsed once here into [`kaspi::biller::Notification`]. The JSON answer is
//! `{txn_id, result, sum, prv_txn_id, comment}`.
//!
//! Only callers on `KASPI_CALLBACK_ALLOW_IPS` with the configured basic credentials get past
//! the door (403 and 401 otherwise, and nothing changes).
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine;
use kaspi::biller::{Malformed, Notification};
use std::collections::HashMap;
use std::net::SocketAddr;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new().route("/kaspi/callback/", get(by_query).post(by_form))
}

/// A notification's fields, as Kaspi sends them (a query string or a form).
#[derive(ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // read as a map by `Notification::parse`; this is its description
pub struct NotificationFields {
    /// `check` (may this account be paid, and how much) or `pay` (it was paid).
    command: String,
    /// Kaspi's transaction id.
    txn_id: String,
    /// The booking's id or short code.
    account: String,
    /// Whole tenge (`pay`; `check` may omit it).
    sum: Option<String>,
    /// `YYYYMMDDHHMMSS` (`pay`).
    txn_date: Option<String>,
}

/// The biller protocol's answer.
#[derive(ToSchema)]
#[allow(dead_code)] // the shape of `kaspi::biller::Answer` as it serializes
pub struct BillerAnswer {
    txn_id: String,
    /// 0 ok, 1 no such account, 2 cancelled, 3 paid already, 4 in progress, 5 other error.
    #[schema(minimum = 0, maximum = 5)]
    result: u8,
    /// Due (check) or taken (pay), whole tenge.
    sum: Option<i64>,
    /// Our id for the payment.
    prv_txn_id: Option<String>,
    comment: String,
}

/// Kaspi asks whether an account may be paid, or says it was (query string).
#[utoipa::path(get, path = "/kaspi/callback/", tag = "webhooks", params(NotificationFields),
    responses((status = 200, body = BillerAnswer, description = "Every well-formed notification, whatever its `result`"),
        (status = 401, body = crate::error::Problem, description = "`unauthorized`: wrong or missing credentials"),
        (status = 403, body = crate::error::Problem, description = "`forbidden`: the address is not on `KASPI_CALLBACK_ALLOW_IPS`"),
        (status = 422, body = crate::error::Problem, description = "`validation_failed`: a notification without `command`, `txn_id` or `account`")),
    security(("kaspi_basic" = [])))]
#[tracing::instrument(skip_all)]
pub async fn by_query(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Response {
    let params = params
        .map(|Query(p)| p)
        .map_err(|e| ApiError::bad_request("malformed_query", e.body_text()));
    handle(&state, peer, &headers, params).await
}

/// The same as a form `POST`.
#[utoipa::path(post, path = "/kaspi/callback/", tag = "webhooks",
    request_body(content = NotificationFields, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = BillerAnswer, description = "Every well-formed notification, whatever its `result`"),
        (status = 400, body = crate::error::Problem, description = "`malformed_form`: the body is not a form"),
        (status = 401, body = crate::error::Problem, description = "`unauthorized`: wrong or missing credentials"),
        (status = 403, body = crate::error::Problem, description = "`forbidden`: the address is not on `KASPI_CALLBACK_ALLOW_IPS`"),
        (status = 415, body = crate::error::Problem, description = "`unsupported_media_type`: send `application/x-www-form-urlencoded`"),
        (status = 422, body = crate::error::Problem, description = "`validation_failed`: a notification without `command`, `txn_id` or `account`")),
    security(("kaspi_basic" = [])))]
#[tracing::instrument(skip_all)]
pub async fn by_form(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    params: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let params = params.map(|Form(p)| p).map_err(|e| match e.status() {
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
            "send the notification as Content-Type: application/x-www-form-urlencoded",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            e.body_text(),
        ),
        _ => ApiError::bad_request("malformed_form", e.body_text()),
    });
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

/// The door first (address, credentials), then the notification: a caller who may not call
/// learns nothing about what it sent.
async fn handle(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    params: Result<HashMap<String, String>, ApiError>,
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
    let params = match params {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
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

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The documented answer is the one `kaspi::biller::Answer` serializes to.
    #[test]
    fn the_documented_answer_has_the_answers_members() {
        let answer = kaspi::biller::Answer::new("1", kaspi::biller::ResultCode::Ok, "ok")
            .with_payment(domain::Kzt(100), "p".into());
        let sent: Vec<String> = serde_json::to_value(&answer)
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let schema = serde_json::to_value(BillerAnswer::schema()).unwrap();
        let mut documented: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        documented.sort();
        let mut sent = sent;
        sent.sort();
        assert_eq!(sent, documented);
    }
}
