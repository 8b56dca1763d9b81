//! Finding apartments: free listings for a stay (`GET /availability`) and the catalogue
//! (`GET /listings`). Both read the in-memory search index (`projections::SearchIndex`) and
//! accept `min_position`.
use crate::error::{ApiError, Problem};
use crate::extract::ValidQuery;
use crate::routes::listings::LocationBody;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::NaiveDate;
use domain::listing::MAX_STAY_NIGHTS;
use domain::{local_date, DateRange, Location};
use projections::{
    AvailabilityProjection, CatalogueQuery, ListingsProjection, Projection, StayQuery,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(availability))
        .routes(routes!(search_listings))
}

/// The largest search radius.
const MAX_RADIUS_KM: f64 = 500.0;
const DEFAULT_RADIUS_KM: f64 = 10.0;

fn page_limit(limit: Option<i64>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    Ok(limit as usize)
}

/// `near=lat,lon` and `radius_km` as a circle.
fn circle(near: Option<&str>, radius_km: Option<f64>) -> Result<Option<(Location, f64)>, ApiError> {
    let Some(near) = near else {
        if radius_km.is_some() {
            return Err(ApiError::validation("near", "radius_km needs near=lat,lon"));
        }
        return Ok(None);
    };
    let (lat, lon) = near
        .split_once(',')
        .and_then(|(a, b)| Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?)))
        .ok_or_else(|| ApiError::validation("near", "expected near=lat,lon in degrees"))?;
    let center = Location::parse(lat, lon)
        .map_err(|_| ApiError::validation("near", "latitude -90..90, longitude -180..180"))?;
    let radius = radius_km.unwrap_or(DEFAULT_RADIUS_KM);
    if !(radius > 0.0 && radius <= MAX_RADIUS_KM) {
        return Err(ApiError::validation(
            "radius_km",
            format!("must be above 0 and at most {MAX_RADIUS_KM}"),
        ));
    }
    Ok(Some((center, radius)))
}

fn cursor(cursor: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    cursor
        .map(|c| {
            c.parse()
                .map_err(|_| ApiError::validation("cursor", "not a cursor from a previous page"))
        })
        .transpose()
}

#[derive(Deserialize, IntoParams)]
pub struct AvailabilityQuery {
    pub city: Option<String>,
    /// First night (inclusive), `YYYY-MM-DD`.
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    pub check_in: Option<NaiveDate>,
    /// Departure day (exclusive).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    pub check_out: Option<NaiveDate>,
    /// Guests (default 1).
    pub guests: Option<u32>,
    /// At most this base nightly price.
    pub max_price_kzt: Option<i64>,
    /// `lat,lon`: only listings within `radius_km` of this point.
    pub near: Option<String>,
    /// Default 10, at most 500.
    pub radius_km: Option<f64>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    /// Wait (bounded) until the read model has this position.
    pub min_position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AvailableListing {
    pub listing_id: Uuid,
    pub title: String,
    pub city: String,
    /// The base nightly price (weekday and seasonal prices are in `total_kzt`).
    pub nightly_price_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub nights: u32,
    /// What the whole stay costs, night by night plus cleaning.
    pub total_kzt: i64,
    pub max_guests: i64,
    pub min_nights: i64,
    pub location: Option<LocationBody>,
    /// From `near`, when given.
    pub distance_km: Option<f64>,
    /// Guests' average rating (1–5, one decimal); null before the first review.
    pub rating: Option<f64>,
    pub reviews_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct AvailabilityPage {
    pub items: Vec<AvailableListing>,
    pub next_cursor: Option<String>,
}

/// Active listings in a city that take the guests and are free every night of the stay (and
/// whose minimum and maximum stay allow it), in a stable order.
#[utoipa::path(get, path = "/api/v1/availability", tag = "search", params(AvailabilityQuery),
    responses((status = 200, body = AvailabilityPage), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "`read_model_behind`: min_position not reached in time")))]
