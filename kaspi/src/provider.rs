//! [`PaymentProvider`]: what the command side needs from a payment provider, and nothing
//! more. [`crate::KaspiClient`] implements it against Kaspi's API (or the sandbox, which
//! serves the same API); the command side holds an `Arc<dyn PaymentProvider>` and never names
//! the client.
use crate::client::{KaspiError, PaymentDetails, PaymentLink, PaymentStatus};
use async_trait::async_trait;
use domain::Kzt;

#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// A payment link for `amount`, keyed by our `external_id`: asking again with the same id
    /// returns the same payment, so a retry never creates a second one.
    async fn create_link(&self, external_id: &str, amount: Kzt) -> Result<PaymentLink, KaspiError>;

    /// Where payment `payment_id` stands.
    async fn status(&self, payment_id: i64) -> Result<PaymentStatus, KaspiError>;

    /// What payment `payment_id` took and what can still be returned.
    async fn details(&self, payment_id: i64) -> Result<PaymentDetails, KaspiError>;

    /// Returns `amount` of a paid payment (at most what is still available); `external_id`
    /// names this return, so a retry returns the money once. Gives the return operation's id.
    async fn refund(
        &self,
        payment_id: i64,
        amount: Kzt,
        external_id: &str,
    ) -> Result<i64, KaspiError>;
}
