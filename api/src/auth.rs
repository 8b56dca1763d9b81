//! Bearer authentication of requests: the caller ([`Principal`]) from the `Authorization`
//! header, checked with the service's keys ([`crate::tokens`]), or from an API key
//! (`X-Api-Key`, or a bearer token starting `zgo_`); then as admins decided
//! ([`crate::access`]): a blocked account gets 403 `user_blocked`, a role an admin gave
//! replaces the token's.
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::{Actor, Role};
use uuid::Uuid;

pub use crate::tokens::{same_secret, JwtKeys, TokenError};

/// The bearer's token, if it carries one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// An authenticated caller. Extracting it answers 401 when the token is missing, malformed,
/// badly signed or expired.
#[derive(Clone, Copy, Debug)]
pub struct Principal(pub Actor);

impl Principal {
    pub fn user_id(&self) -> Uuid {
        self.0.user_id
    }

    pub fn role(&self) -> Role {
        self.0.role
    }

    /// 403 unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "this needs the role {}; the token has {}",
                names.join(" or "),
                self.0.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = authenticate(parts, state)?;
        crate::routes::context::record_user(principal.user_id());
        Ok(principal)
    }
}

/// The caller the request's credentials name (an API key, else the bearer token).
fn authenticate(parts: &Parts, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(key) = crate::access::presented_key(&parts.headers) {
        let key = state.access.key(key)?;
        return Ok(Principal(state.access.used(&key)));
    }
    let token = bearer(parts).ok_or_else(|| {
        ApiError::unauthorized("unauthorized", "send Authorization: Bearer <token>")
    })?;
    match state.auth.verify(token) {
        Ok(actor) => Ok(Principal(state.access.admit(actor)?)),
        Err(TokenError::Expired) => Err(ApiError::unauthorized(
            "token_expired",
            "the token has expired",
        )),
        Err(TokenError::Invalid) => Err(ApiError::unauthorized(
            "invalid_token",
            "the token is not valid",
        )),
    }
}

/// A caller who may or may not be authenticated (public endpoints that show more to owners).
/// A token that is present but invalid is still refused.
#[derive(Clone, Copy, Debug)]
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybePrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(parts).is_none() && crate::access::presented_key(&parts.headers).is_none() {
            return Ok(MaybePrincipal(None));
        }
        Principal::from_request_parts(parts, state)
            .await
            .map(|p| MaybePrincipal(Some(p)))
    }
}
