//! The listings catalogue: every listing as guests browse it — city, prices, guests, rooms,
//! amenities, photos, location — searchable by city, guests, price, amenities and distance.
use crate::availability::{bounding_box, city_key};
use crate::event::Decoded;
use crate::projector::Projection;
use crate::table::{col, fetch_all, nullable, Arg, Kind, Row, Table};
use crate::working_set;
use chrono::{DateTime, Utc};
use domain::listing::{ListingDetails, ListingEvent};
use domain::values::Location;
use domain::Event;
use serde::Serialize;
use store::{Database, StoreError};
use uuid::Uuid;

#[derive(Clone, Debug, PartialEq, Serialize, sqlx::FromRow)]
pub struct CatalogueRow {
    pub listing_id: Uuid,
    pub host_id: Uuid,
    pub title: String,
    pub city: String,
    pub city_key: String,
    pub address: String,
    pub status: String,
    pub rooms: i64,
    pub max_guests: i64,
    pub nightly_price_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub min_nights: i64,
    pub max_nights: i64,
    pub cancellation_policy: String,
    pub lat: Option<f64>,
    pub lon: Option<f64>,
    /// JSON array of photo URLs.
    pub photos: String,
    /// Amenities as `,wifi,parking,` (lower case), so a filter is a `LIKE '%,wifi,%'`.
    pub amenities: String,
    /// Bookings ever held on the listing.
    pub bookings_count: i64,
    /// Sum and number of guests' ratings (1–5).
    pub rating_sum: i64,
    pub reviews_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub position: i64,
}

static CATALOGUE: Table = Table {
    name: "listing_catalogue",
    columns: &[
        col("listing_id", Kind::Id),
        col("host_id", Kind::Id),
        col("title", Kind::Text),
        col("city", Kind::Text),
        col("city_key", Kind::Text),
        col("address", Kind::Text),
        col("status", Kind::Text),
        col("rooms", Kind::Int),
        col("max_guests", Kind::Int),
        col("nightly_price_kzt", Kind::Int),
        col("cleaning_fee_kzt", Kind::Int),
        col("min_nights", Kind::Int),
        col("max_nights", Kind::Int),
        col("cancellation_policy", Kind::Text),
        nullable("lat", Kind::Float),
        nullable("lon", Kind::Float),
        col("photos", Kind::Text),
        col("amenities", Kind::Text),
        col("bookings_count", Kind::Int),
        col("rating_sum", Kind::Int),
        col("reviews_count", Kind::Int),
        col("created_at", Kind::Time),
        col("updated_at", Kind::Time),
        col("position", Kind::Int),
    ],
    indexes: &[
        "city_key, status, listing_id",
        "status, listing_id",
        "lat, lon",
        "host_id",
    ],
};

impl Row for CatalogueRow {
    const TABLE: &'static Table = &CATALOGUE;
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
            Arg::Text(self.address.clone()),
            Arg::Text(self.status.clone()),
            Arg::Int(self.rooms),
            Arg::Int(self.max_guests),
            Arg::Int(self.nightly_price_kzt),
            Arg::Int(self.cleaning_fee_kzt),
            Arg::Int(self.min_nights),
            Arg::Int(self.max_nights),
            Arg::Text(self.cancellation_policy.clone()),
            Arg::OptFloat(self.lat),
            Arg::OptFloat(self.lon),
            Arg::Text(self.photos.clone()),
            Arg::Text(self.amenities.clone()),
            Arg::Int(self.bookings_count),
            Arg::Int(self.rating_sum),
            Arg::Int(self.reviews_count),
            Arg::Time(self.created_at),
            Arg::Time(self.updated_at),
            Arg::Int(self.position),
        ]
    }
}

impl CatalogueRow {
    fn describe(&mut self, d: &ListingDetails) {
        self.title = d.title.clone();
        self.city = d.city.clone();
        self.city_key = city_key(&d.city);
        self.address = d.address.clone();
        self.rooms = i64::from(d.rooms);
        self.max_guests = i64::from(d.max_guests);
        self.nightly_price_kzt = d.pricing.nightly_price_kzt.value();
        self.cleaning_fee_kzt = d.pricing.cleaning_fee_kzt.value();
        self.min_nights = i64::from(d.min_nights);
        self.max_nights = i64::from(d.max_nights);
        self.cancellation_policy = serde_json::to_value(d.cancellation_policy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        self.lat = d.location.map(|l| l.lat());
        self.lon = d.location.map(|l| l.lon());
        self.photos = serde_json::to_string(&d.photos).unwrap_or_else(|_| "[]".to_string());
        self.amenities = amenity_set(&d.amenities);
    }

    /// The average rating, to one decimal; `None` before the first review.
    pub fn rating(&self) -> Option<f64> {
        crate::availability::average_rating(self.rating_sum, self.reviews_count)
    }

    pub fn photos(&self) -> Vec<String> {
        serde_json::from_str(&self.photos).unwrap_or_default()
    }

    pub fn amenities(&self) -> Vec<String> {
        self.amenities
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn location(&self) -> Option<Location> {
        Location::parse(self.lat?, self.lon?).ok()
    }
}

pub(crate) fn amenity_key(a: &str) -> String {
    a.trim().to_lowercase().replace([',', '%', '_'], " ")
}

fn amenity_set(amenities: &[String]) -> String {
    let mut keys: Vec<String> = amenities.iter().map(|a| amenity_key(a)).collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| !k.is_empty());
    if keys.is_empty() {
        String::new()
    } else {
        format!(",{},", keys.join(","))
    }
}

working_set!(CatalogueSet {
    listings: CatalogueRow,
});

pub struct ListingsProjection;

impl Projection for ListingsProjection {
    type Set = CatalogueSet;
    const NAME: &'static str = "listings";
    const VERSION: i64 = 2;
    const TABLES: &'static [&'static Table] = &[&CATALOGUE];

