//! Calendar feeds of a listing (its host, admin): other sites' iCal calendars imported as
//! blocks (`commands::calendar_feeds`). Adding a feed syncs it once; the background sync
//! repeats every `ZHILEGO_ICAL_SYNC_INTERVAL`; `…/sync` runs one now.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson};
use crate::idempotency;
use crate::routes::context::Meta;
use crate::routes::listings::Removed;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use commands::FeedView;
use domain::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(add_feed, list_feeds))
        .routes(routes!(remove_feed))
        .routes(routes!(sync_feed))
}

#[derive(Deserialize, ToSchema)]
pub struct FeedBody {
    /// The feed's `http://` or `https://` address (Airbnb's or Booking.com's export link).
    pub url: String,
    /// What the host calls it (`Airbnb`); shown on blocks and in conflict notices.
    pub name: String,
}

#[derive(Serialize, ToSchema)]
pub struct FeedErrorView {
    /// `url_refused`, `address_refused`, `timeout`, `too_large`, `too_many_redirects`,
    /// `http_status`, `unreachable`, `not_calendar`, `invalid_dates`, `too_many_events` or
    /// `calendar_refused`.
    pub code: String,
    pub detail: String,
}

#[derive(Serialize, ToSchema)]
pub struct FeedConflictView {
    /// The feed event's UID.
    pub uid: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// Our stay that holds the nights (untouched).
    pub booking_id: Uuid,
}

#[derive(Serialize, ToSchema)]
pub struct CalendarFeedView {
    pub id: Uuid,
    pub listing_id: Uuid,
    pub url: String,
    pub name: String,
    /// The last sync that read the feed (applied, or answered 304 Not Modified).
    pub last_synced_at: Option<DateTime<Utc>>,
    /// `pending`, `ok`, `not_modified` or `error` (then `error` says why; nothing changed).
    pub last_result: String,
    /// Nights the feed's blocks close now.
    pub blocked_nights: u32,
    /// Feed events our live stays keep off the calendar.
    pub conflicts: usize,
    /// Those events, with the stay that holds their nights.
    pub conflict_stays: Vec<FeedConflictView>,
    pub error: Option<FeedErrorView>,
    /// Global event position of this change (write responses).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

impl CalendarFeedView {
    fn of(v: FeedView, position: Option<i64>) -> Self {
        CalendarFeedView {
            id: v.feed_id,
            listing_id: v.listing_id,
            url: v.url,
            name: v.name,
            last_synced_at: v.last_synced_at,
            last_result: v.last_result,
            blocked_nights: v.blocked_nights,
            conflicts: v.conflicts.len(),
            conflict_stays: v
                .conflicts
                .into_iter()
                .map(|c| FeedConflictView {
                    uid: c.uid,
                    from: c.range.check_in(),
                    to: c.range.check_out(),
                    booking_id: c.booking_id,
                })
                .collect(),
            error: v.error.map(|(code, detail)| FeedErrorView { code, detail }),
            position,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CalendarFeedList {
    pub items: Vec<CalendarFeedView>,
    /// Always null: a listing has at most 10 feeds.
    pub next_cursor: Option<String>,
}

/// Add another site's iCal feed to the listing (its host, admin); it is synced once right
/// away, and the answer shows how that went (the feed is added even if it failed).
#[utoipa::path(post, path = "/api/v1/listings/{id}/calendar-feeds", tag = "listings", request_body = FeedBody,
    params(("id" = Uuid, Path), ("Idempotency-Key" = Option<String>, Header)),
    responses((status = 201, body = CalendarFeedView), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json", description = "`feed_exists`: the listing already has this URL"),
        (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, user_id = %principal.user_id()))]
pub async fn add_feed(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    headers: HeaderMap,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, raw): ValidJson<FeedBody>,
) -> Response {
    let route = format!("POST /listings/{id}/calendar-feeds");
    idempotency::run(&state, &principal, &headers, &route, &raw, || async {
        principal.require(&[Role::Host, Role::Admin])?;
        let written = state.calendar.add(id, body.url, body.name, &meta).await?;
        let view = CalendarFeedView::of(written.value, Some(written.position));
        Ok((
            StatusCode::CREATED,
            serde_json::to_value(&view).unwrap_or_default(),
        ))
    })
    .await
}

/// The listing's feeds with their last sync (its host, admin).
#[utoipa::path(get, path = "/api/v1/listings/{id}/calendar-feeds", tag = "listings",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = CalendarFeedList), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn list_feeds(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<Uuid>,
) -> Result<Json<CalendarFeedList>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let feeds = state.calendar.feeds(id, &principal.0).await?;
    Ok(Json(CalendarFeedList {
        items: feeds
            .into_iter()
            .map(|f| CalendarFeedView::of(f, None))
            .collect(),
        next_cursor: None,
    }))
}

/// Remove a feed and every block it made (its host, admin).
#[utoipa::path(delete, path = "/api/v1/listings/{id}/calendar-feeds/{feed_id}", tag = "listings",
    params(("id" = Uuid, Path), ("feed_id" = Uuid, Path)),
    responses((status = 200, body = Removed), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, %feed_id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn remove_feed(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath((id, feed_id)): IdPath<(Uuid, Uuid)>,
) -> Result<Json<Removed>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let written = state.calendar.remove(id, feed_id, &meta).await?;
    Ok(Json(Removed {
        id: feed_id,
        listing_id: id,
        position: written.position,
    }))
}

/// Sync a feed now (its host, admin); the answer is the feed after the sync ran. A feed that
/// fails is still 200: its `last_result` is `error` and `error` says why.
#[utoipa::path(post, path = "/api/v1/listings/{id}/calendar-feeds/{feed_id}/sync", tag = "listings",
    params(("id" = Uuid, Path), ("feed_id" = Uuid, Path)),
    responses((status = 200, body = CalendarFeedView), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(listing_id = %id, %feed_id, user_id = %principal.user_id()), err(level = "debug"))]
pub async fn sync_feed(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    IdPath((id, feed_id)): IdPath<(Uuid, Uuid)>,
) -> Result<Json<CalendarFeedView>, ApiError> {
    principal.require(&[Role::Host, Role::Admin])?;
    let written = state.calendar.sync(id, feed_id, &meta).await?;
    Ok(Json(CalendarFeedView::of(
        written.value,
        Some(written.position),
    )))
}
