//! The cap on a guest's unpaid holds (`ZHILEGO_MAX_HOLDS_PER_GUEST`): one guest may not
//! hold a calendar's nights by booking and never paying, renewing every 15 minutes.
//!
//! Holds are counted on the bookings read model: the guest's bookings still `held` whose hold
//! has not run out. That read model trails the store by the projection's lag, so this process
//! remembers the position of the last hold it made for each guest and waits (briefly) for the
//! read model to have it before counting: a guest booking quickly through one process is
//! counted exactly. Across processes nothing is locked: two processes booking for the same
//! guest at the same instant may each count the other's hold as not there yet, letting one
//! extra hold through per process; the read model has it a few milliseconds later, and the
//! next booking is refused. A hold freed by payment or cancellation frees its slot once the
//! read model has the change.
use crate::service::FlowError;
use chrono::Utc;
use dashmap::DashMap;
use projections::{BookingsProjection, Projector};
use std::time::{Duration, Instant};
use store::Database;
use uuid::Uuid;

/// How long a booking waits for the read model to have the guest's last hold.
const CATCH_UP: Duration = Duration::from_secs(2);
/// A remembered hold older than this is in the read model long since (it lags by
/// milliseconds); past [`REMEMBERED`] guests, older ones are forgotten.
const RECENT: Duration = Duration::from_secs(60);
const REMEMBERED: usize = 10_000;

/// The cap and what it counts on.
pub struct HoldCap {
    max: u32,
    read_db: Database,
    bookings: Projector<BookingsProjection>,
    /// Guest → position of the last hold this process made for them, and when.
    last_hold: DashMap<Uuid, (i64, Instant)>,
}

impl HoldCap {
    /// At most `max` unpaid holds per guest (0: no cap), counted on the bookings read model in
    /// `read_db` (built from the event store `store`).
    pub fn new(max: u32, store: Database, read_db: Database) -> HoldCap {
        HoldCap {
            max,
            bookings: Projector::new(store, read_db.clone()),
            read_db,
            last_hold: DashMap::new(),
        }
    }

    /// Refuses with [`FlowError::TooManyHolds`] when the guest already holds `max` unpaid
    /// bookings.
    pub(crate) async fn check(&self, guest: Uuid) -> Result<(), FlowError> {
        if self.max == 0 {
            return Ok(());
        }
        let last = self.last_hold.get(&guest).map(|p| p.0);
        if let Some(position) = last {
            let reached = self
                .bookings
                .wait_for(&self.read_db, position, CATCH_UP)
                .await
                .map_err(|e| FlowError::Store(e.to_string()))?;
            if !reached {
                // Counting without the last hold could let one more through: the guest is
                // asked to try again, as for any read model that is behind.
                return Err(FlowError::Busy);
            }
            // From now on the read model counts it.
            self.last_hold.remove_if(&guest, |_, (p, _)| *p == position);
        }
        let held = BookingsProjection::unpaid_holds(&self.read_db, guest, Utc::now())
            .await
            .map_err(|e| FlowError::Store(e.to_string()))?;
        if held >= i64::from(self.max) {
            metrics::counter!("zhilego_bookings_refused_total", "reason" => "too_many_holds")
                .increment(1);
            return Err(FlowError::TooManyHolds { max: self.max });
        }
        Ok(())
    }

    /// Remembers the position of a hold just made for the guest.
    pub(crate) fn held(&self, guest: Uuid, position: i64) {
        if self.max == 0 {
            return;
        }
        if self.last_hold.len() >= REMEMBERED {
            self.last_hold.retain(|_, (_, at)| at.elapsed() < RECENT);
        }
        let mut last = self
            .last_hold
            .entry(guest)
            .or_insert((position, Instant::now()));
        if last.0 < position {
            *last = (position, Instant::now());
        }
    }
}
