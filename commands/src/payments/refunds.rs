//! Refunds: decided first (`RefundRequested`, by settlement or an admin), returned through the
//! provider after (`PaymentRefunded`), each idempotent by its refund id, so a crash or an
//! outage in between only delays the money.
use super::{payment_err, provider_err, refund_id_for};
use crate::metadata::CommandMeta;
use crate::service::{Commands, FlowError, Written};
use domain::payment::{Payment, PaymentCommand, RefundReason};
use domain::Kzt;
use uuid::Uuid;

impl Commands {
    /// Decides the refund for `reason` (once per payment), capped by what is left.
    pub(crate) async fn request_refund(
        &self,
        payment_id: Uuid,
        payment: &Payment,
        reason: RefundReason,
        due: Kzt,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
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

    /// Returns through the provider every decided refund not yet returned.
    pub(crate) async fn return_refunds(
        &self,
        payment_id: Uuid,
        meta: &CommandMeta,
    ) -> Result<(), FlowError> {
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
                    .provider()?
                    .create_link(&payment.account, payment.amount_kzt)
                    .await
                    .map_err(provider_err)?;
                link.payment_id
            }
        };
        for refund in pending {
            let operation = self
                .provider()?
                .refund(kaspi_id, refund.amount_kzt, &refund.id.to_string())
                .await
                .map_err(provider_err)?;
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

    /// An admin returns `amount_kzt` of a paid payment. The refund is decided first (so it
    /// survives Kaspi being away: the keeper returns it later), then returned.
    #[tracing::instrument(skip_all, fields(%payment_id, %refund_id, actor = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
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
        let value = (*after.aggregate).clone();
        self.written(&self.payments, payment_id, &after, value)
            .await
    }
}
