//! The notifications worker: follows the event store (its own checkpoint) and tells guests in
//! their chat what happened to their bookings — held outside the bot (with the payment link),
//! confirmed, how to get in (when the stay checks in, on the check-in day, with the stay's own
//! code, inside the window the API keeps: `access::access_window`), cancelled, a
//! review request after the stay — plus a check-out reminder on the departure day. Each notice
//! is claimed in `notifications_sent` before it is sent, so it goes out at most once however
//! many workers run.
//!
//! A listing's host hears of each new conflict a calendar feed's sync records (another site's
//! booking on nights one of our stays holds), from `FeedConflictsChanged`, in the same way.
//!
//! It sits beside the sweeper and the keeper because it is the same kind of work: a background
//! pass over what happened, with idempotent steps, against [`Commands`] and the read models.
//! What it does not know is how to reach a guest: that is [`NoticeChannels`], implemented by
//! the bots' channel senders in the `zhilego` binary (Telegram, WhatsApp), which put the
//! [`Notice`] into words and wait out their provider's limits.
use crate::metadata::CommandMeta;
use crate::service::Commands;
use chrono::{Duration as Days, Utc};
use domain::booking::BookingEvent;
use domain::listing::ListingEvent;
use domain::notice::Notice;
use domain::Event;
use domain::{Actor, Role};
use projections::BookingsProjection;
use projections::Decoded;
use std::sync::Arc;
use std::time::Duration;
use store::history::Checkpoint;
use store::{with_pool, Database, StoreError};
use tracing::Instrument;
use uuid::Uuid;

const NAME: &str = "notifications";

/// The span an event's notices are decided and sent in: a child of the trace that wrote the
/// event, when it carries one (`store::trace`); else none.
fn notice_span(e: &Decoded) -> tracing::Span {
    let traceparent = e.metadata.as_ref().and_then(|m| m.traceparent.as_deref());
    match traceparent {
        Some(tp) if store::trace::enabled() => {
            let span = tracing::info_span!("notice", otel.kind = "consumer", position = e.position);
            store::trace::continue_from(&span, tp);
            span
        }
        _ => tracing::Span::none(),
    }
}

/// Why a notice did not go out (logged and counted; the notice stays claimed).
pub type SendError = Box<dyn std::error::Error + Send + Sync>;

/// Where notices go: the guests' chats.
#[async_trait::async_trait]
pub trait NoticeChannels: Send + Sync {
    /// Where one guest can be reached (their chat and language, say).
    type Chat: Send + Sync;

    /// The guest's chat, if they have one.
    async fn chat_of(&self, guest: Uuid) -> Result<Option<Self::Chat>, StoreError>;

    /// Puts the notice into words and sends it to that chat.
    async fn send(&self, chat: &Self::Chat, notice: &Notice) -> Result<(), SendError>;
}

pub struct Notifier<C> {
    /// The store database: the events, the checkpoint, the claims.
    pub db: Database,
    /// The read database (stays leaving today).
    pub read: Database,
    pub commands: Arc<Commands>,
    pub channels: C,
}

