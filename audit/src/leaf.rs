//! One leaf per stored event: a canonical, length-prefixed byte encoding of everything the
//! store keeps about the event (docs/audit.md, "The leaf"), hashed as RFC 9162 §2.1.1 says.
//!
//! ```text
//! leaf data = "zhilego-audit-leaf/v1"
//!             ‖ u64 position ‖ str aggregate_type ‖ str aggregate_id ‖ u64 sequence
//!             ‖ str event_type ‖ str event_version ‖ str payload ‖ str metadata
//!             ‖ i64 recorded_at (microseconds since 1970-01-01T00:00:00Z)
//! str x     = u32 length of x in bytes ‖ the UTF-8 bytes of x
//! integers  = big-endian
//! leaf hash = SHA-256(0x00 ‖ leaf data)
//! ```
//! `payload` and `metadata` are JSON with object keys sorted and no spaces, exactly the form
//! the hash chain hashes (`store::chain::write_canonical`); `metadata` includes `hash`, so the
//! chain is covered. Sealed values stay the ciphertext they were stored as, so erasing a user
//! (destroying their key) changes no leaf.
use sha2::{Digest, Sha256};
use store::StoredEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Sets the encoding apart from any other use of the same bytes; a new layout gets `/v2`.
pub const LEAF_TAG: &[u8] = b"zhilego-audit-leaf/v1";

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The leaf data of an event (the bytes that are hashed, after the 0x00 prefix).
pub fn leaf_data(e: &StoredEvent) -> Vec<u8> {
    let mut payload = String::with_capacity(256);
    store::chain::write_canonical(&e.payload, &mut payload);
    let mut metadata = String::with_capacity(512);
    store::chain::write_canonical(&e.metadata, &mut metadata);
    let mut out = Vec::with_capacity(LEAF_TAG.len() + payload.len() + metadata.len() + 160);
    out.extend_from_slice(LEAF_TAG);
    out.extend_from_slice(&(e.position as u64).to_be_bytes());
    put_str(&mut out, &e.aggregate_type);
    put_str(&mut out, &e.aggregate_id);
    out.extend_from_slice(&(e.sequence as u64).to_be_bytes());
    put_str(&mut out, &e.event_type);
    put_str(&mut out, &e.event_version);
    put_str(&mut out, &payload);
    put_str(&mut out, &metadata);
    out.extend_from_slice(&e.recorded_at.timestamp_micros().to_be_bytes());
    out
}

/// RFC 9162 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash_of(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// The leaf hash of an event.
pub fn leaf_hash(e: &StoredEvent) -> Hash {
    leaf_hash_of(&leaf_data(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn event() -> StoredEvent {
        StoredEvent {
            position: 7,
            tx: 7,
            aggregate_type: "Booking".into(),
            aggregate_id: "b1".into(),
            sequence: 2,
            event_type: "BookingConfirmed".into(),
            event_version: "1.0".into(),
            payload: json!({"BookingConfirmed": {"payment_id": "p", "a": 1}}),
            metadata: json!({"hash": "ab", "actor": "x"}),
            recorded_at: chrono::Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            hash: "ab".into(),
        }
    }

    #[test]
    fn the_encoding_is_length_prefixed_and_sorted() {
        let data = leaf_data(&event());
        let mut expected = LEAF_TAG.to_vec();
        expected.extend_from_slice(&7u64.to_be_bytes());
        for s in ["Booking", "b1"] {
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        expected.extend_from_slice(&2u64.to_be_bytes());
        for s in [
            "BookingConfirmed",
            "1.0",
            r#"{"BookingConfirmed":{"a":1,"payment_id":"p"}}"#,
            r#"{"actor":"x","hash":"ab"}"#,
        ] {
            expected.extend_from_slice(&(s.len() as u32).to_be_bytes());
            expected.extend_from_slice(s.as_bytes());
        }
        expected.extend_from_slice(&1_700_000_000_123_456i64.to_be_bytes());
        assert_eq!(data, expected);
    }

    #[test]
    fn every_field_is_covered() {
        let base = leaf_hash(&event());
        let mut changes: Vec<StoredEvent> = Vec::new();
        let mut e = event();
        e.position = 8;
        changes.push(e);
        let mut e = event();
        e.aggregate_id = "b2".into();
        changes.push(e);
        let mut e = event();
        e.sequence = 3;
        changes.push(e);
        let mut e = event();
        e.event_version = "2.0".into();
        changes.push(e);
        let mut e = event();
        e.payload = json!({"BookingConfirmed": {"payment_id": "q", "a": 1}});
        changes.push(e);
        let mut e = event();
        e.metadata = json!({"hash": "ac", "actor": "x"});
        changes.push(e);
        let mut e = event();
        e.recorded_at += chrono::Duration::microseconds(1);
        changes.push(e);
        // Moving a byte from one field to the next is a different leaf (length prefixes).
        let mut e = event();
        e.aggregate_type = "Bookingb".into();
        e.aggregate_id = "1".into();
        changes.push(e);
        for changed in changes {
            assert_ne!(leaf_hash(&changed), base, "{changed:?}");
        }
    }
}
