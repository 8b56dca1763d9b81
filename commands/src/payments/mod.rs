//! Paying for a booking, through a [`PaymentProvider`] (Kaspi in production).
//!
//! Each booking has at most one payment, whose id is derived from the booking's
//! ([`payment_id_for`]), so asking twice for a payment link gives the same payment. Kaspi knows
//! the payment by the booking's short code ([`account_code`]), which is also what Kaspi's biller
//! notifications quote as `account`.
//!
//! - [`links`]: the guest's payment link ([`Commands::start_payment`]).
//! - [`notifications`]: Kaspi's biller notifications (`check`, `pay`), answered once per
//!   `txn_id` ([`Commands::kaspi_notification`]).
//! - [`settlement`]: [`Commands::settle`], the process manager's step between a payment and its
//!   booking.
//! - [`refunds`]: refunds decided by settlement or an admin, returned through the provider.
//! - [`reconcile`]: asking the provider about payments whose notification never came.
//!
//! The commands here only ever see the provider as `dyn PaymentProvider`; the process that
//! builds [`Commands`] picks the client ([`Commands::with_provider`]).
use crate::executor::CommandError;
use crate::metadata::CommandMeta;
use crate::service::{Commands, FlowError};
use domain::payment::{Payment, PaymentCommand, PaymentError, RefundReason};
use kaspi::{KaspiError, PaymentProvider};
use sha2::{Digest, Sha256};
use store::with_pool;
use uuid::Uuid;

pub mod links;
pub mod notifications;
pub mod reconcile;
pub mod refunds;
pub mod settlement;

pub use reconcile::Reconciled;

/// Names derived from a booking's id.
const NAMESPACE: Uuid = Uuid::from_u128(0x5a1c_e60a_7f3e_4c1b_9d2e_0b6f_4a8d_3c21);

/// The payment of a booking: one per booking, so the id follows from the booking's.
pub fn payment_id_for(booking_id: Uuid) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("payment:{booking_id}").as_bytes())
}

/// The refund a cancellation or a late payment decides: one of each per payment.
pub(crate) fn refund_id_for(payment_id: Uuid, reason: RefundReason) -> Uuid {
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

pub(crate) fn payment_err(e: CommandError<PaymentError>) -> FlowError {
    match e {
        CommandError::Rejected(e) => FlowError::Payment(e),
        CommandError::Busy => FlowError::Busy,
        CommandError::Store(s) => FlowError::Store(s),
    }
}

/// The provider's error as the flows report it: refused (Kaspi said no) or unavailable.
pub(crate) fn provider_err(e: KaspiError) -> FlowError {
    metrics::counter!("zhilego_payment_failures_total", "kind" => "provider").increment(1);
    match e {
        KaspiError::Refused { .. } => FlowError::ProviderRefused(e),
        KaspiError::Unavailable { .. } | KaspiError::Client(_) => FlowError::ProviderUnavailable(e),
    }
}

impl Commands {
    /// The payment as the event store has it, or `None`.
    #[tracing::instrument(skip_all, fields(%payment_id), err(level = "debug"))]
    pub async fn payment(&self, payment_id: Uuid) -> Result<Option<Payment>, FlowError> {
        let p = self.payments.load(payment_id).await.map_err(payment_err)?;
        Ok(p.id.map(|_| p))
    }

    /// Runs a command on a payment and tells the read side when it wrote.
    pub(crate) async fn on_payment(
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

    /// The payment provider, or why there is none.
    pub(crate) fn provider(&self) -> Result<&dyn PaymentProvider, FlowError> {
        self.provider.as_deref().ok_or(FlowError::NoProvider)
    }

    /// The booking an account names: its id, or its short code.
    #[tracing::instrument(skip_all, err(level = "debug"))]
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
                .await?
        });
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
