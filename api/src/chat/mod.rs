//! The bots' runtime: the pure conversation (`bots` crate) wired to the service.
//!
//! - [`Chats`]: stores each chat's dialogue in the service's database (it survives restarts),
//!   handles a channel message id once, runs a conversation step and its effects (search,
//!   book, pay, list, cancel, review) against the command and read sides.
//! - [`telegram`]: `POST /telegram/webhook/` and long polling (teloxide), rendering replies as
//!   inline keyboards and photo cards; Telegram Login Widget verification.
//! - [`whatsapp`]: `POST /whatsapp/webhook/` (Twilio, signed), numbered menus, replies through
//!   Twilio's Messages API.
//! - [`notifier`]: tells guests what happened to their bookings, each notice once.
pub mod notifier;
pub mod telegram;
pub mod whatsapp;

use bots::{BookingSummary, Channel, Dialogue, Effect, Failure, Input, Lang, Offer, Reply};
use chrono::{DateTime, Utc};
use commands::{BookRequest, CommandMeta, Commands, FlowError};
use dashmap::DashMap;
use domain::listing::ListingError;
use domain::{Actor, DateRange, Role};
use projections::{BookingFilter, BookingsProjection, StayQuery};
use std::sync::Arc;
use store::{with_pool, Database, StoreError};
use uuid::Uuid;

use crate::reads::ReadModels;

/// Names derived from a channel's user ids.
const NAMESPACE: Uuid = Uuid::from_u128(0x2f6b_0c1e_93aa_4d57_8e11_c0de_b075_0001);

/// The guest behind a Telegram user id or a WhatsApp number: the same every time.
pub fn guest_id(channel: Channel, external: &str) -> Uuid {
    let prefix = match channel {
        Channel::Telegram => "telegram",
        Channel::WhatsApp => "whatsapp",
    };
    Uuid::new_v5(&NAMESPACE, format!("{prefix}:{external}").as_bytes())
}

pub fn channel_name(channel: Channel) -> &'static str {
    match channel {
        Channel::Telegram => "telegram",
        Channel::WhatsApp => "whatsapp",
    }
}

/// Where to reach a guest.
#[derive(Clone, Debug)]
pub struct Recipient {
    pub channel: Channel,
    pub chat_id: String,
    pub lang: Lang,
    pub last_inbound_at: DateTime<Utc>,
}

pub struct Chats {
    db: Database,
    commands: Arc<Commands>,
    reads: Arc<ReadModels>,
    /// One step at a time per chat in this process.
    locks: DashMap<String, Arc<tokio::sync::Mutex<()>>>,
}

/// The result of one guest message: the replies, in order.
pub struct Turn {
    pub replies: Vec<Reply>,
    pub lang: Lang,
}

impl Chats {
    pub fn new(db: Database, commands: Arc<Commands>, reads: Arc<ReadModels>) -> Self {
        Chats {
            db,
            commands,
            reads,
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
            .bind(channel_name(channel))
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
                    .bind(channel_name(channel))
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
                .bind(channel_name(channel))
                .bind(chat_id)
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
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO bot_chats (channel, chat_id, user_id, dialogue, menu, last_inbound_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) \
                 ON CONFLICT (channel, chat_id) DO UPDATE SET dialogue = excluded.dialogue, \
                 menu = excluded.menu, last_inbound_at = excluded.last_inbound_at, updated_at = excluded.updated_at",
            )
            .bind(channel_name(channel))
            .bind(chat_id)
            .bind(user_id)
            .bind(sqlx::types::Json(dialogue))
            .bind(sqlx::types::Json(menu))
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The button data of the last numbered menu sent to a WhatsApp chat.
    pub async fn menu(&self, channel: Channel, chat_id: &str) -> Vec<String> {
        self.load(channel, chat_id)
            .await
            .ok()
            .flatten()
            .map(|(_, m)| m)
            .unwrap_or_default()
    }

    /// Where the guest talks to us (the most recent chat), if anywhere.
    pub async fn recipient(&self, user_id: Uuid) -> Result<Option<Recipient>, StoreError> {
        type Row = (String, String, sqlx::types::Json<Dialogue>, DateTime<Utc>);
        let row: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT channel, chat_id, dialogue, last_inbound_at FROM bot_chats \
                 WHERE user_id = $1 ORDER BY updated_at DESC LIMIT 1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(|(channel, chat_id, d, last)| Recipient {
            channel: if channel == "whatsapp" {
                Channel::WhatsApp
            } else {
                Channel::Telegram
            },
            chat_id,
            lang: d.0.lang,
            last_inbound_at: last,
        }))
    }

