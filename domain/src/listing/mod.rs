//! A host's apartment and its calendar. The calendar (reservations by booking plus host
//! blocks) lives inside the aggregate so that the event store's optimistic concurrency on one
//! listing is what makes double-booking impossible.
mod aggregate;
mod commands;
mod events;
pub mod feeds;
pub mod moderation;
#[cfg(test)]
mod tests;

pub use aggregate::{Block, Listing, ListingError, Reservation, ReservationState};
pub use commands::{ListingChanges, ListingCommand};
pub use events::{ListingEvent, ReleaseReason};
pub use feeds::{CalendarFeed, FeedBooking, FeedConflict, FeedSource, FeedSyncOutcome};
pub use moderation::{Moderation, ModerationAction};

use crate::cancellation::CancellationPolicy;
use crate::pricing::PriceRules;
use crate::values::Location;
use serde::{Deserialize, Serialize};

/// No stay is longer than this, whatever the listing says.
pub const MAX_STAY_NIGHTS: u32 = 90;
/// How far ahead a stay may start.
pub const BOOKING_HORIZON_DAYS: i64 = 730;

/// The last day a stay booked `today` can end on: its check-in at most
/// [`BOOKING_HORIZON_DAYS`] ahead, then the longest stay. Blocks and prices past it can never
/// apply to a booking, so they are refused (a block to year 262142 broke calendars whose
/// dates compare as text).
pub fn horizon_end(today: chrono::NaiveDate) -> chrono::NaiveDate {
    today + chrono::Duration::days(BOOKING_HORIZON_DAYS + i64::from(MAX_STAY_NIGHTS))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListingStatus {
    Draft,
    #[default]
    Active,
    Paused,
    Archived,
}

impl ListingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ListingStatus::Draft => "draft",
            ListingStatus::Active => "active",
            ListingStatus::Paused => "paused",
            ListingStatus::Archived => "archived",
        }
    }
}

/// Everything a host describes about an apartment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ListingDetails {
    pub title: String,
    pub city: String,
    pub address: String,
    pub location: Option<Location>,
    pub rooms: u32,
    pub max_guests: u32,
    pub pricing: PriceRules,
    pub min_nights: u32,
    pub max_nights: u32,
    pub cancellation_policy: CancellationPolicy,
    pub photos: Vec<String>,
    pub amenities: Vec<String>,
}

/// A rule broken by a listing's details: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldProblem {
    pub field: &'static str,
    pub message: &'static str,
}

fn problem(field: &'static str, message: &'static str) -> FieldProblem {
    FieldProblem { field, message }
}

impl ListingDetails {
    /// Checks the rules every listing must meet; the first broken one is returned.
    pub fn validate(&self) -> Result<(), FieldProblem> {
        let text = |s: &str, max: usize| !s.trim().is_empty() && s.chars().count() <= max;
        if !text(&self.title, 200) {
            return Err(problem("title", "must be 1 to 200 characters"));
        }
        if !text(&self.city, 100) {
            return Err(problem("city", "must be 1 to 100 characters"));
        }
        if !text(&self.address, 300) {
            return Err(problem("address", "must be 1 to 300 characters"));
        }
        if self.rooms > 50 {
            return Err(problem("rooms", "must be between 0 and 50"));
        }
        if !(1..=50).contains(&self.max_guests) {
            return Err(problem("max_guests", "must be between 1 and 50"));
        }
        if self.pricing.nightly_price_kzt.0 <= 0 {
            return Err(problem(
                "nightly_price_kzt",
                "must be a positive whole number of tenge",
            ));
        }
        if self.pricing.cleaning_fee_kzt.0 < 0 {
            return Err(problem("cleaning_fee_kzt", "must not be negative"));
        }
        if let Err(field) = self.pricing.validate() {
            return Err(problem(
                field,
                "each weekday (1 = Monday … 7 = Sunday) at most once",
            ));
        }
        if self
            .pricing
            .weekday_prices
            .iter()
            .any(|w| w.nightly_price_kzt.0 <= 0)
            || self
                .pricing
                .range_prices
                .iter()
                .any(|r| r.nightly_price_kzt.0 <= 0)
        {
            return Err(problem("nightly_price_kzt", "overrides must be positive"));
        }
        if !(1..=MAX_STAY_NIGHTS).contains(&self.min_nights) {
            return Err(problem("min_nights", "must be between 1 and 90"));
        }
        if self.max_nights < self.min_nights || self.max_nights > MAX_STAY_NIGHTS {
            return Err(problem("max_nights", "must be between min_nights and 90"));
        }
        if self.photos.len() > 50
            || self
                .photos
                .iter()
                .any(|p| !(p.starts_with("https://") || p.starts_with("http://")) || p.len() > 2000)
        {
            return Err(problem("photos", "must be at most 50 http(s) URLs"));
        }
        if self.amenities.len() > 100 || self.amenities.iter().any(|a| !text(a, 100)) {
            return Err(problem("amenities", "must be at most 100 non-empty names"));
        }
        Ok(())
    }
}
