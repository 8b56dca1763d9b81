//! Admins and accounts: the user directory (search by exact phone through the blind index,
//! Telegram id, role, blocked), one account with its bookings, role changes, blocking and
//! unblocking. Every write needs a reason and is an event naming the admin.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson, ValidQuery};
use crate::routes::bookings::BookingItem;
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use commands::CommandMeta;
use domain::user::{PhoneNumber, Reason};
use domain::{Channel, Role};
use projections::{BookingFilter, BookingsProjection, UserQuery, UserRow, UsersProjection};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, patch_user))
        .routes(routes!(block_user))
        .routes(routes!(unblock_user))
}

/// An account as admins see it.
#[derive(Serialize, ToSchema)]
pub struct AdminUserView {
    pub id: Uuid,
    /// `person` or `api_key` (a service client).
    pub kind: String,
    /// The role an admin gave (or the API key's); otherwise `host` once they listed, else
    /// `guest`.
    pub role: String,
    pub blocked: bool,
    pub block_reason: Option<String>,
    /// The Telegram user id, when the search was by it (it is not stored).
    pub telegram_id: Option<String>,
    /// An API key's name.
    pub name: Option<String>,
    pub bookings_count: i64,
    pub listings_count: i64,
    /// The user gave a profile (name, phone, language).
    pub has_profile: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AdminUserView {
    fn of(row: &UserRow, telegram_id: Option<&str>) -> Self {
        AdminUserView {
            id: row.user_id,
            kind: row.kind.clone(),
            role: row.shown_role().to_string(),
            blocked: row.is_blocked(),
            block_reason: row.block_reason.clone(),
            telegram_id: telegram_id.map(str::to_string),
            name: row.name.clone(),
            bookings_count: row.bookings_count,
            listings_count: row.listings_count,
            has_profile: row.has_profile != 0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct UserPage {
    pub items: Vec<AdminUserView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsersQuery {
    /// Exact phone number, normalized to `+7…` (spaces, dashes, a leading 8 are accepted).
    pub phone: Option<String>,
    /// Exact Telegram user id.
    pub telegram_id: Option<String>,
    /// `guest`, `host`, `admin`, `analyst` or `auditor`.
    pub role: Option<String>,
    pub blocked: Option<bool>,
    /// `person` or `api_key`.
    pub kind: Option<String>,
    /// At most this many items (default 20, max 100).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<Uuid>,
    /// Wait (bounded) until the directory reflects this position.
    pub min_position: Option<i64>,
}

fn role_param(raw: &str) -> Result<Role, ApiError> {
    Role::parse(raw)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| {
            ApiError::validation("role", "must be guest, host, admin, analyst or auditor")
        })
}

/// Search the accounts (admin): by exact phone, Telegram id, role, blocked; in id order.
#[utoipa::path(get, path = "/api/v1/users", tag = "admin", params(UsersQuery),
    responses((status = 200, body = UserPage), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
        (status = 503, body = Problem, description = "`read_model_behind`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn list_users(
    State(state): State<AppState>,
    principal: Principal,
    ValidQuery(q): ValidQuery<UsersQuery>,
) -> Result<Json<UserPage>, ApiError> {
    principal.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    let mut ids: Option<Vec<Uuid>> = None;
    if let Some(raw) = q.phone.as_deref() {
        let phone = PhoneNumber::parse(raw)?;
        ids = Some(state.commands.users_with_phone(&phone).await?);
    }
    let telegram = q.telegram_id.as_deref().map(str::trim);
    if let Some(tid) = telegram {
        if tid.is_empty() || tid.len() > 20 || !tid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::validation(
                "telegram_id",
                "must be a Telegram user id (digits)",
            ));
        }
        let id = state
            .chats
            .guest(Channel::Telegram, tid, tid)
            .await
            .map_err(ApiError::internal)?;
        ids = Some(match ids {
            Some(found) => found.into_iter().filter(|f| *f == id).collect(),
            None => vec![id],
        });
    }
    let role = q.role.as_deref().map(role_param).transpose()?;
    if let Some(kind) = q.kind.as_deref() {
        if kind != "person" && kind != "api_key" {
            return Err(ApiError::validation("kind", "must be person or api_key"));
        }
    }
    let db = state
        .reads
        .consistent(&state.reads.users, q.min_position, state.settings.read_wait)
        .await?;
    let query = UserQuery {
        ids,
        role: role.map(|r| r.as_str().to_string()),
        blocked: q.blocked,
        kind: q.kind.clone(),
        after: q.cursor,
        limit: limit as usize,
    };
    let (mut rows, mut next) = UsersProjection::search(db, &query).await?;
    if query
        .ids
        .as_ref()
        .is_some_and(|ids| rows.len() < ids.len().min(query.limit))
    {
        // An account found by phone or Telegram id may be one the directory does not have
        // yet (its first event was just written): ask again once it caught up.
        let db = state
            .reads
            .consistent(
                &state.reads.users,
                Some(newest_position(&state).await?),
                state.settings.read_wait,
            )
            .await?;
        (rows, next) = UsersProjection::search(db, &query).await?;
    }
    Ok(Json(UserPage {
        items: rows
            .iter()
            .map(|r| AdminUserView::of(r, telegram))
            .collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}

/// One account with its personal data opened and its newest bookings.
#[derive(Serialize, ToSchema)]
pub struct AdminUserDetail {
    #[serde(flatten)]
    pub user: AdminUserView,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// The personal data was erased.
    pub erased: bool,
    /// The newest 20 bookings as guest.
    pub bookings: Vec<BookingItem>,
    /// The payments of those bookings.
    #[schema(value_type = Vec<Object>)]
    pub payments: Vec<projections::PaymentRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

async fn detail(
    state: &AppState,
    id: Uuid,
    position: Option<i64>,
) -> Result<AdminUserDetail, ApiError> {
    let db = state
        .reads
        .consistent(&state.reads.users, position, state.settings.read_wait)
        .await?;
    let row = match UsersProjection::get(db, id).await? {
        Some(row) => row,
        None => known(state, id).await?,
    };
    let profile = state.commands.profile(id).await?;
    let reads = state
        .reads
        .consistent(&state.reads.bookings, position, state.settings.read_wait)
        .await?;
    let bookings = BookingsProjection::list(reads, BookingFilter::Guest(id), None, 20).await?;
    let booking_ids: Vec<Uuid> = bookings.iter().map(|b| b.booking_id).collect();
    let payments = BookingsProjection::payments_of(reads, &booking_ids).await?;
    let mut user = AdminUserView::of(&row, None);
    if row.kind == "api_key" {
        user.name = row.name.clone();
    }
    Ok(AdminUserDetail {
        name: if row.kind == "api_key" {
            row.name.clone()
        } else {
            profile.name
        },
        user,
        phone: profile.phone,
        erased: profile.erased,
        bookings: bookings.into_iter().map(BookingItem::from).collect(),
        payments,
        position,
    })
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DetailQuery {
    /// Wait (bounded) until the directory and the bookings reflect this position.
    pub min_position: Option<i64>,
}

/// One account (admin): role, block, profile, newest bookings and their payments.
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "admin", params(("id" = Uuid, Path), DetailQuery),
    responses((status = 200, body = AdminUserDetail), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id(), %id), err(level = "debug"))]
pub async fn get_user(
    State(state): State<AppState>,
    principal: Principal,
    IdPath(id): IdPath<Uuid>,
    ValidQuery(q): ValidQuery<DetailQuery>,
) -> Result<Json<AdminUserDetail>, ApiError> {
    principal.require(&[Role::Admin])?;
    let mut view = detail(&state, id, q.min_position).await?;
    view.position = None;
    Ok(Json(view))
}

#[derive(Deserialize, ToSchema)]
pub struct PatchUserBody {
    /// `guest`, `host`, `admin`, `analyst` or `auditor`.
    pub role: String,
    /// Why (required, 1–500 characters); recorded in the event.
    pub reason: String,
}

#[derive(Deserialize, ToSchema)]
pub struct ReasonBody {
    /// Why (required, 1–500 characters); recorded in the event.
    pub reason: String,
}

/// An admin write's reason, or 422 naming `reason`.
pub fn reason(raw: &str) -> Result<Reason, ApiError> {
    Reason::parse(raw).map_err(ApiError::from)
}

/// The position of the newest event written (committed or not yet visible to readers).
async fn newest_position(state: &AppState) -> Result<i64, ApiError> {
    let newest: i64 = store::with_pool!(&state.db, pool => {
        sqlx::query_scalar("SELECT COALESCE(MAX(position), 0) FROM events")
            .fetch_one(pool)
            .await
            .map_err(store::StoreError::from)?
    });
    Ok(newest)
}

/// 404 unless the directory knows the account. An account it does not have yet may be one
/// whose first event was just written: then it is asked again once it has caught up with
/// the store as it is now.
async fn known(state: &AppState, id: Uuid) -> Result<UserRow, ApiError> {
    if let Some(row) = UsersProjection::get(&state.reads.primary, id).await? {
        return Ok(row);
    }
    state
        .reads
        .consistent(
            &state.reads.users,
            Some(newest_position(state).await?),
            state.settings.read_wait,
        )
        .await?;
    UsersProjection::get(&state.reads.primary, id)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))
}

/// Waits for the directory to reach `position`, then reloads the request path's view of
/// accounts, so this process refuses a blocked account from the answer on.
pub(crate) async fn take_effect(state: &AppState, position: i64) -> Result<(), ApiError> {
    state
        .reads
        .consistent(&state.reads.users, Some(position), state.settings.read_wait)
        .await?;
    state.access.refresh().await?;
    Ok(())
}

/// Give the account another role (admin); it replaces the role in the user's tokens.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "admin", request_body = PatchUserBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminUserDetail), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`own_account`: an admin cannot demote themselves"),
        (status = 422, body = Problem, description = "`validation_failed`: `role` or `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, %id), err(level = "debug"))]
pub async fn patch_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<PatchUserBody>,
) -> Result<Json<AdminUserDetail>, ApiError> {
    require_admin(&meta)?;
    let role = role_param(&body.role)?;
    let reason = reason(&body.reason)?;
    known(&state, id).await?;
    let written = state.commands.change_role(id, role, reason, &meta).await?;
    take_effect(&state, written.position).await?;
    Ok(Json(detail(&state, id, Some(written.position)).await?))
}

fn require_admin(meta: &CommandMeta) -> Result<(), ApiError> {
    Principal(meta.actor).require(&[Role::Admin])
}

/// Block the account (admin): its tokens and API keys get 403 `user_blocked`, the bots tell
/// it so, and its unpaid holds are cancelled (their nights released).
#[utoipa::path(post, path = "/api/v1/users/{id}/block", tag = "admin", request_body = ReasonBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminUserDetail), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 409, body = Problem, description = "`own_account`: an admin cannot block themselves"),
        (status = 422, body = Problem, description = "`validation_failed`: `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, %id), err(level = "debug"))]
pub async fn block_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<ReasonBody>,
) -> Result<Json<AdminUserDetail>, ApiError> {
    require_admin(&meta)?;
    let reason = reason(&body.reason)?;
    known(&state, id).await?;
    let written = state.commands.block_user(id, reason, &meta).await?;
    take_effect(&state, written.position).await?;
    let mut position = written.position;
    for booking_id in unpaid_holds(&state, id).await? {
        let follow = meta.follow_up();
        match state
            .commands
            .cancel_booking(booking_id, "account blocked".to_string(), &follow)
            .await
        {
            Ok(w) => position = position.max(w.position),
            // Paid or lapsed meanwhile: nothing to release.
            Err(e) => {
                tracing::info!(%booking_id, error = %e, "a blocked account's hold was not cancelled")
            }
        }
    }
    Ok(Json(detail(&state, id, Some(position)).await?))
}

/// The account's bookings still held unpaid with time left, from the bookings read model.
async fn unpaid_holds(state: &AppState, id: Uuid) -> Result<Vec<Uuid>, ApiError> {
    let holds = BookingsProjection::running_holds(&state.reads.primary, id, Utc::now()).await?;
    Ok(holds
        .into_iter()
        .filter(|(_, held)| *held)
        .map(|(b, _)| b)
        .collect())
}

/// Unblock the account (admin): its tokens work again.
#[utoipa::path(post, path = "/api/v1/users/{id}/unblock", tag = "admin", request_body = ReasonBody,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminUserDetail), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`validation_failed`: `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, %id), err(level = "debug"))]
pub async fn unblock_user(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    ValidJson(body, _): ValidJson<ReasonBody>,
) -> Result<Json<AdminUserDetail>, ApiError> {
    require_admin(&meta)?;
    let reason = reason(&body.reason)?;
    known(&state, id).await?;
    let written = state.commands.unblock_user(id, reason, &meta).await?;
    take_effect(&state, written.position).await?;
    Ok(Json(detail(&state, id, Some(written.position)).await?))
}
