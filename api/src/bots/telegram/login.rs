//! The Telegram Login Widget: `POST /api/v1/auth/telegram` exchanges the widget's signed
//! fields for a guest token, for the same guest the bot knows.
use super::Telegram;
use crate::auth::same_secret;
use crate::error::{ApiError, Problem};
use crate::extract::ValidJson;
use crate::state::AppState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use domain::{Channel, Role};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// `POST /api/v1/auth/telegram`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(auth_telegram))
}

impl Telegram {
    /// Checks Telegram Login Widget fields: the `hash` is HMAC-SHA256 of the other fields
    /// (`key=value` lines, sorted) keyed with SHA-256 of the bot token, and `auth_date` is at
    /// most a day old. Gives the Telegram user id.
    pub fn verify_login(
        &self,
        fields: &BTreeMap<String, String>,
        now: i64,
    ) -> Result<i64, &'static str> {
        verify_login(self.token.expose(), fields, now)
    }
}

/// See [`Telegram::verify_login`].
pub fn verify_login(
    bot_token: &str,
    fields: &BTreeMap<String, String>,
    now: i64,
) -> Result<i64, &'static str> {
    let hash = fields.get("hash").ok_or("hash is missing")?;
    let check: Vec<String> = fields
        .iter()
        .filter(|(k, _)| k.as_str() != "hash")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let key = Sha256::digest(bot_token.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(check.join("\n").as_bytes());
    let expected = hex::encode(mac.finalize().into_bytes());
    if !same_secret(&expected, &hash.to_lowercase()) {
        return Err("the hash does not match");
    }
    let auth_date: i64 = fields
        .get("auth_date")
        .and_then(|d| d.parse().ok())
        .ok_or("auth_date is missing")?;
    if now - auth_date > 86_400 || auth_date - now > 300 {
        return Err("auth_date is too old");
    }
    fields
        .get("id")
        .and_then(|i| i.parse().ok())
        .ok_or("id is missing")
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
    responses((status = 200, body = TokenView),
        (status = 401, body = Problem, description = "`invalid_telegram_login`: the hash does not match, or `auth_date` is too old"),
        (status = 403, body = Problem, description = "`user_blocked`: an admin blocked the account"),
        (status = 404, body = Problem, description = "`bot_not_configured`: no Telegram bot here")))]
#[tracing::instrument(skip_all)]
pub async fn auth_telegram(
    State(state): State<AppState>,
    ValidJson(fields, _): ValidJson<BTreeMap<String, serde_json::Value>>,
) -> Result<Json<TokenView>, Response> {
    let Some(telegram) = &state.telegram else {
        return Err(super::bot_off("Telegram"));
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
        .map_err(|why| {
            tracing::info!(why, "a Telegram login was refused");
            ApiError::unauthorized("invalid_telegram_login", why).into_response()
        })?;
    let ttl = chrono::Duration::hours(24);
    // A Telegram user's private chat has their user id as its id: a guest who chatted before
    // keyed ids logs in as the guest of that chat.
    let id = id.to_string();
    let user = state
        .chats
        .guest(Channel::Telegram, &id, &id)
        .await
        .map_err(|e| ApiError::internal(e).into_response())?;
    if state.access.is_blocked(user) {
        return Err(ApiError::user_blocked().into_response());
    }
    Ok(Json(TokenView {
        access_token: state.auth.mint(user, Role::Guest, ttl),
        token_type: "Bearer".into(),
        expires_in: ttl.num_seconds(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(token: &str, mut fields: BTreeMap<String, String>) -> BTreeMap<String, String> {
        let check: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let key = Sha256::digest(token.as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(check.join("\n").as_bytes());
        fields.insert("hash".into(), hex::encode(mac.finalize().into_bytes()));
        fields
    }

    fn widget(auth_date: i64) -> BTreeMap<String, String> {
        [
            ("id", "424242".to_string()),
            ("first_name", "Айгерим".to_string()),
            ("username", "aigerim".to_string()),
            ("auth_date", auth_date.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    #[test]
    fn a_widget_login_is_checked_with_the_bot_token() {
        let now = 1_800_000_000;
        let ok = signed("123:ABC", widget(now - 60));
        assert_eq!(verify_login("123:ABC", &ok, now), Ok(424242));
        assert!(verify_login("123:XYZ", &ok, now).is_err(), "another bot");
        let mut forged = ok.clone();
        forged.insert("id".into(), "1".into());
        assert!(verify_login("123:ABC", &forged, now).is_err());
        let stale = signed("123:ABC", widget(now - 90_000));
        assert_eq!(
            verify_login("123:ABC", &stale, now),
            Err("auth_date is too old")
        );
    }
}
