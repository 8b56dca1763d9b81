//! Paying for a booking with Kaspi, and the process manager between payments and bookings.
//!
//! Each booking has at most one payment, whose id is derived from the booking's
//! ([`payment_id_for`]), so asking twice for a payment link gives the same payment. Kaspi knows
//! the payment by the booking's short code ([`account_code`]), which is also what Kaspi's biller
//! notifications quote as `account`.
//!
//! [`Commands::settle`] is the one step that brings a payment and its booking into agreement;
//! it is idempotent and is run inline after every change (a notification, a cancellation, an
//! expired hold) and again by the payment keeper for anything a crash interrupted:
//! - money received, booking held → the booking is confirmed, then its nights;
//! - money received after the hold ran out → the nights are taken again if they are still
//!   free and the booking is confirmed (late); otherwise the whole amount is refunded;
//! - money received, booking cancelled → the refund the cancellation decided (all of it if the
//!   booking was cancelled before it was confirmed);
//! - no money, booking no longer held → the payment expires;
//! - refunds decided but not yet returned → returned through Kaspi (idempotent by refund id).
use crate::executor::CommandError;
use crate::metadata::CommandMeta;
use crate::service::{booking_err, listing_err, store_err, Commands, FlowError, Written};
use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand, BookingStatus};
use domain::listing::{ListingCommand, ListingError};
use domain::payment::{
    Payment, PaymentCommand, PaymentError, PaymentEvent, PaymentSource, PaymentStatus, RefundReason,
};
use domain::{local_date, Kzt, Role};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use store::with_pool;
use uuid::Uuid;

/// Names derived from a booking's id.
const NAMESPACE: Uuid = Uuid::from_u128(0x5a1c_e60a_7f3e_4c1b_9d2e_0b6f_4a8d_3c21);

/// The payment of a booking: one per booking, so the id follows from the booking's.
pub fn payment_id_for(booking_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("payment:{booking_id}").as_bytes())
}

/// The refund a cancellation or a late payment decides: one of each per payment.
fn refund_id_for(payment_id: Uuid, reason: RefundReason) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("refund:{payment_id}:{reason:?}").as_bytes(),
    )
}

/// An admin refund named by the caller's idempotency key.
pub fn admin_refund_id(payment_id: Uuid, key: &str) -> Uuid {
    Uuid::new_v5(
        &NAMESPACE,
        format!("refund:{payment_id}:admin:{key}").as_bytes(),
    )
}

