//! The reservation sweeper: keeps listings' calendars honest after the fact.
//!
//! Every tick it asks the bookings read model for live reservations that need attention and
//! settles each one with idempotent commands, so any number of processes may run it at once:
//! - a hold that ran out → the booking expires and its nights are freed;
//! - a booking that is cancelled or expired but still holds nights (its release failed) → freed;
//! - nights reserved for a booking that was never opened (the process died between the two
//!   steps) → freed, once the event store confirms the booking does not exist;
//! - a paid booking whose nights are still only held → the nights are confirmed;
//! - a confirmed stay on its first day → checked in; a checked-in stay on its departure day →
//!   completed.
use crate::metadata::CommandMeta;
use crate::service::Commands;
use chrono::Utc;
use domain::booking::BookingStatus;
use domain::listing::{ReleaseReason, ReservationState};
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
    pub async fn sweep(&self) -> Result<usize, store::StoreError> {
        let now = Utc::now();
        let orphaned_before =
            now - chrono::Duration::from_std(self.orphan_after).unwrap_or_default();
        let due =
            BookingsProjection::due_reservations(&self.read, now, orphaned_before, 200).await?;
        let mut settled = 0;
        for r in due {
            let meta = CommandMeta::system();
            let reason = match r.booking_status {
                Some(BookingStatus::Held) => {
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
                Some(BookingStatus::Cancelled) => ReleaseReason::Cancelled,
                // A confirmed reservation of an expired booking is a late payment taking its
                // nights again; the payment keeper confirms the booking.
                Some(BookingStatus::Expired) if r.state == ReservationState::Held => {
                    ReleaseReason::Expired
                }
                Some(
                    BookingStatus::Confirmed | BookingStatus::CheckedIn | BookingStatus::Completed,
                ) if r.state == ReservationState::Held => {
                    // Paid, but the confirmation of the nights did not happen.
                    match self
                        .commands
                        .confirm_nights_of(r.listing_id, r.booking_id, &meta)
                        .await
                    {
                        Ok(()) => settled += 1,
                        Err(e) => {
                            tracing::warn!(booking_id = %r.booking_id, error = %e, "confirming nights failed")
                        }
                    }
                    continue;
                }
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
        settled += self.advance_stays().await?;
        Ok(settled)
    }

    /// Confirmed stays check in at check-in time (14:00 local) of their first day; checked-in
    /// stays complete at check-out time (12:00 local) of their departure day.
    async fn advance_stays(&self) -> Result<usize, store::StoreError> {
        let now = Utc::now();
        let hours = |h: u32| chrono::Duration::hours(i64::from(h));
        let checked_in_by = domain::local_date(now - hours(domain::CHECK_IN_HOUR));
        let checked_out_by = domain::local_date(now - hours(domain::CHECK_OUT_HOUR));
        let due =
            BookingsProjection::due_stays(&self.read, checked_in_by, checked_out_by, 200).await?;
        let mut moved = 0;
        for stay in due {
            let day = if stay.status == BookingStatus::Confirmed {
                checked_in_by
            } else {
                checked_out_by
            };
            match self.commands.advance_stay(stay.booking_id, day).await {
                Ok(true) => moved += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(booking_id = %stay.booking_id, error = %e, "moving a stay on failed")
                }
            }
        }
        Ok(moved)
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
