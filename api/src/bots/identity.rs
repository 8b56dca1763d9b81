//! Who a channel's user is, without naming them: guest ids and chat identifiers at rest.
//!
//! - A guest's id is HMAC-SHA256 of `channel:external id` under a subkey of the master key,
//!   cut to 16 bytes with the UUID version (8, custom) and variant bits set. Without the key a
//!   host who sees a `guest_id` cannot test phone numbers against it (an unkeyed UUIDv5 of the
//!   number could be reversed by trying every Kazakh mobile number).
//! - A chat is looked up by its keyed hash (`h1:` + hex, under another subkey), and its address
//!   (the WhatsApp number, the Telegram chat id) is kept only sealed with the master key, bound
//!   to the channel and the hash, for sending notices.
//!
//! Guests who first wrote before keyed ids keep their UUIDv5 ids: their chat rows keep the id
//! they were stored with, and a guest is resolved from their chat row first (see
//! `docs/security.md`, "Guest identity").
use commands::MasterKey;
use domain::user::Sealed;
use domain::Channel;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// The prefix of a chat's keyed hash; a stored chat id without it is from before hashing.
pub const CHAT_HASH_PREFIX: &str = "h1:";

/// The fixed labels of the subkeys (changing one changes every id or hash made with it).
const GUEST_ID_LABEL: &str = "zhilego/bots/guest-id/v1";
const CHAT_HASH_LABEL: &str = "zhilego/bots/chat-hash/v1";

/// The keys that derive guest ids and hide chat identifiers.
#[derive(Clone)]
pub struct GuestKeys {
    guest_ids: [u8; 32],
    chat_hashes: [u8; 32],
    master: MasterKey,
}

impl std::fmt::Debug for GuestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GuestKeys(***)")
    }
}

fn mac(key: &[u8; 32], channel: Channel, text: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(channel.as_str().as_bytes());
    mac.update(b":");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().into()
}

impl GuestKeys {
    pub fn new(master: &MasterKey) -> Self {
        GuestKeys {
            guest_ids: master.derive(GUEST_ID_LABEL),
            chat_hashes: master.derive(CHAT_HASH_LABEL),
            master: master.clone(),
        }
    }

    /// The id a new guest behind a Telegram user id or a WhatsApp number gets: the same every
    /// time for the same key.
    pub fn guest_id(&self, channel: Channel, external: &str) -> Uuid {
        let digest = mac(&self.guest_ids, channel, external);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        uuid::Builder::from_custom_bytes(bytes).into_uuid()
    }

    /// The chat's lookup key as stored in `bot_chats.chat_id`.
    pub fn chat_hash(&self, channel: Channel, chat_id: &str) -> String {
        format!(
            "{CHAT_HASH_PREFIX}{}",
            hex::encode(mac(&self.chat_hashes, channel, chat_id))
        )
    }

    /// The chat's address sealed for `bot_chats.address`, bound to its channel and hash so a
    /// sealed address cannot be moved to another row.
    pub fn seal_address(&self, channel: Channel, hash: &str, chat_id: &str) -> String {
        self.master.seal(chat_id, &binding(channel, hash)).0
    }

    /// The address [`GuestKeys::seal_address`] sealed, if it opens.
    pub fn open_address(&self, channel: Channel, hash: &str, sealed: &str) -> Option<String> {
        self.master
            .open(&Sealed(sealed.to_string()), &binding(channel, hash))
    }
}

fn binding(channel: Channel, hash: &str) -> String {
    format!("bot-chat:{}:{hash}", channel.as_str())
}

/// The id guests were given before keyed ids (an unkeyed UUIDv5 of the channel's user id).
/// Only to tell old ids from new ones: nothing derives ids this way any more.
pub fn legacy_guest_id(channel: Channel, external: &str) -> Uuid {
    const NAMESPACE: Uuid = Uuid::from_u128(0x2f6b_0c1e_93aa_4d57_8e11_c0de_b075_0001);
    Uuid::new_v5(
        &NAMESPACE,
        format!("{}:{external}", channel.as_str()).as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(hex: &str) -> GuestKeys {
        GuestKeys::new(&MasterKey::from_hex(hex).unwrap())
    }

    #[test]
    fn guest_ids_are_keyed_stable_and_versioned() {
        let a = keys(&"11".repeat(32));
        let b = keys(&"22".repeat(32));
        let id = a.guest_id(Channel::Whatsapp, "+77015550002");
        assert_eq!(id, a.guest_id(Channel::Whatsapp, "+77015550002"));
        assert_ne!(id, b.guest_id(Channel::Whatsapp, "+77015550002"), "keyed");
        assert_ne!(
            id,
            a.guest_id(Channel::Telegram, "+77015550002"),
            "per channel"
        );
        assert_ne!(id, legacy_guest_id(Channel::Whatsapp, "+77015550002"));
        assert_eq!(id.get_version_num(), 8);
        assert_eq!(id.get_variant(), uuid::Variant::RFC4122);
    }

    #[test]
    fn chat_hashes_hide_the_address_and_sealed_addresses_open_in_their_row_only() {
        let k = keys(&"33".repeat(32));
        let hash = k.chat_hash(Channel::Whatsapp, "whatsapp:+77015550002");
        assert!(hash.starts_with(CHAT_HASH_PREFIX));
        assert!(!hash.contains("7015550002"));
        assert_eq!(
            hash,
            k.chat_hash(Channel::Whatsapp, "whatsapp:+77015550002")
        );
        let sealed = k.seal_address(Channel::Whatsapp, &hash, "whatsapp:+77015550002");
        assert!(!sealed.contains("7015550002"));
        assert_eq!(
            k.open_address(Channel::Whatsapp, &hash, &sealed).as_deref(),
            Some("whatsapp:+77015550002")
        );
        let other = k.chat_hash(Channel::Whatsapp, "whatsapp:+77015550003");
        assert!(k.open_address(Channel::Whatsapp, &other, &sealed).is_none());
    }
}
