//! Sending to Telegram: replies as messages, photo cards and albums with inline keyboards, at
//! most 30 messages/s (senders queue first come, first served), retried after Telegram's
//! `retry_after` and on network errors (`kaspi::retry`).
use super::Telegram;
use bots::{Button, Reply};
use kaspi::retry::{self, Retryable};
use std::time::Duration;
use teloxide::payloads::{SendMessageSetters, SendPhotoSetters};
use teloxide::requests::{Request, Requester};
use teloxide::types::{
    ChatId, InlineKeyboardButton, InlineKeyboardMarkup, InputFile, InputMedia, InputMediaPhoto,
};
use teloxide::RequestError;

impl Telegram {
    /// Sends a notice (or any reply) to a chat.
    pub async fn deliver(&self, chat_id: &str, reply: &Reply) -> anyhow::Result<()> {
        let chat: i64 = chat_id.parse()?;
        self.send(ChatId(chat), reply).await
    }

    /// Sends one reply (a photo card when it has a photo).
    pub(super) async fn send(&self, chat: ChatId, reply: &Reply) -> anyhow::Result<()> {
        let markup = keyboard(reply);
        let photo = reply.photo.as_deref().and_then(|p| url_of(p, "photo"));
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
    pub(super) async fn send_album(
        &self,
        chat: ChatId,
        photos: &[(String, String)],
    ) -> anyhow::Result<()> {
        let media: Vec<InputMedia> = photos
            .iter()
            .filter_map(|(url, caption)| {
                let url = url_of(url, "photo")?;
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
    /// `retry_after` (or a network error, with backoff and jitter: `kaspi::retry`); at most 6
    /// attempts.
    async fn deliver_once<F, Fut>(&self, request: F) -> anyhow::Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), RequestError>>,
    {
        let attempt = || async {
            self.turn().await;
            request().await
        };
        let sent = attempt
            .retry(retry::backoff(Duration::from_millis(200), 6))
            // Only a request that never got an answer is sent again: an unreadable answer
            // means Telegram may well have delivered it, and the guest must not get it twice.
            .when(|e| matches!(e, RequestError::RetryAfter(_) | RequestError::Network(_)))
            .adjust(|e, next| match e {
                RequestError::RetryAfter(wait) => retry::pause(Some(wait.duration()), next),
                _ => next,
            })
            .notify(|e, pause| match e {
                RequestError::RetryAfter(wait) => {
                    tracing::warn!(seconds = wait.seconds(), "Telegram asks to retry later")
                }
                e => tracing::warn!(
                    error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "sending to Telegram failed; retrying"
                ),
            })
            .await;
        match sent {
            Ok(()) => {
                metrics::counter!("zhilego_bot_messages_sent_total", "channel" => "telegram")
                    .increment(1);
                Ok(())
            }
            Err(RequestError::RetryAfter(_)) => {
                anyhow::bail!("Telegram kept refusing the message")
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Waits for a sending slot, in arrival order.
    async fn turn(&self) {
        let _in_line = self.queue.lock().await;
        self.limiter.until_ready().await;
    }
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
        let mut buttons: Vec<Vec<Button>> = cards
            .iter()
            .enumerate()
            .map(|(n, card)| {
                let title = card.text.lines().next().unwrap_or("").trim();
                card.buttons
                    .iter()
                    .flatten()
                    .map(|b| Button {
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

/// A URL to hand to Telegram; one that does not parse is logged and left out (the photo, or
/// the link of a link button), and the rest of the message still goes.
fn url_of(raw: &str, what: &'static str) -> Option<reqwest::Url> {
    match reqwest::Url::parse(raw) {
        Ok(url) => Some(url),
        Err(e) => {
            tracing::warn!(what, url = raw, error = %e, "a URL for Telegram does not parse");
            None
        }
    }
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
                    |b| match b.url.as_deref().and_then(|u| url_of(u, "link button")) {
                        Some(url) => InlineKeyboardButton::url(b.label.clone(), url),
                        None => InlineKeyboardButton::callback(b.label.clone(), b.data.encode()),
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
    use bots::Choice;
    use uuid::Uuid;

    #[test]
    fn photo_cards_in_a_row_become_one_album_and_one_keyboard() {
        let card = |n: u8| Reply {
            text: format!("Flat {n}\n20 000 ₸"),
            photo: Some(format!("https://cdn/{n}.jpg")),
            buttons: vec![vec![Button {
                label: "Book".into(),
                data: Choice::Pick(Uuid::from_u128(n.into())),
                url: None,
            }]],
        };
        let nav = Reply {
            text: "Page 1/1".into(),
            photo: None,
            buttons: vec![vec![Button {
                label: "Back".into(),
                data: Choice::Back,
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
        let datas: Vec<&Choice> = m.buttons.iter().flatten().map(|b| &b.data).collect();
        let pick = |n: u128| Choice::Pick(Uuid::from_u128(n));
        assert_eq!(datas, [&pick(1), &pick(2), &Choice::Back]);
        assert_eq!(m.buttons[0][0].label, "1. Flat 1 — Book");
        // A single card stays a photo card with its own button.
        let single = render_turn(&[card(3), nav]);
        assert_eq!(single.len(), 2);
        assert!(matches!(&single[0], Outgoing::Message(r) if r.photo.is_some()));
    }
}
