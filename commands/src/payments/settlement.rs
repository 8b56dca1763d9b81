//! [`Commands::settle`]: the one step that brings a payment and its booking into agreement.
//! It is idempotent and is run inline after every change (a notification, a cancellation, an
//! expired hold) and again by the payment keeper for anything a crash interrupted:
//! - money received, booking held → the booking is confirmed, then its nights;
//! - money received after the hold ran out → the nights are taken again if they are still
//!   free and the booking is confirmed (late); otherwise the whole amount is refunded;
//! - money received, booking cancelled → the refund the cancellation decided (all of it if the
//!   booking was cancelled before it was confirmed);
//! - no money, booking no longer held → the payment expires;
//! - refunds decided but not yet returned → returned through the provider
//!   ([`super::refunds`]).
use super::payment_id_for;
use crate::executor::CommandError;
use crate::metadata::CommandMeta;
use crate::service::{booking_err, listing_err, Commands, FlowError};
use chrono::Utc;
use domain::booking::{Booking, BookingCommand, BookingStatus};
use domain::listing::{ListingCommand, ListingError};
use domain::local_date;
use domain::payment::{Payment, PaymentCommand, PaymentStatus, RefundReason};
use uuid::Uuid;

impl Commands {
    /// Brings a payment and its booking into agreement (see the module's documentation).
    /// Idempotent; safe to run from any number of processes.
    #[tracing::instrument(skip_all, fields(%payment_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn settle(&self, payment_id: Uuid, meta: &CommandMeta) -> Result<(), FlowError> {
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(());
        };
        let booking_id = payment.booking_id;
        let booking = self.bookings.load(booking_id).await.map_err(booking_err)?;
        if payment.status == PaymentStatus::Pending {
            if booking.status != BookingStatus::Held {
                let expire = PaymentCommand::Expire {
                    reason: format!("the booking is {}", booking.status.as_str()),
                };
                self.on_payment(payment_id, expire, meta).await?;
            }
            return Ok(());
        }
        if !payment.status.is_paid() {
            return Ok(());
        }
        match booking.status {
            BookingStatus::Held => self.confirm(booking_id, payment_id, &payment, meta).await?,
            BookingStatus::Expired => {
                self.settle_late(booking_id, &booking, payment_id, &payment, meta)
                    .await?
            }
            BookingStatus::Confirmed | BookingStatus::CheckedIn | BookingStatus::Completed => {
                if booking.payment_id == Some(payment_id) {
                    self.confirm_nights_of(booking.listing_id, booking_id, meta)
                        .await?;
                }
            }
            BookingStatus::Cancelled => {
                // Cancelled after it was confirmed: the policy's refund; before: everything.
                let due = if booking.payment_id == Some(payment_id) {
                    booking.refund_kzt
                } else {
                    payment.amount_kzt
                };
                self.request_refund(payment_id, &payment, RefundReason::Cancellation, due, meta)
                    .await?;
            }
            BookingStatus::New => {}
        }
        self.return_refunds(payment_id, meta).await
    }

    /// The paid booking is confirmed, then its nights.
    async fn confirm(
        &self,
        booking_id: Uuid,
        payment_id: Uuid,
        payment: &Payment,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let confirm = BookingCommand::ConfirmBooking {
            payment_id,
            paid_kzt: payment.amount_kzt,
        };
        let done = self
            .bookings
            .execute(booking_id, confirm, meta)
            .await
            .map_err(booking_err)?;
        if !done.events.is_empty() {
            self.wrote();
        }
        self.confirm_nights_of(done.aggregate.listing_id, booking_id, meta)
            .await
    }

    /// The booking's nights stay taken for good (also the sweeper's repair step for a paid
    /// booking still held on the calendar).
    #[tracing::instrument(skip_all, fields(%listing_id, %booking_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn confirm_nights_of(
        &self,
        listing_id: Uuid,
        booking_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let cmd = ListingCommand::ConfirmReservation { booking_id };
        match self.listings.execute(listing_id, cmd, meta).await {
            Ok(done) => {
                if !done.events.is_empty() {
                    self.wrote();
                }
                Ok(())
            }
            // Nights of a finished stay may be gone; nothing to confirm.
            Err(CommandError::Rejected(ListingError::UnknownReservation)) => Ok(()),
            Err(e) => Err(listing_err(e)),
        }
    }

    /// Money for a booking whose hold ran out: the nights again if free, else a refund.
    async fn settle_late(
        &self,
        booking_id: Uuid,
        booking: &Booking,
        payment_id: Uuid,
        payment: &Payment,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let Some(range) = booking.range else {
            return Ok(());
        };
        let now = Utc::now();
        let take = ListingCommand::ReserveConfirmed {
            booking_id,
            guest_id: booking.guest_id,
            range,
            guests: booking.guests,
            today: local_date(now),
            now,
        };
        match self.listings.execute(booking.listing_id, take, meta).await {
            Ok(done) => {
                if !done.events.is_empty() {
                    self.wrote();
                }
                tracing::info!(%booking_id, "a late payment found its nights free: confirmed");
                self.confirm(booking_id, payment_id, payment, meta).await
            }
            Err(CommandError::Rejected(e)) => {
                tracing::info!(%booking_id, reason = %e, "a late payment cannot have its nights: refunded");
                let all = payment.amount_kzt;
                self.request_refund(payment_id, payment, RefundReason::LatePayment, all, meta)
                    .await
            }
            Err(e) => Err(listing_err(e)),
        }
    }

    /// Settles the payment of a booking that just changed (cancelled, expired), if it has one.
    /// Failures are logged: the payment keeper retries.
    #[tracing::instrument(skip_all, fields(%booking_id, correlation_id = %meta.correlation_id))]
    pub async fn settle_booking_payment(&self, booking_id: Uuid, meta: &CommandMeta) {
        // `settle` does nothing for a booking that never asked for a payment.
        let payment_id = payment_id_for(booking_id);
        if let Err(e) = self.settle(payment_id, meta).await {
            tracing::warn!(%payment_id, error = %e, "settling a payment failed; the keeper will retry");
        }
    }
}
