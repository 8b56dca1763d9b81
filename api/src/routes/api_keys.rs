//! API keys for service clients (admin): issued with a role and an optional listing scope,
//! shown once, stored only as their SHA-256, listed with their last use, revoked.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::{IdPath, ValidJson};
use crate::routes::admin::{reason, take_effect};
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use domain::Role;
use projections::{UserQuery, UserRow, UsersProjection};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_key, list_keys))
        .routes(routes!(revoke_key))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateKeyBody {
    /// What the client is, 1–100 characters (`channel manager`, `BI export`).
    pub name: String,
    /// `guest`, `host`, `admin`, `analyst` or `auditor`.
    pub role: String,
    /// The only listings the key may act on; left out: no scope.
    pub listing_ids: Option<Vec<Uuid>>,
    /// Why (required, 1–500 characters); recorded in the event.
    pub reason: String,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyView {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub listing_ids: Option<Vec<Uuid>>,
    pub revoked: bool,
    /// The account is blocked (its key is refused).
    pub blocked: bool,
    pub created_at: DateTime<Utc>,
    /// Recorded at most once a minute.
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A key just issued: `key` appears in this answer only.
#[derive(Serialize, ToSchema)]
pub struct IssuedKeyView {
    pub id: Uuid,
    /// The key: send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`.
    pub key: String,
    pub name: String,
    pub role: String,
    pub listing_ids: Option<Vec<Uuid>>,
    pub position: i64,
}

#[derive(Serialize, ToSchema)]
pub struct ApiKeyPage {
    pub items: Vec<ApiKeyView>,
    pub next_cursor: Option<String>,
}

fn view(row: &UserRow, last_used: Option<DateTime<Utc>>) -> ApiKeyView {
    ApiKeyView {
        id: row.user_id,
        name: row.name.clone().unwrap_or_default(),
        role: row.shown_role().to_string(),
        listing_ids: row.scope(),
        revoked: row.revoked != 0,
        blocked: row.is_blocked(),
        created_at: row.created_at,
        last_used_at: last_used,
    }
}

/// Issue an API key (admin).
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "admin", request_body = CreateKeyBody,
    responses((status = 201, body = IssuedKeyView), (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, body = Problem, description = "`validation_failed`: `name`, `role`, `listing_ids` or `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id), err(level = "debug"))]
pub async fn create_key(
    State(state): State<AppState>,
    Meta(meta): Meta,
    ValidJson(body, _): ValidJson<CreateKeyBody>,
) -> Result<(StatusCode, Json<IssuedKeyView>), ApiError> {
    Principal(meta.actor).require(&[Role::Admin])?;
    let role = Role::parse(&body.role)
        .filter(|r| *r != Role::System)
        .ok_or_else(|| {
            ApiError::validation("role", "must be guest, host, admin, analyst or auditor")
        })?;
    if let Some(ids) = &body.listing_ids {
        if ids.is_empty() || ids.len() > 100 {
            return Err(ApiError::validation(
                "listing_ids",
                "must name 1 to 100 listings, or be left out",
            ));
        }
    }
    let reason = reason(&body.reason)?;
    let written = state
        .commands
        .issue_api_key(body.name, role, body.listing_ids.clone(), reason, &meta)
        .await?;
    take_effect(&state, written.position).await?;
    let issued = written.value;
    let key = issued.user.api_key.as_ref();
    Ok((
        StatusCode::CREATED,
        Json(IssuedKeyView {
            id: issued.key_id,
            key: issued.key,
            name: key.map(|k| k.name.clone()).unwrap_or_default(),
            role: role.as_str().to_string(),
            listing_ids: body.listing_ids,
            position: written.position,
        }),
    ))
}

/// The API keys (admin), without the keys themselves.
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "admin",
    params(("cursor" = Option<Uuid>, Query), ("limit" = Option<i64>, Query)),
    responses((status = 200, body = ApiKeyPage), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    crate::extract::ValidQuery(q): crate::extract::ValidQuery<KeysQuery>,
) -> Result<Json<ApiKeyPage>, ApiError> {
    principal.require(&[Role::Admin])?;
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::validation("limit", "must be between 1 and 100"));
    }
    let query = UserQuery {
        kind: Some("api_key".to_string()),
        after: q.cursor,
        limit: limit as usize,
        ..UserQuery::default()
    };
    let (rows, next) = UsersProjection::search(state.reads.query_db(), &query).await?;
    let used: HashMap<Uuid, DateTime<Utc>> = state
        .commands
        .api_keys_last_used()
        .await?
        .into_iter()
        .collect();
    Ok(Json(ApiKeyPage {
        items: rows
            .iter()
            .map(|r| view(r, used.get(&r.user_id).copied()))
            .collect(),
        next_cursor: next.map(|c| c.to_string()),
    }))
}

#[derive(Deserialize)]
pub struct KeysQuery {
    pub limit: Option<i64>,
    pub cursor: Option<Uuid>,
}

/// Revoke an API key (admin); requests with it get 401 `api_key_revoked` from then on. The
/// reason goes in the body (`{"reason": …}`) or as `?reason=`.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "admin",
    params(("id" = Uuid, Path), ("reason" = Option<String>, Query, description = "Why, when no body is sent")),
    request_body(content = Option<crate::routes::admin::ReasonBody>),
    responses((status = 200, body = ApiKeyView), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 404, body = Problem),
        (status = 422, body = Problem, description = "`validation_failed`: `reason`")),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, %id), err(level = "debug"))]
pub async fn revoke_key(
    State(state): State<AppState>,
    Meta(meta): Meta,
    IdPath(id): IdPath<Uuid>,
    uri: axum::http::Uri,
    body: Bytes,
) -> Result<Json<ApiKeyView>, ApiError> {
    Principal(meta.actor).require(&[Role::Admin])?;
    let from_query = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "reason")
            .map(|(_, v)| v.into_owned())
    });
    let raw = if body.iter().all(u8::is_ascii_whitespace) {
        from_query.unwrap_or_default()
    } else {
        crate::extract::parse_json::<crate::routes::admin::ReasonBody>(&body)?.reason
    };
    let reason = reason(&raw)?;
    let written = state.commands.revoke_api_key(id, reason, &meta).await?;
    take_effect(&state, written.position).await?;
    let row = UsersProjection::get(&state.reads.primary, id)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let used: HashMap<Uuid, DateTime<Utc>> = state
        .commands
        .api_keys_last_used()
        .await?
        .into_iter()
        .collect();
    Ok(Json(view(&row, used.get(&id).copied())))
}
