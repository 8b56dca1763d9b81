//! Availability: what each listing offers (city, guests, stay limits, prices) and what is taken
//! on its calendar — held, booked and blocked spans; every other night is free. Answers "free
//! apartments in this city for these dates", day-by-day calendars and the iCal feed.
use crate::bookings::micros;
use crate::event::Decoded;
use crate::projector::Projection;
use crate::table::{col, fetch_all, nullable, Arg, Kind, Row, Table};
use crate::working_set;
use chrono::{DateTime, NaiveDate, Utc};
use domain::booking::BookingEvent;
use domain::listing::{ListingDetails, ListingEvent};
use domain::pricing::PriceRules;
use domain::values::{DateRange, Location};
use domain::Event;
use serde::Serialize;
use store::{Database, StoreError};
use uuid::Uuid;

/// What a listing offers, as search needs it.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct OfferRow {
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub title: String,
    pub city: String,
    /// `city` folded for matching (trimmed, lower case).
    pub city_key: String,
    pub status: String,
    pub max_guests: i64,
    pub nightly_price_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub min_nights: i64,
    pub max_nights: i64,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// The listing's price rules (JSON), for night-by-night prices.
    pub pricing: String,
    /// Sum and number of guests' ratings (1–5).
    pub rating_sum: i64,
    pub reviews_count: i64,
    pub position: i64,
}

static OFFERS: Table = Table {
    name: "availability_listings",
    columns: &[
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("title", Kind::Text),
        col("city", Kind::Text),
        col("city_key", Kind::Text),
        col("status", Kind::Text),
        col("max_guests", Kind::Int),
        col("nightly_price_kzt", Kind::Int),
        col("cleaning_fee_kzt", Kind::Int),
        col("min_nights", Kind::Int),
        col("max_nights", Kind::Int),
        nullable("lat", Kind::Float),
        nullable("lon", Kind::Float),
        col("pricing", Kind::Text),
        col("rating_sum", Kind::Int),
        col("reviews_count", Kind::Int),
        col("position", Kind::Int),
    ],
    indexes: &["city_key, status, listing_id", "lat, lon"],
};

impl Row for OfferRow {
    const TABLE: &'static Table = &OFFERS;
    fn key(&self) -> Uuid {
        self.listing_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.listing_id),
            Arg::Id(self.host_id),
            Arg::Text(self.title.clone()),
            Arg::Text(self.city.clone()),
            Arg::Text(self.city_key.clone()),
            Arg::Text(self.status.clone()),
            Arg::Int(self.max_guests),
            Arg::Int(self.nightly_price_kzt),
            Arg::Int(self.cleaning_fee_kzt),
            Arg::Int(self.min_nights),
            Arg::Int(self.max_nights),
            Arg::OptFloat(self.lat),
            Arg::OptFloat(self.lon),
            Arg::Text(self.pricing.clone()),
            Arg::Int(self.rating_sum),
            Arg::Int(self.reviews_count),
            Arg::Int(self.position),
        ]
    }
}

impl OfferRow {
    pub fn price_rules(&self) -> PriceRules {
        serde_json::from_str(&self.pricing).unwrap_or_default()
    }

    pub fn location(&self) -> Option<Location> {
        Location::parse(self.lat?, self.lon?).ok()
    }

    fn describe(&mut self, details: &ListingDetails) {
        self.title = details.title.clone();
        self.city = details.city.clone();
        self.city_key = city_key(&details.city);
        self.max_guests = i64::from(details.max_guests);
        self.nightly_price_kzt = details.pricing.nightly_price_kzt.value();
        self.cleaning_fee_kzt = details.pricing.cleaning_fee_kzt.value();
        self.min_nights = i64::from(details.min_nights);
        self.max_nights = i64::from(details.max_nights);
        self.lat = details.location.map(|l| l.lat());
        self.lon = details.location.map(|l| l.lon());
        self.pricing = serde_json::to_string(&details.pricing).unwrap_or_default();
    }
}

/// How search matches a city: trimmed and case-folded.
pub fn city_key(city: &str) -> String {
    city.trim().to_lowercase()
}

/// A taken span of a listing's calendar: a reservation (by booking) or a host block.
#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct SpanRow {
    /// The booking or the block.
    pub span_id: Uuid,
    pub listing_id: Uuid,
    /// `held`, `booked` or `blocked`.
    pub status: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub hold_expires_at: Option<DateTime<Utc>>,
    /// When the span last changed (the iCal `DTSTAMP`).
    pub updated_at: DateTime<Utc>,
}

static SPANS: Table = Table {
    name: "availability_spans",
    columns: &[
        col("span_id", Kind::Id),
        col("listing_id", Kind::Id),
        col("status", Kind::Text),
        col("check_in", Kind::Date),
        col("check_out", Kind::Date),
        nullable("hold_expires_at", Kind::Time),
        col("updated_at", Kind::Time),
    ],
    indexes: &["listing_id, check_in"],
};

