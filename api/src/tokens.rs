//! Credentials the service checks: its JWTs and constant-time secret comparison.
//!
//! Tokens are HS256, signed with `ZHILEGO_JWT_SECRET`, issuer `zhilego`, with the user id in
//! `sub` and one role in `role`. `zhilego token` mints them for operators and service clients.
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