/// Ten characters a guest can read out or type into Kaspi: Crockford base32 of a hash of the
/// booking's id (50 bits).
pub fn account_code(booking_id: Uuid) -> String {
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let digest = Sha256::digest(booking_id.as_bytes());
    let mut bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes")) >> 14;
    let mut out = [0u8; 10];
    for c in out.iter_mut().rev() {
        *c = ALPHABET[(bits & 31) as usize];
        bits >>= 5;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

fn payment_err(e: CommandError<PaymentError>) -> FlowError {
    match e {
        CommandError::Rejected(e) => FlowError::Payment(e),
        CommandError::Busy => FlowError::Busy,
        CommandError::Store(s) => FlowError::Store(s),
    }
}

fn kaspi_err(e: kaspi::KaspiError) -> FlowError {
    metrics::counter!("zhilego_payment_failures_total", "kind" => "provider").increment(1);
    match e {
        kaspi::KaspiError::Unavailable(m) => FlowError::ProviderUnavailable(m),
        kaspi::KaspiError::Refused { code, message } => {
            FlowError::ProviderRefused(format!("{code} {message}"))
        }
    }
}

/// A biller notification from Kaspi.
#[derive(Clone, Debug, Deserialize)]
pub struct Notification {
    pub command: String,
    pub txn_id: String,
    pub account: String,
    pub sum: String,
    #[serde(default)]
    pub txn_date: String,
}

/// The biller protocol's result codes.
pub mod result {
    pub const OK: i32 = 0;
    pub const NOT_FOUND: i32 = 1;
    pub const CANCELLED: i32 = 2;
    pub const ALREADY_PAID: i32 = 3;
    pub const IN_PROGRESS: i32 = 4;
    pub const ERROR: i32 = 5;
}

/// What we answer Kaspi.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub txn_id: String,
    pub result: i32,
    /// The amount due (check) or taken (pay), whole tenge.
    pub sum: Option<i64>,
    /// Our id for the payment.
    pub prv_txn_id: Option<String>,
    pub comment: String,
}

impl Answer {
    fn new(n: &Notification, result: i32, comment: impl Into<String>) -> Answer {
        Answer {
            txn_id: n.txn_id.clone(),
            result,
            sum: None,
            prv_txn_id: None,
            comment: comment.into(),
        }
    }

    fn with_payment(mut self, p: &Payment) -> Answer {
        self.sum = Some(p.amount_kzt.0);
        self.prv_txn_id = Some(p.provider_txn_id());
        self
    }
}

/// An answer, and whether it is final (kept for repeats of the same `txn_id`).
struct Decided {
    answer: Answer,
    is_final: bool,
}

impl Decided {
    fn final_(answer: Answer) -> Decided {
        Decided {
            answer,
            is_final: true,
        }
    }

    fn transient(answer: Answer) -> Decided {
        Decided {
            answer,
            is_final: false,
        }
    }
}

/// `"15000"`, `"15000.00"` → 15 000 tenge; fractions of a tenge or anything else → `None`.
pub fn parse_sum(text: &str) -> Option<Kzt> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b == b'0')
        || whole.len() > 15
    {
        return None;
    }
    whole.parse().ok().map(Kzt)
}

/// The door code and instructions as the guest receives them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub instructions: String,
    pub door_code: String,
}

/// A guest's access to the apartment for a stay.
#[derive(Clone, Debug)]
pub struct AccessPass {
    pub address: String,
    pub access: Access,
    pub valid_from: DateTime<chrono::FixedOffset>,
    pub valid_until: DateTime<chrono::FixedOffset>,
}

/// Check-in from 14:00 and check-out by 12:00, local time.
const CHECK_IN_HOUR: u32 = 14;
const CHECK_OUT_HOUR: u32 = 12;

fn access_binding(listing_id: Uuid) -> String {
    format!("listing:{listing_id}:access")
}

/// What one reconciliation of a pending payment found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reconciled {
    pub payment_id: Uuid,
    /// Kaspi's status (`Wait`, `Processed`, …), or `none` without a Kaspi payment.
    pub kaspi_status: String,
    /// What was done: `none`, `paid`, `expired`, `failed`.
    pub action: String,
    /// Kaspi and we disagreed (the amounts differ).
    pub mismatch: Option<String>,
}

impl Commands {
    /// The payment as the event store has it, or `None`.
    pub async fn payment(&self, payment_id: Uuid) -> Result<Option<Payment>, FlowError> {
        let p = self.payments.load(payment_id).await.map_err(payment_err)?;
        Ok(p.id.map(|_| p))
    }

    /// Runs a command on a payment and tells the read side when it wrote.
    async fn on_payment(
        &self,
        payment_id: Uuid,
        cmd: PaymentCommand,
        meta: &CommandMeta,
    ) -> Result<crate::Executed<Payment>, FlowError> {
        let done = self
            .payments
            .execute(payment_id, cmd, meta)
            .await
            .map_err(payment_err)?;
        if !done.events.is_empty() {
            self.wrote();
        }
        Ok(done)
    }

    fn kaspi(&self) -> Result<&kaspi::KaspiClient, FlowError> {
        self.kaspi
            .as_ref()
            .ok_or_else(|| FlowError::ProviderUnavailable("no Kaspi is configured".into()))
    }

