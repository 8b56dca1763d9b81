//! Bookings: a guest books, reads and cancels; hosts see their listings' bookings; admins all.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{parse_json, IdPath, ValidJson, ValidQuery};
use crate::idempotency;
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use commands::BookRequest;
use domain::booking::Booking;
use domain::{Channel, DateRange, Role};
use projections::{BookingFilter, BookingRow, BookingsProjection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_booking, list_bookings))
        .routes(routes!(get_booking))
        .routes(routes!(cancel_booking))
        .routes(routes!(review_booking))
}

#[derive(Deserialize, ToSchema)]
pub struct ReviewBody {
    /// 1 to 5.
    pub rating: i64,
    /// At most 2,000 characters.
    #[serde(default)]
    pub text: String,
}

#[derive(Serialize, ToSchema)]
pub struct ReviewView {
    pub booking_id: Uuid,
    pub listing_id: Uuid,
    pub rating: u8,
    pub position: i64,
}

/// Review a completed stay (its guest, once). The listing's rating and review count follow in
/// the catalogue and in search results.
#[utoipa::path(post, path = "/api/v1/bookings/{id}/review", tag = "bookings", request_body = ReviewBody,
    params(("id" = Uuid, Path)),
    responses((status = 201, body = ReviewView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`invalid_state` (the stay is not completed) or `already_reviewed`"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(booking_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn review_booking(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<ReviewBody>,
) -> Result<(StatusCode, Json<ReviewView>), ApiError> {
    principal.require(&[Role::Guest])?;
    let rating = u8::try_from(body.rating)
        .ok()
        .filter(|r| (1..=5).contains(r))
        .ok_or_else(|| ApiError::validation("rating", "must be 1 to 5"))?;
    let written = state
        .commands
        .review_booking(id, rating, body.text, &meta)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ReviewView {
            booking_id: id,
            listing_id: written.value.listing_id,
            rating,
            position: written.position,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateBookingBody {
    pub listing_id: Uuid,
    /// First night (inclusive), the property's local date.
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub check_in: NaiveDate,
    /// Departure day (exclusive).
    #[serde(deserialize_with = "crate::extract::date::four_digit_year")]
    pub check_out: NaiveDate,
    pub guests: u32,
    /// `web`, `mobile` or `api` (default: the `X-Channel` header, else `api`).
    pub channel: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PriceView {
    pub nights: u32,
    /// Price of each night, in order.
    pub nightly_kzt: Vec<i64>,
    pub nights_total_kzt: i64,
    pub cleaning_fee_kzt: i64,
    pub total_kzt: i64,
}

#[derive(Serialize, ToSchema)]
pub struct BookingView {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub guest_id: Uuid,
    pub host_id: Uuid,
    /// `held`, `confirmed`, `checked_in`, `completed`, `cancelled` or `expired`.
    pub status: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub nights: u32,
    pub guests: u32,
    pub channel: String,
    pub hold_expires_at: Option<DateTime<Utc>>,
    pub total_kzt: i64,
    pub price: PriceView,
    pub cancellation_policy: String,
    pub paid_kzt: i64,
    /// What the guest gets back after a cancellation.
    pub refund_kzt: i64,
    pub cancel_reason: Option<String>,
    pub payment_id: Option<Uuid>,
    /// Global event position of this change (write responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl BookingView {
    pub fn of(b: &Booking, position: Option<i64>) -> Self {
        let range = b.range.expect("a recorded booking has dates");
        let price = b.price.as_ref();
        let kzt = |f: fn(&domain::pricing::StayPrice) -> domain::Kzt| price.map_or(0, |p| f(p).0);
        BookingView {
            id: b.id.unwrap_or_default(),
            listing_id: b.listing_id,
            guest_id: b.guest_id,
            host_id: b.host_id,
            status: b.status.as_str().to_string(),
            check_in: range.check_in(),
            check_out: range.check_out(),
            nights: range.nights(),
            guests: b.guests,
            channel: b.channel.map(|c| c.as_str()).unwrap_or("api").to_string(),
            hold_expires_at: b.hold_expires_at,
            total_kzt: kzt(|p| p.total_kzt),
            price: PriceView {
                nights: price.map_or(range.nights(), |p| p.nights()),
                nightly_kzt: price.map_or(vec![], |p| {
                    p.nightly.iter().map(|n| n.price_kzt.0).collect()
                }),
                nights_total_kzt: kzt(|p| p.nights_total_kzt),
                cleaning_fee_kzt: kzt(|p| p.cleaning_fee_kzt),
                total_kzt: kzt(|p| p.total_kzt),
            },
            cancellation_policy: b.cancellation_policy.as_str().to_string(),
            paid_kzt: b.paid_kzt.0,
            refund_kzt: b.refund_kzt.0,
            cancel_reason: b.cancel_reason.clone(),
            payment_id: b.payment_id,
            position,
        }
    }
}

/// Book a stay (guest). The nights are held for the hold time (default 15 minutes) while the
/// guest pays. 409 `dates_unavailable` when any night is taken; 409 `too_many_holds` when the
/// guest already holds `ZHILEGO_MAX_HOLDS_PER_GUEST` unpaid bookings (default 3; paying for or
/// cancelling one frees its slot).
#[utoipa::path(post, path = "/api/v1/bookings", tag = "bookings", request_body = CreateBookingBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first response for a repeated key")),
    responses((status = 201, body = BookingView), (status = 401, body = Problem), (status = 403, body = Problem),
        (status = 404, body = Problem, description = "No such listing"),
        (status = 409, body = Problem, description = "`dates_unavailable`, `listing_not_bookable` or `too_many_holds` (the guest's unpaid holds are at the cap)"),
        (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %body.listing_id, user_id = %principal.user_id()))]
pub async fn create_booking(
    State(state): State<AppState>,
    principal: Principal,
    Meta(mut meta): Meta,
    headers: HeaderMap,
    ValidJson(body, raw): ValidJson<CreateBookingBody>,
) -> Response {
    idempotency::run(
        &state,
        &principal,
        &headers,
        "POST /bookings",
        &raw,
        || async {
            principal.require(&[Role::Guest])?;
            if let Some(c) = &body.channel {
                meta.channel = Channel::parse(c)
                    .filter(|c| matches!(c, Channel::Web | Channel::Mobile | Channel::Api))
                    .ok_or_else(|| ApiError::validation("channel", "must be web, mobile or api"))?;
            }
            let range = DateRange::parse(body.check_in, body.check_out)
                .map_err(|_| ApiError::validation("check_out", "must be after check_in"))?;
            let request = BookRequest {
                listing_id: body.listing_id,
                range,
                guests: body.guests,
            };
            let written = state.commands.book(request, &meta).await?;
            let view = BookingView::of(&written.value, Some(written.position));
            Ok((
                StatusCode::CREATED,
                serde_json::to_value(view).unwrap_or_default(),
            ))
        },
    )
    .await
}

/// One booking (its guest, the listing's host, admin).
#[utoipa::path(get, path = "/api/v1/bookings/{id}", tag = "bookings",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BookingView), (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(booking_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_booking(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<BookingView>, ApiError> {
    let booking = state
        .commands
        .booking(id)
        .await?
        .ok_or_else(|| ApiError::not_found("booking"))?;
    if !booking.may_access(&principal.0) {
        return Err(ApiError::forbidden(
            "only the booking's guest, the listing's host or an admin may see it",
        ));
    }
    Ok(Json(BookingView::of(&booking, None)))
}

#[derive(Deserialize, IntoParams)]
pub struct ListQuery {
    /// At most this many items (default 20, max 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Wait (bounded) until the list reflects this position.
    pub min_position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct BookingItem {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub guest_id: Uuid,
    pub host_id: Uuid,
    pub status: String,
    pub check_in: NaiveDate,
    pub check_out: NaiveDate,
    pub guests: i64,
    pub total_kzt: i64,
    pub channel: String,
    pub hold_expires_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

impl From<BookingRow> for BookingItem {
    fn from(r: BookingRow) -> Self {
        BookingItem {
            id: r.booking_id,
            listing_id: r.listing_id,
            guest_id: r.guest_id,
            host_id: r.host_id,
            status: r.status,
            check_in: r.check_in,
            check_out: r.check_out,
            guests: r.guests,
            total_kzt: r.total_kzt,
            channel: r.channel,
            hold_expires_at: r.hold_expires_at,
            created_at: r.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct BookingPage {
    pub items: Vec<BookingItem>,
    pub next_cursor: Option<String>,
}

/// Bookings, newest first: a guest's own, a host's listings', or (admin) all.
#[utoipa::path(get, path = "/api/v1/bookings", tag = "bookings", params(ListQuery),
    responses((status = 200, body = BookingPage), (status = 403, body = Problem),
        (status = 503, body = Problem, description = "`read_model_behind`: min_position not reached in time")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn list_bookings(
    State(state): State<AppState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<ListQuery>,
) -> Result<Json<BookingPage>, ApiError> {
    let filter = match principal.role() {
        Role::Guest => BookingFilter::Guest(principal.user_id()),
        Role::Host => BookingFilter::Host(principal.user_id()),
        Role::Admin => BookingFilter::All,
        _ => {
            return Err(ApiError::forbidden(
                "bookings are for guests, hosts and admins",
            ))
        }
    };
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    let db = state
        .reads
        .consistent(
            &state.reads.bookings,
            q.min_position,
            state.settings.read_wait,
        )
        .await?;
    let rows = BookingsProjection::list(db, filter, q.cursor, limit).await?;
    let next_cursor = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.booking_id.to_string()))
        .flatten();
    Ok(Json(BookingPage {
        items: rows.into_iter().map(BookingItem::from).collect(),
        next_cursor,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
pub struct CancelBody {
    #[serde(default)]
    pub reason: String,
}

/// Cancel a held or confirmed booking (its guest, the listing's host, admin). The answer
/// carries `refund_kzt`, what the cancellation policy gives back; a host's or an admin's
/// cancellation refunds everything paid, whatever the policy. An admin must give a `reason`
/// (422 otherwise).
#[utoipa::path(post, path = "/api/v1/bookings/{id}/cancel", tag = "bookings",
    request_body(content = Option<CancelBody>, description = "May be left out (no reason given)"),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BookingView), (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`invalid_state`: already cancelled, expired or started"),
        (status = 422, body = Problem, description = "`validation_failed`: `reason` (required of admins)")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(booking_id = %id, user_id = %meta.actor.user_id), err(level = "debug"))]
pub async fn cancel_booking(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    body: Bytes,
) -> Result<Json<BookingView>, ApiError> {
    let body: CancelBody = if body.iter().all(u8::is_ascii_whitespace) {
        CancelBody::default()
    } else {
        parse_json(&body)?
    };
    if meta.actor.role == Role::Admin {
        // An admin's cancellation overrides the policy (a full refund): it needs a reason.
        crate::routes::admin::reason(&body.reason)?;
    }
    let written = state
        .commands
        .cancel_booking(id, body.reason.trim().to_string(), &meta)
        .await?;
    Ok(Json(BookingView::of(
        &written.value,
        Some(written.position),
    )))
}
