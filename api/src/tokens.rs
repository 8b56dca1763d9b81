//! Credentials the service checks: its JWTs and constant-time secret comparison.
//!
//! Tokens are HS256, signed with `ZHILEGO_JWT_SECRET`, issuer `zhilego`, with the user id in
//! `sub` and one role in `role`. `zhilego token` mints them for operators and service clients.
//!
//! Rotation: each secret has a key id (`kid`, a digest of the secret, so nothing needs to be
//! configured twice). Tokens carry the `kid` of the secret that signed them; the previous
//! secret (`ZHILEGO_JWT_PREVIOUS_SECRET`) still verifies the tokens it signed until they
//! expire. A token without `kid` (minted before key ids) is tried against both.
//!
//! Checks beyond the signature: `exp` (required), `nbf` when present, at most 5 s of leeway
//! for clocks, and a lifetime (`exp - iat`) no longer than the configured maximum.
use domain::{Actor, Role};
use jsonwebtoken::{
    decode, decode_header, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ISSUER: &str = "zhilego";
/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECONDS: u64 = 5;
/// The longest lifetime a token may have unless configured otherwise (30 days).
pub const DEFAULT_MAX_TTL: chrono::Duration = chrono::Duration::hours(720);

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: Uuid,
    role: Role,
    iss: String,
    iat: i64,
    exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nbf: Option<i64>,
}

/// One signing secret and its key id.
struct Key {
    kid: String,
    decoding: DecodingKey,
}

impl Key {
    fn new(secret: &[u8]) -> Key {
        Key {
            kid: key_id(secret),
            decoding: DecodingKey::from_secret(secret),
        }
    }
}

/// The key id of a secret: the first 16 hex digits of its SHA-256 under a label, which names
/// the secret without revealing anything usable about it.
fn key_id(secret: &[u8]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"zhilego-jwt-kid:");
    h.update(secret);
    hex::encode(&h.finalize()[..8])
}

pub struct JwtKeys {
    encoding: EncodingKey,
    current: Key,
    /// The secret before the last rotation: verifies, never signs.
    previous: Option<Key>,
    validation: Validation,
    max_ttl: chrono::Duration,
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
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        JwtKeys {
            encoding: EncodingKey::from_secret(secret),
            current: Key::new(secret),
            previous: None,
            validation,
            max_ttl: DEFAULT_MAX_TTL,
        }
    }

    /// Also accepts tokens signed with `previous` (the secret before a rotation).
    pub fn with_previous(mut self, previous: Option<&[u8]>) -> Self {
        self.previous = previous.map(Key::new);
        self
    }

    /// Refuses tokens whose lifetime (`exp - iat`) is longer than `max_ttl`.
    pub fn with_max_ttl(mut self, max_ttl: chrono::Duration) -> Self {
        self.max_ttl = max_ttl;
        self
    }

    pub fn max_ttl(&self) -> chrono::Duration {
        self.max_ttl
    }

    /// The key id that tokens signed with the current secret carry.
    pub fn current_kid(&self) -> &str {
        &self.current.kid
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
            nbf: None,
        };
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.current.kid.clone());
        encode(&header, &claims, &self.encoding).expect("HS256 signing does not fail")
    }

    pub fn verify(&self, token: &str) -> Result<Actor, TokenError> {
        let kid = decode_header(token).map_err(|_| TokenError::Invalid)?.kid;
        let keys: Vec<&Key> = match kid.as_deref() {
            Some(kid) => std::iter::once(&self.current)
                .chain(self.previous.as_ref())
                .filter(|k| k.kid == kid)
                .collect(),
            None => std::iter::once(&self.current)
                .chain(self.previous.as_ref())
                .collect(),
        };
        let mut outcome = Err(TokenError::Invalid);
        for key in keys {
            outcome = self.verify_with(token, key);
            // Only a bad signature is worth another key; an expired or refused token is final.
            if outcome != Err(TokenError::Invalid) {
                break;
            }
        }
        outcome
    }

    fn verify_with(&self, token: &str, key: &Key) -> Result<Actor, TokenError> {
        match decode::<Claims>(token, &key.decoding, &self.validation) {
            Ok(data) if data.claims.role == Role::System => Err(TokenError::Invalid),
            Ok(data) if data.claims.exp - data.claims.iat > self.max_ttl.num_seconds() => {
                Err(TokenError::Invalid)
            }
            Ok(data) => Ok(Actor {
                user_id: data.claims.sub,
                role: data.claims.role,
            }),
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

    fn signed(secret: &[u8], kid: Option<&str>, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_string);
        encode(&header, &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn not_yet_valid_and_over_long_tokens_are_refused() {
        let keys = JwtKeys::new(b"secret").with_max_ttl(chrono::Duration::hours(720));
        let now = chrono::Utc::now().timestamp();
        let sub = Uuid::now_v7();
        let claims = |iat: i64, exp: i64, nbf: Option<i64>| {
            let mut c = serde_json::json!({"sub": sub, "role": "guest", "iss": "zhilego",
                "iat": iat, "exp": exp});
            if let Some(nbf) = nbf {
                c["nbf"] = nbf.into();
            }
            c
        };
        let future = signed(b"secret", None, claims(now, now + 3600, Some(now + 600)));
        assert_eq!(keys.verify(&future), Err(TokenError::Invalid));
        let started = signed(b"secret", None, claims(now, now + 3600, Some(now - 1)));
        assert!(keys.verify(&started).is_ok());
        // A clock 5 s ahead is tolerated, a minute is not.
        let skewed = signed(b"secret", None, claims(now, now + 3600, Some(now + 3)));
        assert!(keys.verify(&skewed).is_ok());
        let long = signed(b"secret", None, claims(now, now + 721 * 3600, None));
        assert_eq!(keys.verify(&long), Err(TokenError::Invalid));
        let longest = signed(b"secret", None, claims(now, now + 720 * 3600, None));
        assert!(keys.verify(&longest).is_ok());
    }

    #[test]
    fn the_previous_secret_verifies_its_own_tokens_after_rotation() {
        let old = JwtKeys::new(b"old");
        let sub = Uuid::now_v7();
        let before = old.mint(sub, Role::Host, chrono::Duration::hours(1));
        let rotated = JwtKeys::new(b"new").with_previous(Some(b"old"));
        assert_eq!(rotated.verify(&before).map(|a| a.user_id), Ok(sub));
        let after = rotated.mint(sub, Role::Host, chrono::Duration::hours(1));
        assert_eq!(rotated.verify(&after).map(|a| a.user_id), Ok(sub));
        assert_ne!(old.current_kid(), rotated.current_kid());
        // Without the previous secret configured, its tokens are refused.
        assert_eq!(
            JwtKeys::new(b"new").verify(&before),
            Err(TokenError::Invalid)
        );
        // A token without kid (minted before key ids) is tried against both secrets.
        let now = chrono::Utc::now().timestamp();
        let legacy = signed(
            b"old",
            None,
            serde_json::json!({"sub": sub, "role": "host",
            "iss": "zhilego", "iat": now, "exp": now + 60}),
        );
        assert!(rotated.verify(&legacy).is_ok());
        // A kid names one secret: the other one is not tried.
        let misnamed = signed(
            b"old",
            Some(rotated.current_kid()),
            serde_json::json!({"sub": sub,
            "role": "host", "iss": "zhilego", "iat": now, "exp": now + 60}),
        );
        assert_eq!(rotated.verify(&misnamed), Err(TokenError::Invalid));
    }
}
