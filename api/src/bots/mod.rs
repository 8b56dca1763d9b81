//! The bots, everything of them outside the pure conversation (the `bots` crate, which
//! `bots::` below names; this module is `crate::bots`):
//!
//! - [`Chats`]: the runtime. Stores each chat's dialogue in the service's database (it
//!   survives restarts), handles a channel message id once, runs a conversation step and its
//!   [`effects`] (search, book, pay, list, cancel, review) against the command and read sides.
//! - [`telegram`]: the Telegram adapter and its routes: `POST /telegram/webhook/` and long
//!   polling (teloxide), replies as inline keyboards and photo cards, the Telegram Login Widget
//!   exchange `POST /api/v1/auth/telegram`.
//! - [`whatsapp`]: the WhatsApp adapter and its route: `POST /whatsapp/webhook/` (Twilio,
//!   signed), numbered menus, replies through Twilio's Messages API.
//! - [`identity`]: guest ids keyed under the master key, chat addresses hashed and sealed at
//!   rest.
//! - [`notices`]: the channels' side of the notifications worker (`commands::notifier`):
//!   where a guest's chat is, and sending a notice there.
mod at_rest;
pub mod effects;
pub mod identity;
pub mod notices;
pub mod telegram;
pub mod whatsapp;

use crate::error::ApiError;
use crate::reads::ReadModels;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use bots::{Dialogue, Input, Reply};
use chrono::{DateTime, Utc};
use commands::{CommandMeta, Commands};
use dashmap::DashMap;
use domain::user::Language;
use domain::{Actor, Channel, Role};
use std::sync::Arc;
use store::{with_pool, Database, StoreError};
use uuid::Uuid;

pub use at_rest::forget_guest;
pub use identity::GuestKeys;

/// `/telegram/webhook/` and `/whatsapp/webhook/` (no bearer token; each verified its own way).
pub fn webhooks() -> Router<AppState> {
    Router::new()
        .route("/telegram/webhook/", post(telegram::webhook))
        .route("/whatsapp/webhook/", post(whatsapp::webhook))
}

/// The answer when a bot's route is called on a server where that bot is off.
fn bot_off(which: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "bot_not_configured",
        "Bot not configured",
        format!("the {which} bot is off on this server"),
    )
    .into_response()
}

/// Where to reach a guest.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub channel: Channel,
    pub chat_id: String,
    pub lang: Language,
    pub last_inbound_at: DateTime<Utc>,
}

/// The bots' runtime: every guest message of either channel goes through [`Chats::converse`].
pub struct Chats {
    /// The store database: `bot_chats` (dialogues, menus) and `bot_inbox` (message ids seen).
    db: Database,
    /// Guest ids and the chat addresses' hashes and seals.
    keys: GuestKeys,
    /// Where effects are run.
    commands: Arc<Commands>,
    /// The availability index (search) and the bookings read model (`/mybookings`).
    reads: Arc<ReadModels>,
    /// One step at a time per chat in this process.
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Blocked accounts: their messages get the blocked answer and nothing else.
    access: Arc<crate::access::Access>,
}

/// The result of one guest message: the replies, in order.
pub struct Turn {
    pub replies: Vec<Reply>,
    pub lang: Language,
}

impl Chats {
    pub fn new(
        db: Database,
        keys: GuestKeys,
        commands: Arc<Commands>,
        reads: Arc<ReadModels>,
        access: Arc<crate::access::Access>,
    ) -> Self {
        Chats {
            db,
            keys,
            commands,
            reads,
            access,
            locks: DashMap::new(),
        }
    }

