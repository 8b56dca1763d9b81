//! Listings and their blocks (hosts and admins write; anyone reads active listings).
use crate::auth::{MaybePrincipal, Principal};
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson};
use crate::idempotency;
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::NaiveDate;
use domain::cancellation::CancellationPolicy;
use domain::listing::{Listing, ListingChanges, ListingDetails, ListingStatus, MAX_STAY_NIGHTS};
use domain::pricing::{PriceRules, RangePrice, WeekdayPrice};
use domain::{DateRange, Kzt, Location, Role};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_listing))
        .routes(routes!(get_listing, patch_listing))
        .routes(routes!(create_block))
        .routes(routes!(delete_block))
}

#[derive(Deserialize, Serialize, ToSchema, Clone, Copy)]
pub struct LocationBody {
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct WeekdayPriceBody {
    /// 1 = Monday … 7 = Sunday.
    pub weekday: u8,
    pub nightly_price_kzt: i64,
}

#[derive(Deserialize, Serialize, ToSchema, Clone)]
pub struct RangePriceBody {
    /// First night (inclusive).
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub from: NaiveDate,
    /// Night after the last (exclusive).
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub to: NaiveDate,
    pub nightly_price_kzt: i64,
}

#[derive(Deserialize, ToSchema)]
pub struct CreateListingBody {
    /// 1 to 200 characters, not all blank.
    #[schema(min_length = 1, max_length = 200, pattern = r"\S")]
    pub title: String,
    #[schema(min_length = 1, max_length = 100, pattern = r"\S")]
    pub city: String,
    #[schema(min_length = 1, max_length = 300, pattern = r"\S")]
    pub address: String,
    pub location: LocationBody,
    #[schema(maximum = 50)]
    pub rooms: u32,
    #[schema(minimum = 1, maximum = 50)]
    pub max_guests: u32,
    #[schema(minimum = 1)]
    pub nightly_price_kzt: i64,
    #[serde(default)]
    #[schema(minimum = 0)]
    pub cleaning_fee_kzt: i64,
    #[serde(default = "one")]
    #[schema(minimum = 1, maximum = 90)]
    pub min_nights: u32,
    /// Default and upper bound: 90; at least `min_nights`.
    #[schema(minimum = 1, maximum = 90)]
    pub max_nights: Option<u32>,
    /// `flexible` (default), `moderate` or `strict`.
    pub cancellation_policy: Option<String>,
    /// At most 50 http(s) URLs.
    #[serde(default)]
    #[schema(max_items = 50)]
    pub photos: Vec<String>,
    /// At most 100 names of 1 to 100 characters.
    #[serde(default)]
    #[schema(max_items = 100)]
    pub amenities: Vec<String>,
    /// `active` (default) or `draft`.
    pub status: Option<String>,
    #[serde(default)]
    pub weekday_prices: Vec<WeekdayPriceBody>,
    #[serde(default)]
    pub range_prices: Vec<RangePriceBody>,
    /// Admins only: create the listing for this host.
    pub host_id: Option<Uuid>,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize, ToSchema, Default)]
pub struct PatchListingBody {
    pub title: Option<String>,
    pub city: Option<String>,
    pub address: Option<String>,
    pub location: Option<LocationBody>,
    pub rooms: Option<u32>,
    pub max_guests: Option<u32>,
    pub nightly_price_kzt: Option<i64>,
    pub cleaning_fee_kzt: Option<i64>,
    pub min_nights: Option<u32>,
    pub max_nights: Option<u32>,
    pub cancellation_policy: Option<String>,
    pub photos: Option<Vec<String>>,
    pub amenities: Option<Vec<String>>,
    /// `draft`, `active`, `paused` or `archived`.
    pub status: Option<String>,
    pub weekday_prices: Option<Vec<WeekdayPriceBody>>,
    pub range_prices: Option<Vec<RangePriceBody>>,
}

