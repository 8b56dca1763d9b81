//! Admins' overrides on listings and bookings: pausing, archiving and restoring any listing
//! (the host sees the reason on the listing; paused and archived listings leave search), and
//! giving a held booking more time to pay. Cancelling with a full refund is the ordinary
//! cancel (`POST /bookings/{id}/cancel`) called by an admin, with a required reason.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson};
use crate::routes::admin::reason;
use crate::routes::bookings::BookingView;
use crate::routes::context::Meta;
use crate::routes::listings::ListingView;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::listing::ModerationAction;
use domain::Role;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(moderate_listing))
        .routes(routes!(extend_hold))
}

#[derive(Deserialize, ToSchema)]
pub struct ModerationBody {
    /// `pause`, `archive` or `restore` (back to the status the host had).
    pub action: String,
    /// Why (required, 1–500 characters); the host sees it on the listing.
    pub reason: String,
}

/// Pause, archive or restore any listing (admin).
#[utoipa::path(post, path = "/api/v1/listings/{id}/moderation", tag = "admin", request_body = ModerationBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ListingView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`not_moderated`: nothing to restore"),
        (status = 422, body = Problem, description = "`validation_failed`: `action` or `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, listing_id = %id), err(level = "debug"))]
pub async fn moderate_listing(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<ModerationBody>,
) -> Result<Json<ListingView>, ApiError> {
    Principal(meta.actor).require(&[Role::Admin])?;
    let action = ModerationAction::parse(&body.action)
        .ok_or_else(|| ApiError::validation("action", "must be pause, archive or restore"))?;
    let reason = reason(&body.reason)?;
    let written = state
        .commands
        .moderate_listing(id, action, reason, &meta)
        .await?;
    Ok(Json(ListingView::of(
        &written.value,
        true,
        Some(written.position),
    )))
}

#[derive(Deserialize, ToSchema)]
pub struct HoldExtensionBody {
    /// The new end of the hold: later than the current one, at most 7 days from now.
    pub hold_expires_at: DateTime<Utc>,
    /// Why (required, 1–500 characters); recorded in the event.
    pub reason: String,
}

/// Give a held booking more time to pay (admin).
#[utoipa::path(post, path = "/api/v1/bookings/{id}/hold-extension", tag = "admin", request_body = HoldExtensionBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = BookingView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`invalid_state`: the booking is not held"),
        (status = 422, body = Problem, description = "`validation_failed`: `hold_expires_at` or `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, booking_id = %id), err(level = "debug"))]
pub async fn extend_hold(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<HoldExtensionBody>,
) -> Result<Json<BookingView>, ApiError> {
    Principal(meta.actor).require(&[Role::Admin])?;
    let reason = reason(&body.reason)?;
    let written = state
        .commands
        .extend_hold(id, body.hold_expires_at, reason, &meta)
        .await?;
    Ok(Json(BookingView::of(
        &written.value,
        Some(written.position),
    )))
}
