//! The guest's payment link: the Payment is created on the first request, the provider's link
//! is asked for until it is recorded, and every later request gives the same one.
use super::{account_code, payment_err, payment_id_for, provider_err};
use crate::executor::CommandError;
use crate::metadata::CommandMeta;
use crate::service::{Commands, FlowError, Written};
use chrono::Utc;
use domain::booking::{BookingError, BookingStatus};
use domain::payment::{Payment, PaymentCommand, PaymentError, PaymentStatus};
use domain::Role;
use store::with_pool;
use uuid::Uuid;

impl Commands {
    /// The guest's payment link for a held booking: created at Kaspi on the first call, the
    /// same one on every later call. Kaspi being down leaves the booking held and the payment
    /// pending without a link; asking again retries (Kaspi dedupes by the account).
    #[tracing::instrument(skip_all, fields(%booking_id, user_id = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn start_payment(
        &self,
        booking_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<Payment>, FlowError> {
        let booking = self
            .booking(booking_id)
            .await?
            .ok_or(FlowError::Booking(BookingError::NotFound))?;
        // The guest pays for their own stay (API.md); an admin is refused another guest's
        // booking like anyone else, and only the service itself (System) acts for a guest.
        let is_guest = meta.actor.user_id == booking.guest_id
            && matches!(meta.actor.role, Role::Guest | Role::Admin);
        if !(is_guest || meta.actor.role == Role::System) {
            return Err(FlowError::Booking(BookingError::Forbidden));
        }
        let payment_id = payment_id_for(booking_id);
        let existing = self.payment(payment_id).await?;
        if let Some(p) = &existing {
            if p.status.is_paid() {
                return Err(FlowError::Payment(PaymentError::AlreadyPaid));
            }
        }
        if booking.status != BookingStatus::Held {
            return Err(FlowError::Booking(BookingError::WrongStatus(
                booking.status.as_str(),
            )));
        }
        if booking.hold_expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(FlowError::Booking(BookingError::WrongStatus("expired")));
        }
        let account = account_code(booking_id);
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO payment_accounts (account, booking_id) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(&account)
            .bind(booking_id)
            .execute(pool)
            .await?;
        });
        if existing.is_none() {
            let create = PaymentCommand::CreatePayment {
                payment_id,
                booking_id,
                payer_id: booking.guest_id,
                account: account.clone(),
                amount_kzt: booking.total(),
                booking_total_kzt: booking.total(),
                expires_at: booking.hold_expires_at.unwrap_or_else(Utc::now),
            };
            match self.payments.execute(payment_id, create, meta).await {
                Ok(_) | Err(CommandError::Rejected(PaymentError::AlreadyExists)) => {}
                Err(e) => return Err(payment_err(e)),
            }
            self.wrote();
        }
        let done = self.ensure_link(payment_id, &meta.follow_up()).await?;
        let value = (*done.aggregate).clone();
        self.written(&self.payments, payment_id, &done, value).await
    }

    /// Asks the provider for the payment's link unless it has one; records it.
    async fn ensure_link(
        &self,
        payment_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<crate::Executed<Payment>, FlowError> {
        let payment = self.payments.load(payment_id).await.map_err(payment_err)?;
        if payment.kaspi_payment_id.is_none() && payment.status == PaymentStatus::Pending {
            let link = self
                .provider()?
                .create_link(&payment.account, payment.amount_kzt)
                .await
                .map_err(provider_err)?;
            let issue = PaymentCommand::IssueLink {
                kaspi_payment_id: link.payment_id,
                payment_url: link.payment_link,
                link_expires_at: link.expire_date,
            };
            return self.on_payment(payment_id, issue, meta).await;
        }
        self.payments.current(payment_id).await.map_err(payment_err)
    }
}
