//! Personal data in events is sealed with a key of its own per user (crypto-shredding):
//! destroying the key erases the data everywhere it was ever written, while the history stays
//! complete and replayable.
//!
//! Values are XChaCha20-Poly1305 with a random nonce, bound to the user and the field (as
//! associated data), written `x1:` + base64url(nonce ‖ ciphertext). User keys are stored
//! wrapped the same way with the service's master key (`ZHILEGO_ENCRYPTION_KEY`).
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::user::Sealed;
use std::fmt;
use store::{with_pool, Database, StoreError};
use uuid::Uuid;

const PREFIX: &str = "x1:";

/// The service's master key: 32 bytes, given as 64 hex characters.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(***)")
    }
}

impl MasterKey {
    pub fn from_hex(text: &str) -> Result<MasterKey, String> {
        let bytes =
            hex::decode(text.trim()).map_err(|_| "must be 64 hex characters".to_string())?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hex characters (32 bytes)".to_string())?;
        Ok(MasterKey(key))
    }

    /// A new random key, as hex.
    pub fn generate_hex() -> String {
        hex::encode(rand::random::<[u8; 32]>())
    }

    /// Seals a service secret (not personal data: it outlives any user) bound to `binding`.
    pub fn seal(&self, plaintext: &str, binding: &str) -> Sealed {
        Sealed(seal(&self.0, plaintext.as_bytes(), binding.as_bytes()))
    }

    /// A subkey for one purpose, named by a fixed `label`: HMAC-SHA256 of the label under
    /// the master key. Purposes get keys of their own without another setting, and knowing
    /// a subkey tells nothing of the master key or of another purpose's subkey.
    pub fn derive(&self, label: &str) -> [u8; 32] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&self.0)
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Opens what [`MasterKey::seal`] sealed under the same binding.
    pub fn open(&self, sealed: &Sealed, binding: &str) -> Option<String> {
        String::from_utf8(open(&self.0, &sealed.0, binding.as_bytes())?).ok()
    }
}

fn seal(key: &[u8; 32], plaintext: &[u8], aad: &[u8]) -> String {
    let cipher = XChaCha20Poly1305::new(key.into());
    let nonce_bytes: [u8; 24] = rand::random();
    let ciphertext = cipher
        .encrypt(
            &XNonce::from(nonce_bytes),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("encryption with a valid key does not fail");
    let mut out = nonce_bytes.to_vec();
    out.extend_from_slice(&ciphertext);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
}

fn open(key: &[u8; 32], sealed: &str, aad: &[u8]) -> Option<Vec<u8>> {
    let raw = URL_SAFE_NO_PAD.decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if raw.len() < 24 {
        return None;
    }
    let (nonce, ciphertext) = raw.split_at(24);
    let nonce: [u8; 24] = nonce.try_into().ok()?;
    XChaCha20Poly1305::new(key.into())
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: ciphertext,
                aad,
            },
        )
        .ok()
}

fn field_aad(user: Uuid, field: &str) -> Vec<u8> {
    format!("user:{user}:{field}").into_bytes()
}

/// Seals and opens users' personal data; destroys keys on erasure.
pub struct PersonalData {
    db: Database,
    master: MasterKey,
}

impl PersonalData {
    pub fn new(db: Database, master: MasterKey) -> Self {
        PersonalData { db, master }
    }

    /// The user's key; created when `create` and there is none (or it was erased).
    async fn user_key(&self, user: Uuid, create: bool) -> Result<Option<[u8; 32]>, StoreError> {
        let aad = format!("user-key:{user}").into_bytes();
        let stored: Option<Option<String>> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT wrapped_key FROM user_keys WHERE user_id = $1")
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        if let Some(Some(wrapped)) = &stored {
            let key = open(&self.master.0, wrapped, &aad)
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .ok_or_else(|| {
                    StoreError::Integrity(format!(
                        "the key of user {user} does not open with the master key"
                    ))
                })?;
            return Ok(Some(key));
        }
        if !create {
            return Ok(None);
        }
        let fresh: [u8; 32] = rand::random();
        let wrapped = seal(&self.master.0, &fresh, &aad);
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO user_keys (user_id, wrapped_key) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET wrapped_key = excluded.wrapped_key, erased_at = NULL \
                 WHERE user_keys.wrapped_key IS NULL",
            )
            .bind(user)
            .bind(&wrapped)
            .execute(pool)
            .await?;
        });
        // Whoever won a race for the first key, everyone uses that one.
        Box::pin(self.user_key(user, false)).await
    }

    pub async fn seal(
        &self,
        user: Uuid,
        field: &str,
        plaintext: &str,
    ) -> Result<Sealed, StoreError> {
        let key = self
            .user_key(user, true)
            .await?
            .expect("a key was just made");
        Ok(Sealed(seal(
            &key,
            plaintext.as_bytes(),
            &field_aad(user, field),
        )))
    }

    /// The plaintext, or `None` when the user's key was destroyed.
    pub async fn open(
        &self,
        user: Uuid,
        field: &str,
        sealed: &Sealed,
    ) -> Result<Option<String>, StoreError> {
        let Some(key) = self.user_key(user, false).await? else {
            return Ok(None);
        };
        let plain = open(&key, &sealed.0, &field_aad(user, field)).ok_or_else(|| {
            StoreError::Integrity(format!(
                "{field} of user {user} does not open with their key"
            ))
        })?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| StoreError::Integrity(format!("{field} of user {user} is not text")))
    }

    /// Destroys the user's key: everything sealed with it is unreadable from now on.
    pub async fn erase(&self, user: Uuid) -> Result<(), StoreError> {
        let now = chrono::Utc::now();
        with_pool!(&self.db, pool => {
            sqlx::query("UPDATE user_keys SET wrapped_key = NULL, erased_at = $2 WHERE user_id = $1")
                .bind(user)
                .bind(now)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_binding() {
        let key = [7u8; 32];
        let s = seal(&key, b"+77011234567", b"user:a:phone");
        assert!(s.starts_with(PREFIX));
        assert!(!s.contains("7011234567"));
        assert_eq!(open(&key, &s, b"user:a:phone").unwrap(), b"+77011234567");
        assert!(
            open(&[8u8; 32], &s, b"user:a:phone").is_none(),
            "another key"
        );
        assert!(open(&key, &s, b"user:b:phone").is_none(), "another user");
        assert!(open(&key, &s, b"user:a:name").is_none(), "another field");
        assert_ne!(
            s,
            seal(&key, b"+77011234567", b"user:a:phone"),
            "random nonces"
        );
    }

    #[test]
    fn master_keys_are_64_hex_characters() {
        assert!(MasterKey::from_hex(&MasterKey::generate_hex()).is_ok());
        assert!(MasterKey::from_hex("abcd").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{:?}", MasterKey([1; 32])), "MasterKey(***)");
    }
}
