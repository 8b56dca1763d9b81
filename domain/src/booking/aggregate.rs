use super::{BookingCommand, BookingEvent};
use crate::actor::{Actor, Channel, Role};
use crate::cancellation::CancellationPolicy;
use crate::pricing::StayPrice;
use crate::values::{DateRange, Kzt};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    /// Not created yet (the aggregate's default).
    #[default]
    New,
    Held,
    Confirmed,
    CheckedIn,
    Completed,
    Cancelled,
    Expired,
}

impl BookingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::New => "new",
            BookingStatus::Held => "held",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::CheckedIn => "checked_in",
            BookingStatus::Completed => "completed",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Expired => "expired",
        }
    }

    /// The status [`BookingStatus::as_str`] spells `s`.
    pub fn parse(s: &str) -> Option<BookingStatus> {
        [
            BookingStatus::New,
            BookingStatus::Held,
            BookingStatus::Confirmed,
            BookingStatus::CheckedIn,
            BookingStatus::Completed,
            BookingStatus::Cancelled,
            BookingStatus::Expired,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Booking {
    pub id: Option<Uuid>,
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub guest_id: Uuid,
    pub range: Option<DateRange>,
    pub guests: u32,
    pub channel: Option<Channel>,
    pub price: Option<StayPrice>,
    pub cancellation_policy: CancellationPolicy,
    pub status: BookingStatus,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub payment_id: Option<Uuid>,
    pub paid_kzt: Kzt,
    pub refund_kzt: Kzt,
    pub cancel_reason: Option<String>,
    /// The guest's rating, once reviewed.
    #[serde(default)]
    pub rating: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookingError {
    #[error("booking not found")]
    NotFound,
    #[error("booking already exists")]
    AlreadyExists,
    #[error("only the booking's guest, the listing's host or an admin may do this")]
    Forbidden,
    #[error("a {0} booking cannot do this")]
    WrongStatus(&'static str),
    #[error("the hold has not run out yet")]
    HoldNotExpired,
    #[error("the payment of {paid} does not match the total {due}")]
    AmountMismatch { paid: Kzt, due: Kzt },
    #[error("reason must be at most 500 characters")]
    ReasonTooLong,
    #[error("the stay was already reviewed")]
    AlreadyReviewed,
    #[error("{field}: {message}")]
    InvalidReview {
        field: &'static str,
        message: &'static str,
    },
    /// The quote handed to the command is for another number of nights: a bug upstream.
    #[error("{0}")]
    PriceNotForStay(&'static str),
}

impl Booking {
    pub fn total(&self) -> Kzt {
        self.price.as_ref().map_or(Kzt::ZERO, |p| p.total_kzt)
    }

    /// The guest, the listing's host and admins may see and cancel a booking.
    pub fn may_access(&self, actor: &Actor) -> bool {
        match actor.role {
            Role::Admin | Role::System => true,
            Role::Guest => actor.user_id == self.guest_id,
            Role::Host => actor.user_id == self.host_id,
            Role::Analyst | Role::Auditor => false,
        }
    }

    fn exists(&self) -> Result<(), BookingError> {
        if self.status == BookingStatus::New {
            Err(BookingError::NotFound)
        } else {
            Ok(())
        }
    }
}

impl Aggregate for Booking {
    const TYPE: &'static str = "Booking";
    type Command = BookingCommand;
    type Event = BookingEvent;
    type Error = BookingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: BookingCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), BookingError> {
        match command {
            BookingCommand::HoldBooking {
                booking_id,
                listing_id,
                host_id,
                guest_id,
                range,
                guests,
                channel,
                price,
                cancellation_policy,
                hold_expires_at,
            } => {
                if self.status != BookingStatus::New {
                    // The same booking step retried is already done.
                    return if self.id == Some(booking_id) && self.range == Some(range) {
                        Ok(())
                    } else {
                        Err(BookingError::AlreadyExists)
                    };
                }
                let price =
                    StayPrice::dated(&range, &price).map_err(BookingError::PriceNotForStay)?;
                sink.write(
                    BookingEvent::BookingHeld {
                        booking_id,
                        listing_id,
                        host_id,
                        guest_id,
                        range,
                        guests,
                        channel,
                        price,
                        cancellation_policy,
                        hold_expires_at,
                    },
                    self,
                )
                .await;
            }
            BookingCommand::ConfirmBooking {
                payment_id,
                paid_kzt,
            } => {
                self.exists()?;
                // An expired booking is confirmed only by the payment flow, after the listing
                // took its nights again (a late payment).
                let late = match self.status {
                    BookingStatus::Held => false,
                    BookingStatus::Expired => true,
                    BookingStatus::Confirmed
                    | BookingStatus::CheckedIn
                    | BookingStatus::Completed
                        if self.payment_id == Some(payment_id) =>
                    {
                        return Ok(())
                    }
                    other => return Err(BookingError::WrongStatus(other.as_str())),
                };
                if paid_kzt != self.total() {
                    return Err(BookingError::AmountMismatch {
                        paid: paid_kzt,
                        due: self.total(),
                    });
                }
                sink.write(
                    BookingEvent::BookingConfirmed {
                        payment_id,
                        paid_kzt,
                        late,
                    },
                    self,
                )
                .await;
            }
            BookingCommand::CancelBooking {
                actor,
                reason,
                today,
            } => {
                self.exists()?;
                if !self.may_access(&actor) {
                    return Err(BookingError::Forbidden);
                }
                if reason.chars().count() > 500 {
                    return Err(BookingError::ReasonTooLong);
                }
                let refund_kzt = match self.status {
                    BookingStatus::Held => Kzt::ZERO,
                    BookingStatus::Confirmed => match actor.role {
                        Role::Guest => {
                            let check_in = self.range.map(|r| r.check_in()).unwrap_or(today);
                            self.cancellation_policy
                                .guest_refund(self.paid_kzt, (check_in - today).num_days())
                        }
                        // A host or admin cancelling gives everything back.
                        _ => self.paid_kzt,
                    },
                    other => return Err(BookingError::WrongStatus(other.as_str())),
                };
                sink.write(
                    BookingEvent::BookingCancelled {
                        by_user: actor.user_id,
                        by_role: actor.role,
                        reason,
                        refund_kzt,
                    },
                    self,
                )
                .await;
            }
            BookingCommand::ExpireHold { now } => {
                self.exists()?;
                if self.status != BookingStatus::Held {
                    return Err(BookingError::WrongStatus(self.status.as_str()));
                }
                if self.hold_expires_at.is_some_and(|t| now < t) {
                    return Err(BookingError::HoldNotExpired);
                }
                sink.write(BookingEvent::BookingExpired {}, self).await;
            }
            BookingCommand::ExtendHold { until, reason, by } => {
                self.exists()?;
                if self.status != BookingStatus::Held {
                    return Err(BookingError::WrongStatus(self.status.as_str()));
                }
                if reason.chars().count() > 500 {
                    return Err(BookingError::ReasonTooLong);
                }
                if self.hold_expires_at.is_some_and(|t| until > t) {
                    sink.write(
                        BookingEvent::BookingHoldExtended {
                            hold_expires_at: until,
                            reason,
                            by,
                        },
                        self,
                    )
                    .await;
                }
            }
            BookingCommand::Review {
                actor,
                rating,
                text,
            } => {
                self.exists()?;
                if actor.role != Role::Guest || actor.user_id != self.guest_id {
                    return Err(BookingError::Forbidden);
                }
                if self.status != BookingStatus::Completed {
                    return Err(BookingError::WrongStatus(self.status.as_str()));
                }
                if self.rating.is_some() {
                    return Err(BookingError::AlreadyReviewed);
                }
                if !super::RATINGS.contains(&rating) {
                    return Err(BookingError::InvalidReview {
                        field: "rating",
                        message: "must be 1 to 5",
                    });
                }
                let text = text.trim().to_string();
                if text.chars().count() > 2000 {
                    return Err(BookingError::InvalidReview {
                        field: "text",
                        message: "must be at most 2000 characters",
                    });
                }
                sink.write(
                    BookingEvent::BookingReviewed {
                        listing_id: self.listing_id,
                        rating,
                        text,
                    },
                    self,
                )
                .await;
            }
            BookingCommand::CheckIn { today } => {
                self.exists()?;
                if self.status != BookingStatus::Confirmed {
                    return Err(BookingError::WrongStatus(self.status.as_str()));
                }
                if self.range.is_some_and(|r| today < r.check_in()) {
                    return Err(BookingError::WrongStatus("not yet started"));
                }
                sink.write(BookingEvent::BookingCheckedIn {}, self).await;
            }
            BookingCommand::Complete { today } => {
                self.exists()?;
                if self.status != BookingStatus::CheckedIn {
                    return Err(BookingError::WrongStatus(self.status.as_str()));
                }
                if self.range.is_some_and(|r| today < r.check_out()) {
                    return Err(BookingError::WrongStatus("not yet over"));
                }
                sink.write(BookingEvent::BookingCompleted {}, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: BookingEvent) {
        match event {
            BookingEvent::BookingHeld {
                booking_id,
                listing_id,
                host_id,
                guest_id,
                range,
                guests,
                channel,
                price,
                cancellation_policy,
                hold_expires_at,
            } => {
                self.id = Some(booking_id);
                self.listing_id = listing_id;
                self.host_id = host_id;
                self.guest_id = guest_id;
                self.range = Some(range);
                self.guests = guests;
                self.channel = Some(channel);
                self.price = Some(price);
                self.cancellation_policy = cancellation_policy;
                self.hold_expires_at = Some(hold_expires_at);
                self.status = BookingStatus::Held;
            }
            BookingEvent::BookingConfirmed {
                payment_id,
                paid_kzt,
                ..
            } => {
                self.payment_id = Some(payment_id);
                self.paid_kzt = paid_kzt;
                self.status = BookingStatus::Confirmed;
            }
            BookingEvent::BookingCancelled {
                reason, refund_kzt, ..
            } => {
                self.cancel_reason = Some(reason);
                self.refund_kzt = refund_kzt;
                self.status = BookingStatus::Cancelled;
            }
            BookingEvent::BookingExpired {} => self.status = BookingStatus::Expired,
            BookingEvent::BookingCheckedIn {} => self.status = BookingStatus::CheckedIn,
            BookingEvent::BookingCompleted {} => self.status = BookingStatus::Completed,
            BookingEvent::BookingReviewed { rating, .. } => self.rating = Some(rating),
            BookingEvent::BookingHoldExtended {
                hold_expires_at, ..
            } => self.hold_expires_at = Some(hold_expires_at),
        }
    }
}