impl Row for SpanRow {
    const TABLE: &'static Table = &SPANS;
    fn key(&self) -> Uuid {
        self.span_id
    }
    fn values(&self) -> Vec<Arg> {
        vec![
            Arg::Id(self.span_id),
            Arg::Id(self.listing_id),
            Arg::Text(self.status.clone()),
            Arg::Date(self.check_in),
            Arg::Date(self.check_out),
            Arg::OptTime(self.hold_expires_at),
            Arg::Time(self.updated_at),
        ]
    }
}

working_set!(AvailabilitySet {
    offers: OfferRow,
    spans: SpanRow,
});

pub struct AvailabilityProjection;

impl Projection for AvailabilityProjection {
    type Set = AvailabilitySet;
    const NAME: &'static str = "availability";
    const VERSION: i64 = 3;
    const TABLES: &'static [&'static Table] = &[&OFFERS, &SPANS];

    fn want(set: &mut AvailabilitySet, e: &Decoded) {
        if let Some((listing, _)) = reviewed_listing(e) {
            set.offers.want(listing);
            return;
        }
        let Event::Listing(event) = &e.event else {
            return;
        };
        match event {
            ListingEvent::ListingCreated { .. }
            | ListingEvent::ListingUpdated { .. }
            | ListingEvent::ListingStatusChanged { .. } => set.offers.want(e.aggregate_id),
            _ => {
                if let Some(span) = span_of(event) {
                    set.spans.want(span);
                }
            }
        }
    }

    fn apply(set: &mut AvailabilitySet, e: &Decoded) {
        if let Some((listing, rating)) = reviewed_listing(e) {
            set.offers.update(listing, |row| {
                row.rating_sum += rating;
                row.reviews_count += 1;
            });
            return;
        }
        let Event::Listing(event) = &e.event else {
            return;
        };
        let id = e.aggregate_id;
        match event {
            ListingEvent::ListingCreated {
                host_id,
                details,
                status,
                ..
            } => {
                let mut row = OfferRow {
                    listing_id: id,
                    host_id: *host_id,
                    title: String::new(),
                    city: String::new(),
                    city_key: String::new(),
                    status: status.as_str().to_string(),
                    max_guests: 0,
                    nightly_price_kzt: 0,
                    cleaning_fee_kzt: 0,
                    min_nights: 0,
                    max_nights: 0,
                    lat: None,
                    lon: None,
                    pricing: String::new(),
                    rating_sum: 0,
                    reviews_count: 0,
                    position: e.position,
                };
                row.describe(details);
                set.offers.put(row);
            }
            ListingEvent::ListingUpdated { details } => {
                set.offers.update(id, |row| {
                    row.describe(details);
                    row.position = e.position;
                });
            }
            ListingEvent::ListingStatusChanged { status } => {
                set.offers.update(id, |row| {
                    row.status = status.as_str().to_string();
                    row.position = e.position;
                });
            }
            ListingEvent::DatesReserved {
                booking_id,
                range,
                hold_expires_at,
                ..
            } => set.spans.put(SpanRow {
                span_id: *booking_id,
                listing_id: id,
                status: "held".to_string(),
                check_in: range.check_in(),
                check_out: range.check_out(),
                hold_expires_at: Some(micros(*hold_expires_at)),
                updated_at: e.recorded_at,
            }),
            ListingEvent::DatesBlocked {
                block_id, range, ..
            } => set.spans.put(SpanRow {
                span_id: *block_id,
                listing_id: id,
                status: "blocked".to_string(),
                check_in: range.check_in(),
                check_out: range.check_out(),
                hold_expires_at: None,
                updated_at: e.recorded_at,
            }),
            ListingEvent::ReservationConfirmed { booking_id } => {
                set.spans.update(*booking_id, |row| {
                    row.status = "booked".to_string();
                    row.hold_expires_at = None;
                    row.updated_at = e.recorded_at;
                });
            }
            ListingEvent::DatesReleased { booking_id, .. } => set.spans.remove(*booking_id),
            ListingEvent::DatesUnblocked { block_id, .. } => set.spans.remove(*block_id),
            ListingEvent::HoldExtended {
                booking_id,
                hold_expires_at,
            } => {
                set.spans.update(*booking_id, |row| {
                    row.hold_expires_at = Some(micros(*hold_expires_at));
                    row.updated_at = e.recorded_at;
                });
            }
            ListingEvent::AccessUpdated { .. }
            | ListingEvent::ListingModerated { .. }
            | ListingEvent::CalendarFeedAdded { .. }
            | ListingEvent::CalendarFeedRemoved { .. }
            | ListingEvent::FeedConflictsChanged { .. } => {}
        }
    }
}