    /// The booking an account names: its id, or its short code.
    pub async fn booking_for_account(&self, account: &str) -> Result<Option<Uuid>, FlowError> {
        let account = account.trim();
        if let Ok(id) = account.parse::<Uuid>() {
            return Ok(Some(id));
        }
        let code = account.to_ascii_uppercase();
        let found: Option<Uuid> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT booking_id FROM payment_accounts WHERE account = $1")
                .bind(&code)
                .fetch_optional(pool)
                .await
                .map_err(store_err)?
        });
        Ok(found)
    }

    /// The guest's payment link for a held booking: created at Kaspi on the first call, the
    /// same one on every later call. Kaspi being down leaves the booking held and the payment
    /// pending without a link; asking again retries (Kaspi dedupes by the account).
    #[tracing::instrument(skip_all, fields(%booking_id, correlation_id = %meta.correlation_id))]
    pub async fn start_payment(
        &self,
        booking_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<Written<Payment>, FlowError> {
        let booking = self
            .booking(booking_id)
            .await?
            .ok_or(FlowError::Booking(domain::booking::BookingError::NotFound))?;
        let is_guest = meta.actor.user_id == booking.guest_id && meta.actor.role == Role::Guest;
        if !(is_guest || matches!(meta.actor.role, Role::Admin | Role::System)) {
            return Err(FlowError::Booking(domain::booking::BookingError::Forbidden));
        }
        let payment_id = payment_id_for(booking_id);
        let existing = self.payment(payment_id).await?;
        if let Some(p) = &existing {
            if p.status.is_paid() {
                return Err(FlowError::Payment(PaymentError::AlreadyPaid));
            }
        }
        if booking.status != BookingStatus::Held {
            return Err(FlowError::Booking(
                domain::booking::BookingError::WrongStatus(booking.status.as_str()),
            ));
        }
        if booking.hold_expires_at.is_some_and(|t| t <= Utc::now()) {
            return Err(FlowError::Booking(
                domain::booking::BookingError::WrongStatus("expired"),
            ));
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
            .await
            .map_err(store_err)?;
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
        let value = done.aggregate.clone();
        self.written(&self.payments, payment_id, &done, value).await
    }

    /// Asks Kaspi for the payment's link unless it has one; records it.
    async fn ensure_link(
        &self,
        payment_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<crate::Executed<Payment>, FlowError> {
        let payment = self.payments.load(payment_id).await.map_err(payment_err)?;
        if payment.kaspi_payment_id.is_none() && payment.status == PaymentStatus::Pending {
            let link = self
                .kaspi()?
                .create_link(&payment.account, payment.amount_kzt.0)
                .await
                .map_err(kaspi_err)?;
            let issue = PaymentCommand::IssueLink {
                kaspi_payment_id: link.payment_id,
                payment_url: link.payment_link,
                link_expires_at: link.expire_date,
            };
            let done = self.on_payment(payment_id, issue, meta).await?;
            return Ok(done);
        }
        self.payments.current(payment_id).await.map_err(payment_err)
    }

    /// Answers one biller notification. Final answers are kept: a repeated `txn_id` gets the
    /// first answer again, whatever happened since.
    #[tracing::instrument(skip_all, fields(command = %n.command, txn_id = %n.txn_id))]
    pub async fn kaspi_notification(&self, n: Notification) -> Result<Answer, FlowError> {
        let stripe = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            n.txn_id.hash(&mut h);
            (h.finish() as usize) % self.notification_locks.len()
        };
        let _serial = self.notification_locks[stripe].lock().await;
        if let Some(answer) = self.recorded_answer(&n).await? {
            return Ok(answer);
        }
        let decided = self.decide(&n).await;
        if !decided.is_final {
            return Ok(decided.answer);
        }
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO kaspi_notifications (command, txn_id, account, sum_text, answer) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(&n.command)
            .bind(&n.txn_id)
            .bind(&n.account)
            .bind(&n.sum)
            .bind(sqlx::types::Json(&decided.answer))
            .execute(pool)
            .await
            .map_err(store_err)?;
        });
        // Another process may have answered the same txn_id first: everyone gives that answer.
        Ok(self.recorded_answer(&n).await?.unwrap_or(decided.answer))
    }

    async fn recorded_answer(&self, n: &Notification) -> Result<Option<Answer>, FlowError> {
        let found: Option<sqlx::types::Json<Answer>> = with_pool!(&self.db, pool => {
            sqlx::query_scalar(
                "SELECT answer FROM kaspi_notifications WHERE command = $1 AND txn_id = $2",
            )
            .bind(&n.command)
            .bind(&n.txn_id)
            .fetch_optional(pool)
            .await
            .map_err(store_err)?
        });
        Ok(found.map(|j| j.0))
    }

    async fn decide(&self, n: &Notification) -> Decided {
        match self.decide_inner(n).await {
            Ok(d) => d,
            Err(FlowError::Busy) => {
                Decided::transient(Answer::new(n, result::IN_PROGRESS, "busy, try again"))
            }
            Err(e) => {
                tracing::error!(error = %e, "a Kaspi notification failed");
                metrics::counter!("zhilego_payment_failures_total", "kind" => "notification")
                    .increment(1);
                Decided::transient(Answer::new(n, result::ERROR, "temporary error, try again"))
            }
        }
    }

    async fn decide_inner(&self, n: &Notification) -> Result<Decided, FlowError> {
        let pay = match n.command.as_str() {
            "check" => false,
            "pay" => true,
            _ => {
                return Ok(Decided::final_(Answer::new(
                    n,
                    result::ERROR,
                    "unknown command",
                )))
            }
        };
        let Some(booking_id) = self.booking_for_account(&n.account).await? else {
            return Ok(Decided::final_(Answer::new(
                n,
                result::NOT_FOUND,
                "account not found",
            )));
        };
        let payment_id = payment_id_for(booking_id);
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(Decided::final_(Answer::new(
                n,
                result::NOT_FOUND,
                "account not found",
            )));
        };
        let booking = self.booking(booking_id).await?.unwrap_or_default();
        if payment.status.is_paid() {
            // The same Kaspi payment told again (or already found by reconciliation) is fine;
            // a second payment for the booking is refused, so Kaspi does not take it.
            let same = payment.txn_id.as_deref() == Some(n.txn_id.as_str())
                || payment.source == Some(PaymentSource::Reconciliation);
            return Ok(Decided::final_(if pay && same {
                Answer::new(n, result::OK, "paid").with_payment(&payment)
            } else {
                Answer::new(n, result::ALREADY_PAID, "already paid").with_payment(&payment)
            }));
        }
        if booking.status == BookingStatus::Cancelled {
            return Ok(Decided::final_(
                Answer::new(n, result::CANCELLED, "the booking was cancelled")
                    .with_payment(&payment),
            ));
        }
        let Some(sum) = parse_sum(&n.sum).filter(|s| *s == payment.amount_kzt) else {
            metrics::counter!("zhilego_payment_mismatches_total", "kind" => "callback_sum")
                .increment(1);
            tracing::warn!(%payment_id, sum = %n.sum, due = payment.amount_kzt.0, "Kaspi notified a sum that does not match the amount due; refused");
            if pay {
                // Recorded on the payment, which stays as it was.
                let amount_kzt = parse_sum(&n.sum).unwrap_or(Kzt(-1));
                let record = PaymentCommand::RecordSuccess {
                    txn_id: n.txn_id.clone(),
                    amount_kzt,
                    source: PaymentSource::Callback,
                };
                self.on_payment(payment_id, record, &CommandMeta::system())
                    .await?;
            }
            return Ok(Decided::final_(
                Answer::new(
                    n,
                    result::ERROR,
                    format!(
                        "sum {} does not match the amount due {}",
                        n.sum.trim(),
                        payment.amount_kzt.0
                    ),
                )
                .with_payment(&payment),
            ));
        };
        if !pay {
            return Ok(Decided::final_(
                Answer::new(n, result::OK, "ok").with_payment(&payment),
            ));
        }
        let record = PaymentCommand::RecordSuccess {
            txn_id: n.txn_id.clone(),
            amount_kzt: sum,
            source: PaymentSource::Callback,
        };
        let meta = CommandMeta::system();
        let done = match self.payments.execute(payment_id, record, &meta).await {
            Ok(done) => done,
            Err(CommandError::Rejected(PaymentError::AlreadyPaid)) => {
                let p = self.payment(payment_id).await?.unwrap_or(payment);
                return Ok(Decided::final_(
                    Answer::new(n, result::ALREADY_PAID, "already paid").with_payment(&p),
                ));
            }
            Err(e) => return Err(payment_err(e)),
        };
        if !done.events.is_empty() {
            self.wrote();
            metrics::counter!("zhilego_payments_received_total", "source" => "callback")
                .increment(1);
        }
        if let Err(e) = self.settle(payment_id, &meta.follow_up()).await {
            // The money is recorded; the payment keeper finishes the booking.
            tracing::warn!(%payment_id, error = %e, "settling a paid booking failed; the keeper will retry");
        }
        Ok(Decided::final_(
            Answer::new(n, result::OK, "paid").with_payment(&done.aggregate),
        ))
    }

    /// Brings a payment and its booking into agreement (see the module's documentation).
    /// Idempotent; safe to run from any number of processes.
    #[tracing::instrument(skip_all, fields(%payment_id))]
    pub async fn settle(&self, payment_id: Uuid, meta: &CommandMeta) -> Result<(), FlowError> {
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(());
        };
        let booking = self
            .bookings
            .load(payment.booking_id)
            .await
            .map_err(booking_err)?;
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
            BookingStatus::Held => self.confirm(&booking, &payment, meta).await?,
            BookingStatus::Expired => self.settle_late(&booking, &payment, meta).await?,
            BookingStatus::Confirmed | BookingStatus::CheckedIn | BookingStatus::Completed => {
                if booking.payment_id == Some(payment_id) {
                    self.confirm_nights(&booking, meta).await?;
                }
            }
            BookingStatus::Cancelled => {
                // Cancelled after it was confirmed: the policy's refund; before: everything.
                let due = if booking.payment_id == Some(payment_id) {
                    booking.refund_kzt
                } else {
                    payment.amount_kzt
                };
                self.request_refund(&payment, RefundReason::Cancellation, due, meta)
                    .await?;
            }
            BookingStatus::New => {}
        }
        self.return_refunds(payment_id, meta).await
    }

    async fn confirm(
        &self,
        booking: &Booking,
        payment: &Payment,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let booking_id = booking.id.unwrap_or_default();
        let confirm = BookingCommand::ConfirmBooking {
            payment_id: payment.id.unwrap_or_default(),
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
        self.confirm_nights(&done.aggregate, meta).await
    }

    /// The booking's nights stay taken for good.
    async fn confirm_nights(&self, booking: &Booking, meta: &CommandMeta) -> Result<(), FlowError> {
        let booking_id = booking.id.unwrap_or_default();
        let cmd = ListingCommand::ConfirmReservation { booking_id };
        match self.listings.execute(booking.listing_id, cmd, meta).await {
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

    /// Confirms a paid booking's nights on its listing (the sweeper's repair step).
    pub async fn confirm_nights_of(
        &self,
        listing_id: Uuid,
        booking_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let mut booking = Booking {
            id: Some(booking_id),
            ..Booking::default()
        };
        booking.listing_id = listing_id;
        self.confirm_nights(&booking, meta).await
    }

    /// Money for a booking whose hold ran out: the nights again if free, else a refund.
    async fn settle_late(
        &self,
        booking: &Booking,
        payment: &Payment,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let booking_id = booking.id.unwrap_or_default();
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
                self.confirm(booking, payment, meta).await
            }
            Err(CommandError::Rejected(e)) => {
                tracing::info!(%booking_id, reason = %e, "a late payment cannot have its nights: refunded");
                self.request_refund(payment, RefundReason::LatePayment, payment.amount_kzt, meta)
                    .await
            }
            Err(e) => Err(listing_err(e)),
        }
    }

    /// Decides the refund for `reason` (once per payment), capped by what is left.
    async fn request_refund(
        &self,
        payment: &Payment,
        reason: RefundReason,
        due: Kzt,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
        let payment_id = payment.id.unwrap_or_default();
        let refund_id = refund_id_for(payment_id, reason);
        if payment.refunds.iter().any(|r| r.id == refund_id) {
            return Ok(());
        }
        let amount_kzt = Kzt(due.0.min(payment.refundable().0));
        if amount_kzt.0 <= 0 {
            return Ok(());
        }
        let cmd = PaymentCommand::RequestRefund {
            refund_id,
            amount_kzt,
            reason,
        };
        self.on_payment(payment_id, cmd, meta).await?;
        Ok(())
    }

    /// Returns through Kaspi every decided refund not yet returned.
    async fn return_refunds(&self, payment_id: Uuid, meta: &CommandMeta) -> Result<(), FlowError> {
        let payment = self.payments.load(payment_id).await.map_err(payment_err)?;
        let pending: Vec<_> = payment.pending_refunds().cloned().collect();
        if pending.is_empty() {
            return Ok(());
        }
        let kaspi_id = match payment.kaspi_payment_id {
            Some(id) => id,
            None => {
                // The link was made but not recorded: Kaspi gives the same payment again.
                let link = self
                    .kaspi()?
                    .create_link(&payment.account, payment.amount_kzt.0)
                    .await
                    .map_err(kaspi_err)?;
                link.payment_id
            }
        };
        for refund in pending {
            let operation = self
                .kaspi()?
                .refund(kaspi_id, refund.amount_kzt.0, &refund.id.to_string())
                .await
                .map_err(kaspi_err)?;
            let cmd = PaymentCommand::CompleteRefund {
                refund_id: refund.id,
                return_operation_id: operation,
            };
            let done = self.on_payment(payment_id, cmd, meta).await?;
            if !done.events.is_empty() {
                metrics::counter!("zhilego_refunds_total").increment(1);
                metrics::counter!("zhilego_refunded_kzt_total")
                    .increment(refund.amount_kzt.0 as u64);
            }
        }
        Ok(())
    }

    /// Settles the payment of a booking that just changed (cancelled, expired), if it has one.
    /// Failures are logged: the payment keeper retries.
    pub async fn settle_booking_payment(&self, booking_id: Uuid, meta: &CommandMeta) {
        // `settle` does nothing for a booking that never asked for a payment.
        let payment_id = payment_id_for(booking_id);
        if let Err(e) = self.settle(payment_id, meta).await {
            tracing::warn!(%payment_id, error = %e, "settling a payment failed; the keeper will retry");
        }
    }

    /// An admin returns `amount_kzt` of a paid payment. The refund is decided first (so it
    /// survives Kaspi being away: the keeper returns it later), then returned.
    pub async fn admin_refund(
        &self,
        payment_id: Uuid,
        refund_id: Uuid,
        amount_kzt: Kzt,
        meta: &CommandMeta,
    ) -> Result<Written<Payment>, FlowError> {
        let cmd = PaymentCommand::RequestRefund {
            refund_id,
            amount_kzt,
            reason: RefundReason::Admin,
        };
        self.on_payment(payment_id, cmd, meta).await?;
        // Kaspi being away leaves the refund decided; the keeper returns it later.
        if let Err(e) = self.return_refunds(payment_id, &meta.follow_up()).await {
            tracing::warn!(%payment_id, error = %e, "returning a refund failed; the keeper will retry");
        }
        let after = self
            .payments
            .current(payment_id)
            .await
            .map_err(payment_err)?;
        let value = after.aggregate.clone();
        self.written(&self.payments, payment_id, &after, value)
            .await
    }

    /// Asks Kaspi about a pending payment whose notification may never have come, and settles
    /// what it says.
    pub async fn reconcile(&self, payment_id: Uuid) -> Result<Reconciled, FlowError> {
        let meta = CommandMeta::system();
        let mut report = Reconciled {
            payment_id,
            kaspi_status: "none".into(),
            action: "none".into(),
            mismatch: None,
        };
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(report);
        };
        if payment.status != PaymentStatus::Pending {
            self.settle(payment_id, &meta).await?;
            return Ok(report);
        }
        let Some(kaspi_id) = payment.kaspi_payment_id else {
            self.settle(payment_id, &meta).await?;
            return Ok(report);
        };
        let kaspi = self.kaspi()?;
        let status = kaspi.status(kaspi_id).await.map_err(kaspi_err)?;
        report.kaspi_status = match &status {
            kaspi::PaymentStatus::Wait => "Wait".into(),
            kaspi::PaymentStatus::Processed => "Processed".into(),
            kaspi::PaymentStatus::Error => "Error".into(),
            kaspi::PaymentStatus::Expired => "Expired".into(),
            kaspi::PaymentStatus::Other(s) => s.clone(),
        };
        match status {
            kaspi::PaymentStatus::Processed => {
                let details = kaspi.details(kaspi_id).await.map_err(kaspi_err)?;
                let record = PaymentCommand::RecordSuccess {
                    txn_id: format!("kaspi-{kaspi_id}"),
                    amount_kzt: Kzt(details.total_amount),
                    source: PaymentSource::Reconciliation,
                };
                let done = self.on_payment(payment_id, record, &meta).await?;
                if done
                    .events
                    .iter()
                    .any(|e| matches!(e, PaymentEvent::PaymentAmountMismatched { .. }))
                {
                    let m = format!(
                        "Kaspi took {} but the amount due is {}",
                        details.total_amount, payment.amount_kzt.0
                    );
                    metrics::counter!("zhilego_payment_mismatches_total", "kind" => "reconciliation_amount").increment(1);
                    tracing::warn!(%payment_id, kaspi_payment_id = kaspi_id, "{m}");
                    report.mismatch = Some(m);
                    return Ok(report);
                }
                metrics::counter!("zhilego_payments_received_total", "source" => "reconciliation")
                    .increment(1);
                tracing::warn!(%payment_id, kaspi_payment_id = kaspi_id, "a payment Kaspi processed was never notified; settled by reconciliation");
                report.action = "paid".into();
                self.settle(payment_id, &meta).await?;
            }
            kaspi::PaymentStatus::Expired => {
                let cmd = PaymentCommand::Expire {
                    reason: "Kaspi reports the link expired".into(),
                };
                self.on_payment(payment_id, cmd, &meta).await?;
                report.action = "expired".into();
            }
            kaspi::PaymentStatus::Error => {
                let cmd = PaymentCommand::RecordFailure {
                    reason: "Kaspi reports the payment failed".into(),
                };
                self.on_payment(payment_id, cmd, &meta).await?;
                report.action = "failed".into();
            }
            kaspi::PaymentStatus::Wait | kaspi::PaymentStatus::Other(_) => {
                self.settle(payment_id, &meta).await?;
            }
        }
        Ok(report)
    }

    // ----- access ---------------------------------------------------------------------------

    /// The host sets the door code and instructions; they are sealed before they are recorded.
    pub async fn set_access(
        &self,
        listing_id: Uuid,
        access: Access,
        meta: &CommandMeta,
    ) -> Result<Written<()>, FlowError> {
        let text = serde_json::to_string(&access).map_err(store_err)?;
        let sealed = self.master.seal(&text, &access_binding(listing_id));
        let cmd = ListingCommand::SetAccess {
            actor: meta.actor,
            access: sealed,
        };
        let done = self
            .listings
            .execute(listing_id, cmd, meta)
            .await
            .map_err(listing_err)?;
        self.written(&self.listings, listing_id, &done, ()).await
    }

    /// The access for a stay: only its guest, only while it is confirmed or checked in.
    pub async fn access(
        &self,
        booking_id: Uuid,
        actor: domain::Actor,
    ) -> Result<AccessPass, FlowError> {
        use domain::booking::BookingError;
        let booking = self
            .booking(booking_id)
            .await?
            .ok_or(FlowError::Booking(BookingError::NotFound))?;
        if actor.role != Role::Guest || actor.user_id != booking.guest_id {
            return Err(FlowError::Booking(BookingError::Forbidden));
        }
        if !matches!(
            booking.status,
            BookingStatus::Confirmed | BookingStatus::CheckedIn
        ) {
            return Err(FlowError::Booking(BookingError::WrongStatus(
                booking.status.as_str(),
            )));
        }
        let listing = self
            .listing(booking.listing_id)
            .await?
            .ok_or(FlowError::Listing(ListingError::NotFound))?;
        let sealed = listing.access.as_ref().ok_or(FlowError::AccessNotSet)?;
        let text = self
            .master
            .open(sealed, &access_binding(booking.listing_id))
            .ok_or_else(|| FlowError::Store("access instructions do not open".into()))?;
        let access: Access = serde_json::from_str(&text).map_err(store_err)?;
        let range = booking
            .range
            .ok_or_else(|| FlowError::Store("a booking without dates".into()))?;
        let tz = chrono::FixedOffset::east_opt(domain::KZ_UTC_OFFSET_SECONDS).expect("offset");
        let at = |day: chrono::NaiveDate, hour: u32| {
            day.and_hms_opt(hour, 0, 0)
                .expect("valid hour")
                .and_local_timezone(tz)
                .single()
                .expect("fixed offsets are unambiguous")
        };
        Ok(AccessPass {
            address: listing.details.address.clone(),
            access,
            valid_from: at(range.check_in(), CHECK_IN_HOUR),
            valid_until: at(range.check_out(), CHECK_OUT_HOUR),
        })
    }

    // ----- stays ----------------------------------------------------------------------------

    /// Moves a confirmed stay to checked-in on its first day, and a checked-in one to
    /// completed from its departure day. Returns whether anything changed.
    pub async fn advance_stay(
        &self,
        booking_id: Uuid,
        today: chrono::NaiveDate,
    ) -> Result<bool, FlowError> {
        let booking = self.bookings.load(booking_id).await.map_err(booking_err)?;
        let cmd = match booking.status {
            BookingStatus::Confirmed => BookingCommand::CheckIn { today },
            BookingStatus::CheckedIn => BookingCommand::Complete { today },
            _ => return Ok(false),
        };
        match self
            .bookings
            .execute(booking_id, cmd, &CommandMeta::system())
            .await
        {
            Ok(done) => {
                if !done.events.is_empty() {
                    self.wrote();
                }
                Ok(!done.events.is_empty())
            }
            Err(CommandError::Rejected(_)) => Ok(false),
            Err(e) => Err(booking_err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_are_whole_tenge() {
        assert_eq!(parse_sum("15000"), Some(Kzt(15_000)));
        assert_eq!(parse_sum(" 15000.00 "), Some(Kzt(15_000)));
        assert_eq!(parse_sum("15000.5"), None);
        assert_eq!(parse_sum("-5"), None);
        assert_eq!(parse_sum(""), None);
        assert_eq!(parse_sum("1e5"), None);
    }

    #[test]
    fn account_codes_are_ten_unambiguous_characters_and_stable() {
        let id = Uuid::from_u128(42);
        let code = account_code(id);
        assert_eq!(code.len(), 10);
        assert!(code
            .chars()
            .all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"ILOU".contains(c))));
        assert_eq!(code, account_code(id));
        assert_ne!(code, account_code(Uuid::from_u128(43)));
    }

    #[test]
    fn one_payment_per_booking() {
        let b = Uuid::now_v7();
        assert_eq!(payment_id_for(b), payment_id_for(b));
        assert_ne!(payment_id_for(b), payment_id_for(Uuid::now_v7()));
        assert_ne!(
            refund_id_for(payment_id_for(b), RefundReason::Cancellation),
            refund_id_for(payment_id_for(b), RefundReason::LatePayment)
        );
    }
}
