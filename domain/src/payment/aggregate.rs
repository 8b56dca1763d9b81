use crate::values::Kzt;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    #[default]
    New,
    Pending,
    Succeeded,
    Failed,
    Expired,
    Refunded,
    PartiallyRefunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::New => "new",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Expired => "expired",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::PartiallyRefunded => "partially_refunded",
        }
    }

    /// The status [`PaymentStatus::as_str`] spells `s`.
    pub fn parse(s: &str) -> Option<PaymentStatus> {
        [
            PaymentStatus::New,
            PaymentStatus::Pending,
            PaymentStatus::Succeeded,
            PaymentStatus::Failed,
            PaymentStatus::Expired,
            PaymentStatus::Refunded,
            PaymentStatus::PartiallyRefunded,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Money was received (whatever was returned since).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        )
    }
}

/// How the service learnt that the money arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentSource {
    /// Kaspi's `pay` notification.
    Callback,
    /// The reconciliation job asked Kaspi.
    Reconciliation,
}

/// Why money goes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundReason {
    /// The booking was cancelled; the listing's policy set the amount.
    Cancellation,
    /// The money arrived after the hold ran out and the nights were gone.
    LatePayment,
    /// An admin returned money by hand.
    Admin,
}

#[derive(Debug, Clone)]
pub enum PaymentCommand {
    CreatePayment {
        payment_id: Uuid,
        booking_id: Uuid,
        payer_id: Uuid,
        /// What the guest quotes to Kaspi (the booking's short code).
        account: String,
        amount_kzt: Kzt,
        /// The booking's total at the time of the request; the amount must equal it.
        booking_total_kzt: Kzt,
        expires_at: DateTime<Utc>,
    },
    /// Kaspi made a payment link for it.
    IssueLink {
        kaspi_payment_id: i64,
        payment_url: String,
        link_expires_at: DateTime<Utc>,
    },
    /// The provider reports money received under its transaction id.
    RecordSuccess {
        txn_id: String,
        amount_kzt: Kzt,
        source: PaymentSource,
    },
    RecordFailure {
        reason: String,
    },
    /// Nothing will be paid any more (the hold ran out, the booking was cancelled, or Kaspi
    /// says the link expired).
    Expire {
        reason: String,
    },
    /// Decides to return `amount_kzt`; idempotent by `refund_id`.
    RequestRefund {
        refund_id: Uuid,
        amount_kzt: Kzt,
        reason: RefundReason,
    },
    /// Kaspi returned the money of a requested refund.
    CompleteRefund {
        refund_id: Uuid,
        return_operation_id: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    PaymentCreated {
        payment_id: Uuid,
        booking_id: Uuid,
        payer_id: Uuid,
        account: String,
        amount_kzt: Kzt,
        expires_at: DateTime<Utc>,
    },
    PaymentLinkIssued {
        kaspi_payment_id: i64,
        payment_url: String,
        link_expires_at: DateTime<Utc>,
    },
    PaymentSucceeded {
        txn_id: String,
        amount_kzt: Kzt,
        source: PaymentSource,
    },
    /// A notification whose amount did not match: refused, kept for the record.
    PaymentAmountMismatched {
        txn_id: String,
        amount_kzt: Kzt,
        expected_kzt: Kzt,
    },
    PaymentFailed {
        reason: String,
    },
    PaymentExpired {
        reason: String,
    },
    RefundRequested {
        refund_id: Uuid,
        amount_kzt: Kzt,
        reason: RefundReason,
    },
    PaymentRefunded {
        refund_id: Uuid,
        amount_kzt: Kzt,
        total_refunded_kzt: Kzt,
        return_operation_id: i64,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::PaymentCreated { .. } => "PaymentCreated",
            PaymentEvent::PaymentLinkIssued { .. } => "PaymentLinkIssued",
            PaymentEvent::PaymentSucceeded { .. } => "PaymentSucceeded",
            PaymentEvent::PaymentAmountMismatched { .. } => "PaymentAmountMismatched",
            PaymentEvent::PaymentFailed { .. } => "PaymentFailed",
            PaymentEvent::PaymentExpired { .. } => "PaymentExpired",
            PaymentEvent::RefundRequested { .. } => "RefundRequested",
            PaymentEvent::PaymentRefunded { .. } => "PaymentRefunded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        crate::upcast::version_of("Payment", &self.event_type())
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment not found")]
    NotFound,
    #[error("payment already exists")]
    AlreadyExists,
    #[error("the amount {amount} does not equal the booking total {total}")]
    AmountNotTotal { amount: Kzt, total: Kzt },
    #[error("the payment was already applied")]
    AlreadyPaid,
    #[error("a {0} payment cannot do this")]
    WrongStatus(&'static str),
    #[error("refund must be positive and at most {available}")]
    RefundTooLarge { available: Kzt },
    #[error("no such refund")]
    UnknownRefund,
}

/// One refund decided on a payment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: Uuid,
    pub amount_kzt: Kzt,
    pub reason: RefundReason,
    /// Kaspi's return operation, once the money went back.
    pub return_operation_id: Option<i64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub id: Option<Uuid>,
    pub booking_id: Uuid,
    pub payer_id: Uuid,
    pub account: String,
    pub amount_kzt: Kzt,
    pub status: PaymentStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub kaspi_payment_id: Option<i64>,
    pub payment_url: Option<String>,
    pub txn_id: Option<String>,
    pub source: Option<PaymentSource>,
    /// Returned by Kaspi.
    pub refunded_kzt: Kzt,
    pub refunds: Vec<Refund>,
    pub mismatches: u32,
}

impl Payment {
    /// Decided refunds, returned or not.
    pub fn refund_requested_kzt(&self) -> Kzt {
        Kzt(self.refunds.iter().map(|r| r.amount_kzt.0).sum())
    }

    /// What may still be decided for refund.
    pub fn refundable(&self) -> Kzt {
        if self.status.is_paid() {
            Kzt(self.amount_kzt.0 - self.refund_requested_kzt().0)
        } else {
            Kzt::ZERO
        }
    }

    /// Refunds decided but not yet returned by Kaspi.
    pub fn pending_refunds(&self) -> impl Iterator<Item = &Refund> {
        self.refunds
            .iter()
            .filter(|r| r.return_operation_id.is_none())
    }

    /// The biller protocol's `prv_txn_id`: our id for a received payment.
    pub fn provider_txn_id(&self) -> String {
        self.id.unwrap_or_default().simple().to_string()
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: PaymentCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), PaymentError> {
        if self.status == PaymentStatus::New
            && !matches!(command, PaymentCommand::CreatePayment { .. })
        {
            return Err(PaymentError::NotFound);
        }
        match command {
            PaymentCommand::CreatePayment {
                payment_id,
                booking_id,
                payer_id,
                account,
                amount_kzt,
                booking_total_kzt,
                expires_at,
            } => {
                if self.status != PaymentStatus::New {
                    return Err(PaymentError::AlreadyExists);
                }
                if amount_kzt != booking_total_kzt || amount_kzt.0 <= 0 {
                    return Err(PaymentError::AmountNotTotal {
                        amount: amount_kzt,
                        total: booking_total_kzt,
                    });
                }
                sink.write(
                    PaymentEvent::PaymentCreated {
                        payment_id,
                        booking_id,
                        payer_id,
                        account,
                        amount_kzt,
                        expires_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::IssueLink {
                kaspi_payment_id,
                payment_url,
                link_expires_at,
            } => {
                if self.kaspi_payment_id == Some(kaspi_payment_id) {
                    return Ok(());
                }
                if self.status != PaymentStatus::Pending || self.kaspi_payment_id.is_some() {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                sink.write(
                    PaymentEvent::PaymentLinkIssued {
                        kaspi_payment_id,
                        payment_url,
                        link_expires_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::RecordSuccess {
                txn_id,
                amount_kzt,
                source,
            } => {
                if self.status.is_paid() {
                    // The same notification again is already applied; another one is not.
                    return if self.txn_id.as_deref() == Some(txn_id.as_str()) {
                        Ok(())
                    } else {
                        Err(PaymentError::AlreadyPaid)
                    };
                }
                if amount_kzt != self.amount_kzt {
                    let expected_kzt = self.amount_kzt;
                    sink.write(
                        PaymentEvent::PaymentAmountMismatched {
                            txn_id,
                            amount_kzt,
                            expected_kzt,
                        },
                        self,
                    )
                    .await;
                    return Ok(());
                }
                // Money that arrives after the payment expired or failed is still money: it is
                // recorded, and the booking flow confirms or refunds it.
                sink.write(
                    PaymentEvent::PaymentSucceeded {
                        txn_id,
                        amount_kzt,
                        source,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::RecordFailure { reason } => {
                if self.status != PaymentStatus::Pending {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                sink.write(PaymentEvent::PaymentFailed { reason }, self)
                    .await;
            }
            PaymentCommand::Expire { reason } => match self.status {
                PaymentStatus::Pending => {
                    sink.write(PaymentEvent::PaymentExpired { reason }, self)
                        .await
                }
                PaymentStatus::Expired | PaymentStatus::Failed => {}
                other => return Err(PaymentError::WrongStatus(other.as_str())),
            },
            PaymentCommand::RequestRefund {
                refund_id,
                amount_kzt,
                reason,
            } => {
                if self.refunds.iter().any(|r| r.id == refund_id) {
                    return Ok(());
                }
                if !self.status.is_paid() {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                let available = self.refundable();
                if amount_kzt.0 <= 0 || amount_kzt > available {
                    return Err(PaymentError::RefundTooLarge { available });
                }
                sink.write(
                    PaymentEvent::RefundRequested {
                        refund_id,
                        amount_kzt,
                        reason,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::CompleteRefund {
                refund_id,
                return_operation_id,
            } => {
                let refund = self
                    .refunds
                    .iter()
                    .find(|r| r.id == refund_id)
                    .ok_or(PaymentError::UnknownRefund)?;
                if refund.return_operation_id.is_some() {
                    return Ok(());
                }
                let amount_kzt = refund.amount_kzt;
                let total_refunded_kzt = self.refunded_kzt + amount_kzt;
                sink.write(
                    PaymentEvent::PaymentRefunded {
                        refund_id,
                        amount_kzt,
                        total_refunded_kzt,
                        return_operation_id,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: PaymentEvent) {
        match event {
            PaymentEvent::PaymentCreated {
                payment_id,
                booking_id,
                payer_id,
                account,
                amount_kzt,
                expires_at,
            } => {
                self.id = Some(payment_id);
                self.booking_id = booking_id;
                self.payer_id = payer_id;
                self.account = account;
                self.amount_kzt = amount_kzt;
                self.expires_at = Some(expires_at);
                self.status = PaymentStatus::Pending;
            }
            PaymentEvent::PaymentLinkIssued {
                kaspi_payment_id,
                payment_url,
                ..
            } => {
                self.kaspi_payment_id = Some(kaspi_payment_id);
                self.payment_url = Some(payment_url);
            }
            PaymentEvent::PaymentSucceeded { txn_id, source, .. } => {
                self.txn_id = Some(txn_id);
                self.source = Some(source);
                self.status = PaymentStatus::Succeeded;
            }
            PaymentEvent::PaymentAmountMismatched { .. } => self.mismatches += 1,
            PaymentEvent::PaymentFailed { .. } => self.status = PaymentStatus::Failed,
            PaymentEvent::PaymentExpired { .. } => self.status = PaymentStatus::Expired,
            PaymentEvent::RefundRequested {
                refund_id,
                amount_kzt,
                reason,
            } => self.refunds.push(Refund {
                id: refund_id,
                amount_kzt,
                reason,
                return_operation_id: None,
            }),
            PaymentEvent::PaymentRefunded {
                refund_id,
                total_refunded_kzt,
                return_operation_id,
                ..
            } => {
                if let Some(r) = self.refunds.iter_mut().find(|r| r.id == refund_id) {
                    r.return_operation_id = Some(return_operation_id);
                }
                self.refunded_kzt = total_refunded_kzt;
                self.status = if total_refunded_kzt >= self.amount_kzt {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
            }
        }
    }
}