#[derive(Serialize, ToSchema)]
pub struct BlockView {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub reason: String,
    /// Set on a block a calendar feed made (it goes when removed upstream or with the feed;
    /// deleting it here is 409 `feed_block`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub feed_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
// Named for the resource in the document: stateful clients and tests tell by the name which
// operations create and use it.
#[schema(as = Listing)]
pub struct ListingView {
    pub id: Uuid,
    pub host_id: Uuid,
    pub title: String,
    pub city: String,
    pub address: String,
    pub location: Option<LocationBody>,
    pub rooms: u32,
    pub max_guests: u32,
    pub nightly_price_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub weekday_prices: Vec<WeekdayPriceBody>,
    pub range_prices: Vec<RangePriceBody>,
    pub min_nights: u32,
    pub max_nights: u32,
    /// `flexible`, `moderate` or `strict`.
    pub cancellation_policy: String,
    pub photos: Vec<String>,
    pub amenities: Vec<String>,
    /// `draft`, `active`, `paused` or `archived`.
    pub status: String,
    /// Host blocks; shown to the listing's host and admins only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockView>>,
    /// Why an admin paused or archived the listing (to its host and admins, while it lasts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moderation: Option<ModerationView>,
    /// Global event position of this change (write responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

/// An admin's moderation of a listing.
#[derive(Serialize, ToSchema)]
pub struct ModerationView {
    /// `pause` or `archive`.
    pub action: String,
    pub reason: String,
}

impl ListingView {
    pub(crate) fn of(listing: &Listing, show_private: bool, position: Option<i64>) -> Self {
        let id = listing.id.unwrap_or_default();
        let d = &listing.details;
        ListingView {
            id,
            host_id: listing.host_id,
            title: d.title.clone(),
            city: d.city.clone(),
            address: d.address.clone(),
            location: d.location.map(|l| LocationBody {
                lat: l.lat(),
                lon: l.lon(),
            }),
            rooms: d.rooms,
            max_guests: d.max_guests,
            nightly_price_kzt: d.pricing.nightly_price_kzt.0,
            cleaning_fee_kzt: d.pricing.cleaning_fee_kzt.0,
            weekday_prices: d
                .pricing
                .weekday_prices
                .iter()
                .map(|w| WeekdayPriceBody {
                    weekday: w.weekday,
                    nightly_price_kzt: w.nightly_price_kzt.0,
                })
                .collect(),
            range_prices: d
                .pricing
                .range_prices
                .iter()
                .map(|r| RangePriceBody {
                    from: r.range.check_in(),
                    to: r.range.check_out(),
                    nightly_price_kzt: r.nightly_price_kzt.0,
                })
                .collect(),
            min_nights: d.min_nights,
            max_nights: d.max_nights,
            cancellation_policy: d.cancellation_policy.as_str().to_string(),
            photos: d.photos.clone(),
            amenities: d.amenities.clone(),
            status: listing.status.as_str().to_string(),
            moderation: listing
                .moderation
                .as_ref()
                .filter(|_| show_private)
                .map(|m| ModerationView {
                    action: m.action.as_str().to_string(),
                    reason: m.reason.clone(),
                }),
            blocks: show_private.then(|| {
                listing
                    .blocks
                    .iter()
                    .map(|(bid, b)| BlockView {
                        id: *bid,
                        listing_id: id,
                        from: b.range.check_in(),
                        to: b.range.check_out(),
                        reason: b.reason.clone(),
                        feed_id: b.source.as_ref().map(|s| s.feed_id),
                        position: None,
                    })
                    .collect()
            }),
            position,
        }
    }
}

fn money(field: &'static str, value: i64) -> Result<Kzt, ApiError> {
    Kzt::parse_amount(value).map_err(|e| ApiError::validation(field, e.to_string()))
}

fn location(body: LocationBody) -> Result<Location, ApiError> {
    Location::parse(body.lat, body.lon).map_err(|e| {
        let field = if e == domain::values::ValueError::Latitude {
            "location.lat"
        } else {
            "location.lon"
        };
        ApiError::validation(field, e.to_string())
    })
}

fn policy(value: &str) -> Result<CancellationPolicy, ApiError> {
    CancellationPolicy::parse(value).ok_or_else(|| {
        ApiError::validation(
            "cancellation_policy",
            "must be flexible, moderate or strict",
        )
    })
}

fn status(value: &str, allowed: &[ListingStatus]) -> Result<ListingStatus, ApiError> {
    allowed
        .iter()
        .copied()
        .find(|s| s.as_str() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            ApiError::validation("status", format!("must be one of {}", names.join(", ")))
        })
}

fn weekday_prices(items: &[WeekdayPriceBody]) -> Result<Vec<WeekdayPrice>, ApiError> {
    items
        .iter()
        .map(|w| {
            Ok(WeekdayPrice {
                weekday: w.weekday,
                nightly_price_kzt: money("weekday_prices.nightly_price_kzt", w.nightly_price_kzt)?,
            })
        })
        .collect()
}

fn range_prices(items: &[RangePriceBody]) -> Result<Vec<RangePrice>, ApiError> {
    let last = domain::listing::horizon_end(domain::local_date(chrono::Utc::now()));
    items
        .iter()
        .map(|r| {
            if r.to > last {
                return Err(ApiError::validation(
                    "range_prices.to",
                    format!("must be within the booking horizon (at most {last})"),
                ));
            }
            Ok(RangePrice {
                range: DateRange::parse(r.from, r.to)
                    .map_err(|_| ApiError::validation("range_prices.to", "must be after from"))?,
                nightly_price_kzt: money("range_prices.nightly_price_kzt", r.nightly_price_kzt)?,
            })
        })
        .collect()
}

impl CreateListingBody {
    fn details(&self) -> Result<ListingDetails, ApiError> {
        Ok(ListingDetails {
            title: self.title.trim().to_string(),
            city: self.city.trim().to_string(),
            address: self.address.trim().to_string(),
            location: Some(location(self.location)?),
            rooms: self.rooms,
            max_guests: self.max_guests,
            pricing: PriceRules {
                nightly_price_kzt: money("nightly_price_kzt", self.nightly_price_kzt)?,
                cleaning_fee_kzt: money("cleaning_fee_kzt", self.cleaning_fee_kzt)?,
                weekday_prices: weekday_prices(&self.weekday_prices)?,
                range_prices: range_prices(&self.range_prices)?,
            },
            min_nights: self.min_nights,
            max_nights: self.max_nights.unwrap_or(MAX_STAY_NIGHTS),
            cancellation_policy: match &self.cancellation_policy {
                Some(p) => policy(p)?,
                None => CancellationPolicy::default(),
            },
            photos: self.photos.clone(),
            amenities: self.amenities.clone(),
        })
    }
}

impl PatchListingBody {
    fn changes(&self) -> Result<ListingChanges, ApiError> {
        Ok(ListingChanges {
            title: self.title.as_ref().map(|s| s.trim().to_string()),
            city: self.city.as_ref().map(|s| s.trim().to_string()),
            address: self.address.as_ref().map(|s| s.trim().to_string()),
            location: self.location.map(location).transpose()?,
            rooms: self.rooms,
            max_guests: self.max_guests,
            nightly_price_kzt: self
                .nightly_price_kzt
                .map(|v| money("nightly_price_kzt", v))
                .transpose()?,
            cleaning_fee_kzt: self
                .cleaning_fee_kzt
                .map(|v| money("cleaning_fee_kzt", v))
                .transpose()?,
            weekday_prices: self
                .weekday_prices
                .as_deref()
                .map(weekday_prices)
                .transpose()?,
            range_prices: self.range_prices.as_deref().map(range_prices).transpose()?,
            min_nights: self.min_nights,
            max_nights: self.max_nights,
            cancellation_policy: self
                .cancellation_policy
                .as_deref()
                .map(policy)
                .transpose()?,
            photos: self.photos.clone(),
            amenities: self.amenities.clone(),
            status: self
                .status
                .as_deref()
                .map(|s| {
                    status(
                        s,
                        &[
                            ListingStatus::Draft,
                            ListingStatus::Active,
                            ListingStatus::Paused,
                            ListingStatus::Archived,
                        ],
                    )
                })
                .transpose()?,
        })
    }
}

fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// Create a listing (host, admin).
#[utoipa::path(post, path = "/api/v1/listings", tag = "listings", request_body = CreateListingBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated key")),
    responses((status = 201, body = ListingView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()))]
