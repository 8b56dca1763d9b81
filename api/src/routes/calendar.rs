//! A listing's calendar, day by day (`GET /listings/{id}/calendar`) and as an iCalendar feed
//! to subscribe to (`GET /listings/{id}/calendar.ics`), from the availability projection.
use crate::auth::MaybePrincipal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidQuery};
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{Duration, NaiveDate, Utc};
use domain::{local_date, Role};
use projections::{availability, ical, AvailabilityProjection, OfferRow};
use serde::{Deserialize, Serialize};
use store::Database;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(calendar))
        .routes(routes!(calendar_ics))
}

/// The longest calendar one request returns.
const MAX_DAYS: i64 = 366;
/// The iCal feed covers this much of the past and the booking horizon ahead.
const ICS_PAST_DAYS: i64 = 90;
const ICS_AHEAD_DAYS: i64 = 800;

#[derive(Deserialize, IntoParams)]
pub struct CalendarQuery {
    /// First day (default today, Kazakhstan time).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    pub from: Option<NaiveDate>,
    /// Day after the last (default 30 days after `from`; at most 366 days).
    #[serde(
        default,
        deserialize_with = "crate::extract::date::four_digit_year_opt"
    )]
    pub to: Option<NaiveDate>,
    pub min_position: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct CalendarDayView {
    pub date: NaiveDate,
    /// `free`, `held`, `booked` or `blocked`.
    pub status: String,
    pub price_kzt: i64,
}

#[derive(Serialize, ToSchema)]
pub struct CalendarView {
    pub listing_id: Uuid,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub days: Vec<CalendarDayView>,
}

#[derive(Deserialize, IntoParams)]
pub struct FeedQuery {
    pub min_position: Option<i64>,
}

/// The listing as the availability projection has it; drafts and archived listings only for
/// their host and admins.
async fn visible_offer(
    db: &Database,
    id: Uuid,
    principal: &MaybePrincipal,
) -> Result<OfferRow, ApiError> {
    let offer = AvailabilityProjection::offer(db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("listing"))?;
    let public = matches!(offer.status.as_str(), "active" | "paused");
    let manager = principal.0.as_ref().is_some_and(|p| {
        p.role() == Role::Admin || (p.role() == Role::Host && p.user_id() == offer.host_id)
    });
    if public || manager {
        Ok(offer)
    } else {
        Err(ApiError::not_found("listing"))
    }
}

/// Day by day: free, held (awaiting payment), booked or blocked, with each night's price.
#[utoipa::path(get, path = "/api/v1/listings/{id}/calendar", tag = "listings",
    params(("id" = Uuid, Path), CalendarQuery),
    responses((status = 200, body = CalendarView), (status = 404, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "`read_model_behind`: min_position not reached in time")),
    security((), ("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id), err(level = "debug"))]
pub async fn calendar(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    IdPath(id): IdPath<Uuid>,
    ValidQuery(q): ValidQuery<CalendarQuery>,
) -> Result<Json<CalendarView>, ApiError> {
    let from = q.from.unwrap_or_else(|| local_date(Utc::now()));
    let to = q.to.unwrap_or(from + Duration::days(30));
    if to <= from {
        return Err(ApiError::validation("to", "must be after from"));
    }
    if (to - from).num_days() > MAX_DAYS {
        return Err(ApiError::validation(
            "to",
            format!("at most {MAX_DAYS} days per request"),
        ));
    }
    let db = state
        .reads
        .consistent(
            &state.reads.availability,
            q.min_position,
            state.settings.read_wait,
        )
        .await?;
    let offer = visible_offer(db, id, &principal).await?;
    let spans = AvailabilityProjection::spans(db, id, from, to).await?;
    let days = availability::calendar(&offer.price_rules(), &spans, from, to);
    Ok(Json(CalendarView {
        listing_id: id,
        from,
        to,
        days: days
            .into_iter()
            .map(|d| CalendarDayView {
                date: d.date,
                status: d.status.to_string(),
                price_kzt: d.price_kzt,
            })
            .collect(),
    }))
}

/// The calendar as iCalendar (RFC 5545): one all-day event per reservation or block, without
/// guest data.
#[utoipa::path(get, path = "/api/v1/listings/{id}/calendar.ics", tag = "listings",
    params(("id" = Uuid, Path), FeedQuery),
    responses((status = 200, content_type = "text/calendar", body = String), (status = 404, body = Problem)),
    security((), ("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id), err(level = "debug"))]
pub async fn calendar_ics(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    IdPath(id): IdPath<Uuid>,
    ValidQuery(q): ValidQuery<FeedQuery>,
) -> Result<Response, ApiError> {
    let db = state
        .reads
        .consistent(
            &state.reads.availability,
            q.min_position,
            state.settings.read_wait,
        )
        .await?;
    let offer = visible_offer(db, id, &principal).await?;
    let today = local_date(Utc::now());
    let spans = AvailabilityProjection::spans(
        db,
        id,
        today - Duration::days(ICS_PAST_DAYS),
        today + Duration::days(ICS_AHEAD_DAYS),
    )
    .await?;
    let body = ical::render(id, &offer.title, &spans, "zhilego", Utc::now());
    Ok((
        [
            (header::CONTENT_TYPE, "text/calendar; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        body,
    )
        .into_response())
}
