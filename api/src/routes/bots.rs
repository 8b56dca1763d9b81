//! The bots' webhooks (no bearer token; each verified its own way) and the Telegram Login
//! Widget exchange.
use crate::chat::guest_id;
use crate::error::{ApiError, Problem};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use domain::Role;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `/telegram/webhook/` and `/whatsapp/webhook/`.
pub fn webhooks() -> Router<AppState> {
    Router::new()
        .route("/telegram/webhook/", post(telegram_webhook))
        .route("/whatsapp/webhook/", post(whatsapp_webhook))
}

/// `POST /api/v1/auth/telegram`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(auth_telegram))
}

fn bot_off(which: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "bot_not_configured",
        "Bot not configured",
        format!("the {which} bot is off on this server"),
    )
    .into_response()
}

async fn telegram_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(telegram) = &state.telegram else {
        return bot_off("Telegram");
    };
    let secret = headers
        .get("x-telegram-bot-api-secret-token")
        .and_then(|v| v.to_str().ok());
    if !telegram.webhook_allows(secret) {
        metrics::counter!("zhilego_bot_webhooks_refused_total", "channel" => "telegram")
            .increment(1);
        return ApiError::unauthorized("unauthorized", "the secret token is missing or wrong")
            .into_response();
    }
    let update: teloxide::types::Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => return ApiError::bad_request("invalid_update", e.to_string()).into_response(),
    };
    match telegram.handle(&state.chats, update).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a Telegram update failed; Telegram will retry");
            ApiError::unavailable("bot_failed", "the update could not be handled now", 1)
                .into_response()
        }
    }
}

async fn whatsapp_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let Some(whatsapp) = &state.whatsapp else {
        return bot_off("WhatsApp");
    };
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let received = format!("{scheme}://{host}{uri}");
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok());
    if !whatsapp.signed(uri.path(), &received, &params, signature) {
        metrics::counter!("zhilego_bot_webhooks_refused_total", "channel" => "whatsapp")
            .increment(1);
        return ApiError::forbidden("the Twilio signature is missing or wrong").into_response();
    }
    match whatsapp.handle(&state.chats, &params).await {
        Ok(()) => (
            [(header::CONTENT_TYPE, "text/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response></Response>",
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "a WhatsApp message failed; Twilio will retry");
            ApiError::unavailable("bot_failed", "the message could not be handled now", 1)
                .into_response()
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TokenView {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds.
    pub expires_in: i64,
}

/// Exchange Telegram Login Widget fields (`id`, `first_name`, …, `auth_date`, `hash`) for a
/// guest token. The hash is checked with the bot's token; `auth_date` must be within a day.
#[utoipa::path(post, path = "/api/v1/auth/telegram", tag = "users",
    request_body(content = Object, description = "The widget's fields as it gave them"),
    responses((status = 200, body = TokenView), (status = 401, body = Problem),
        (status = 404, body = Problem, description = "`bot_not_configured`: no Telegram bot here")))]
pub async fn auth_telegram(
    State(state): State<AppState>,
    Json(fields): Json<BTreeMap<String, serde_json::Value>>,
) -> Result<Json<TokenView>, Response> {
    let Some(telegram) = &state.telegram else {
        return Err(bot_off("Telegram"));
    };
    let fields: BTreeMap<String, String> = fields
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    let id = telegram
        .verify_login(&fields, chrono::Utc::now().timestamp())
        .map_err(|why| ApiError::unauthorized("invalid_telegram_login", why).into_response())?;
    let ttl = chrono::Duration::hours(24);
    let user = guest_id(bots::Channel::Telegram, &id.to_string());
    Ok(Json(TokenView {
        access_token: state.auth.mint(user, Role::Guest, ttl),
        token_type: "Bearer".into(),
        expires_in: ttl.num_seconds(),
    }))
}
