//! Telegram: `POST /telegram/webhook/` (the `X-Telegram-Bot-Api-Secret-Token` header compared
//! in constant time), or long polling for local use; replies as inline keyboards and photo
//! cards through teloxide, at most 30 messages/s, retried after `retry_after` and on network
//! errors. Also the Telegram Login Widget check behind `POST /api/v1/auth/telegram`.
use super::{guest_id, Chats};
use crate::auth::same_secret;
use crate::settings::{Secret, TelegramSettings};
use bots::{Channel, Command, Input, Reply};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;
use teloxide::payloads::{GetUpdatesSetters, SendMessageSetters, SendPhotoSetters};
use teloxide::requests::{Request, Requester};
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto,
    Update, UpdateKind,
};
use teloxide::{Bot, RequestError};

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
            .map_err(|e| anyhow::anyhow!("TELEGRAM_API_URL: {e}"))?;
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
                let _ = self.bot.answer_callback_query(q.id.clone()).send().await;
                (chat, q.from.id.0, Input::Choice(q.data.unwrap_or_default()))
            }
            _ => return Ok(()),
        };
        let user_id = guest_id(Channel::Telegram, &user.to_string());
        let turn = chats
            .converse(Channel::Telegram, &chat.0.to_string(), user_id, input)
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

    /// Sends a notice (or any reply) to a chat.
    pub async fn deliver(&self, chat_id: &str, reply: &Reply) -> anyhow::Result<()> {
        let chat: i64 = chat_id.parse()?;
        self.send(ChatId(chat), reply).await
    }

    /// Sends one reply (a photo card when it has a photo).
    async fn send(&self, chat: ChatId, reply: &Reply) -> anyhow::Result<()> {
        let markup = keyboard(reply);
        let photo = reply
            .photo
            .as_deref()
            .and_then(|p| reqwest::Url::parse(p).ok());
        self.deliver_once(|| async {
            match &photo {
                Some(url) => {
                    let mut req = self
                        .bot
                        .send_photo(chat, InputFile::url(url.clone()))
                        .caption(reply.text.clone());
                    if let Some(m) = &markup {
                        req = req.reply_markup(m.clone());
                    }
                    req.send().await.map(|_| ())
                }
                None => {
                    let mut req = self.bot.send_message(chat, reply.text.clone());
                    if let Some(m) = &markup {
                        req = req.reply_markup(m.clone());
                    }
                    req.send().await.map(|_| ())
                }
            }
        })
        .await
    }

    /// Photo cards as one album (one request instead of one per card).
    async fn send_album(&self, chat: ChatId, photos: &[(String, String)]) -> anyhow::Result<()> {
        let media: Vec<InputMedia> = photos
            .iter()
            .filter_map(|(url, caption)| {
                let url = reqwest::Url::parse(url).ok()?;
                Some(InputMedia::Photo(
                    InputMediaPhoto::new(InputFile::url(url)).caption(caption.clone()),
                ))
            })
            .collect();
        self.deliver_once(|| async {
            self.bot
                .send_media_group(chat, media.clone())
                .send()
                .await
                .map(|_| ())
        })
        .await
    }

    /// Makes one send request, waiting its turn at the rate limit, and again after Telegram's
    /// `retry_after` (or a network error, with backoff); at most 6 attempts.
    async fn deliver_once<F, Fut>(&self, request: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), RequestError>>,
    {
        let mut pause = Duration::from_millis(200);
        for attempt in 1..=6 {
            self.turn().await;
            match request().await {
                Ok(()) => {
                    metrics::counter!("zhilego_bot_messages_sent_total", "channel" => "telegram")
                        .increment(1);
                    return Ok(());
                }
                Err(RequestError::RetryAfter(wait)) => {
                    tracing::warn!(
                        attempt,
                        seconds = wait.seconds(),
                        "Telegram asks to retry later"
                    );
                    tokio::time::sleep(wait.duration()).await;
                }
                // Only a request that never got an answer is sent again: an unreadable answer
                // means Telegram may well have delivered it, and the guest must not get it twice.
                Err(e @ RequestError::Network(_)) if attempt < 6 => {
                    tracing::warn!(attempt, error = %e, "sending to Telegram failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => return Err(e.into()),
            }
        }
        anyhow::bail!("Telegram kept refusing the message")
    }

    /// Waits for a sending slot, in arrival order.
    async fn turn(&self) {
        let _in_line = self.queue.lock().await;
        self.limiter.until_ready().await;
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

/// What the Telegram adapter sends for a turn.
#[derive(Debug, PartialEq)]
pub enum Outgoing {
    /// Photo cards as one album: (photo URL, caption).
    Album(Vec<(String, String)>),
    Message(Reply),
}

/// Renders a turn: two or more photo cards in a row become one album followed by one message
/// carrying their buttons (each labelled with its card's first line) and the next reply's text
/// and buttons; everything else is sent as it is.
pub fn render_turn(replies: &[Reply]) -> Vec<Outgoing> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < replies.len() {
        let run = replies[i..]
            .iter()
            .take_while(|r| r.photo.is_some())
            .count();
        if run < 2 {
            out.push(Outgoing::Message(replies[i].clone()));
            i += 1;
            continue;
        }
        let cards = &replies[i..i + run];
        out.push(Outgoing::Album(
            cards
                .iter()
                .map(|r| (r.photo.clone().unwrap_or_default(), r.text.clone()))
                .collect(),
        ));
        let mut buttons: Vec<Vec<bots::Button>> = cards
            .iter()
            .enumerate()
            .map(|(n, card)| {
                let title = card.text.lines().next().unwrap_or("").trim();
                card.buttons
                    .iter()
                    .flatten()
                    .map(|b| bots::Button {
                        label: format!("{}. {title} — {}", n + 1, b.label),
                        data: b.data.clone(),
                        url: b.url.clone(),
                    })
                    .collect()
            })
            .collect();
        i += run;
        let text = match replies.get(i) {
            Some(next) if next.photo.is_none() => {
                buttons.extend(next.buttons.iter().cloned());
                i += 1;
                next.text.clone()
            }
            _ => String::from("⬆"),
        };
        out.push(Outgoing::Message(Reply {
            text,
            photo: None,
            buttons,
        }));
    }
    out
}

fn keyboard(reply: &Reply) -> Option<InlineKeyboardMarkup> {
    if reply.buttons.is_empty() {
        return None;
    }
    let rows: Vec<Vec<InlineKeyboardButton>> = reply
        .buttons
        .iter()
        .map(|row| {
            row.iter()
                .map(
                    |b| match b.url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
                        Some(url) => InlineKeyboardButton::url(b.label.clone(), url),
                        None => InlineKeyboardButton::callback(b.label.clone(), b.data.clone()),
                    },
                )
                .collect()
        })
        .collect();
    Some(InlineKeyboardMarkup::new(rows))
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

    #[test]
    fn photo_cards_in_a_row_become_one_album_and_one_keyboard() {
        let card = |n: u8| Reply {
            text: format!("Flat {n}\n20 000 ₸"),
            photo: Some(format!("https://cdn/{n}.jpg")),
            buttons: vec![vec![bots::Button {
                label: "Book".into(),
                data: format!("pick:{n}"),
                url: None,
            }]],
        };
        let nav = Reply {
            text: "Page 1/1".into(),
            photo: None,
            buttons: vec![vec![bots::Button {
                label: "Back".into(),
                data: "back".into(),
                url: None,
            }]],
        };
        let out = render_turn(&[card(1), card(2), nav.clone()]);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Outgoing::Album(p) if p.len() == 2));
        let Outgoing::Message(m) = &out[1] else {
            panic!("a message")
        };
        assert_eq!(m.text, "Page 1/1");
        let datas: Vec<&str> = m
            .buttons
            .iter()
            .flatten()
            .map(|b| b.data.as_str())
            .collect();
        assert_eq!(datas, ["pick:1", "pick:2", "back"]);
        assert_eq!(m.buttons[0][0].label, "1. Flat 1 — Book");
        // A single card stays a photo card with its own button.
        let single = render_turn(&[card(3), nav]);
        assert_eq!(single.len(), 2);
        assert!(matches!(&single[0], Outgoing::Message(r) if r.photo.is_some()));
    }

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