    /// One guest message: steps the conversation, runs its effects, stores the dialogue (and,
    /// for WhatsApp, the numbered menu sent last) and gives the replies to send.
    pub async fn converse(
        &self,
        channel: Channel,
        chat_id: &str,
        user_id: Uuid,
        input: Input,
    ) -> Result<Turn, StoreError> {
        let key = format!("{}:{chat_id}", channel_name(channel));
        let lock = self.locks.entry(key).or_default().clone();
        let _one = lock.lock().await;
        let (mut dialogue, mut menu) = self.load(channel, chat_id).await?.unwrap_or_default();
        // A paid (or lapsed) booking ends the wait for its payment.
        if let bots::State::AwaitingPayment { booking_id, .. } = &dialogue.state {
            if let Ok(Some(b)) = self.commands.booking(*booking_id).await {
                if b.status != domain::booking::BookingStatus::Held {
                    dialogue.state = bots::State::Idle;
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
        let meta_channel = match channel {
            Channel::Telegram => domain::Channel::Telegram,
            Channel::WhatsApp => domain::Channel::Whatsapp,
        };
        // Effects chain (book → pay); a bound keeps a broken conversation from looping.
        for _ in 0..8 {
            let (next, outcome) = bots::step(&dialogue, input, today);
            dialogue = next;
            replies.extend(outcome.replies);
            let Some(effect) = outcome.effect else { break };
            let meta = CommandMeta::new(actor, meta_channel, Uuid::now_v7());
            input = self.run(effect, &meta).await;
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

    async fn run(&self, effect: Effect, meta: &CommandMeta) -> Input {
        let started = std::time::Instant::now();
        let name = effect_name(&effect);
        let input = self.run_effect(effect, meta).await;
        metrics::histogram!("zhilego_bot_effect_seconds", "effect" => name)
            .record(started.elapsed().as_secs_f64());
        input
    }

    async fn run_effect(&self, effect: Effect, meta: &CommandMeta) -> Input {
        match effect {
            Effect::Search {
                city,
                check_in,
                check_out,
                guests,
            } => match self.search(&city, check_in, check_out, guests).await {
                Ok(offers) => Input::Found(offers),
                Err(_) => Input::Failed(Failure::Unavailable),
            },
            Effect::Book {
                listing_id,
                check_in,
                check_out,
                guests,
            } => {
                let Ok(range) = DateRange::parse(check_in, check_out) else {
                    return Input::Failed(Failure::NotAllowed);
                };
                let request = BookRequest {
                    listing_id,
                    range,
                    guests,
                };
                match self.commands.book(request, meta).await {
                    Ok(w) => Input::Booked {
                        booking_id: w.value.id.unwrap_or_default(),
                        total_kzt: w.value.total().0,
                    },
                    Err(FlowError::Listing(ListingError::DatesUnavailable)) => {
                        let listing = self.commands.listing(listing_id).await.ok().flatten();
                        // The guest's own hold on these nights (its payment link failed before):
                        // carry on with it rather than call it taken.
                        let own = listing.as_ref().and_then(|l| {
                            l.reservations.iter().find_map(|(booking, r)| {
                                (r.guest_id == meta.actor.user_id
                                    && r.range == range
                                    && r.state == domain::listing::ReservationState::Held)
                                    .then_some(*booking)
                            })
                        });
                        if let Some(booking_id) = own {
                            if let Ok(Some(b)) = self.commands.booking(booking_id).await {
                                if b.status == domain::booking::BookingStatus::Held {
                                    return Input::Booked {
                                        booking_id,
                                        total_kzt: b.total().0,
                                    };
                                }
                            }
                        }
                        let city = listing.map(|l| l.details.city).unwrap_or_default();
                        let alternatives = self
                            .search(&city, check_in, check_out, guests)
                            .await
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|o| o.listing_id != listing_id)
                            .collect();
                        Input::DatesTaken(alternatives)
                    }
                    Err(FlowError::Listing(_)) | Err(FlowError::Booking(_)) => {
                        Input::Failed(Failure::NotAllowed)
                    }
                    Err(_) => Input::Failed(Failure::Unavailable),
                }
            }
            Effect::Pay { booking_id } => match self.commands.start_payment(booking_id, meta).await
            {
                Ok(w) => Input::PaymentLink {
                    booking_id,
                    url: w.value.payment_url.clone().unwrap_or_default(),
                    amount_kzt: w.value.amount_kzt.0,
                },
                Err(_) => Input::Failed(Failure::Unavailable),
            },
            Effect::ListBookings => match self.bookings(meta.actor.user_id).await {
                Ok(list) => Input::Bookings(list),
                Err(_) => Input::Failed(Failure::Unavailable),
            },
            Effect::CancelBooking { booking_id } => {
                match self
                    .commands
                    .cancel_booking(booking_id, "cancelled in the bot".into(), meta)
                    .await
                {
                    Ok(w) => Input::Cancelled {
                        booking_id,
                        refund_kzt: w.value.refund_kzt.0,
                    },
                    Err(FlowError::Booking(_)) => Input::Failed(Failure::CannotCancel),
                    Err(_) => Input::Failed(Failure::Unavailable),
                }
            }
            Effect::Review { booking_id, rating } => {
                match self
                    .commands
                    .review_booking(booking_id, rating, String::new(), meta)
                    .await
                {
                    Ok(_) => Input::Reviewed { booking_id },
                    Err(FlowError::Booking(_)) => Input::Failed(Failure::CannotReview),
                    Err(_) => Input::Failed(Failure::Unavailable),
                }
            }
        }
    }

    /// Free apartments for the stay, cheapest first, at most 20.
    async fn search(
        &self,
        city: &str,
        check_in: chrono::NaiveDate,
        check_out: chrono::NaiveDate,
        guests: u32,
    ) -> Result<Vec<Offer>, FlowError> {
        let range = DateRange::parse(check_in, check_out)
            .map_err(|_| FlowError::Store("bad stay".into()))?;
        let query = StayQuery {
            city: city.to_string(),
            range: Some(range),
            guests,
            max_price_kzt: None,
            near: None,
            after: None,
            limit: 100,
        };
        let (mut found, _) = self.reads.availability_index.search(&query);
        found.sort_by_key(|o| (o.total_kzt, o.listing.listing_id));
        found.truncate(20);
        let mut offers = Vec::with_capacity(found.len());
        for o in found {
            let photo = self
                .commands
                .listing(o.listing.listing_id)
                .await?
                .and_then(|l| l.details.photos.first().cloned());
            offers.push(Offer {
                listing_id: o.listing.listing_id,
                rating: o.listing.rating(),
                title: o.listing.title,
                city: o.listing.city,
                nightly_price_kzt: o.listing.nightly_price_kzt,
                total_kzt: o.total_kzt,
                max_guests: o.listing.max_guests,
                photo,
            });
        }
        Ok(offers)
    }

    /// The guest's bookings, newest first (at most 20), from the bookings read model.
    async fn bookings(&self, guest: Uuid) -> Result<Vec<BookingSummary>, FlowError> {
        let rows =
            BookingsProjection::list(self.reads.query_db(), BookingFilter::Guest(guest), None, 20)
                .await
                .map_err(|e| FlowError::Store(e.to_string()))?;
        let mut list = Vec::with_capacity(rows.len());
        for r in rows {
            let title = self
                .commands
                .listing(r.listing_id)
                .await?
                .map(|l| l.details.title)
                .unwrap_or_default();
            list.push(BookingSummary {
                booking_id: r.booking_id,
                title,
                check_in: r.check_in,
                check_out: r.check_out,
                status: r.status,
                total_kzt: r.total_kzt,
            });
        }
        Ok(list)
    }
}

fn effect_name(e: &Effect) -> &'static str {
    match e {
        Effect::Search { .. } => "search",
        Effect::Book { .. } => "book",
        Effect::Pay { .. } => "pay",
        Effect::ListBookings => "list_bookings",
        Effect::CancelBooking { .. } => "cancel",
        Effect::Review { .. } => "review",
    }
}

/// The choice buttons of a turn's replies, numbered in order (WhatsApp answers by number).
pub fn numbered_menu(replies: &[Reply]) -> Vec<String> {
    replies
        .iter()
        .flat_map(|r| r.buttons.iter().flatten())
        .filter(|b| b.url.is_none())
        .map(|b| b.data.clone())
        .collect()
}
