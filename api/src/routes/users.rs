//! The caller's own profile.
use crate::auth::Principal;
use crate::error::{ApiError, Problem};
use crate::extract::ValidJson;
use crate::routes::context::Meta;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use commands::Profile;
use domain::user::{Language, PersonName, PhoneNumber};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_me, patch_me))
}

#[derive(Serialize, ToSchema)]
pub struct UserView {
    pub id: Uuid,
    pub role: String,
    pub name: Option<String>,
    pub phone: Option<String>,
    /// `ru` (default), `kk` or `en`.
    pub language: String,
    /// The user's personal data was erased.
    pub erased: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<i64>,
}

fn language_code(l: Language) -> &'static str {
    match l {
        Language::Ru => "ru",
        Language::Kk => "kk",
        Language::En => "en",
    }
}

impl UserView {
    fn of(p: &Principal, u: &Profile, position: Option<i64>) -> Self {
        UserView {
            id: p.user_id(),
            role: p.role().as_str().to_string(),
            name: u.name.clone(),
            phone: u.phone.clone(),
            language: language_code(u.language).to_string(),
            erased: u.erased,
            position,
        }
    }
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/users/me", tag = "users",
    responses((status = 200, body = UserView), (status = 401, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn get_me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<UserView>, ApiError> {
    let user = state.commands.profile(principal.user_id()).await?;
    Ok(Json(UserView::of(&principal, &user, None)))
}

#[derive(Deserialize, ToSchema)]
pub struct PatchMeBody {
    pub name: Option<String>,
    /// International format, e.g. `+77011234567`.
    pub phone: Option<String>,
    /// `ru`, `kk` or `en`.
    pub language: Option<String>,
}

/// Change the caller's profile; fields left out stay as they are.
#[utoipa::path(patch, path = "/api/v1/users/me", tag = "users", request_body = PatchMeBody,
    responses((status = 200, body = UserView), (status = 401, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
#[tracing::instrument(skip_all, fields(user_id = %principal.user_id()), err(level = "debug"))]
pub async fn patch_me(
    State(state): State<AppState>,
    principal: Principal,
    Meta(meta): Meta,
    ValidJson(body, _): ValidJson<PatchMeBody>,
) -> Result<Json<UserView>, ApiError> {
    let name = body.name.as_deref().map(PersonName::parse).transpose()?;
    let phone = body.phone.as_deref().map(PhoneNumber::parse).transpose()?;
    let language = body
        .language
        .as_deref()
        .map(|l| {
            Language::parse(l)
                .ok_or_else(|| ApiError::validation("language", "must be ru, kk or en"))
        })
        .transpose()?;
    let written = state
        .commands
        .update_profile(name, phone, language, &meta)
        .await?;
    Ok(Json(UserView::of(
        &principal,
        &written.value,
        Some(written.position),
    )))
}