#[tracing::instrument(skip_all, err(level = "debug"))]
pub async fn availability(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<AvailabilityQuery>,
) -> Result<Json<AvailabilityPage>, ApiError> {
    let city = q
        .city
        .as_deref()
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| ApiError::validation("city", "is required"))?;
    let check_in = q
        .check_in
        .ok_or_else(|| ApiError::validation("check_in", "is required"))?;
    let check_out = q
        .check_out
        .ok_or_else(|| ApiError::validation("check_out", "is required"))?;
    let range = DateRange::parse(check_in, check_out)
        .map_err(|_| ApiError::validation("check_out", "must be after check_in"))?;
    if check_in < local_date(chrono::Utc::now()) {
        return Err(ApiError::validation("check_in", "must not be in the past"));
    }
    if range.nights() > MAX_STAY_NIGHTS {
        return Err(ApiError::validation(
            "check_out",
            format!("a stay is at most {MAX_STAY_NIGHTS} nights"),
        ));
    }
    let guests = q.guests.unwrap_or(1);
    if guests == 0 {
        return Err(ApiError::validation("guests", "must be at least 1"));
    }
    if q.max_price_kzt.is_some_and(|p| p < 0) {
        return Err(ApiError::validation(
            "max_price_kzt",
            "must not be negative",
        ));
    }
    let query = StayQuery {
        city: city.to_string(),
        range: Some(range),
        guests,
        max_price_kzt: q.max_price_kzt,
        near: circle(q.near.as_deref(), q.radius_km)?,
        after: cursor(q.cursor.as_deref())?,
        limit: page_limit(q.limit)?,
    };
    let index = state
        .reads
        .consistent_index(
            AvailabilityProjection::NAME,
            q.min_position,
            state.settings.read_wait,
        )
        .await?;
    let (offers, next) = index.search(&query);
    Ok(Json(AvailabilityPage {
        items: offers
            .into_iter()
            .map(|o| AvailableListing {
                rating: o.listing.rating(),
                reviews_count: o.listing.reviews_count,
                location: o.listing.location().map(|l| LocationBody {
                    lat: l.lat(),
                    lon: l.lon(),
                }),
                listing_id: o.listing.listing_id,
                title: o.listing.title,
                city: o.listing.city,
                nightly_price_kzt: o.listing.nightly_price_kzt,
                cleaning_fee_kzt: o.listing.cleaning_fee_kzt,
                nights: o.nights,
                total_kzt: o.total_kzt,
                max_guests: o.listing.max_guests,
                min_nights: o.listing.min_nights,
                distance_km: o.distance_km,
            })
            .collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}

#[derive(Deserialize, IntoParams)]
pub struct ListingsQuery {
    pub city: Option<String>,
    /// Listings that take at least this many guests.
    pub guests: Option<u32>,
    /// At most this base nightly price.
    pub max_price_kzt: Option<i64>,
    /// Comma-separated; listings that have all of them.
    pub amenities: Option<String>,
    /// `lat,lon`: only listings within `radius_km` of this point.
    pub near: Option<String>,
    /// Default 10, at most 500.
    pub radius_km: Option<f64>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub min_position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct ListingSummary {
    pub id: Uuid,
    pub host_id: Uuid,
    pub title: String,
    pub city: String,
    pub address: String,
    pub location: Option<LocationBody>,
    pub rooms: i64,
    pub max_guests: i64,
    pub nightly_price_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub min_nights: i64,
    pub max_nights: i64,
    pub cancellation_policy: String,
    pub photos: Vec<String>,
    pub amenities: Vec<String>,
    pub status: String,
    pub distance_km: Option<f64>,
    /// Guests' average rating (1–5, one decimal); null before the first review.
    pub rating: Option<f64>,
    pub reviews_count: i64,
    pub bookings_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ListingsPage {
    pub items: Vec<ListingSummary>,
    pub next_cursor: Option<String>,
}

/// Search the catalogue of active listings (every filter optional), in a stable order.
#[utoipa::path(get, path = "/api/v1/listings", tag = "search", params(ListingsQuery),
    responses((status = 200, body = ListingsPage), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "`read_model_behind`: min_position not reached in time")))]
#[tracing::instrument(skip_all, err(level = "debug"))]
pub async fn search_listings(
    State(state): State<AppState>,
    ValidQuery(q): ValidQuery<ListingsQuery>,
) -> Result<Json<ListingsPage>, ApiError> {
    if q.guests == Some(0) {
        return Err(ApiError::validation("guests", "must be at least 1"));
    }
    if q.max_price_kzt.is_some_and(|p| p < 0) {
        return Err(ApiError::validation(
            "max_price_kzt",
            "must not be negative",
        ));
    }
    let amenities: Vec<String> = q
        .amenities
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if amenities.len() > 20 {
        return Err(ApiError::validation("amenities", "at most 20"));
    }
    let query = CatalogueQuery {
        city: q
            .city
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        guests: q.guests,
        max_price_kzt: q.max_price_kzt,
        amenities,
        near: circle(q.near.as_deref(), q.radius_km)?,
        after: cursor(q.cursor.as_deref())?,
        limit: page_limit(q.limit)?,
    };
    // The in-memory catalogue answers what the table's search (`ListingsProjection::search`)
    // answers, without a database round trip; the API tests hold one against the other.
    let index = state
        .reads
        .consistent_index(
            ListingsProjection::NAME,
            q.min_position,
            state.settings.read_wait,
        )
        .await?;
    let (rows, next) = index.catalogue(&query);
    Ok(Json(ListingsPage {
        items: rows
            .into_iter()
            .map(|(row, distance_km)| ListingSummary {
                rating: row.rating(),
                location: row.location().map(|l| LocationBody {
                    lat: l.lat(),
                    lon: l.lon(),
                }),
                photos: row.photos(),
                amenities: row.amenities(),
                id: row.listing_id,
                host_id: row.host_id,
                title: row.title,
                city: row.city,
                address: row.address,
                rooms: row.rooms,
                max_guests: row.max_guests,
                nightly_price_kzt: row.nightly_price_kzt,
                cleaning_fee_kzt: row.cleaning_fee_kzt,
                min_nights: row.min_nights,
                max_nights: row.max_nights,
                cancellation_policy: row.cancellation_policy,
                reviews_count: row.reviews_count,
                bookings_count: row.bookings_count,
                status: row.status,
                distance_km,
            })
            .collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}
