//! The cap on a guest's unpaid holds (`ZHILEGO_MAX_HOLDS_PER_GUEST`): one guest may not
//! hold a calendar's nights by booking and never paying, renewing every 15 minutes.
//!
//! Holds are counted on the bookings read model: the guest's bookings still `held` whose hold
//! has not run out. That read model trails the store by the projection's lag, so this process
//! also remembers the holds it made itself for a minute (or until they run out, if sooner): one
//! the read model does not have yet counts as held, one it has counts as the read model says
//! (paid and cancelled ones free their slot as soon as the read model has the change). A
//! projection stalled for longer than that minute undercounts. A guest booking through one
//! process is so counted exactly, without waiting. Across processes nothing is locked: two
//! processes booking for the same guest at the same instant may each miss the other's newest
//! hold, letting one extra hold through per process; the read model has it a few milliseconds
//! later, and the next booking is refused.
use crate::service::FlowError;
use chrono::{DateTime, Utc};
use dashmap::DashMap;
use projections::BookingsProjection;
use store::Database;
use uuid::Uuid;

/// Past this many guests with remembered holds, the remembered holds that ended are forgotten
/// (at most once a second, so a busy process does not scan the map per booking).
const REMEMBERED: usize = 10_000;
/// How long a hold made here is counted from memory: the read model has it long before.
const REMEMBER_FOR_SECONDS: i64 = 60;

/// The cap and what it counts on.
pub struct HoldCap {
    max: u32,
    read_db: Database,
    /// Guest → the holds this process made for them (booking, when to forget it).
    recent: DashMap<Uuid, Vec<(Uuid, DateTime<Utc>)>>,
    /// When the remembered holds were last swept.
    swept: std::sync::Mutex<DateTime<Utc>>,
}

impl HoldCap {
    /// At most `max` unpaid holds per guest (0: no cap), counted on the bookings read model in
    /// `read_db`.
    pub fn new(max: u32, read_db: Database) -> HoldCap {
        HoldCap {
            max,
            read_db,
            recent: DashMap::new(),
            swept: std::sync::Mutex::new(Utc::now()),
        }
    }

    /// Refuses with [`FlowError::TooManyHolds`] when the guest already holds `max` unpaid
    /// bookings.
    pub(crate) async fn check(&self, guest: Uuid) -> Result<(), FlowError> {
        if self.max == 0 {
            return Ok(());
        }
        let now = Utc::now();
        let known = BookingsProjection::running_holds(&self.read_db, guest, now)
            .await
            .map_err(crate::service::store_err)?;
        let mut held = known.iter().filter(|(_, held)| *held).count();
        if let Some(mut mine) = self.recent.get_mut(&guest) {
            mine.retain(|(_, forget)| *forget > now);
            held += mine
                .iter()
                .filter(|(booking, _)| !known.iter().any(|(id, _)| id == booking))
                .count();
        }
        if held >= self.max as usize {
            metrics::counter!("zhilego_bookings_refused_total", "reason" => "too_many_holds")
                .increment(1);
            return Err(FlowError::TooManyHolds { max: self.max });
        }
        Ok(())
    }

    /// Remembers a hold just made for the guest, ending at `until`.
    pub(crate) fn held(&self, guest: Uuid, booking: Uuid, until: DateTime<Utc>) {
        if self.max == 0 {
            return;
        }
        let now = Utc::now();
        if self.recent.len() >= REMEMBERED {
            let due = {
                let mut swept = self.swept.lock().expect("sweep time");
                let due = now - *swept >= chrono::Duration::seconds(1);
                if due {
                    *swept = now;
                }
                due
            };
            if due {
                self.recent.retain(|_, holds| {
                    holds.retain(|(_, forget)| *forget > now);
                    !holds.is_empty()
                });
            }
        }
        let forget = until.min(now + chrono::Duration::seconds(REMEMBER_FOR_SECONDS));
        self.recent
            .entry(guest)
            .or_default()
            .push((booking, forget));
    }
}