impl<C: NoticeChannels> Notifier<C> {
    async fn checkpoint(&self) -> Result<Checkpoint, StoreError> {
        let row: Option<(i64, i64)> = with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT tx, position FROM notifier_checkpoints WHERE name = $1")
                .bind(NAME)
                .fetch_optional(pool)
                .await?
        });
        Ok(row
            .map(|(tx, position)| Checkpoint { tx, position })
            .unwrap_or_default())
    }

    async fn save(&self, c: Checkpoint) -> Result<(), StoreError> {
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO notifier_checkpoints (name, tx, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET tx = excluded.tx, position = excluded.position",
            )
            .bind(NAME)
            .bind(c.tx)
            .bind(c.position)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Starts from the store's head the first time (history is not re-announced).
    async fn start(&self) -> Result<Checkpoint, StoreError> {
        let exists: Option<i64> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT position FROM notifier_checkpoints WHERE name = $1")
                .bind(NAME)
                .fetch_optional(pool)
                .await?
        });
        if exists.is_none() {
            let head = store::history::head(&self.db).await?;
            self.save(head).await?;
        }
        self.checkpoint().await
    }

    /// Claims a notice; false when it was already claimed (sent or being sent).
    async fn claim(&self, key: &str) -> Result<bool, StoreError> {
        let n = with_pool!(&self.db, pool => {
            sqlx::query("INSERT INTO notifications_sent (key) VALUES ($1) ON CONFLICT DO NOTHING")
                .bind(key)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n == 1)
    }

    /// One pass: every new event, then today's check-out reminders.
    pub async fn pass(&self) -> Result<usize, StoreError> {
        let mut at = self.checkpoint().await?;
        let mut sent = 0;
        loop {
            let events = store::history::events_after(&self.db, at, 500).await?;
            if events.is_empty() {
                break;
            }
            let (decoded, fault) = projections::event::decode_until_fault(&events);
            for e in &decoded {
                let span = notice_span(e);
                sent += self.announce(e).instrument(span).await?;
                at = e.checkpoint();
            }
            self.save(at).await?;
            if let Some(fault) = fault {
                // Like the projections: stop before it, loudly, rather than skip a notice.
                tracing::error!(position = fault.position, reason = %fault.reason, "notifier stopped: an event does not decode");
                metrics::counter!("zhilego_projection_undecodable_events_total", "projection" => "notifier")
                    .increment(1);
                return Err(StoreError::Integrity(format!("notifier stopped: {fault}")));
            }
        }
        sent += self.checkout_reminders().await?;
        Ok(sent)
    }

    /// The notices one event calls for, delivered.
    async fn announce(&self, e: &Decoded) -> Result<usize, StoreError> {
        let mut sent = 0;
        if let Some((key, guest, notice)) = self.notice_for(e).await {
            sent += self.deliver(&key, guest, notice).await? as usize;
        }
        for (key, host, notice) in self.feed_conflict_notices(e).await {
            sent += self.deliver(&key, host, notice).await? as usize;
        }
        Ok(sent)
    }

    async fn notice_for(&self, e: &Decoded) -> Option<(String, Uuid, Notice)> {
        let Event::Booking(event) = &e.event else {
            return None;
        };
        if !matches!(
            event,
            BookingEvent::BookingHeld { .. }
                | BookingEvent::BookingConfirmed { .. }
                | BookingEvent::BookingCheckedIn {}
                | BookingEvent::BookingCompleted {}
                | BookingEvent::BookingCancelled { .. }
        ) {
            return None;
        }
        let booking_id = e.aggregate_id;
        let booking = self.commands.booking(booking_id).await.ok()??;
        let range = booking.range?;
        let title = self
            .commands
            .listing(booking.listing_id)
            .await
            .ok()??
            .details
            .title;
        let notice = match event {
            BookingEvent::BookingHeld { .. } => {
                // The bots show the link themselves; others get it here, if they have a chat.
                if matches!(
                    booking.channel,
                    Some(domain::Channel::Telegram | domain::Channel::Whatsapp)
                ) || booking.status != domain::booking::BookingStatus::Held
                {
                    return None;
                }
                self.channels.chat_of(booking.guest_id).await.ok()??;
                let actor = Actor {
                    user_id: booking.guest_id,
                    role: Role::Guest,
                };
                let meta = CommandMeta::new(actor, domain::Channel::System, Uuid::now_v7());
                let payment = self.commands.start_payment(booking_id, &meta).await.ok()?;
                Notice::Held {
                    title,
                    check_in: range.check_in(),
                    check_out: range.check_out(),
                    total_kzt: booking.total().0,
                    payment_url: payment.value.payment_url.unwrap_or_default(),
                }
            }
            BookingEvent::BookingConfirmed { .. } => Notice::Confirmed {
                title,
                check_in: range.check_in(),
                check_out: range.check_out(),
            },
            BookingEvent::BookingCheckedIn {} => {
                // The same rules as the API's (`Commands::access`): the stay's own code, and
                // only inside its window; a check-in at 14:00 on the first day is inside it.
                let guest = Actor {
                    user_id: booking.guest_id,
                    role: Role::Guest,
                };
                let pass = self.commands.access(booking_id, guest).await.ok()?;
                Notice::Access {
                    title,
                    address: pass.address,
                    instructions: pass.access.instructions,
                    door_code: pass.access.door_code,
                    check_in: range.check_in(),
                }
            }
            BookingEvent::BookingCompleted {} => Notice::ReviewRequest { booking_id, title },
            BookingEvent::BookingCancelled { .. } => Notice::Cancelled {
                title,
                refund_kzt: booking.refund_kzt.0,
            },
            _ => return None,
        };
        let key = format!("{}:{booking_id}", notice.kind());
        Some((key, booking.guest_id, notice))
    }

    /// To the listing's host: each conflict a calendar sync newly recorded (a conflict still
    /// there at the next sync has the same claim key, so it is told once).
    async fn feed_conflict_notices(&self, e: &Decoded) -> Vec<(String, Uuid, Notice)> {
        let Event::Listing(ListingEvent::FeedConflictsChanged { feed_id, conflicts }) = &e.event
        else {
            return vec![];
        };
        if conflicts.is_empty() {
            return vec![];
        }
        let Ok(Some(listing)) = self.commands.listing(e.aggregate_id).await else {
            return vec![];
        };
        let feed = listing
            .feeds
            .get(feed_id)
            .map(|f| f.name.clone())
            .unwrap_or_default();
        conflicts
            .iter()
            .map(|c| {
                let notice = Notice::FeedConflict {
                    title: listing.details.title.clone(),
                    feed: feed.clone(),
                    check_in: c.range.check_in(),
                    check_out: c.range.check_out(),
                };
                (c.key(*feed_id), listing.host_id, notice)
            })
            .collect()
    }

    /// Reminders for stays checked in and leaving today, from 08:00 local time.
    async fn checkout_reminders(&self) -> Result<usize, StoreError> {
        let now = Utc::now();
        let local = now + Days::hours(5);
        if chrono::Timelike::hour(&local) < 8 {
            return Ok(0);
        }
        let today = domain::local_date(now);
        let far_past = today - Days::days(3650);
        let due = BookingsProjection::due_stays(&self.read, far_past, today, 500).await?;
        let mut sent = 0;
        for stay in due
            .into_iter()
            .filter(|s| s.status == domain::booking::BookingStatus::CheckedIn)
        {
            let b = match self.commands.booking(stay.booking_id).await {
                Ok(Some(b)) => b,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(booking_id = %stay.booking_id, error = %e, "a check-out reminder waits: the booking did not load");
                    continue;
                }
            };
            let Some(range) = b.range else { continue };
            if range.check_out() != today {
                continue;
            }
            let title = match self.commands.listing(b.listing_id).await {
                Ok(Some(l)) => l.details.title,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(listing_id = %b.listing_id, error = %e, "a check-out reminder waits: the listing did not load");
                    continue;
                }
            };
            let notice = Notice::CheckoutReminder {
                title,
                check_out: range.check_out(),
            };
            let key = format!("{}:{}", notice.kind(), stay.booking_id);
            sent += self.deliver(&key, b.guest_id, notice).await? as usize;
        }
        Ok(sent)
    }

    /// Sends a notice to the guest's chat, once. Gives whether it went out.
    async fn deliver(&self, key: &str, guest: Uuid, notice: Notice) -> Result<bool, StoreError> {
        let Some(chat) = self.channels.chat_of(guest).await? else {
            return Ok(false);
        };
        if !self.claim(key).await? {
            return Ok(false);
        }
        match self.channels.send(&chat, &notice).await {
            Ok(()) => {
                metrics::counter!("zhilego_notifications_sent_total").increment(1);
                Ok(true)
            }
            Err(e) => {
                metrics::counter!("zhilego_notifications_failed_total").increment(1);
                tracing::warn!(key, error = %e, "a notification could not be delivered");
                Ok(false)
            }
        }
    }

    /// Passes when nudged (after every write) or every `poll`, until `stop`.
    pub async fn run(
        &self,
        nudge: &tokio::sync::Notify,
        poll: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        if let Err(e) = self.start().await {
            tracing::warn!(error = %e, "the notifier could not start; retrying on the next pass");
        }
        loop {
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "a notifier pass failed");
            }
            tokio::select! {
                _ = &mut stop => return,
                _ = nudge.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }
}
