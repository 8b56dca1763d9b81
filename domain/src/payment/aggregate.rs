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
}

#[derive(Debug, Clone)]
pub enum PaymentCommand {
    CreatePayment {
        payment_id: Uuid,
        booking_id: Uuid,
        payer_id: Uuid,
        amount_kzt: Kzt,
        /// The booking's total at the time of the request; the amount must equal it.
        booking_total_kzt: Kzt,
        expires_at: DateTime<Utc>,
    },
    /// The provider reports money received under its transaction id.
    RecordSuccess {
        txn_id: String,
        amount_kzt: Kzt,
    },
    RecordFailure {
        reason: String,
    },
    Expire {
        now: DateTime<Utc>,
    },
    Refund {
        refund_id: Uuid,
        amount_kzt: Kzt,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PaymentEvent {
    PaymentCreated {
        payment_id: Uuid,
        booking_id: Uuid,
        payer_id: Uuid,
        amount_kzt: Kzt,
        expires_at: DateTime<Utc>,
    },
    PaymentSucceeded {
        txn_id: String,
        amount_kzt: Kzt,
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
    PaymentExpired {},
    PaymentRefunded {
        refund_id: Uuid,
        amount_kzt: Kzt,
        total_refunded_kzt: Kzt,
    },
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::PaymentCreated { .. } => "PaymentCreated",
            PaymentEvent::PaymentSucceeded { .. } => "PaymentSucceeded",
            PaymentEvent::PaymentAmountMismatched { .. } => "PaymentAmountMismatched",
            PaymentEvent::PaymentFailed { .. } => "PaymentFailed",
            PaymentEvent::PaymentExpired { .. } => "PaymentExpired",
            PaymentEvent::PaymentRefunded { .. } => "PaymentRefunded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1.0".to_string()
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
    #[error("the payment has not expired yet")]
    NotExpired,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Payment {
    pub id: Option<Uuid>,
    pub booking_id: Uuid,
    pub payer_id: Uuid,
    pub amount_kzt: Kzt,
    pub status: PaymentStatus,
    pub expires_at: Option<DateTime<Utc>>,
    pub txn_id: Option<String>,
    pub refunded_kzt: Kzt,
    pub refund_ids: Vec<Uuid>,
}

impl Payment {
    pub fn refundable(&self) -> Kzt {
        Kzt(self.amount_kzt.0 - self.refunded_kzt.0)
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
                        amount_kzt,
                        expires_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::RecordSuccess { txn_id, amount_kzt } => {
                match self.status {
                    PaymentStatus::Pending | PaymentStatus::Expired | PaymentStatus::Failed => {}
                    _ => return Err(PaymentError::AlreadyPaid),
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
                sink.write(PaymentEvent::PaymentSucceeded { txn_id, amount_kzt }, self)
                    .await;
            }
            PaymentCommand::RecordFailure { reason } => {
                if self.status != PaymentStatus::Pending {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                sink.write(PaymentEvent::PaymentFailed { reason }, self)
                    .await;
            }
            PaymentCommand::Expire { now } => {
                if self.status != PaymentStatus::Pending {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                if self.expires_at.is_some_and(|t| now < t) {
                    return Err(PaymentError::NotExpired);
                }
                sink.write(PaymentEvent::PaymentExpired {}, self).await;
            }
            PaymentCommand::Refund {
                refund_id,
                amount_kzt,
            } => {
                if self.refund_ids.contains(&refund_id) {
                    return Ok(());
                }
                if !matches!(
                    self.status,
                    PaymentStatus::Succeeded | PaymentStatus::PartiallyRefunded
                ) {
                    return Err(PaymentError::WrongStatus(self.status.as_str()));
                }
                let available = self.refundable();
                if amount_kzt.0 <= 0 || amount_kzt > available {
                    return Err(PaymentError::RefundTooLarge { available });
                }
                let total_refunded_kzt = self.refunded_kzt + amount_kzt;
                sink.write(
                    PaymentEvent::PaymentRefunded {
                        refund_id,
                        amount_kzt,
                        total_refunded_kzt,
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
                amount_kzt,
                expires_at,
            } => {
                self.id = Some(payment_id);
                self.booking_id = booking_id;
                self.payer_id = payer_id;
                self.amount_kzt = amount_kzt;
                self.expires_at = Some(expires_at);
                self.status = PaymentStatus::Pending;
            }
            PaymentEvent::PaymentSucceeded { txn_id, .. } => {
                self.txn_id = Some(txn_id);
                self.status = PaymentStatus::Succeeded;
            }
            PaymentEvent::PaymentAmountMismatched { .. } => {}
            PaymentEvent::PaymentFailed { .. } => self.status = PaymentStatus::Failed,
            PaymentEvent::PaymentExpired {} => self.status = PaymentStatus::Expired,
            PaymentEvent::PaymentRefunded {
                refund_id,
                total_refunded_kzt,
                ..
            } => {
                self.refund_ids.push(refund_id);
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
