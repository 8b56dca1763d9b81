//! Reconciliation: asking the provider about a pending payment whose notification may never
//! have come, and settling what it says.
use super::provider_err;
use crate::metadata::CommandMeta;
use crate::service::{Commands, FlowError};
use domain::payment::{PaymentCommand, PaymentEvent, PaymentSource, PaymentStatus};
use serde::Serialize;
use uuid::Uuid;

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
    /// Asks Kaspi about a pending payment whose notification may never have come, and settles
    /// what it says.
    #[tracing::instrument(skip_all, fields(%payment_id), err(level = "debug"))]
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
        let provider = self.provider()?;
        let status = provider.status(kaspi_id).await.map_err(provider_err)?;
        report.kaspi_status = status.as_str().to_string();
        match status {
            kaspi::PaymentStatus::Processed => {
                let details = provider.details(kaspi_id).await.map_err(provider_err)?;
                let record = PaymentCommand::RecordSuccess {
                    txn_id: format!("kaspi-{kaspi_id}"),
                    amount_kzt: details.total_amount,
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
                        details.total_amount.0, payment.amount_kzt.0
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
}