pub async fn create_listing(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    headers: HeaderMap,
    ValidJson(body, raw): ValidJson<CreateListingBody>,
) -> Response {
    idempotency::run(
        &state,
        &principal,
        &headers,
        "POST /listings",
        &raw,
        || async {
            principal.require(&[Role::Host, Role::Admin])?;
            let host_id = match (principal.role(), body.host_id) {
                (Role::Admin, Some(host)) => host,
                (Role::Host, Some(host)) if host != principal.user_id() => {
                    return Err(ApiError::forbidden("hosts create listings for themselves"))
                }
                _ => principal.user_id(),
            };
            let details = body.details()?;
            let status = match &body.status {
                Some(s) => status(s, &[ListingStatus::Active, ListingStatus::Draft])?,
                None => ListingStatus::Active,
            };
            let written = state
                .commands
                .create_listing(host_id, details, status, &meta)
                .await?;
            Ok((
                StatusCode::CREATED,
                to_json(&ListingView::of(
                    &written.value,
                    true,
                    Some(written.position),
                )),
            ))
        },
    )
    .await
}

/// A listing. Drafts and archived listings are visible to their host and admins only.
#[utoipa::path(get, path = "/api/v1/listings/{id}", tag = "listings",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ListingView), (status = 404, body = Problem, description = "No such listing, or a draft or paused one that is not the caller's")),
    security((), ("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id), err(level = "debug"))]
pub async fn get_listing(
    State(state): State<AppState>,
    MaybePrincipal(principal): MaybePrincipal,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<ListingView>, ApiError> {
    let listing = state
        .commands
        .listing(id)
        .await?
        .ok_or_else(|| ApiError::not_found("listing"))?;
    let manager = principal.is_some_and(|p| listing.may_manage(&p.0));
    if !manager
        && matches!(
            listing.status,
            ListingStatus::Draft | ListingStatus::Archived
        )
    {
        return Err(ApiError::not_found("listing"));
    }
    Ok(Json(ListingView::of(&listing, manager, None)))
}

/// Change a listing (its host, admin). Fields left out stay as they are.
#[utoipa::path(patch, path = "/api/v1/listings/{id}", tag = "listings", request_body = PatchListingBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ListingView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn patch_listing(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<PatchListingBody>,
) -> Result<Json<ListingView>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let changes = body.changes()?;
    let written = state.commands.update_listing(id, changes, &meta).await?;
    Ok(Json(ListingView::of(
        &written.value,
        true,
        Some(written.position),
    )))
}

#[derive(Deserialize, ToSchema)]
pub struct BlockBody {
    /// First blocked night (inclusive).
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub from: NaiveDate,
    /// Night after the last blocked one (exclusive).
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub to: NaiveDate,
    #[serde(default)]
    pub reason: String,
}

/// Close nights on the calendar (the listing's host, admin). 409 `dates_unavailable` if a
/// live stay or another block holds any of them.
#[utoipa::path(post, path = "/api/v1/listings/{id}/blocks", tag = "listings", request_body = BlockBody,
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = BlockView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, user_id = %principal.user_id()))]
pub async fn create_block(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    headers: HeaderMap,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, raw): ValidJson<BlockBody>,
) -> Response {
    let route = format!("POST /listings/{id}/blocks");
    idempotency::run(&state, &principal, &headers, &route, &raw, || async {
        principal.require(&[Role::Host, Role::Admin])?;
        let range = DateRange::parse(body.from, body.to)
            .map_err(|_| ApiError::validation("to", "must be after from"))?;
        let written = state
            .commands
            .block_dates(id, range, body.reason.trim().to_string(), &meta)
            .await?;
        Ok((
            StatusCode::CREATED,
            to_json(&BlockView {
                id: written.value,
                listing_id: id,
                from: body.from,
                to: body.to,
                reason: body.reason.trim().to_string(),
                feed_id: None,
                position: Some(written.position),
            }),
        ))
    })
    .await
}

#[derive(Serialize, ToSchema)]
pub struct Removed {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub position: i64,
}

/// Reopen blocked nights (the listing's host, admin).
#[utoipa::path(delete, path = "/api/v1/listings/{id}/blocks/{block_id}", tag = "listings",
    params(("id" = Uuid, Path), ("block_id" = Uuid, Path)),
    responses((status = 200, body = Removed), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, %block_id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn delete_block(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath((id, block_id)): IdPath<(Uuid, Uuid)>,
) -> Result<Json<Removed>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let written = state.commands.unblock_dates(id, block_id, &meta).await?;
    Ok(Json(Removed {
        id: block_id,
        listing_id: id,
        position: written.position,
    }))
}
