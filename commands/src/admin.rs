//! What admins do to accounts, listings and bookings, each with a reason recorded in the
//! event (the admin is `by` there and `actor` in the metadata, beside the request's
//! correlation id): roles, blocking, API keys for service clients, listing moderation, hold
//! extension. Also the phone number's blind index, so an admin finds a user by exact number
//! while numbers stay sealed at rest.
use crate::metadata::CommandMeta;
use crate::service::{booking_err, listing_err, Commands, FlowError, Written};
use chrono::{DateTime, Utc};
use domain::booking::{Booking, BookingCommand};
use domain::listing::{Listing, ListingCommand, ModerationAction};
use domain::user::{AdminCommand, PhoneNumber, Reason, User, UserCommand};
use domain::Role;
use store::with_pool;
use uuid::Uuid;

/// What API keys start with, so a leaked one is recognisable (secret scanners, logs).
pub const API_KEY_PREFIX: &str = "zgo_";
/// The label of the blind index's key (derived from the master key).
const PHONE_INDEX_LABEL: &str = "zhilego-phone-index-v1";

/// The SHA-256 of an API key, hex: what the store keeps and requests are looked up by.
pub fn api_key_hash(key: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(key.as_bytes()))
}

/// A fresh API key: the prefix and 256 random bits, base64url.
fn new_api_key() -> String {
    use base64::Engine;
    let secret: [u8; 32] = rand::random();
    format!(
        "{API_KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    )
}

/// An API key just issued: the key itself exists only in this value.
#[derive(Debug)]
pub struct IssuedKey {
    pub key_id: Uuid,
    pub key: String,
    pub user: User,
}

fn user_err(e: crate::executor::CommandError<domain::user::UserError>) -> FlowError {
    match e {
        crate::executor::CommandError::Rejected(e) => FlowError::User(e),
        crate::executor::CommandError::Busy => FlowError::Busy,
        crate::executor::CommandError::Store(s) => FlowError::Store(s),
    }
}

impl Commands {
    /// The blind index of a phone number: HMAC-SHA256 under a key derived from the master key.
    pub fn phone_index(&self, phone: &PhoneNumber) -> String {
        use hmac::{Hmac, Mac};
        let key = self.master.derive(PHONE_INDEX_LABEL);
        let mut mac =
            <Hmac<sha2::Sha256> as Mac>::new_from_slice(&key).expect("HMAC takes any key length");
        mac.update(phone.as_str().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Records (or replaces) the user's phone number in the blind index.
    pub(crate) async fn index_phone(
        &self,
        user_id: Uuid,
        phone: &PhoneNumber,
    ) -> Result<(), FlowError> {
        let hash = self.phone_index(phone);
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO user_phone_index (user_id, phone_hash) VALUES ($1, $2) \
                 ON CONFLICT (user_id) DO UPDATE SET phone_hash = excluded.phone_hash",
            )
            .bind(user_id)
            .bind(&hash)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Forgets the user's entry in the blind index (erasure).
    pub(crate) async fn unindex_phone(&self, user_id: Uuid) -> Result<(), FlowError> {
        with_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM user_phone_index WHERE user_id = $1")
                .bind(user_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The users whose phone number is exactly `phone` (normalized).
    #[tracing::instrument(skip_all, err(level = "debug"))]
    pub async fn users_with_phone(&self, phone: &PhoneNumber) -> Result<Vec<Uuid>, FlowError> {
        let hash = self.phone_index(phone);
        let ids: Vec<Uuid> = with_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT user_id FROM user_phone_index WHERE phone_hash = $1")
                .bind(&hash)
                .fetch_all(pool)
                .await?
        });
        Ok(ids)
    }

    /// The User aggregate as stored (admins' view: role, blocked, API key).
    pub async fn account(&self, user_id: Uuid) -> Result<User, FlowError> {
        self.users.load(user_id).await.map_err(user_err)
    }

    async fn on_account(
        &self,
        user_id: Uuid,
        command: AdminCommand,
        meta: &CommandMeta,
    ) -> Result<Written<User>, FlowError> {
        let done = self
            .users
            .execute(user_id, UserCommand::Admin(command), meta)
            .await
            .map_err(user_err)?;
        self.written(&self.users, user_id, &done, (*done.aggregate).clone())
            .await
    }

    #[tracing::instrument(skip_all, fields(%user_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn change_role(
        &self,
        user_id: Uuid,
        role: Role,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<User>, FlowError> {
        let by = meta.actor.user_id;
        let command = AdminCommand::ChangeRole {
            user_id,
            role,
            reason,
            by,
        };
        self.on_account(user_id, command, meta).await
    }

    /// Blocks the account. Its unpaid holds are released by the caller, which knows them from
    /// the read model ([`Commands::cancel_booking`] per hold).
    #[tracing::instrument(skip_all, fields(%user_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn block_user(
        &self,
        user_id: Uuid,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<User>, FlowError> {
        let by = meta.actor.user_id;
        let command = AdminCommand::Block {
            user_id,
            reason,
            by,
        };
        self.on_account(user_id, command, meta).await
    }

    #[tracing::instrument(skip_all, fields(%user_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn unblock_user(
        &self,
        user_id: Uuid,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<User>, FlowError> {
        let by = meta.actor.user_id;
        let command = AdminCommand::Unblock {
            user_id,
            reason,
            by,
        };
        self.on_account(user_id, command, meta).await
    }

    /// Issues an API key: a service client of its own (the key id is its user id) in `role`,
    /// limited to `listing_ids` when given. Only the key's SHA-256 is recorded.
    #[tracing::instrument(skip_all, fields(admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn issue_api_key(
        &self,
        name: String,
        role: Role,
        listing_ids: Option<Vec<Uuid>>,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<IssuedKey>, FlowError> {
        let key_id = Uuid::now_v7();
        let key = new_api_key();
        let command = AdminCommand::IssueApiKey {
            key_id,
            name,
            role,
            listing_ids,
            key_hash: api_key_hash(&key),
            reason,
            by: meta.actor.user_id,
        };
        let written = self.on_account(key_id, command, meta).await?;
        Ok(Written {
            position: written.position,
            value: IssuedKey {
                key_id,
                key,
                user: written.value,
            },
        })
    }

    #[tracing::instrument(skip_all, fields(%key_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn revoke_api_key(
        &self,
        key_id: Uuid,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<User>, FlowError> {
        let command = AdminCommand::RevokeApiKey {
            key_id,
            reason,
            by: meta.actor.user_id,
        };
        self.on_account(key_id, command, meta).await
    }

    /// Pauses, archives or restores any listing; the host sees the reason on the listing.
    #[tracing::instrument(skip_all, fields(%listing_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn moderate_listing(
        &self,
        listing_id: Uuid,
        action: ModerationAction,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<Listing>, FlowError> {
        let cmd = ListingCommand::Moderate {
            action,
            reason: reason.into_string(),
            by: meta.actor.user_id,
        };
        let done = self
            .listings
            .execute(listing_id, cmd, meta)
            .await
            .map_err(listing_err)?;
        self.written(&self.listings, listing_id, &done, (*done.aggregate).clone())
            .await
    }

    /// Gives a held booking until `until` to be paid: the listing's reservation first (what
    /// the sweeper goes by), then the booking.
    #[tracing::instrument(skip_all, fields(%booking_id, admin = %meta.actor.user_id, correlation_id = %meta.correlation_id), err(level = "debug"))]
    pub async fn extend_hold(
        &self,
        booking_id: Uuid,
        until: DateTime<Utc>,
        reason: Reason,
        meta: &CommandMeta,
    ) -> Result<Written<Booking>, FlowError> {
        let booking = self.bookings.load(booking_id).await.map_err(booking_err)?;
        if booking.id.is_none() {
            return Err(FlowError::Booking(domain::booking::BookingError::NotFound));
        }
        let cmd = ListingCommand::ExtendHold {
            booking_id,
            until,
            now: Utc::now(),
        };
        let listing = self
            .listings
            .execute(booking.listing_id, cmd, meta)
            .await
            .map_err(listing_err)?;
        if !listing.events.is_empty() {
            self.wrote();
        }
        let cmd = BookingCommand::ExtendHold {
            until,
            reason: reason.into_string(),
            by: meta.actor.user_id,
        };
        let done = self
            .bookings
            .execute(booking_id, cmd, &meta.follow_up())
            .await
            .map_err(booking_err)?;
        self.written(&self.bookings, booking_id, &done, (*done.aggregate).clone())
            .await
    }

    /// When each API key was last used (recorded at most once a minute per key).
    pub async fn api_keys_last_used(&self) -> Result<Vec<(Uuid, DateTime<Utc>)>, FlowError> {
        let rows: Vec<(Uuid, DateTime<Utc>)> = with_pool!(&self.db, pool => {
            sqlx::query_as("SELECT key_id, last_used_at FROM api_key_usage")
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }

    /// Records that the key was used at `at`.
    pub async fn record_api_key_use(
        &self,
        key_id: Uuid,
        at: DateTime<Utc>,
    ) -> Result<(), FlowError> {
        with_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO api_key_usage (key_id, last_used_at) VALUES ($1, $2) \
                 ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at",
            )
            .bind(key_id)
            .bind(at)
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
    fn api_keys_are_prefixed_256_bit_secrets_and_hash_to_hex() {
        let k = new_api_key();
        assert!(k.starts_with(API_KEY_PREFIX));
        assert_eq!(k.len(), API_KEY_PREFIX.len() + 43);
        assert_ne!(k, new_api_key());
        let h = api_key_hash(&k);
        assert_eq!(h.len(), 64);
        assert!(!h.contains(&k[4..]));
    }
}