/// The span (booking or block) a calendar event is about; `None` for the listing's own events.
pub(crate) fn span_of(event: &ListingEvent) -> Option<Uuid> {
    match event {
        ListingEvent::DatesReserved { booking_id, .. }
        | ListingEvent::ReservationConfirmed { booking_id }
        | ListingEvent::DatesReleased { booking_id, .. }
        | ListingEvent::HoldExtended { booking_id, .. } => Some(*booking_id),
        ListingEvent::DatesBlocked { block_id, .. }
        | ListingEvent::DatesUnblocked { block_id, .. } => Some(*block_id),
        ListingEvent::ListingCreated { .. }
        | ListingEvent::ListingUpdated { .. }
        | ListingEvent::ListingStatusChanged { .. }
        | ListingEvent::AccessUpdated { .. }
        | ListingEvent::ListingModerated { .. }
        | ListingEvent::CalendarFeedAdded { .. }
        | ListingEvent::CalendarFeedRemoved { .. }
        | ListingEvent::FeedConflictsChanged { .. } => None,
    }
}

/// An availability search.
#[derive(Clone, Debug, Default)]
pub struct StayQuery {
    pub city: String,
    pub range: Option<DateRange>,
    pub guests: u32,
    /// At most this base nightly price.
    pub max_price_kzt: Option<i64>,
    pub near: Option<(Location, f64)>,
    /// Listings after this id (the cursor).
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// A listing free for the whole stay, with what the stay costs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Offer {
    pub listing: OfferRow,
    pub nights: u32,
    pub total_kzt: i64,
    pub distance_km: Option<f64>,
}

/// The listing and rating of a `BookingReviewed` event.
pub(crate) fn reviewed_listing(e: &Decoded) -> Option<(Uuid, i64)> {
    match &e.event {
        Event::Booking(BookingEvent::BookingReviewed {
            listing_id, rating, ..
        }) => Some((*listing_id, i64::from(*rating))),
        _ => None,
    }
}

/// An average of ratings to one decimal; `None` without any.
pub fn average_rating(sum: i64, count: i64) -> Option<f64> {
    (count > 0).then(|| (sum as f64 / count as f64 * 10.0).round() / 10.0)
}

impl OfferRow {
    /// The average rating, to one decimal; `None` before the first review.
    pub fn rating(&self) -> Option<f64> {
        average_rating(self.rating_sum, self.reviews_count)
    }
}

/// The latitude/longitude box around a circle, for an index-friendly first filter.
pub fn bounding_box(center: &Location, radius_km: f64) -> (f64, f64, f64, f64) {
    let dlat = radius_km / 111.32;
    let cos = center.lat().to_radians().cos().abs().max(1e-6);
    let dlon = (radius_km / (111.32 * cos)).min(180.0);
    (
        center.lat() - dlat,
        center.lat() + dlat,
        center.lon() - dlon,
        center.lon() + dlon,
    )
}

/// Queries on the availability read model.
impl AvailabilityProjection {
    pub async fn offer(db: &Database, listing_id: Uuid) -> Result<Option<OfferRow>, StoreError> {
        let sql = format!("{} WHERE listing_id = $1", OFFERS.select());
        Ok(fetch_all(db, &sql, &[Arg::Id(listing_id)]).await?.pop())
    }

    /// The listing's taken spans that share a night with `[from, to)`, by check-in.
    pub async fn spans(
        db: &Database,
        listing_id: Uuid,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<SpanRow>, StoreError> {
        let sql = format!(
            "{} WHERE listing_id = $1 AND check_in < $2 AND check_out > $3 ORDER BY check_in, span_id",
            SPANS.select()
        );
        fetch_all(
            db,
            &sql,
            &[Arg::Id(listing_id), Arg::Date(to), Arg::Date(from)],
        )
        .await
    }
}

/// One night of a calendar.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CalendarDay {
    pub date: NaiveDate,
    /// `free`, `held`, `booked` or `blocked`.
    pub status: &'static str,
    pub price_kzt: i64,
}

/// The nights `[from, to)` of a listing, given its price rules and taken spans.
pub fn calendar(
    rules: &PriceRules,
    spans: &[SpanRow],
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<CalendarDay> {
    from.iter_days()
        .take_while(|d| *d < to)
        .map(|date| {
            let status = spans
                .iter()
                .find(|s| s.check_in <= date && date < s.check_out)
                .map(|s| match s.status.as_str() {
                    "held" => "held",
                    "booked" => "booked",
                    _ => "blocked",
                })
                .unwrap_or("free");
            CalendarDay {
                date,
                status,
                price_kzt: rules.price_for(date).value(),
            }
        })
        .collect()
}
