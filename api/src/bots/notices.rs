//! The channels' side of the notifications worker (`commands::notifier`): a guest's chat is
//! the one they wrote from last (`bot_chats`), and a notice is put into their language
//! (`bots::texts::notice`) and sent by that channel's sender — free text on WhatsApp inside the
//! 24-hour window, else the approved template.
use super::telegram::Telegram;
use super::whatsapp::WhatsApp;
use super::{Chats, Recipient};
use chrono::{Duration as Days, Utc};
use commands::notifier::{NoticeChannels, SendError};
use domain::notice::Notice;
use domain::Channel;
use std::sync::Arc;
use store::StoreError;
use uuid::Uuid;

/// The bots as the notifier's way to the guests.
pub struct BotChannels {
    pub chats: Arc<Chats>,
    /// Notices to Telegram chats are dropped while the Telegram bot is off.
    pub telegram: Option<Arc<Telegram>>,
    /// Notices to WhatsApp chats are dropped while the WhatsApp bot is off.
    pub whatsapp: Option<Arc<WhatsApp>>,
}

#[async_trait::async_trait]
impl NoticeChannels for BotChannels {
    type Chat = Recipient;

    async fn chat_of(&self, guest: Uuid) -> Result<Option<Recipient>, StoreError> {
        self.chats.recipient(guest).await
    }

    async fn send(&self, to: &Recipient, notice: &Notice) -> Result<(), SendError> {
        let reply = bots::texts::notice(notice, to.lang);
        let sent = match to.channel {
            Channel::Whatsapp => match &self.whatsapp {
                Some(w) => {
                    let open = Utc::now() - to.last_inbound_at < Days::hours(24);
                    w.deliver(&to.chat_id, &reply, to.lang, open).await
                }
                None => Ok(()),
            },
            // A recipient's channel is Telegram or WhatsApp (see `Chats::recipient`).
            _ => match &self.telegram {
                Some(t) => t.deliver(&to.chat_id, &reply).await,
                None => Ok(()),
            },
        };
        sent.map_err(SendError::from)
    }
}