    fn want(set: &mut CatalogueSet, e: &Decoded) {
        if let Event::Listing(_) = e.event {
            set.listings.want(e.aggregate_id);
        } else if let Some((listing, _)) = crate::availability::reviewed_listing(e) {
            set.listings.want(listing);
        }
    }

    fn apply(set: &mut CatalogueSet, e: &Decoded) {
        if let Some((listing, rating)) = crate::availability::reviewed_listing(e) {
            set.listings.update(listing, |row| {
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
                let mut row = CatalogueRow {
                    listing_id: id,
                    host_id: *host_id,
                    title: String::new(),
                    city: String::new(),
                    city_key: String::new(),
                    address: String::new(),
                    status: status.as_str().to_string(),
                    rooms: 0,
                    max_guests: 0,
                    nightly_price_kzt: 0,
                    cleaning_fee_kzt: 0,
                    min_nights: 0,
                    max_nights: 0,
                    cancellation_policy: String::new(),
                    lat: None,
                    lon: None,
                    photos: String::new(),
                    amenities: String::new(),
                    bookings_count: 0,
                    rating_sum: 0,
                    reviews_count: 0,
                    created_at: e.recorded_at,
                    updated_at: e.recorded_at,
                    position: e.position,
                };
                row.describe(details);
                set.listings.put(row);
            }
            ListingEvent::ListingUpdated { details } => {
                set.listings.update(id, |row| {
                    row.describe(details);
                    row.updated_at = e.recorded_at;
                    row.position = e.position;
                });
            }
            ListingEvent::ListingStatusChanged { status } => {
                set.listings.update(id, |row| {
                    row.status = status.as_str().to_string();
                    row.updated_at = e.recorded_at;
                    row.position = e.position;
                });
            }
            ListingEvent::DatesReserved { .. } => {
                set.listings.update(id, |row| row.bookings_count += 1)
            }
            ListingEvent::ReservationConfirmed { .. }
            | ListingEvent::DatesReleased { .. }
            | ListingEvent::DatesBlocked { .. }
            | ListingEvent::DatesUnblocked { .. }
            | ListingEvent::AccessUpdated { .. }
            | ListingEvent::CalendarFeedAdded { .. }
            | ListingEvent::CalendarFeedRemoved { .. }
            | ListingEvent::FeedConflictsChanged { .. }
            | ListingEvent::ListingModerated { .. }
            | ListingEvent::HoldExtended { .. } => {}
        }
    }
}

/// A catalogue search; every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct CatalogueQuery {
    pub city: Option<String>,
    pub guests: Option<u32>,
    pub max_price_kzt: Option<i64>,
    pub amenities: Vec<String>,
    pub near: Option<(Location, f64)>,
    pub after: Option<Uuid>,
    pub limit: usize,
}

/// Queries on the catalogue.
impl ListingsProjection {
    /// Active listings matching every given filter, in id order after the cursor, each with its
    /// distance when `near` is given. Returns the page and the next cursor.
    pub async fn search(
        db: &Database,
        query: &CatalogueQuery,
    ) -> Result<(Vec<(CatalogueRow, Option<f64>)>, Option<Uuid>), StoreError> {
        let bbox = query.near.map(|(c, r)| bounding_box(&c, r));
        let mut sql = format!(
            "{} WHERE status = 'active' \
               AND ($1 IS NULL OR city_key = $1) AND ($2 IS NULL OR max_guests >= $2) \
               AND ($3 IS NULL OR nightly_price_kzt <= $3) \
               AND ($4 IS NULL OR (lat BETWEEN $4 AND $5 AND lon BETWEEN $6 AND $7)) \
               AND ($8 IS NULL OR listing_id > $8)",
            CATALOGUE.select()
        );
        let amenities: Vec<String> = query.amenities.iter().map(|a| amenity_key(a)).collect();
        for i in 0..amenities.len() {
            sql.push_str(&format!(" AND amenities LIKE ${}", 10 + i));
        }
        sql.push_str(" ORDER BY listing_id LIMIT $9");
        let page = query.limit.max(1);
        let mut found = Vec::new();
        let mut after = query.after;
        loop {
            let mut args = vec![
                Arg::OptText(query.city.as_deref().map(city_key)),
                Arg::OptInt(query.guests.map(i64::from)),
                Arg::OptInt(query.max_price_kzt),
                Arg::OptFloat(bbox.map(|b| b.0)),
                Arg::OptFloat(bbox.map(|b| b.1)),
                Arg::OptFloat(bbox.map(|b| b.2)),
                Arg::OptFloat(bbox.map(|b| b.3)),
                Arg::OptId(after),
                Arg::Int((page + 1) as i64),
            ];
            args.extend(amenities.iter().map(|a| Arg::Text(format!("%,{a},%"))));
            let rows: Vec<CatalogueRow> = fetch_all(db, &sql, &args).await?;
            let exhausted = rows.len() <= page;
            let taken = rows.len().min(page);
            for (i, row) in rows.into_iter().take(page).enumerate() {
                after = Some(row.listing_id);
                let distance = match (query.near, row.location()) {
                    (Some((center, radius)), Some(at)) => {
                        let d = center.distance_km(&at);
                        if d > radius {
                            continue;
                        }
                        Some(d)
                    }
                    (Some(_), None) => continue,
                    _ => None,
                };
                found.push((row, distance));
                if found.len() == page {
                    let last = exhausted && i + 1 == taken;
                    return Ok((found, if last { None } else { after }));
                }
            }
            if exhausted {
                return Ok((found, None));
            }
        }
    }
}