    /// True the first time a channel's message id is seen (later deliveries are duplicates).
    pub async fn first_delivery(
        &self,
        channel: Channel,
        message_id: &str,
    ) -> Result<bool, StoreError> {
        let done = with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO bot_inbox (channel, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(channel.as_str())
            .bind(message_id)
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Forgets a delivery whose handling failed, so the channel's retry is handled.
    pub async fn forget_delivery(&self, channel: Channel, message_id: &str) {
        let forgotten: Result<(), StoreError> = async {
            with_pool!(&self.db, pool => {
                sqlx::query("DELETE FROM bot_inbox WHERE channel = $1 AND message_id = $2")
                    .bind(channel.as_str())
                    .bind(message_id)
                    .execute(pool)
                    .await?;
            });
            Ok(())
        }
        .await;
        if let Err(e) = forgotten {
            tracing::warn!(error = %e, "forgetting a failed delivery failed");
        }
    }

    async fn load(
        &self,
        channel: Channel,
        chat_id: &str,
    ) -> Result<Option<(Dialogue, Vec<String>)>, StoreError> {
        let row: Option<(sqlx::types::Json<Dialogue>, sqlx::types::Json<Vec<String>>)> = with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT dialogue, menu FROM bot_chats WHERE channel = $1 AND chat_id = $2")
                .bind(channel.as_str())
                .bind(self.keys.chat_hash(channel, chat_id))
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(|(d, m)| (d.0, m.0)))
    }

    async fn save(
        &self,
        channel: Channel,
        chat_id: &str,
        user_id: Uuid,
        dialogue: &Dialogue,
        menu: &[String],
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let hash = self.keys.chat_hash(channel, chat_id);
        let address = self.keys.seal_address(channel, &hash, chat_id);
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO bot_chats (channel, chat_id, user_id, dialogue, menu, last_inbound_at, updated_at, address) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6, $7) \
                 ON CONFLICT (channel, chat_id) DO UPDATE SET dialogue = excluded.dialogue, \
                 menu = excluded.menu, last_inbound_at = excluded.last_inbound_at, updated_at = excluded.updated_at",
            )
            .bind(channel.as_str())
            .bind(&hash)
            .bind(user_id)
            .bind(sqlx::types::Json(dialogue))
            .bind(sqlx::types::Json(menu))
            .bind(now)
            .bind(&address)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The button data of the last numbered menu sent to a WhatsApp chat (none when it does
    /// not load: a typed number is then read as text).
    pub async fn menu(&self, channel: Channel, chat_id: &str) -> Vec<String> {
        match self.load(channel, chat_id).await {
            Ok(chat) => chat.map(|(_, m)| m).unwrap_or_default(),
            Err(e) => {
                tracing::warn!(channel = channel.as_str(), error = %e, "a chat's menu did not load");
                Vec::new()
            }
        }
    }

    /// Where the guest talks to us (the most recent chat), if anywhere.
    pub async fn recipient(&self, user_id: Uuid) -> Result<Option<Recipient>, StoreError> {
        type Row = (
            String,
            String,
            Option<String>,
            sqlx::types::Json<Dialogue>,
            DateTime<Utc>,
        );
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT channel, chat_id, address, dialogue, last_inbound_at FROM bot_chats \
                 WHERE user_id = $1 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        let Some((channel, hash, address, d, last)) = row else {
            return Ok(None);
        };
        let channel = if channel == Channel::Whatsapp.as_str() {
            Channel::Whatsapp
        } else {
            Channel::Telegram
        };
        // A row without a sealed address was written by a version before hashing (during a
        // rolling update, after this process rewrote the old rows): its `chat_id` is the
        // address, until the next start rewrites it.
        let legacy = (!hash.starts_with(identity::CHAT_HASH_PREFIX)).then(|| hash.clone());
        let chat_id = address
            .and_then(|sealed| self.keys.open_address(channel, &hash, &sealed))
            .or(legacy)
            .ok_or_else(|| {
                StoreError::Integrity(format!(
                    "the chat address of guest {user_id} does not open with the master key"
                ))
            })?;
        Ok(Some(Recipient {
            channel,
            chat_id,
            lang: d.0.lang,
            last_inbound_at: last,
        }))
    }

    /// The guest writing from a chat: the one stored with the chat when it has a row (guests
    /// from before keyed ids keep their old id so), else the keyed id of the channel's user id
    /// (`external`: the Telegram user id, the WhatsApp number).
    pub async fn guest(
        &self,
        channel: Channel,
        chat_id: &str,
        external: &str,
    ) -> Result<Uuid, StoreError> {
        let stored: Option<Uuid> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT user_id FROM bot_chats WHERE channel = $1 AND chat_id = $2")
                .bind(channel.as_str())
                .bind(self.keys.chat_hash(channel, chat_id))
                .fetch_optional(pool)
                .await?
        });
        Ok(stored.unwrap_or_else(|| self.keys.guest_id(channel, external)))
    }

    /// One guest message: steps the conversation, runs its effects, stores the dialogue (and,
    /// for WhatsApp, the numbered menu sent last) and gives the replies to send. `origin` is
    /// the channel's id of the message (recorded with the commands it starts).
    pub async fn converse(
        &self,
        channel: Channel,
        chat_id: &str,
        user_id: Uuid,
        input: Input,
        origin: Option<(commands::InputSource, &str)>,
    ) -> Result<Turn, StoreError> {
        let key = format!("{}:{chat_id}", channel.as_str());
        let lock = self.locks.entry(key).or_default().clone();
        let _one = lock.lock().await;
        let (mut dialogue, mut menu) = self.load(channel, chat_id).await?.unwrap_or_default();
        if self.access.is_blocked(user_id) {
            // Nothing of the conversation runs for a blocked account; it is told so politely.
            tracing::info!(%user_id, "a blocked account wrote to the bot");
            return Ok(Turn {
                replies: vec![Reply {
                    text: bots::texts::account_blocked(dialogue.lang).to_string(),
                    photo: None,
                    buttons: Vec::new(),
                }],
                lang: dialogue.lang,
            });
        }
        // A paid (or lapsed) booking ends the wait for its payment.
        if let bots::State::AwaitingPayment { booking_id, .. } = &dialogue.state {
            match self.commands.booking(*booking_id).await {
                Ok(Some(b)) if b.status != domain::booking::BookingStatus::Held => {
                    dialogue.state = bots::State::Idle;
                }
                Ok(_) => {}
                // The guest is shown the wait for the payment once more; the next message
                // looks again.
                Err(e) => {
                    tracing::warn!(%booking_id, error = %e, "the awaited booking did not load")
                }
            }
        }
        let today = domain::local_date(Utc::now());
        let mut replies = Vec::new();
        let mut input = input;
        let actor = Actor {
            user_id,
            role: Role::Guest,
        };
        // One guest message is one correlation, started by the channel's message id.
        let mut meta = CommandMeta::new(actor, channel, Uuid::now_v7());
        if let Some((source, id)) = origin {
            meta = meta.with_input(source, id);
        }
        // Effects chain (book → pay); a bound keeps a broken conversation from looping.
        for _ in 0..8 {
            let (next, outcome) = bots::step(&dialogue, input, today);
            dialogue = next;
            replies.extend(outcome.replies);
            let Some(effect) = outcome.effect else { break };
            input = self.run(effect, &meta.sibling()).await;
        }
        if replies.iter().any(|r| !r.buttons.is_empty()) {
            menu = numbered_menu(&replies);
        }
        self.save(channel, chat_id, user_id, &dialogue, &menu)
            .await?;
        Ok(Turn {
            replies,
            lang: dialogue.lang,
        })
    }
}

/// The choice buttons of a turn's replies, numbered in order (WhatsApp answers by number).
pub fn numbered_menu(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .filter(|b| b.url.is_none())
        .map(|b| b.data.encode())
        .collect()
}
