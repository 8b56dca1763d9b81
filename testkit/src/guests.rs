//! A guest's side of the wire, as Telegram and Twilio send it to the service: Telegram
//! updates (a message, a button press) for `/telegram/webhook/`, Twilio-signed messages for
//! `/whatsapp/webhook/`, and reading WhatsApp's numbered menus back.
use crate::outbox::Outbox;
use crate::sign::twilio_signature;
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// The header Telegram puts the webhook's secret token in.
pub const TELEGRAM_SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// The number the bot's WhatsApp messages come from (Twilio's sandbox number).
pub const WHATSAPP_BOT_NUMBER: &str = "whatsapp:+14155238886";

/// One webhook call a guest made. The webhook answers after the bot's replies reached the
/// (fake) API, so `elapsed` is the reply time and the replies are the chat's messages from
/// `before` on.
#[derive(Debug)]
pub struct Exchange {
    pub status: StatusCode,
    pub body: String,
    pub elapsed: Duration,
    /// How many messages the chat had when the call was made.
    pub before: usize,
}

/// Sends `request`, timing it until the whole answer is in.
async fn exchange(
    request: RequestBuilder,
    outbox: &Outbox,
    chat: &str,
) -> reqwest::Result<Exchange> {
    let before = outbox.count(chat);
    let started = Instant::now();
    let res = request.send().await?;
    let status = res.status();
    let body = res.text().await.unwrap_or_default();
    Ok(Exchange {
        status,
        body,
        elapsed: started.elapsed(),
        before,
    })
}

/// A Telegram user in a private chat with the bot (the chat id is the user id).
#[derive(Clone, Debug)]
pub struct TelegramGuest {
    pub user: i64,
}

impl TelegramGuest {
    pub fn new(user: i64) -> Self {
        TelegramGuest { user }
    }

    pub fn chat(&self) -> Value {
        json!({"id": self.user, "type": "private", "first_name": "Айгерим"})
    }

    pub fn from(&self) -> Value {
        json!({"id": self.user, "is_bot": false, "first_name": "Айгерим", "language_code": "ru"})
    }

    /// An update carrying a typed message (or a command such as `/start`).
    pub fn text_update(&self, update_id: i64, text: &str) -> Value {
        json!({"update_id": update_id, "message": {
            "message_id": update_id, "date": 1_800_000_000, "chat": self.chat(),
            "from": self.from(), "text": text}})
    }

    /// The chat's key in the fake's [`Outbox`].
    pub fn chat_key(&self) -> String {
        self.user.to_string()
    }

    /// Posts `update` to `{base_url}/telegram/webhook/` with `secret`; the bot's replies are
    /// in `outbox` (the fake Bot API's).
    pub async fn post(
        &self,
        client: &Client,
        base_url: &str,
        secret: &str,
        outbox: &Outbox,
        update: &Value,
    ) -> reqwest::Result<Exchange> {
        let request = telegram_webhook(client, base_url, secret, update);
        exchange(request, outbox, &self.chat_key()).await
    }

    /// An update carrying the press of an inline button with `data`.
    pub fn tap_update(&self, update_id: i64, data: &str) -> Value {
        json!({"update_id": update_id, "callback_query": {
            "id": format!("cq{update_id}"), "from": self.from(), "chat_instance": "ci",
            "data": data,
            "message": {"message_id": 1, "date": 1_800_000_000, "chat": self.chat(),
                        "text": "…"}}})
    }
}

/// `POST {base_url}/telegram/webhook/` of `update` with the secret token, as Telegram sends it.
pub fn telegram_webhook(
    client: &Client,
    base_url: &str,
    secret: &str,
    update: &Value,
) -> RequestBuilder {
    client
        .post(format!("{base_url}/telegram/webhook/"))
        .header(TELEGRAM_SECRET_HEADER, secret)
        .json(update)
}

/// A WhatsApp user writing to the bot through Twilio.
#[derive(Clone, Debug)]
pub struct WhatsAppGuest {
    /// `whatsapp:+7…`
    pub number: String,
    /// The Twilio account the webhook is addressed to.
    pub account_sid: String,
}

impl WhatsAppGuest {
    /// `number` as `+7…`.
    pub fn new(number: &str, account_sid: &str) -> Self {
        WhatsAppGuest {
            number: format!("whatsapp:{number}"),
            account_sid: account_sid.to_string(),
        }
    }

    /// The form Twilio posts for an incoming text message `body` with message id `sid`.
    pub fn params(&self, body: &str, sid: &str) -> Vec<(String, String)> {
        [
            ("AccountSid", self.account_sid.as_str()),
            ("Body", body),
            ("From", self.number.as_str()),
            ("MessageSid", sid),
            ("NumMedia", "0"),
            ("To", WHATSAPP_BOT_NUMBER),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

impl WhatsAppGuest {
    /// Posts `params` to `url` signed with `auth_token`; the bot's replies are in `outbox`
    /// (the fake Twilio's).
    pub async fn post(
        &self,
        client: &Client,
        url: &str,
        auth_token: &str,
        outbox: &Outbox,
        params: &[(String, String)],
    ) -> reqwest::Result<Exchange> {
        let request = whatsapp_webhook(client, url, auth_token, params);
        exchange(request, outbox, &self.number).await
    }
}

/// `POST url` of `params` signed with `auth_token`, as Twilio sends a webhook.
pub fn whatsapp_webhook(
    client: &Client,
    url: &str,
    auth_token: &str,
    params: &[(String, String)],
) -> RequestBuilder {
    client
        .post(url)
        .header(
            "X-Twilio-Signature",
            twilio_signature(auth_token, url, params),
        )
        .form(params)
}

/// The numbered options of a WhatsApp text: (`3`, `Алматы`) for a line `3. Алматы`.
pub fn numbered(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .filter_map(|l| {
            let (n, rest) = l.split_once(". ")?;
            let n = n.trim();
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Some((n.parse().ok()?, rest.to_string()))
        })
        .collect()
}

/// The number of the first option, in any of `texts`, whose label satisfies `wanted`.
pub fn option_number<'a>(
    texts: impl IntoIterator<Item = &'a str>,
    wanted: impl Fn(&str) -> bool,
) -> Option<usize> {
    texts
        .into_iter()
        .flat_map(numbered)
        .find(|(_, label)| wanted(label))
        .map(|(n, _)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_options_are_read_from_whatsapp_texts() {
        let text = "Когда заезд? 28.11.2026\n1. Алматы\n2. Астана\n12. Назад\nx. no";
        assert_eq!(
            numbered(text),
            vec![
                (1, "Алматы".to_string()),
                (2, "Астана".to_string()),
                (12, "Назад".to_string())
            ]
        );
        assert_eq!(option_number([text], |l| l.contains("Назад")), Some(12));
        assert_eq!(option_number([text], |l| l == "no"), None);
    }
}
