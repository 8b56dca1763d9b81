//! JWT bearer authentication and roles.
//!
//! Tokens are HS256, signed with `ZHILEGO_JWT_SECRET`, issuer `zhilego`, with the user id in
//! `sub` and one role in `role`. `zhilego token` mints them for operators and service clients.
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use domain::{Actor, Role};
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "zhilego";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
}

pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

#[derive(Debug, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid,
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        validation.leeway = 5;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// A token for `sub` in `role`, valid for `ttl`.
    pub fn mint(&self, sub: Uuid, role: Role, ttl: chrono::Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub,
            role,
            iss: ISSUER.to_string(),
            iat: now,
            exp: now + ttl.num_seconds(),
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    pub fn verify(&self, token: &str) -> Result<Actor, TokenError> {
        match decode::<Claims>(token, &self.decoding, &self.validation) {
            Ok(data) if data.claims.role != Role::System => Ok(Actor {
                user_id: data.claims.sub,
                role: data.claims.role,
            }),
            Ok(_) => Err(TokenError::Invalid),
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::ExpiredSignature) => {
                Err(TokenError::Expired)
            }
            Err(_) => Err(TokenError::Invalid),
        }
    }
}

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
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("unauthorized", "send Authorization: Bearer <token>")
        })?;
        match state.auth.verify(token) {
            Ok(actor) => Ok(Principal(actor)),
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
}

/// A caller who may or may not be authenticated (public endpoints that show more to owners).
/// A token that is present but invalid is still refused.
#[derive(Clone, Copy, Debug)]
pub struct MaybePrincipal(pub Option<Principal>);

impl FromRequestParts<AppState> for MaybePrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if bearer(parts).is_none() {
            return Ok(MaybePrincipal(None));
        }
        Principal::from_request_parts(parts, state)
            .await
            .map(|p| MaybePrincipal(Some(p)))
    }
}

/// Constant-time equality of two secrets (compared as digests, so lengths leak nothing).
pub fn same_secret(a: &str, b: &str) -> bool {
    use sha2::Digest;
    let (x, y) = (
        sha2::Sha256::digest(a.as_bytes()),
        sha2::Sha256::digest(b.as_bytes()),
    );
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_the_role() {
        let keys = JwtKeys::new(b"secret");
        let sub = Uuid::now_v7();
        let t = keys.mint(sub, Role::Host, chrono::Duration::hours(1));
        assert_eq!(
            keys.verify(&t),
            Ok(Actor {
                user_id: sub,
                role: Role::Host
            })
        );
    }

    #[test]
    fn expired_forged_and_system_tokens_are_refused() {
        let keys = JwtKeys::new(b"secret");
        let sub = Uuid::now_v7();
        let old = keys.mint(sub, Role::Guest, chrono::Duration::hours(-1));
        assert_eq!(keys.verify(&old), Err(TokenError::Expired));
        let other = JwtKeys::new(b"other").mint(sub, Role::Admin, chrono::Duration::hours(1));
        assert_eq!(keys.verify(&other), Err(TokenError::Invalid));
        let system = keys.mint(sub, Role::System, chrono::Duration::hours(1));
        assert_eq!(keys.verify(&system), Err(TokenError::Invalid));
        assert_eq!(keys.verify("not.a.token"), Err(TokenError::Invalid));
    }
}
