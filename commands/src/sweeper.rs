//! The reservation sweeper: keeps listings' calendars honest after the fact.
//!
//! Every tick it asks the bookings read model for live reservations that need attention and
//! settles each one with idempotent commands, so any number of processes may run it at once:
//! - a hold that ran out → the booking expires and its nights are freed;
//! - a booking that is cancelled or expired but still holds nights (its release failed) → freed;
//! - nights reserved for a booking that was never opened (the process died between the two
//!   steps) → freed, once the event store confirms the booking does not exist.
use crate::metadata::CommandMeta;
use crate::service::Commands;
use chrono::Utc;
use domain::listing::ReleaseReason;
use projections::BookingsProjection;
use std::sync::Arc;
use std::time::Duration;

pub struct ReservationSweeper {
    commands: Arc<Commands>,
    /// The read database with the bookings projection.
    read: store::Database,
    /// A reservation without a booking this old is an interrupted booking flow.
    orphan_after: Duration,
}

impl ReservationSweeper {
    pub fn new(commands: Arc<Commands>, read: store::Database, orphan_after: Duration) -> Self {
        ReservationSweeper {
            commands,
            read,
            orphan_after,
        }
    }

    /// One pass; returns how many reservations were settled.
    pub async fn sweep(&self) -> Result<usize, String> {
        let now = Utc::now();
        let orphaned_before =
            now - chrono::Duration::from_std(self.orphan_after).unwrap_or_default();
        let due = BookingsProjection::due_reservations(&self.read, now, orphaned_before, 200)
            .await
            .map_err(|e| e.to_string())?;
        let mut settled = 0;
        for r in due {
            let meta = CommandMeta::system();
            let reason = match r.booking_status.as_deref() {
                Some("held") => {
                    match self
                        .commands
                        .expire_hold(r.booking_id, r.listing_id, now)
                        .await
                    {
                        Ok(true) => {
                            settled += 1;
                            continue;
                        }
                        Ok(false) => continue,
                        Err(e) => {
                            tracing::warn!(booking_id = %r.booking_id, error = %e, "expiring a hold failed");
                            continue;
                        }
                    }
                }
                Some("cancelled") => ReleaseReason::Cancelled,
                Some("expired") => ReleaseReason::Expired,
                Some(_) => continue,
                None => match self.commands.booking(r.booking_id).await {
                    Ok(None) => ReleaseReason::Compensated,
                    // The booking exists; the read model has not caught up yet.
                    Ok(Some(_)) => continue,
                    Err(e) => {
                        tracing::warn!(booking_id = %r.booking_id, error = %e, "checking a reservation failed");
                        continue;
                    }
                },
            };
            if self
                .commands
                .release(r.listing_id, r.booking_id, reason, &meta)
                .await
                .is_some()
            {
                settled += 1;
            }
        }
        Ok(settled)
    }

    /// Sweeps every `interval` until `shutdown` resolves.
    pub async fn run(&self, interval: Duration, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.sweep().await {
                Ok(n) if n > 0 => tracing::info!(settled = n, "reservation sweep"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "reservation sweep failed"),
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    }
}
