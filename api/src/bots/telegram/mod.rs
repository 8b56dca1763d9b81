//! Telegram: `POST /telegram/webhook/` (the `X-Telegram-Bot-Api-Secret-Token` header compared
//! in constant time), or long polling for local use; each update is parsed into an [`Input`]
//! and the turn's replies go out through [`send`]. The Telegram Login Widget exchange is
//! [`login`].
pub mod login;
pub mod send;

pub use login::verify_login;
pub use send::{render_turn, Outgoing};

use super::{bot_off, Chats};
use crate::auth::same_secret;
use crate::error::ApiError;
use crate::settings::{Secret, TelegramSettings};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bots::{Command, Input};
use domain::Channel;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::{Request, Requester};
use teloxide::types::{Update, UpdateKind};
use teloxide::Bot;

pub struct Telegram {
    bot: Bot,
    token: Secret,
    webhook_secret: Option<Secret>,
    limiter: DefaultDirectRateLimiter,
    /// Senders take their turn at the limiter first come, first served.
    queue: tokio::sync::Mutex<()>,
}

impl Telegram {
    /// The bot, when `TELEGRAM_BOT_TOKEN` is set.
    pub fn from_settings(s: &TelegramSettings) -> anyhow::Result<Option<Telegram>> {
        let Some(token) = &s.bot_token else {
            return Ok(None);
        };
        let api = reqwest::Url::parse(&s.api_url)
            .map_err(|e| anyhow::Error::new(e).context("TELEGRAM_API_URL"))?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Some(Telegram {
            bot: Bot::with_client(token.expose(), client).set_api_url(api),
            token: token.clone(),
            webhook_secret: s.webhook_secret.clone(),
            limiter: RateLimiter::direct(Quota::per_second(NonZeroU32::new(30).expect("30"))),
            queue: tokio::sync::Mutex::new(()),
        }))
    }

    /// Whether a webhook request carries our secret token.
    pub fn webhook_allows(&self, header: Option<&str>) -> bool {
        match (&self.webhook_secret, header) {
            (Some(secret), Some(given)) => same_secret(secret.expose(), given),
            _ => false,
        }
    }

    /// Handles one update once (a repeated `update_id` is skipped). An error leaves the update
    /// unhandled so that Telegram's retry is handled.
    pub async fn handle(&self, chats: &Chats, update: Update) -> anyhow::Result<()> {
        let delivery = update.id.0.to_string();
        if !chats.first_delivery(Channel::Telegram, &delivery).await? {
            metrics::counter!("zhilego_bot_duplicates_total", "channel" => "telegram").increment(1);
            return Ok(());
        }
        let result = self.handle_new(chats, update).await;
        if result.is_err() {
            chats.forget_delivery(Channel::Telegram, &delivery).await;
        }
        result
    }

    async fn handle_new(&self, chats: &Chats, update: Update) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let update_id = update.id.0.to_string();
        let (chat, user, input) = match update.kind {
            UpdateKind::Message(msg) => {
                let Some(text) = msg.text() else {
                    return Ok(());
                };
                let Some(user) = msg.from.as_ref().map(|u| u.id.0) else {
                    return Ok(());
                };
                (msg.chat.id, user, parse_text(text))
            }
            UpdateKind::CallbackQuery(q) => {
                let Some(chat) = q.message.as_ref().map(|m| m.chat().id) else {
                    return Ok(());
                };
                // Stops the button's spinner; failing to is harmless.
                if let Err(e) = self.bot.answer_callback_query(q.id.clone()).send().await {
                    tracing::debug!(error = %e, "answering a Telegram callback query failed");
                }
                let data = q.data.unwrap_or_default();
                (chat, q.from.id.0, Input::button(&data))
            }
            _ => return Ok(()),
        };
        let chat_id = chat.0.to_string();
        let user_id = chats
            .guest(Channel::Telegram, &chat_id, &user.to_string())
            .await?;
        let turn = chats
            .converse(
                Channel::Telegram,
                &chat_id,
                user_id,
                input,
                Some((commands::InputSource::TelegramUpdate, &update_id)),
            )
            .await?;
        for out in render_turn(&turn.replies) {
            match out {
                Outgoing::Album(photos) => self.send_album(chat, &photos).await?,
                Outgoing::Message(reply) => self.send(chat, &reply).await?,
            }
        }
        metrics::histogram!("zhilego_bot_reply_seconds", "channel" => "telegram")
            .record(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Long polling (`TELEGRAM_MODE=polling`) until `stop`.
    pub async fn poll(
        self: Arc<Self>,
        chats: Arc<Chats>,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut offset: i32 = 0;
        loop {
            let request = self.bot.get_updates().offset(offset).timeout(25).send();
            let updates = tokio::select! {
                _ = &mut stop => return,
                r = request => r,
            };
            match updates {
                Ok(updates) => {
                    for u in updates {
                        offset = offset.max(u.id.0 as i32 + 1);
                        if let Err(e) = self.handle(&chats, u).await {
                            tracing::warn!(error = %e, "a Telegram update failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Telegram polling failed; retrying");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }
}

/// `POST /telegram/webhook/`: an update from Telegram, checked by its secret token.
#[utoipa::path(post, path = "/telegram/webhook/", tag = "webhooks", operation_id = "telegram_webhook",
    request_body(content = Object, description = "A Telegram Bot API `Update`"),
    responses((status = 200, description = "Handled (empty body)"),
        (status = 400, body = crate::error::Problem, description = "`invalid_update`: the body is not an update"),
        (status = 401, body = crate::error::Problem, description = "`unauthorized`: the secret token is missing or wrong"),
        (status = 404, body = crate::error::Problem, description = "`bot_not_configured`: the Telegram bot is off here"),
        (status = 503, body = crate::error::Problem, description = "`bot_failed`: not handled now; Telegram sends it again")),
    security(("telegram_secret" = [])))]
#[tracing::instrument(skip_all)]
pub(crate) async fn webhook(
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
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(error = %e, "a Telegram webhook body is no update");
            return ApiError::bad_request("invalid_update", e.to_string()).into_response();
        }
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

/// A typed message: a command (`/start`, `/start@zhilego_bot`, …) or text.
pub fn parse_text(text: &str) -> Input {
    let t = text.trim();
    if let Some(cmd) = t.strip_prefix('/') {
        let word = cmd
            .split(|c: char| c.is_whitespace() || c == '@')
            .next()
            .unwrap_or("")
            .to_lowercase();
        let command = match word.as_str() {
            "start" => Some(Command::Start),
            "help" => Some(Command::Help),
            "lang" | "language" => Some(Command::Lang),
            "mybookings" | "bookings" => Some(Command::MyBookings),
            "cancel" => Some(Command::Cancel),
            _ => None,
        };
        if let Some(c) = command {
            return Input::Command(c);
        }
    }
    Input::Text(t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognized_with_or_without_the_bot_name() {
        assert_eq!(parse_text("/start"), Input::Command(Command::Start));
        assert_eq!(
            parse_text("/mybookings@zhilego_bot"),
            Input::Command(Command::MyBookings)
        );
        assert_eq!(parse_text(" /lang "), Input::Command(Command::Lang));
        assert_eq!(parse_text("Almaty"), Input::Text("Almaty".into()));
        assert_eq!(parse_text("/unknown"), Input::Text("/unknown".into()));
    }
}
