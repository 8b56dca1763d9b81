//! The payment keeper: the background half of the payment process manager.
//!
//! Every tick it asks the bookings read model for payments that need attention and handles
//! each with idempotent steps, so any number of processes may run it at once:
//! - pending with a Kaspi link for longer than `reconcile_after` (the notification may never
//!   have come) → Kaspi is asked, and what it says is recorded and settled (reconciliation);
//! - a payment and its booking that disagree (paid but the booking still held or expired, a
//!   cancellation's refund not decided, a pending link for a booking that is over) → settled;
//! - refunds decided but not returned (Kaspi was away) → returned.
//!
//! Each pass's findings are kept as a [`ReconciliationReport`] (served to admins); mismatches
//! are also counted (`zhilego_payment_mismatches_total`) and logged.
use crate::payments::Reconciled;
use crate::service::Commands;
use crate::CommandMeta;
use chrono::{DateTime, Utc};
use projections::{BookingsProjection, PaymentNeed};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What one pass found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReconciliationReport {
    pub ran_at: Option<DateTime<Utc>>,
    /// Payments looked at.
    pub checked: usize,
    /// Pending payments Kaspi was asked about, with its answer and what was done.
    pub reconciled: Vec<Reconciled>,
    /// Payments whose Kaspi amount differed from ours.
    pub mismatches: Vec<Reconciled>,
    /// Steps that failed (Kaspi or the store away); retried next pass.
    pub errors: Vec<String>,
}

/// What the keeper found lately: its last pass, and the last findings of any pass.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KeeperFindings {
    pub last_pass: ReconciliationReport,
    /// The latest reconciliations that did something or found a mismatch (newest last, at
    /// most 100).
    pub recent: Vec<Reconciled>,
}

pub struct PaymentKeeper {
    commands: Arc<Commands>,
    read: store::Database,
    reconcile_after: Duration,
    last: Mutex<KeeperFindings>,
    /// One pass at a time in this process (the timer and an admin's request).
    running: tokio::sync::Mutex<()>,
}

impl PaymentKeeper {
    pub fn new(commands: Arc<Commands>, read: store::Database, reconcile_after: Duration) -> Self {
        PaymentKeeper {
            commands,
            read,
            reconcile_after,
            last: Mutex::new(KeeperFindings::default()),
            running: tokio::sync::Mutex::new(()),
        }
    }

    /// The last pass's report and recent findings.
    pub fn findings(&self) -> KeeperFindings {
        self.last.lock().expect("report lock").clone()
    }

    /// One pass over what is due.
    pub async fn pass(&self) -> Result<ReconciliationReport, store::StoreError> {
        let _one = self.running.lock().await;
        let now = Utc::now();
        let before = now - chrono::Duration::from_std(self.reconcile_after).unwrap_or_default();
        let due = BookingsProjection::due_payments(&self.read, before, 100).await?;
        let mut report = ReconciliationReport {
            ran_at: Some(now),
            checked: due.len(),
            ..ReconciliationReport::default()
        };
        for p in due {
            let outcome = if p.need == PaymentNeed::Reconcile {
                match self.commands.reconcile(p.payment_id).await {
                    Ok(r) => {
                        if r.mismatch.is_some() {
                            report.mismatches.push(r.clone());
                        }
                        report.reconciled.push(r);
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            } else {
                self.commands
                    .settle(p.payment_id, &CommandMeta::system())
                    .await
            };
            if let Err(e) = outcome {
                tracing::warn!(payment_id = %p.payment_id, error = %e, "settling a payment failed; retrying next pass");
                report.errors.push(format!("{}: {e}", p.payment_id));
            }
        }
        metrics::gauge!("zhilego_payments_due").set(report.checked as f64);
        {
            let mut last = self.last.lock().expect("report lock");
            last.recent.extend(
                report
                    .reconciled
                    .iter()
                    .filter(|r| r.action != "none" || r.mismatch.is_some())
                    .cloned(),
            );
            let excess = last.recent.len().saturating_sub(100);
            last.recent.drain(..excess);
            last.last_pass = report.clone();
        }
        Ok(report)
    }

    /// Passes every `interval` until `shutdown` resolves.
    pub async fn run(&self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.pass().await {
                Ok(r) if !r.reconciled.is_empty() || !r.errors.is_empty() => tracing::info!(
                    checked = r.checked,
                    reconciled = r.reconciled.len(),
                    mismatches = r.mismatches.len(),
                    errors = r.errors.len(),
                    "payment keeper pass"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "payment keeper pass failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
