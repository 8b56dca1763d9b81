//! Kaspi's biller notifications, already parsed at the edge ([`kaspi::biller::Notification`]).
//!
//! Notifications with the same `txn_id` take turns inside the process (striped locks), and a
//! final answer is stored in `kaspi_notifications`: a repeat gets the stored answer, whatever
//! happened since. Transient answers (4 busy, 5 for a failure here) are not stored, so Kaspi's
//! retry is decided afresh. Across processes the Payment aggregate is the guard: the same
//! `txn_id` twice is a no-op, another one is "already paid".
use super::{payment_err, payment_id_for};
use crate::executor::CommandError;
use crate::metadata::{CommandMeta, InputSource};
use crate::service::{Commands, FlowError};
use cqrs_es::Aggregate;
use domain::booking::BookingStatus;
use domain::payment::{Payment, PaymentCommand, PaymentError, PaymentSource};
use kaspi::biller::{Answer, Command, Notification, ResultCode};
use store::with_pool;

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

/// An answer about `payment`: it names the amount due and our id for the payment.
fn about(n: &Notification, result: ResultCode, comment: &str, payment: &Payment) -> Answer {
    Answer::new(&n.txn_id, result, comment)
        .with_payment(payment.amount_kzt, payment.provider_txn_id())
}

impl Commands {
    /// Answers one biller notification. Final answers are kept: a repeated `txn_id` gets the
    /// first answer again, whatever happened since.
    #[tracing::instrument(skip_all, fields(command = n.command.as_str(), txn_id = %n.txn_id), err(level = "debug"))]
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
            .bind(n.command.as_str())
            .bind(&n.txn_id)
            .bind(&n.account)
            .bind(n.sum.0.to_string())
            .bind(sqlx::types::Json(&decided.answer))
            .execute(pool)
            .await?;
        });
        // Another process may have answered the same txn_id first: everyone gives that answer.
        Ok(self.recorded_answer(&n).await?.unwrap_or(decided.answer))
    }

    /// The answer kept for this `txn_id`, if any. A repeat that names another account or sum
    /// still gets it (the protocol wants one answer per transaction), but it is not a retry
    /// Kaspi would send: it is logged and counted
    /// (`zhilego_kaspi_replay_mismatches_total`) for someone to look at.
    async fn recorded_answer(&self, n: &Notification) -> Result<Option<Answer>, FlowError> {
        type Row = (sqlx::types::Json<Answer>, String, String);
        let found: Option<Row> = with_pool!(&self.db, pool => {
            sqlx::query_as(
                "SELECT answer, account, sum_text FROM kaspi_notifications \
                 WHERE command = $1 AND txn_id = $2",
            )
            .bind(n.command.as_str())
            .bind(&n.txn_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(found.map(|(answer, account, sum_text)| {
            let sum = n.sum.0.to_string();
            if account != n.account || sum_text != sum {
                metrics::counter!("zhilego_kaspi_replay_mismatches_total",
                    "command" => n.command.as_str())
                .increment(1);
                tracing::warn!(
                    first_account = %account, account = %n.account,
                    first_sum = %sum_text, sum = %sum,
                    "a repeated Kaspi txn_id names another account or sum; answered as the first"
                );
            }
            answer.0
        }))
    }

    async fn decide(&self, n: &Notification) -> Decided {
        match self.decide_inner(n).await {
            Ok(d) => d,
            Err(FlowError::Busy) => Decided::transient(Answer::new(
                &n.txn_id,
                ResultCode::InProgress,
                "busy, try again",
            )),
            Err(e) => {
                tracing::error!(error = %e, "a Kaspi notification failed");
                metrics::counter!("zhilego_payment_failures_total", "kind" => "notification")
                    .increment(1);
                Decided::transient(Answer::new(
                    &n.txn_id,
                    ResultCode::Error,
                    "temporary error, try again",
                ))
            }
        }
    }

    async fn decide_inner(&self, n: &Notification) -> Result<Decided, FlowError> {
        let pay = n.command == Command::Pay;
        let not_found = || {
            Decided::final_(Answer::new(
                &n.txn_id,
                ResultCode::NotFound,
                "account not found",
            ))
        };
        let Some(booking_id) = self.booking_for_account(&n.account).await? else {
            return Ok(not_found());
        };
        let payment_id = payment_id_for(booking_id);
        let Some(payment) = self.payment(payment_id).await? else {
            return Ok(not_found());
        };
        if payment.status.is_paid() {
            // The same Kaspi payment told again (or already found by reconciliation) is fine;
            // a second payment for the booking is refused, so Kaspi does not take it.
            let same = payment.txn_id.as_deref() == Some(n.txn_id.as_str())
                || payment.source == Some(PaymentSource::Reconciliation);
            return Ok(Decided::final_(if pay && same {
                about(n, ResultCode::Ok, "paid", &payment)
            } else {
                about(n, ResultCode::AlreadyPaid, "already paid", &payment)
            }));
        }
        let cancelled = self
            .booking(booking_id)
            .await?
            .is_some_and(|b| b.status == BookingStatus::Cancelled);
        if cancelled {
            return Ok(Decided::final_(about(
                n,
                ResultCode::Cancelled,
                "the booking was cancelled",
                &payment,
            )));
        }
        if n.sum != payment.amount_kzt {
            metrics::counter!("zhilego_payment_mismatches_total", "kind" => "callback_sum")
                .increment(1);
            tracing::warn!(%payment_id, sum = n.sum.0, due = payment.amount_kzt.0, "Kaspi notified a sum that does not match the amount due; refused");
            if pay {
                // Recorded on the payment, which stays as it was.
                let record = PaymentCommand::RecordSuccess {
                    txn_id: n.txn_id.clone(),
                    amount_kzt: n.sum,
                    source: PaymentSource::Callback,
                };
                let meta = self.kaspi_meta(payment_id, &n.txn_id).await;
                self.on_payment(payment_id, record, &meta).await?;
            }
            let comment = format!(
                "sum {} does not match the amount due {}",
                n.sum.0, payment.amount_kzt.0
            );
            return Ok(Decided::final_(about(
                n,
                ResultCode::Error,
                &comment,
                &payment,
            )));
        }
        if !pay {
            return Ok(Decided::final_(about(n, ResultCode::Ok, "ok", &payment)));
        }
        let record = PaymentCommand::RecordSuccess {
            txn_id: n.txn_id.clone(),
            amount_kzt: n.sum,
            source: PaymentSource::Callback,
        };
        let meta = self.kaspi_meta(payment_id, &n.txn_id).await;
        let done = match self.payments.execute(payment_id, record, &meta).await {
            Ok(done) => done,
            Err(CommandError::Rejected(PaymentError::AlreadyPaid)) => {
                let p = self.payment(payment_id).await?.unwrap_or(payment);
                return Ok(Decided::final_(about(
                    n,
                    ResultCode::AlreadyPaid,
                    "already paid",
                    &p,
                )));
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
        Ok(Decided::final_(about(
            n,
            ResultCode::Ok,
            "paid",
            &done.aggregate,
        )))
    }
}

impl Commands {
    /// A notification continues the work that asked for the payment (its correlation, so the
    /// audit shows one tree from the guest's request to the confirmation), with Kaspi's
    /// `txn_id` as the outside input that came in.
    async fn kaspi_meta(&self, payment_id: uuid::Uuid, txn_id: &str) -> CommandMeta {
        let meta = CommandMeta::system().with_input(InputSource::KaspiTxn, txn_id);
        match store::history::aggregate_events(&self.db, Payment::TYPE, &payment_id.to_string())
            .await
        {
            Ok(events) => match events
                .first()
                .and_then(|e| domain::Metadata::decode(&e.metadata).ok())
            {
                Some(first) => meta.in_correlation(first.correlation_id),
                None => meta,
            },
            Err(e) => {
                tracing::warn!(%payment_id, error = %e, "the payment's correlation did not load; the notification starts its own");
                meta
            }
        }
    }
}
